"""The seed system's Markdown problem format -> raw problem mapping (file schema).

The format is loose: bullet lines ``* **Key**: value`` under ``## **Section**`` headings, with
values such as "400TFlops", "1.8TBps", "64GB", "100tokens/ms" and sentences ("The number of
heads is 16 and the dimension of each heads is 32"). Every key is read or rejected with its
line number; whatever the file leaves out and a plan needs is assumed, and each assumption is a
note in the plan with the flag that overrides it.

A count or a degree is the one whole number its bullet states, in ASCII digits and with its sign
("16-layer, ..." for Layers, the number in "Each batch consists of 128 sequences."): words, a
fraction, a sign, several numbers or none, and a bullet given twice are refused with
``FILE:LINE Bullet``, the value as written and the rule, never read as some other number.
"""

from __future__ import annotations

import re
from typing import Any

from meshplan.errors import SpecError, suggest

_BULLET = re.compile(r"^\s*[*-]\s*\*\*(?P<key>[^*]+?)\s*\*\*\s*:?\s*(?P<value>.*)$")
_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_NUMBER = re.compile(r"(?<![\w.])[-+]?[0-9]+(?:\.[0-9]+)?")
"""A number as a bullet writes it, with its sign ("-4" is minus four, not 4), in ASCII digits;
digits inside a word ("H100", "v3") are not numbers of the bullet."""
_LAYERS = re.compile(r"(?<![\w.])([-+]?[0-9]+(?:\.[0-9]+)?)\s*-?\s*layers?\b", re.IGNORECASE)
_EXPERTS = re.compile(r"(?<![\w.])([-+]?[0-9]+(?:\.[0-9]+)?)\s*experts\b", re.IGNORECASE)
_PARALLELISM = {"tp": "tensor parallelism", "pp": "pipeline parallelism", "dp": "data parallelism",
                "ep": "expert parallelism", "sp": "sequence parallelism"}

# Defaults for what seed problems leave out; each is reported as a note when used.
ASSUMED_TOP_K = 2          # GShard (arXiv:2006.16668) and Mixtral route each token to 2 experts.
ASSUMED_VOCAB = 32000      # Llama-2 / Mixtral vocabulary; the seed gives none.
ASSUMED_OSL = 1024         # a common benchmark output length (e.g. 1024/1024 in TensorRT-LLM's tables).
SEED_HEADROOM = 0.8        # the seed system's plans cap memory at 80% of the card.


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", key.lower()).strip()


Fields = dict[str, tuple[int, str, str]]
"""Normalized key -> (line number, key as written, value) of every bullet."""


def _numbers(text: str) -> list[str]:
    """Every number a value states, as written (thousands commas dropped)."""
    return _NUMBER.findall(text.replace(",", ""))


def _where(fields: Fields, key: str, source: str) -> str:
    lineno, written, _ = fields[key]
    return f"{source}:{lineno} {written}"


MAX_DIGITS = 18
"""Longest whole number read (below 10**18): every count and size meshplan checks has a far
lower limit, and Python refuses to convert decimal text of more than 4,300 digits."""


def _whole(value: str, field: str, text: str, minimum: int = 1) -> int:
    """``value`` (one number as written) as a whole number >= ``minimum``, or SpecError."""
    if len(value.lstrip("+-").lstrip("0")) > MAX_DIGITS:
        raise SpecError(field, text, f"{value[:30]} is larger than any count or size meshplan reads")
    if not re.fullmatch(r"[-+]?[0-9]+", value) or int(value) < minimum:
        raise SpecError(field, text, f"{value} is not a whole number >= {minimum}")
    return int(value)


def _one_whole(fields: Fields, key: str, source: str, minimum: int = 1) -> int:
    """The one whole number a bullet states ("Each batch consists of 128 sequences." -> 128):
    no number, several numbers, a fraction or a number below ``minimum`` is refused naming the
    file, line and bullet."""
    _, _, text = fields[key]
    where = _where(fields, key, source)
    found = _numbers(text)
    if not found:
        raise SpecError(where, text, "expected a whole number")
    if len(set(found)) > 1:
        raise SpecError(where, text, f"states several numbers ({', '.join(found)}); expected one")
    return _whole(found[0], where, text, minimum)


