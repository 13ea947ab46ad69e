"""A layout: how one pool of instances is parallelized (DESIGN.md section 3).

An instance (one copy of the model) has ``pp`` stages; inside a stage attention runs on
``tp x dp`` GPUs (tensor parallel x attention data parallel) and the MoE layers fold onto the
same GPUs as ``ep x etp`` (expert parallel x expert tensor parallel)::

    tp * dp == ep * etp              GPUs per instance = pp * tp * dp
    GPUs of the pool = instances * GPUs per instance

So ep never multiplies the GPU count, and attention dp inside an instance is not a replica.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from meshplan.errors import SpecError, suggest
from meshplan.specs.base import Spec


class Axis(StrEnum):
    """Parallel axes, named the same way in every layer and in strategy strings."""

    INSTANCES = "instances"
    PP = "pp"
    TP = "tp"
    DP = "dp"
    EP = "ep"
    ETP = "etp"


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
        return self.pp * self.tp * self.dp

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
    "(experts folded over all attention GPUs of a stage; 1 for dense models).")


def parse_strategy(text: str, *, is_moe: bool = True, field: str = "strategy") -> Layout:
    """Read ``instances=2,pp=1,tp=4,dp=8,ep=32,etp=1``; omitted fields take the defaults in
    STRATEGY_HELP. Raises SpecError naming the bad part."""
    given: dict[str, int] = {}
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        if "=" not in part:
            raise SpecError(field, text, f"'{part}' is not key=value; {STRATEGY_HELP}")
        key, value = part.split("=", 1)
        key = key.lower()
        if key not in {a.value for a in Axis}:
            raise SpecError(field, text, f"unknown axis '{key}'" + suggest(key, [a.value for a in Axis]))
        if key in given:
            raise SpecError(field, text, f"axis '{key}' given twice")
        if not value.isdigit() or int(value) < 1:
            raise SpecError(field, text, f"{key} = {value!r}: degrees are whole numbers >= 1")
        given[key] = int(value)
    tp, dp, etp = given.get("tp", 1), given.get("dp", 1), given.get("etp", 1)
    if "ep" not in given:
        given["ep"] = max(1, tp * dp // etp) if is_moe else 1
    given.setdefault("etp", 1)
    return Layout(**given)
