"""A layout: how one pool of instances is parallelized (DESIGN.md section 3).

An instance (one copy of the model) has ``pp`` stages; inside a stage attention runs on
``tp x dp`` GPUs (tensor parallel x attention data parallel) and the MoE layers fold onto the
same GPUs as ``ep x etp`` (expert parallel x expert tensor parallel)::

    tp * dp == ep * etp              GPUs per instance = pp * tp * dp
    GPUs of the pool = instances * GPUs per instance

So ep never multiplies the GPU count, and attention dp inside an instance is not a replica.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field, ValidationError

from meshplan.errors import SpecError, suggest
from meshplan.specs.base import Spec
from meshplan.specs.workload import Phase, Serving

MAX_DEGREE = 100_000
"""Largest degree of any axis, and largest instance count, a strategy may state: 100,000 GPUs,
about half the largest GPU cluster built so far (2025), so only a typo is refused."""
MAX_GPUS = 1_000_000
"""Largest GPU total a stated strategy may come to (instances x pp x tp x dp)."""


class Axis(StrEnum):
    """Parallel axes, named the same way in every layer and in strategy strings."""

    INSTANCES = "instances"
    PP = "pp"
    TP = "tp"
    DP = "dp"
    EP = "ep"
    ETP = "etp"


def instance_gpus(tp, dp, pp):
    """GPUs of one instance, the one owner of this count: tp x attention dp GPUs per stage, pp
    stages; ep and etp fold into a stage's GPUs (ep x etp = tp x dp). Ints or arrays."""
    return pp * tp * dp


class Layout(Spec):
    """Degrees of one pool. Legality against a model lives in strategy.rules."""

    instances: int = Field(default=1, ge=1)
    """Independent copies of the model (replicas); they share nothing."""
    pp: int = Field(default=1, ge=1)
    """Pipeline stages per instance."""
    tp: int = Field(default=1, ge=1)
    """Tensor parallel degree of attention (and of dense FFNs and shared experts)."""
    dp: int = Field(default=1, ge=1)
    """Attention data parallel degree inside an instance: dp ranks serve different requests
    with their own attention and KV cache and meet in the MoE layers."""
    ep: int = Field(default=1, ge=1)
    """Expert parallel degree: routed experts are spread over ep ranks."""
    etp: int = Field(default=1, ge=1)
    """Expert tensor parallel degree: each expert's FFN is split over etp GPUs."""

    @property
    def gpus_per_stage(self) -> int:
        return self.tp * self.dp

    @property
    def gpus_per_instance(self) -> int:
        return instance_gpus(self.tp, self.dp, self.pp)

    @property
    def gpus(self) -> int:
        return self.instances * self.gpus_per_instance

    def with_instances(self, instances: int) -> "Layout":
        return self.model_copy(update={"instances": instances})

    def __str__(self) -> str:
        return (f"instances={self.instances},pp={self.pp},tp={self.tp},dp={self.dp},"
                f"ep={self.ep},etp={self.etp}")

    @property
    def short(self) -> str:
        """Compact form for tables: only what differs from 1, e.g. ``tp4 dp8 ep32``."""
        parts = [f"{a.value}{getattr(self, a.value)}" for a in (Axis.PP, Axis.TP, Axis.DP, Axis.EP, Axis.ETP)
                 if getattr(self, a.value) > 1]
        body = " ".join(parts) or "1 GPU"
        return f"{self.instances}x({body})" if self.instances > 1 else body


STRATEGY_HELP = (
    "Strategy string: comma-separated degrees, e.g. instances=2,pp=1,tp=4,dp=8,ep=32,etp=1. "
    "Omitted fields: instances=1, pp=1, tp=1, dp=1, etp=1, and ep = tp*dp/etp for MoE models "
    "(experts folded over all attention GPUs of a stage; 1 for dense models). "
    "A layout as meshplan prints it is read too (tp8 dp2, 4x(dp2 etp2), aggregated: 2x(pp2 dp2 etp2)); "
    "there every axis left out is 1.")

_PHASES = (Serving.AGGREGATED, Phase.PREFILL, Phase.DECODE)
"""Words meshplan prints before a pool's layout (search.objectives.Mode)."""
_GPU_AXES = (Axis.INSTANCES, Axis.PP, Axis.TP, Axis.DP)
"""The axes whose degrees multiply to a layout's GPUs (ep and etp fold onto tp x dp)."""
_LABEL_AXES = (Axis.PP, Axis.TP, Axis.DP, Axis.EP, Axis.ETP)
_DIGITS = re.compile(r"[0-9]+")
"""A degree is written in ASCII digits (str.isdigit() also takes U+00B2 superscript two and other
digit signs, which int() then refuses)."""


