"""Numeric claims in a Markdown plan, each with the line it came from.

Plans written by people or language models state figures in loose prose ("Per GPU: 20GB / 16 EP
groups = 1.25GB per GPU", "TTFT: 2.5s (10s target)"). Each line is read once; a line that
states a target or a requirement rather than a capability is skipped, since a requirement is
not a claim about the deployment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class ClaimKind(StrEnum):
    GPUS_TOTAL = "gpus_total"
    PARAMS = "params"
    WEIGHTS_PER_GPU = "weights_per_gpu"
    KV_PER_GPU = "kv_cache_per_gpu"
    ACTIVATIONS_PER_GPU = "activations_per_gpu"
    MEMORY_PER_GPU = "memory_per_gpu"
    MEMORY_UTILIZATION = "memory_utilization"
    GPU_UTILIZATION = "gpu_utilization"
    OUTPUT_TOK_S = "output_tok_s"
    OUTPUT_TOK_S_PER_GPU = "output_tok_s_per_gpu"
    TTFT = "ttft_s"
    TPOT = "tpot_s"
    LAYERS_PER_STAGE = "layers_per_stage"


@dataclass(frozen=True, kw_only=True, slots=True)
class Claim:
    kind: ClaimKind
    value: float
    """In SI units (bytes, tokens/s, seconds, a fraction for utilisation, a count)."""
    line: int
    text: str


_NUM = r"(\d[\d,]*(?:\.\d+)?)"
_UNIT_BYTES = {"gb": 1e9, "gib": 2**30, "mb": 1e6, "mib": 2**20, "tb": 1e12}


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def _memory(line: str) -> tuple[ClaimKind, float] | None:
    low = line.lower()
    if "per gpu" not in low and "total memory" not in low and "memory per gpu" not in low:
        return None
    # The figure before "per GPU", else the first one before a comparison sign.
    head = re.split(r"[≤<>≥]|\blimit\b", line)[0]
    figures = list(re.finditer(_NUM + r"\s*(GB|GiB|MB|MiB|TB)\b", head, re.I))
    m = re.search(_NUM + r"\s*(GB|GiB|MB|MiB|TB)\s*per GPU", head, re.I) or (figures[-1] if figures else None)
    if not m:
        return None
    value = _num(m.group(1)) * _UNIT_BYTES[m.group(2).lower()]
    if "kv" in low:
        return ClaimKind.KV_PER_GPU, value
    if "activation" in low:
        return ClaimKind.ACTIVATIONS_PER_GPU, value
    if "total" in low or "memory per gpu" in low or re.search(r"\*\*memory\*\*", low):
        return ClaimKind.MEMORY_PER_GPU, value
    if "model" in low or "weight" in low or "÷" in line or "/" in head:
        return ClaimKind.WEIGHTS_PER_GPU, value
    return None


def _throughput(line: str) -> list[tuple[ClaimKind, float]]:
    low = line.lower()
    if re.search(r"\b(required|requirement|target requirement)\b", low) and "≥" not in line:
        return []  # a requirement, not a claim
    out = []
    head = line.split("≥")[0]
    for m in re.finditer(_NUM + r"\s*tokens?\s*/\s*(ms|s)\b", head, re.I):
        value = _num(m.group(1)) * (1e3 if m.group(2).lower() == "ms" else 1.0)
        per_gpu = "per gpu" in low
        out.append((ClaimKind.OUTPUT_TOK_S_PER_GPU if per_gpu else ClaimKind.OUTPUT_TOK_S, value))
    return out[-1:] if out else []


def extract_claims(text: str) -> list[Claim]:
    """Every numeric claim of a Markdown plan, in order."""
    claims: list[Claim] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        low = line.lower()

        def add(kind: ClaimKind, value: float) -> None:
            claims.append(Claim(kind=kind, value=value, line=lineno, text=line))

        m = re.search(r"total gpus(?: required)?\W+" + _NUM, low) or re.search(_NUM + r"\s*gpus total", low)
        if m:
            add(ClaimKind.GPUS_TOTAL, _num(m.group(1)))
        m = re.search(r"parameters?\W+" + _NUM + r"\s*B\b", line, re.I)
        if m:
            add(ClaimKind.PARAMS, _num(m.group(1)) * 1e9)
        mem = _memory(line)
        if mem:
            add(*mem)
        head = re.split(r"[≤<>≥]|\blimit\b", low)[0]
        m = re.search(r"memory utili[sz]ation\W+~?" + _NUM + r"\s*%", head) or \
            re.search(_NUM + r"\s*%\s*of\s*\d+\s*gb", head)
        if m:
            add(ClaimKind.MEMORY_UTILIZATION, _num(m.group(1)) / 100)
        elif re.search(r"gpu (utili[sz]ation|efficiency)\W+~?" + _NUM + r"\s*%", low):
            m = re.search(r"gpu (?:utili[sz]ation|efficiency)\W+~?" + _NUM + r"\s*%", low)
            add(ClaimKind.GPU_UTILIZATION, _num(m.group(1)) / 100)
        for kind, value in _throughput(line):
            add(kind, value)
        for key, kind in (("ttft", ClaimKind.TTFT), ("tpot", ClaimKind.TPOT)):
            m = re.search(key + r"\W+" + _NUM + r"\s*(ms|s)\b", low)
            if m and "target:" not in low.split(key)[1][:3]:
                add(kind, _num(m.group(1)) * (1e-3 if m.group(2) == "ms" else 1.0))
        m = re.search(r"layers per stage\W+" + _NUM, low)
        if m:
            add(ClaimKind.LAYERS_PER_STAGE, _num(m.group(1)))
    return claims
