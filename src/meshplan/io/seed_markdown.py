"""The seed system's Markdown problem format -> raw problem mapping (file schema).

The format is loose: bullet lines ``* **Key**: value`` under ``## **Section**`` headings, with
values such as "400TFlops", "1.8TBps", "64GB", "100tokens/ms" and sentences ("The number of
heads is 16 and the dimension of each heads is 32"). Every key is read or rejected with its
line number; whatever the file leaves out and a plan needs is assumed, and each assumption is a
note in the plan with the flag that overrides it.
"""

from __future__ import annotations

import re
from typing import Any

from meshplan.errors import SpecError

_BULLET = re.compile(r"^\s*[*-]\s*\*\*(?P<key>[^*]+?)\s*\*\*\s*:?\s*(?P<value>.*)$")
_NUM = r"(\d+(?:\.\d+)?)"

# Defaults for what seed problems leave out; each is reported as a note when used.
ASSUMED_TOP_K = 2          # GShard (arXiv:2006.16668) and Mixtral route each token to 2 experts.
ASSUMED_VOCAB = 32000      # Llama-2 / Mixtral vocabulary; the seed gives none.
ASSUMED_OSL = 1024         # a common benchmark output length (e.g. 1024/1024 in TensorRT-LLM's tables).
SEED_HEADROOM = 0.8        # the seed system's plans cap memory at 80% of the card.


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", key.lower()).strip()


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(_NUM, text.replace(",", ""))]


def _scaled(text: str, field: str, units: dict[str, float]) -> float:
    """'400TFlops' -> 4e14 with units {'tflops': 1e12}; the unit must be one we know."""
    m = re.match(r"\s*" + _NUM + r"\s*([A-Za-z/%]*)", text.replace(",", ""))
    if not m:
        raise SpecError(field, text, "expected a number with a unit")
    unit = m.group(2).lower()
    if unit not in units:
        raise SpecError(field, text, f"unknown unit {m.group(2)!r}; expected one of {', '.join(u for u in units if u)}")
    return float(m.group(1)) * units[unit]


