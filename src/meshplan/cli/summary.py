"""The terminal summary of a plan document."""

from __future__ import annotations

from meshplan.printable import printable
from meshplan.report.tables import table
from meshplan.specs.hardware import gpus_in_words
from meshplan.units import GIB, fmt_seconds, plural


def _s(x):
    return "-" if x is None else fmt_seconds(x)


def _n(x):
    return "-" if x is None else f"{x:,.0f}"


def _t(x) -> str:
    """A user-derived value (problem, model and GPU names, notes that quote the input) on its own
    line: printable, and a newline in it cannot start a line that looks like ours."""
    return printable(x, one_line=True)


def _gpus(n: int) -> str:
    return plural(n, "GPU")


def _memory(m: dict) -> str:
    return (f"weights {m['weights'] / GIB:.2f} GiB, KV {m['kv_cache'] / GIB:.2f} GiB, activations "
            f"{m['activations'] / GIB:.2f} GiB, total {m['total'] / GIB:.2f} of {m['usable'] / GIB:.2f} GiB usable")


def _memory_lines(doc: dict) -> list[str]:
    """Memory per GPU: of the one pool, or of each pool of a disaggregated plan."""
    tail = f"; concurrency {_n(doc['concurrency'])} (max {_n(doc['max_concurrency'])})"
    phases = doc.get("phases") or {}
    if doc.get("mode") == "disaggregated" and phases.get("prefill") and phases.get("decode"):
        return [f"memory per GPU, prefill pool: {_memory(phases['prefill']['memory_per_gpu_bytes'])}",
                f"memory per GPU, decode pool: {_memory(phases['decode']['memory_per_gpu_bytes'])}{tail}"]
    return [f"memory per GPU: {_memory(doc['memory_per_gpu_bytes'])}{tail}"]


def summary(doc: dict) -> str:
    m = doc["memory_per_gpu_bytes"]
    verdict = doc.get("verdict") or {"status": "feasible" if doc["feasible"] else "requirements_unmet",
                                     "figures": True, "message": ""}
    gpu = doc["gpu"]
    where = _t(gpus_in_words(gpu["name"], gpu.get("prefill")))
    lines = [f"{_t(doc['problem'])}: {_t(doc['model']['name'])} on {where}"]
    if verdict["status"] != "feasible":
        lines.append(f"NO PLAN MEETS THE PROBLEM: {_t(verdict['message'])}")
    if verdict["status"] == "does_not_fit":
        lines.append(f"no figures: the nearest layout tried ({doc['label']}) needs {m['weights'] / GIB:.2f} GiB of "
                     f"weights per GPU, {m['usable'] / GIB:.2f} GiB usable")
    else:
        count = "" if doc["label"].endswith(_gpus(doc["gpus_total"])) else f"  ({_gpus(doc['gpus_total'])})"
        lines += [f"plan: {doc['label']}{count}  "
                  f"{'feasible' if doc['feasible'] else 'NOT feasible'}",
                  f"TTFT {_s(doc['ttft_s'])}  TPOT {_s(doc['tpot_s'])}  output {_n(doc['output_tok_s_per_gpu'])} tok/s "
                  f"per GPU  ({_n(doc['output_tok_s'])} total)  input {_n(doc['input_tok_s_per_gpu'])} tok/s per GPU",
                  *_memory_lines(doc)]
        use = doc.get("budget_use")
        if use:
            per = use["output_tok_s_per_budget_gpu"]
            lines.append(f"uses {use['used']:,} of the {_gpus(use['budget'])} budgeted"
                         + (f" ({_n(per)} output tok/s per GPU of the budget)" if per is not None else "")
                         + f": {_t(use['why'])}")
    for v in doc["violations"]:
        lines.append(f"  violation [{v['rule']}]: {_t(v['message'])}")
    for c in doc.get("requirements_check", []):
        if not c["met"] and c.get("bound"):
            lines.append(f"  bound: {_t(c['bound']['message'])}")
    for n in doc.get("notes", []):
        lines.append(f"  note ({_t(n['field'])}): {_t(n['message'])}")
    reading = doc.get("seed_reading")
    if reading:
        lines.append(f"  layout as written read as: {reading['layout']}")
        for f in reading["findings"]:
            lines.append(f"    - {_t(f)}")
    if doc.get("why_not"):
        lines.append(f"  why not: {_t(doc['why_not'])}")
    rows = [[c["label"], c["gpus_total"], _n(c["output_tok_s_per_gpu"] if c["output_tok_s_per_gpu"] is not None
                                           else c["input_tok_s_per_gpu"]), _s(c["ttft_s"]), _s(c["tpot_s"]), _t(c["why_lost"])]
            for c in doc.get("runner_ups", [])]
    frontier = [[c["label"], c["gpus_total"], f"{c['concurrency']:,.0f}", _n(c["output_tok_s_per_gpu"]),
                 "-" if not c["tpot_s"] else f"{1 / c['tpot_s']:,.1f}"] for c in doc.get("pareto", [])]
    if doc.get("objective") == "pareto" and frontier:
        lines += ["", "Pareto frontier (tokens/s per GPU against tokens/s per user):",
                  table(["candidate", "GPUs", "concurrency", "tok/s/GPU", "tok/s/user"], frontier)]
    if rows:
        lines += ["", "runner-ups:", table(["candidate", "GPUs", "tok/s/GPU", "TTFT", "TPOT", "why it lost"], rows)]
    sim = doc.get("simulation")
    if sim:
        simulated = [[c["label"], c["gpus_total"], _s(c["closed_form"]["ttft_s"]), _s(c["ttft_s"]["p50"]),
                      _s(c["ttft_s"]["p99"]), _s(c["closed_form"]["tpot_s"]), _s(c["tpot_s"]["p50"]),
                      _s(c["tpot_s"]["p99"]), _n(c["output_tok_s_per_gpu"]),
                      "-" if c["goodput"] is None else f"{c['goodput']:.0%}",
                      "-" if c["meets_p99"] is None else "yes" if c["meets_p99"] else "no"] for c in sim]
        lines += ["", f"simulated request by request ({sim[0]['arrivals']}, {sim[0]['requests']:,} requests; "
                      "closed form = the plan's steady-state mean):",
                  table(["candidate", "GPUs", "TTFT closed", "TTFT p50", "TTFT p99", "TPOT closed", "TPOT p50",
                         "TPOT p99", "tok/s/GPU", "goodput", "meets p99"], simulated)]
    return "\n".join(lines)