def _scaled(text: str, field: str, units: dict[str, float]) -> float:
    """'400TFlops' -> 4e14 with units {'tflops': 1e12}; the unit must be one we know."""
    m = re.match(r"\s*" + _NUM + r"\s*([A-Za-z/%]*)", text.replace(",", ""))
    if not m:
        raise SpecError(field, text, "expected a number with a unit")
    unit = m.group(2).lower()
    if unit not in units:
        raise SpecError(field, text, f"unknown unit {m.group(2)!r}; expected one of {', '.join(u for u in units if u)}")
    return float(m.group(1)) * units[unit]


def _split(text: str, source: str) -> Fields:
    fields: Fields = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _BULLET.match(line)
        if m:
            key = _norm_key(m.group("key"))
            if key in fields and key.startswith(("gpus", "npus")):
                # "GPUs: Ample GPU resources" in the environment and "GPUs: 16" beside a stated
                # strategy are two bullets; _gpu_count refuses two that both state a count.
                key = f"{key} {lineno}"
            if key in fields:
                first = fields[key][0]
                raise SpecError(f"{source}:{lineno} {m.group('key').strip()}", m.group("value").strip(),
                                f"the bullet is given twice (lines {first} and {lineno}); keep one")
            fields[key] = (lineno, m.group("key").strip(), m.group("value").strip())
    if not fields:
        raise SpecError(source, text[:40] + "...", "no '* **Key**: value' lines found; not a seed-format problem")
    return fields


_KNOWN = {
    "gpus", "npus", "single card computing power", "mfu utilization", "vram bandwidth", "bandwidth utilization",
    "single card video memory capacity", "name", "weights", "layers", "precision", "token dimension",
    "dimension of mha", "dimension of attention", "hidden size of moe", "hidden size of ffn", "top k gate",
    "vocabulary size", "gqa kv heads", "batch size", "sequence length", "sequence in", "sequence out",
    "the time to the first token ttft", "time per output token tpot", "throughput per gpu",
    "tensor parallelism", "pipeline parallelism", "data parallelism", "expert parallelism",
    "sequence parallelism",
}


def read_seed_markdown(text: str, source: str = "problem.md") -> dict[str, Any]:
    """Parse one seed-format problem into the raw problem mapping (see io.problem_file)."""
    fields = _split(text, source)
    for key, (lineno, _, _) in fields.items():
        if key not in _KNOWN and not key.startswith(("gpus", "npus")):
            raise SpecError(f"{source}:{lineno}", key, "unknown key" + suggest(key, sorted(_KNOWN)))
    notes: list[dict[str, str]] = []

    def where(key: str) -> str:
        return _where(fields, key, source)

    raw: dict[str, Any] = {"notes": notes}
    title = text.lstrip().splitlines()[0].lower() if text.strip() else ""
    if title.startswith("#") and "strategy for each phase" in title:
        raw["serving"] = "disaggregated"
        notes.append({"field": "serving", "message": (
            "the problem asks for one strategy per phase, so prefill and decode are planned as separate pools "
            "(disaggregated); --serving auto compares with shared instances")})
    raw["gpu"] = _gpu(fields, where)
    raw["model"] = _model(fields, where, notes, source)
    prec = fields.get("precision", (0, "", ""))[2]
    if prec:
        raw["precision"] = {"weights": prec.strip().lower(), "kv_cache": _kv_dtype(prec)}
    raw["workload"] = _workload(fields, where, notes, source)
    raw["requirements"] = _requirements(fields, where, notes)
    gpus = _gpu_count(fields, source)
    stated = {name: _one_whole(fields, key, source) for name, key in _PARALLELISM.items() if key in fields}
    if stated:
        raw["seed_strategy"] = {"gpus": gpus, **{name: stated.get(name) for name in _PARALLELISM}}
    elif gpus is not None:
        raw["gpus"] = gpus
    return raw


def _gpu_count(fields: Fields, source: str) -> int | None:
    """The GPU count a ``GPUs`` (or ``NPUs``) bullet states; None for "Ample GPU resources, no
    limits." (a bullet without digits)."""
    keys = [k for k in fields if k.startswith(("gpus", "npus")) and re.search(r"[0-9]", fields[k][2])]
    if len(keys) > 1:
        lines = " and ".join(str(fields[k][0]) for k in keys)
        raise SpecError(_where(fields, keys[-1], source), fields[keys[-1]][2],
                        f"the GPU count is stated twice (lines {lines}); keep one")
    return _one_whole(fields, keys[0], source) if keys else None