def parse_strategy(text: str, *, is_moe: bool = True, field: str = "strategy") -> Layout:
    """Read a strategy: ``instances=2,pp=1,tp=4,dp=8,ep=32,etp=1`` (omitted fields take the
    defaults in STRATEGY_HELP) or one pool's layout as meshplan prints it (``Layout.short``:
    ``tp8 dp2``, ``4x(dp2 etp2)``, ``1 GPU``, optionally after ``aggregated:``/``prefill``/``decode``
    and before ``(N GPUs)``), where every axis left out is 1. Raises SpecError naming the bad part."""
    text = str(text)
    keyed = "=" in text or "," in text or not text.strip()
    given = _key_values(text, field) if keyed else _label(text, field)
    if keyed:
        tp, dp, etp = given.get(Axis.TP, 1), given.get(Axis.DP, 1), given.get(Axis.ETP, 1)
        if Axis.EP not in given:
            given[Axis.EP.value] = max(1, tp * dp // etp) if is_moe else 1
        given.setdefault(Axis.ETP.value, 1)
    total = 1
    for axis in _GPU_AXES:
        total *= given.get(axis, 1)
    if total > MAX_GPUS:
        raise SpecError(field, text, f"comes to {total:,} GPUs; a strategy may use at most {MAX_GPUS:,}")
    return make_layout(field, text, **given)


def make_layout(field: str, value: Any, **degrees: int) -> Layout:
    """Layout(**degrees), refused as SpecError(field, value, ...) naming the first bad degree."""
    try:
        return Layout(**degrees)
    except ValidationError as err:
        first = err.errors()[0]
        axis = ".".join(str(x) for x in first["loc"]) or "layout"
        rule = "a degree is a whole number >= 1" if first["type"] == "greater_than_equal" else first["msg"]
        raise SpecError(field, value, f"{axis} = {first.get('input')!r}: {rule}") from None


def _degree(text: str, field: str, key: str, value: str) -> int:
    shown = value if len(value) <= 30 else value[:30] + "..."
    if not _DIGITS.fullmatch(value) or not value.strip("0"):
        raise SpecError(field, text, f"{key} = {shown!r}: degrees are whole numbers >= 1")
    if len(value.lstrip("0")) > len(str(MAX_DEGREE)) or int(value) > MAX_DEGREE:
        raise SpecError(field, text, f"{key} = {shown}: at most {MAX_DEGREE:,} (GPUs)")
    return int(value)


def _key_values(text: str, field: str) -> dict[str, int]:
    given: dict[str, int] = {}
    for part in "".join(text.split()).split(","):
        if not part:
            continue
        if "=" not in part:
            raise SpecError(field, text, f"{part!r} is not key=value; {STRATEGY_HELP}")
        key, value = part.split("=", 1)
        key = key.lower()
        if key not in {a.value for a in Axis}:
            raise SpecError(field, text, f"unknown axis {key!r}" + suggest(key, [a.value for a in Axis]))
        if key in given:
            raise SpecError(field, text, f"axis '{key}' given twice")
        given[key] = _degree(text, field, key, value)
    return given


def _pools_hint(s: str) -> str:
    """How to give the pools of ``prefill A + decode B  (N GPUs)`` as options."""
    s = re.sub(r"\s+\([0-9]+ GPUs?\)$", "", s)
    parts = [re.fullmatch(r"\s*(prefill|decode):?\s+(.*?)\s*", p, re.IGNORECASE) for p in s.split("+")]
    pools = {m.group(1).lower(): m.group(2) for m in parts if m}
    flags = (f"--prefill '{pools['prefill']}' --decode '{pools['decode']}'" if len(parts) == 2 and len(pools) == 2
             else "--prefill S --decode S")
    return f"{flags} (prefill_strategy and decode_strategy in a problem file)"


def _label(text: str, field: str) -> dict[str, int]:
    """One pool's layout as Layout.short prints it, every omitted axis 1."""
    s = " ".join(text.split())
    if "+" in s:
        raise SpecError(field, text, "names more than one pool; give each its own strategy: " + _pools_hint(s))
    words = s.split(" ", 1)
    if words[0].rstrip(":").lower() in _PHASES:
        s = words[1] if len(words) > 1 else ""
    m = re.fullmatch(r"(.+?)\s+\(([0-9]+) GPUs?\)", s)
    stated = None
    if m and not m.group(1).endswith("x"):
        s, stated = m.group(1), m.group(2)
    given: dict[str, int] = {}
    m = re.fullmatch(r"([^\s(]+)x\((.*)\)", s)
    if m:
        given["instances"] = _degree(text, field, "instances", m.group(1))
        s = m.group(2).strip()
    if s.lower() not in ("1 gpu", ""):
        names = [a.value for a in _LABEL_AXES]
        for token in s.split(" "):
            t = re.fullmatch(r"([a-z]+)(.*)", token.lower())
            if not t or t.group(1) not in names:
                raise SpecError(field, text, f"{token!r} is not an axis with its degree (pp2, tp8, dp2, ep16, etp2)"
                                + (suggest(t.group(1), names) if t else ""))
            if t.group(1) in given:
                raise SpecError(field, text, f"axis '{t.group(1)}' given twice")
            given[t.group(1)] = _degree(text, field, t.group(1), t.group(2))
    elif not s:
        raise SpecError(field, text, "states no layout; e.g. tp=8,ep=8 or, as meshplan prints it, tp8 ep8")
    if stated is not None:
        total = 1
        for axis in _GPU_AXES:
            total *= given.get(axis, 1)
        if len(stated.lstrip("0")) > len(str(total)) or int(stated) != total:
            raise SpecError(field, text, f"states {stated[:30]} GPUs, but the layout comes to {total:,}")
    return given
