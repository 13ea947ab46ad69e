"""The ``workload`` key of a problem file: lengths as a number or a [min, max] range, the load, and
the prefix cache (io.problem_file reads the rest)."""

from __future__ import annotations

from typing import Any

from meshplan.errors import SpecError, finite_number, suggest
from meshplan.io.spec_build import build
from meshplan.specs.problem import Note
from meshplan.specs.workload import WorkloadSpec

WORKLOAD_KEYS = ("isl", "osl", "isl_max", "osl_max", "concurrency", "request_rate_per_s", "requests_per_client",
                 "client_overhead_s", "prefix_hit_rate")


def _length(value: Any, field: str, notes: list[Note]) -> tuple[float, float]:
    """A length as (mean, max): a number, or a [min, max] range read as uniform."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = (_tokens(v, field, value) for v in value)
        if not 0 < lo <= hi:
            raise SpecError(f"workload.{field}", list(value), "a range needs 0 < min <= max")
        notes.append(Note(field=f"workload.{field}", message=(
            f"range [{lo:g}, {hi:g}] read as uniform: planned at its mean {(lo + hi) / 2:g} tokens, "
            f"memory sized for {hi:g}")))
        return (lo + hi) / 2, hi
    return _tokens(value, field, value), _tokens(value, field, value)


MAX_TOKENS = 16_777_216
"""Longest length a workload may state (2^24 tokens): above the longest published context windows
(10 M tokens, Llama 4 Scout), so a typo of extra digits is refused rather than planned."""


def _tokens(v: Any, field: str, written: Any) -> float:
    """One length in tokens: a finite positive number up to MAX_TOKENS."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecError(f"workload.{field}", written, "must be a number of tokens or a [min, max] range")
    if isinstance(v, int) and v > MAX_TOKENS:  # compared as an integer: 10**400 has no float
        raise SpecError(f"workload.{field}", written, f"more than {MAX_TOKENS:,} tokens; no model reads that many")
    if not finite_number(v) or v <= 0:
        raise SpecError(f"workload.{field}", written, "must be a positive, finite number of tokens")
    if v > MAX_TOKENS:
        raise SpecError(f"workload.{field}", written, f"more than {MAX_TOKENS:,} tokens; no model reads that many")
    return float(v)


def read_workload(value: Any, notes: list[Note]) -> WorkloadSpec:
    """The workload mapping as a WorkloadSpec; ranges and the prefix cache add notes."""
    if not isinstance(value, dict):
        raise SpecError("workload", value, "must be a mapping with isl and osl")
    for key in value:
        if key not in WORKLOAD_KEYS:
            raise SpecError(f"workload.{key}", value[key], "unknown key" + suggest(key, list(WORKLOAD_KEYS)))
    for key in ("isl", "osl"):
        if key not in value:
            raise SpecError(f"workload.{key}", None, "missing; give the mean length in tokens (--" + key + ")")
    isl, isl_max = _length(value["isl"], "isl", notes)
    osl, osl_max = _length(value["osl"], "osl", notes)
    for key, mean in (("isl_max", isl), ("osl_max", osl)):
        if value.get(key) is not None:
            stated = _tokens(value[key], key, value[key])
            if stated < mean:
                raise SpecError(f"workload.{key}", value[key], f"below the mean length {mean:g}")
    workload = build(WorkloadSpec, dict(
        isl_tokens=isl, isl_max_tokens=max(isl_max, float(value.get("isl_max") or 0)),
        osl_tokens=osl, osl_max_tokens=max(osl_max, float(value.get("osl_max") or 0)),
        concurrency=value.get("concurrency"), request_rate_per_s=value.get("request_rate_per_s"),
        requests_per_client=value.get("requests_per_client"),
        client_overhead_s=value.get("client_overhead_s", 0.0), prefix_hit_rate=value.get("prefix_hit_rate", 0.0)),
        "workload")
    if workload.prefix_hit_rate > 0:
        notes.append(Note(field="workload.prefix_hit_rate", message=(
            f"prefix cache: {workload.prefix_hit_rate:.1%} of each prompt's {workload.isl_tokens:,.0f} tokens are found "
            f"cached (stated, not derived), so prefill computes {workload.computed_prompt_tokens:,.0f} tokens per prompt, "
            "each attending to the whole prompt; the KV cache is still sized for whole prompts, and the cache itself "
            "lives in KV memory the running requests leave free")))
    return workload
