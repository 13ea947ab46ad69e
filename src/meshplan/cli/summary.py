"""The terminal summary of a plan."""

from __future__ import annotations

from meshplan.plan.document import Plan, Status
from meshplan.plan.phase_figures import Memory
from meshplan.printable import printable
from meshplan.search.objectives import Objective
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


def _memory(m: Memory) -> str:
    return (f"weights {m.weights / GIB:.2f} GiB, KV {m.kv_cache / GIB:.2f} GiB, activations "
            f"{m.activations / GIB:.2f} GiB, total {m.total / GIB:.2f} of {m.usable / GIB:.2f} GiB usable")


def _memory_lines(plan: Plan) -> list[str]:
    """Memory per GPU: of the one pool, or of each pool of a disaggregated plan."""
    tail = f"; concurrency {_n(plan.concurrency)} (max {_n(plan.max_concurrency)})"
    prefill, decode = plan.phases.prefill, plan.phases.decode
    if plan.disaggregated and prefill and decode:
        return [f"memory per GPU, prefill pool: {_memory(prefill.memory_per_gpu_bytes)}",
                f"memory per GPU, decode pool: {_memory(decode.memory_per_gpu_bytes)}{tail}"]
    return [f"memory per GPU: {_memory(plan.memory_per_gpu_bytes)}{tail}"]


def summary(plan: Plan) -> str:
    m = plan.memory_per_gpu_bytes
    verdict = plan.verdict
    spec = plan.problem_spec
    where = _t(gpus_in_words(spec.gpu.name, spec.prefill_gpu.name if spec.prefill_gpu is not None else None))
    lines = [f"{_t(plan.problem)}: {_t(plan.model.name)} on {where}"]
    if verdict.status is not Status.FEASIBLE:
        lines.append(f"NO PLAN MEETS THE PROBLEM: {_t(verdict.message)}")
    if verdict.status is Status.DOES_NOT_FIT:
        lines.append(f"no figures: the nearest layout tried ({plan.label}) needs {m.weights / GIB:.2f} GiB of "
                     f"weights per GPU, {m.usable / GIB:.2f} GiB usable")
    else:
        count = "" if plan.label.endswith(_gpus(plan.gpus_total)) else f"  ({_gpus(plan.gpus_total)})"
        lines += [f"plan: {plan.label}{count}  "
                  f"{'feasible' if plan.feasible else 'NOT feasible'}",
                  f"TTFT {_s(plan.ttft_s)}  TPOT {_s(plan.tpot_s)}  output {_n(plan.output_tok_s_per_gpu)} tok/s "
                  f"per GPU  ({_n(plan.output_tok_s)} total)  input {_n(plan.input_tok_s_per_gpu)} tok/s per GPU",
                  *_memory_lines(plan)]
        use = plan.budget_use
        if use:
            per = use.output_tok_s_per_budget_gpu
            lines.append(f"uses {use.used:,} of the {_gpus(use.budget)} budgeted"
                         + (f" ({_n(per)} output tok/s per GPU of the budget)" if per is not None else "")
                         + f": {_t(use.why)}")
    for v in plan.violations:
        lines.append(f"  violation [{v.rule.value}]: {_t(v.message)}")
    for c in plan.requirements_check:
        if not c.met and c.bound:
            lines.append(f"  bound: {_t(c.bound.message)}")
    for n in plan.notes:
        lines.append(f"  note ({_t(n.field)}): {_t(n.message)}")
    ev = plan.evaluation
    reading = ev.seed_reading if ev else None
    if reading:
        lines.append(f"  layout as written read as: {reading.layout}")
        for f in reading.findings:
            lines.append(f"    - {_t(f)}")
    if ev and ev.why_not:
        lines.append(f"  why not: {_t(ev.why_not)}")
    rows = [[c.label, c.gpus_total, _n(c.output_tok_s_per_gpu if c.output_tok_s_per_gpu is not None
                                       else c.input_tok_s_per_gpu), _s(c.ttft_s), _s(c.tpot_s), _t(c.why_lost)]
            for c in plan.runner_ups]
    frontier = [[c.label, c.gpus_total, f"{c.concurrency:,.0f}", _n(c.output_tok_s_per_gpu),
                 "-" if not c.tpot_s else f"{1 / c.tpot_s:,.1f}"] for c in plan.pareto]
    if plan.objective is Objective.PARETO and frontier:
        lines += ["", "Pareto frontier (tokens/s per GPU against tokens/s per user):",
                  table(["candidate", "GPUs", "concurrency", "tok/s/GPU", "tok/s/user"], frontier)]
    if rows:
        lines += ["", "runner-ups:", table(["candidate", "GPUs", "tok/s/GPU", "TTFT", "TPOT", "why it lost"], rows)]
    sim = plan.simulation
    if sim:
        simulated = [[c.label, c.gpus_total, _s(c.closed_form.ttft_s), _s(c.ttft_s.p50),
                      _s(c.ttft_s.p99), _s(c.closed_form.tpot_s), _s(c.tpot_s.p50),
                      _s(c.tpot_s.p99), _n(c.output_tok_s_per_gpu),
                      "-" if c.goodput is None else f"{c.goodput:.0%}",
                      "-" if c.meets_p99 is None else "yes" if c.meets_p99 else "no"] for c in sim]
        lines += ["", f"simulated request by request ({sim[0].arrivals}, {sim[0].requests:,} requests; "
                      "closed form = the plan's steady-state mean):",
                  table(["candidate", "GPUs", "TTFT closed", "TTFT p50", "TTFT p99", "TPOT closed", "TPOT p50",
                         "TPOT p99", "tok/s/GPU", "goodput", "meets p99"], simulated)]
    return "\n".join(lines)