def _kv_dtype(prec: str) -> str:
    # The seed states one precision; the KV cache is kept in it unless it is below 8 bits.
    p = prec.strip().lower()
    return p if p in {"fp16", "bf16", "fp8", "fp32"} else "bf16"


def _gpu(fields: Fields, where) -> dict[str, Any]:
    text = {k: v for k, (_, _, v) in fields.items()}
    gpu: dict[str, Any] = {"base": "seed-64gb"}
    if "single card computing power" in text:
        flops = _scaled(text["single card computing power"], where("single card computing power"),
                        {"tflops": 1e12, "pflops": 1e15, "tflop s": 1e12})
        gpu["peak_flops"] = {"fp16": flops, "bf16": flops, "fp8": flops}
    if "vram bandwidth" in text:
        gpu["hbm_bw_bytes_per_s"] = _scaled(text["vram bandwidth"], where("vram bandwidth"),
                                            {"tbps": 1e12, "tb/s": 1e12, "gbps": 1e9, "gb/s": 1e9})
    if "single card video memory capacity" in text:
        gpu["memory_bytes"] = _scaled(text["single card video memory capacity"],
                                      where("single card video memory capacity"), {"gb": 1e9, "gib": 2**30})
    if "mfu utilization" in text:
        gpu["mfu"] = _scaled(text["mfu utilization"], where("mfu utilization"), {"%": 0.01, "": 1.0})
    if "bandwidth utilization" in text:
        gpu["hbm_bw_utilization"] = _scaled(text["bandwidth utilization"], where("bandwidth utilization"),
                                            {"%": 0.01, "": 1.0})
    return gpu


def _counted(pattern: re.Pattern[str], key: str, fields: Fields, where, what: str) -> int | None:
    """The one count ``pattern`` finds in a bullet ("16-layer", "16 experts"); None if none."""
    text = fields[key][2]
    found = pattern.findall(text.replace(",", ""))
    if len(set(found)) > 1:
        raise SpecError(where(key), text, f"states several {what} counts ({', '.join(found)}); expected one")
    return _whole(found[0], where(key), text) if found else None


def _model(fields: Fields, where, notes: list[dict[str, str]], source: str) -> dict[str, Any]:
    text = {k: v for k, (_, _, v) in fields.items()}
    if not text.get("layers"):
        raise SpecError(f"{source}: Layers", None, "missing; the model needs its layer count")
    layers = _counted(_LAYERS, "layers", fields, where, "layer")
    if layers is None:
        bare = re.fullmatch(r"\s*([-+]?[0-9]+(?:\.[0-9]+)?)\s*\.?\s*", text["layers"])
        if not bare:
            raise SpecError(where("layers"), text["layers"], "expected the layer count first, e.g. '16-layer, ...'")
        layers = _whole(bare.group(1), where("layers"), text["layers"])
    experts = _counted(_EXPERTS, "layers", fields, where, "expert") or 0
    attn_key = "dimension of mha" if "dimension of mha" in text else "dimension of attention"
    attn_text = text.get(attn_key)
    if not attn_text:
        raise SpecError(f"{source}: Dimension of MHA", None, "missing; the model needs heads and head dim")
    heads_m = re.search(r"number of heads is\s*([-+]?[0-9]+(?:\.[0-9]+)?)", attn_text)
    dim_m = re.search(r"dimension of each heads? is\s*([-+]?[0-9]+(?:\.[0-9]+)?)", attn_text)
    if not heads_m or not dim_m:
        raise SpecError(where(attn_key), attn_text,
                        "expected 'The number of heads is N and the dimension of each heads is H'")
    heads, head_dim = _whole(heads_m.group(1), where(attn_key), attn_text), \
        _whole(dim_m.group(1), where(attn_key), attn_text)
    if "token dimension" not in text:
        raise SpecError(f"{source}: Token Dimension", None, "missing; the model needs its hidden size")
    hidden = _one_whole(fields, "token dimension", source)
    kv_heads = _one_whole(fields, "gqa kv heads", source) if "gqa kv heads" in text else heads
    model: dict[str, Any] = {
        "name": text.get("name") or source.rsplit(".", 1)[0],
        "source": source, "num_layers": layers, "hidden_size": hidden, "num_heads": heads,
        "num_kv_heads": kv_heads, "head_dim": head_dim, "attention": "gqa" if kv_heads < heads else "mha",
    }
    ffn_key = "hidden size of moe" if "hidden size of moe" in text else "hidden size of ffn"
    ffn = _one_whole(fields, ffn_key, source) if ffn_key in text else 0
    if experts:
        model.update(num_experts=experts, expert_ffn_size=ffn)
        if "top k gate" in text:
            model["top_k"] = _one_whole(fields, "top k gate", source)
        else:
            model["top_k"] = ASSUMED_TOP_K
            notes.append({"field": "model.top_k", "message": (
                f"the problem gives no top-k; meshplan assumes top-k = {ASSUMED_TOP_K} (GShard, Mixtral); "
                "override with --top-k")})
    else:
        model["ffn_size"] = ffn
    if "vocabulary size" in text:
        model["vocab_size"] = _one_whole(fields, "vocabulary size", source)
    else:
        model["vocab_size"] = ASSUMED_VOCAB
        notes.append({"field": "model.vocab_size", "message": (
            f"the problem gives no vocabulary; meshplan assumes {ASSUMED_VOCAB:,} (Llama-2, Mixtral) for the "
            "embedding and LM head; override with a model mapping in a YAML problem")})
    notes.append({"field": "model.gated_ffn", "message": (
        "FFN/expert form not stated; meshplan assumes SwiGLU (gate, up, down: 3 x D x F per expert)")})
    declared = text.get("weights")
    if declared:
        model["declared_params"] = _scaled(declared, where("weights"), {"b": 1e9, "m": 1e6, "t": 1e12})
    return model