def _split(text: str, source: str) -> dict[str, tuple[int, str]]:
    fields: dict[str, tuple[int, str]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _BULLET.match(line)
        if m:
            fields[_norm_key(m.group("key"))] = (lineno, m.group("value").strip())
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
    from meshplan.errors import suggest

    fields = _split(text, source)
    for key, (lineno, value) in fields.items():
        if key not in _KNOWN and not key.startswith("gpus"):
            raise SpecError(f"{source}:{lineno}", key, "unknown key" + suggest(key, sorted(_KNOWN)))
    notes: list[dict[str, str]] = []
    get = lambda key: fields.get(key, (0, None))  # noqa: E731

    def where(key: str) -> str:
        return f"{source}:{get(key)[0]}"

    raw: dict[str, Any] = {"notes": notes}
    title = text.lstrip().splitlines()[0].lower() if text.strip() else ""
    if title.startswith("#") and "strategy for each phase" in title:
        raw["serving"] = "disaggregated"
        notes.append({"field": "serving", "message": (
            "the problem asks for one strategy per phase, so prefill and decode are planned as separate pools "
            "(disaggregated); --serving auto compares with shared instances")})
    raw["gpu"] = _gpu(fields, where)
    raw["model"] = _model(fields, where, notes, source)
    prec = get("precision")[1]
    if prec:
        raw["precision"] = {"weights": prec.strip().lower(), "kv_cache": _kv_dtype(prec)}
    raw["workload"] = _workload(fields, where, notes)
    raw["requirements"] = _requirements(fields, where, notes)
    stated = {k: _numbers(get(k)[1] or "") for k in ("tensor parallelism", "pipeline parallelism",
                                                       "data parallelism", "expert parallelism",
                                                       "sequence parallelism")}
    gpus_key = next((k for k in fields if k.startswith("gpus") and _numbers(fields[k][1])), None)
    if any(stated.values()):
        raw["seed_strategy"] = {
            "gpus": int(_numbers(fields[gpus_key][1])[0]) if gpus_key else None,
            "tp": _first_int(stated["tensor parallelism"]), "pp": _first_int(stated["pipeline parallelism"]),
            "dp": _first_int(stated["data parallelism"]), "ep": _first_int(stated["expert parallelism"]),
            "sp": _first_int(stated["sequence parallelism"])}
    elif gpus_key:
        raw["gpus"] = int(_numbers(fields[gpus_key][1])[0])
    return raw


def _first_int(values: list[float]) -> int | None:
    return int(values[0]) if values else None


def _kv_dtype(prec: str) -> str:
    # The seed states one precision; the KV cache is kept in it unless it is below 8 bits.
    p = prec.strip().lower()
    return p if p in {"fp16", "bf16", "fp8", "fp32"} else "bf16"


def _gpu(fields: dict[str, tuple[int, str]], where) -> dict[str, Any]:
    gpu: dict[str, Any] = {"base": "seed-64gb"}
    if "single card computing power" in fields:
        flops = _scaled(fields["single card computing power"][1], where("single card computing power"),
                        {"tflops": 1e12, "pflops": 1e15, "tflop s": 1e12})
        gpu["peak_flops"] = {"fp16": flops, "bf16": flops, "fp8": flops}
    if "vram bandwidth" in fields:
        gpu["hbm_bw_bytes_per_s"] = _scaled(fields["vram bandwidth"][1], where("vram bandwidth"),
                                            {"tbps": 1e12, "tb/s": 1e12, "gbps": 1e9, "gb/s": 1e9})
    if "single card video memory capacity" in fields:
        gpu["memory_bytes"] = _scaled(fields["single card video memory capacity"][1],
                                      where("single card video memory capacity"), {"gb": 1e9, "gib": 2**30})
    if "mfu utilization" in fields:
        gpu["mfu"] = _scaled(fields["mfu utilization"][1], where("mfu utilization"), {"%": 0.01, "": 1.0})
    if "bandwidth utilization" in fields:
        gpu["hbm_bw_utilization"] = _scaled(fields["bandwidth utilization"][1], where("bandwidth utilization"),
                                            {"%": 0.01, "": 1.0})
    return gpu


def _model(fields, where, notes: list[dict[str, str]], source: str) -> dict[str, Any]:
    text = {k: v for k, (_, v) in fields.items()}
    layers_text = text.get("layers")
    if not layers_text:
        raise SpecError(f"{source}: Layers", None, "missing; the model needs its layer count")
    layers = int(_numbers(layers_text)[0])
    m = re.search(r"(\d+)\s*experts", layers_text)
    experts = int(m.group(1)) if m else 0
    attn_text = text.get("dimension of mha") or text.get("dimension of attention")
    if not attn_text:
        raise SpecError(f"{source}: Dimension of MHA", None, "missing; the model needs heads and head dim")
    heads_m = re.search(r"number of heads is\s*(\d+)", attn_text)
    dim_m = re.search(r"dimension of each heads? is\s*(\d+)", attn_text)
    if not heads_m or not dim_m:
        raise SpecError(where("dimension of mha" if "dimension of mha" in text else "dimension of attention"),
                        attn_text, "expected 'The number of heads is N and the dimension of each heads is H'")
    heads, head_dim = int(heads_m.group(1)), int(dim_m.group(1))
    hidden_text = text.get("token dimension")
    if not hidden_text or not _numbers(hidden_text):
        raise SpecError(f"{source}: Token Dimension", hidden_text, "missing; the model needs its hidden size")
    hidden = int(_numbers(hidden_text)[-1])
    kv_heads = int(_numbers(text["gqa kv heads"])[0]) if text.get("gqa kv heads") else heads
    model: dict[str, Any] = {
        "name": text.get("name") or source.rsplit(".", 1)[0],
        "source": source, "num_layers": layers, "hidden_size": hidden, "num_heads": heads,
        "num_kv_heads": kv_heads, "head_dim": head_dim, "attention": "gqa" if kv_heads < heads else "mha",
    }
    ffn_text = text.get("hidden size of moe") or text.get("hidden size of ffn")
    ffn = int(_numbers(ffn_text)[-1]) if ffn_text and _numbers(ffn_text) else 0
    if experts:
        model.update(num_experts=experts, expert_ffn_size=ffn)
        if text.get("top k gate"):
            model["top_k"] = int(_numbers(text["top k gate"])[0])
        else:
            model["top_k"] = ASSUMED_TOP_K
            notes.append({"field": "model.top_k", "message": (
                f"the problem gives no top-k; meshplan assumes top-k = {ASSUMED_TOP_K} (GShard, Mixtral); "
                "override with --top-k")})
    else:
        model["ffn_size"] = ffn
    if text.get("vocabulary size"):
        model["vocab_size"] = int(_numbers(text["vocabulary size"])[0])
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


def _workload(fields, where, notes: list[dict[str, str]]) -> dict[str, Any]:
    text = {k: v for k, (_, v) in fields.items()}
    workload: dict[str, Any] = {}
    rng = re.search(r"\[\s*(\d+)\s*,\s*(\d+)\s*\]", text.get("sequence length") or "")
    if text.get("sequence in"):
        workload["isl"] = int(_numbers(text["sequence in"])[0])
        if rng:
            notes.append({"field": "workload.isl", "message": (
                f"Sequence In/Out are given, so the stated range [{rng.group(1)}, {rng.group(2)}] is not used "
                "for lengths")})
    elif rng:
        workload["isl"] = [int(rng.group(1)), int(rng.group(2))]
    if text.get("sequence out"):
        workload["osl"] = int(_numbers(text["sequence out"])[0])
    else:
        workload["osl"] = ASSUMED_OSL
        notes.append({"field": "workload.osl", "message": (
            f"the problem gives no output length; meshplan assumes {ASSUMED_OSL} tokens; override with --osl")})
    if "isl" not in workload:
        workload["isl"] = None
    batch = text.get("batch size")
    if batch and _numbers(batch):
        workload["concurrency"] = int(_numbers(batch)[0])
        notes.append({"field": "workload.concurrency", "message": (
            f"'{batch.strip()}' read as {workload['concurrency']} requests in flight across the deployment")})
    return workload


def _requirements(fields, where, notes: list[dict[str, str]]) -> dict[str, Any]:
    text = {k: v for k, (_, v) in fields.items()}
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