def _workload(fields: Fields, where, notes: list[dict[str, str]], source: str) -> dict[str, Any]:
    text = {k: v for k, (_, _, v) in fields.items()}
    workload: dict[str, Any] = {}
    rng = re.search(r"\[\s*([0-9]+)\s*,\s*([0-9]+)\s*\]", text.get("sequence length") or "")
    if "sequence in" in text:
        workload["isl"] = _one_whole(fields, "sequence in", source)
        if rng:
            notes.append({"field": "workload.isl", "message": (
                f"Sequence In/Out are given, so the stated range [{rng.group(1)}, {rng.group(2)}] is not used "
                "for lengths")})
    elif rng:
        span = [_whole(rng.group(i), where("sequence length"), text["sequence length"], 0) for i in (1, 2)]
        workload["isl"] = span
    if "sequence out" in text:
        workload["osl"] = _one_whole(fields, "sequence out", source)
    else:
        workload["osl"] = ASSUMED_OSL
        notes.append({"field": "workload.osl", "message": (
            f"the problem gives no output length; meshplan assumes {ASSUMED_OSL} tokens; override with --osl")})
    if "isl" not in workload:
        workload["isl"] = None
    if "batch size" in text:
        workload["concurrency"] = _one_whole(fields, "batch size", source)
        notes.append({"field": "workload.concurrency", "message": (
            f"'{text['batch size'].strip()}' read as {workload['concurrency']} requests in flight across the "
            "deployment")})
    return workload


def _requirements(fields: Fields, where, notes: list[dict[str, str]]) -> dict[str, Any]:
    text = {k: v for k, (_, _, v) in fields.items()}
    req: dict[str, Any] = {"memory_headroom": SEED_HEADROOM}
    notes.append({"field": "requirements.memory_headroom", "message": (
        "the seed system caps memory at 80% of each card; meshplan keeps that for seed-format problems")})
    seconds = {"s": 1.0, "ms": 1e-3, "": 1.0}
    for key, name in (("the time to the first token ttft", "ttft_s"), ("time per output token tpot", "tpot_s")):
        value = text.get(key)
        if value and value.strip().lower() not in {"none", "null", "-", "n/a"}:
            req[name] = _scaled(value, where(key), seconds)
    tput = text.get("throughput per gpu")
    if tput and tput.strip().lower() != "none":
        req["min_output_tok_s_per_gpu"] = _scaled(tput, where("throughput per gpu"), {
            "tokens/ms": 1e3, "tokens/s": 1.0, "tok/ms": 1e3, "tok/s": 1.0})
        notes.append({"field": "requirements.min_output_tok_s_per_gpu", "message": (
            "'Throughput per GPU' read as output (generated) tokens per second per GPU, the usual serving "
            "metric; prefill's input tokens per second per GPU is reported beside it")})
    return req
