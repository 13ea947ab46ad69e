"""Plan -> Markdown (the seed's sections, done right). Every number comes from the plan.

Every string the document carries (model, GPU and problem names, labels, notes and messages that
quote user input, engine profile fields) enters the Markdown through ``escape`` or ``code``, so a
name like ``x|y</td><script>`` is shown as written and cannot add a table cell, a link, a heading
or raw HTML.
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

from meshplan.plan.document import CheckUnit, ModelFacts, PartFactors, Plan, Status
from meshplan.plan.phase_figures import PhaseFigures
from meshplan.plan.plan_json import as_plan
from meshplan.printable import printable
from meshplan.specs.hardware import gpus_in_words
from meshplan.units import GIB, fmt_seconds

_MARKUP = re.compile(r"([\\`*~\[\]|])")
"""Characters that start code, emphasis, links or images, or split a GFM table cell:
backslash-escaped (CommonMark 2.4: any ASCII punctuation may be). Underscores stay as they are:
names are full of them, and inside a word they emphasise nothing."""


def escape(text: object) -> str:
    """``text`` as literal Markdown on one line: control characters dropped and newlines made
    spaces (a newline would end a table row or start a block), ``& < >`` as entities (no raw
    HTML, in every Markdown dialect), and inline markup characters backslash-escaped."""
    out = printable(text, one_line=True).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKUP.sub(r"\\\1", out)


def code(text: object) -> str:
    """``text`` as an inline code span on one line (outside tables): the fence is one backtick
    longer than any run of backticks inside, so the text cannot close it (CommonMark 6.1)."""
    out = printable(text, one_line=True)
    fence = "`" * (max((len(run) for run in re.findall("`+", out)), default=0) + 1)
    pad = " " if out.startswith("`") or out.endswith("`") else ""
    return f"{fence}{pad}{out}{pad}{fence}"


def _s(x: float | None) -> str:
    return "n/a" if x is None else fmt_seconds(x)


def _n(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def _gib(x: float | None) -> str:
    return "n/a" if x is None else f"{x / GIB:,.2f} GiB"


def _strategy_lines(name: str, ph: PhaseFigures, model: ModelFacts) -> list[str]:
    st = ph.strategy
    lines = [f"### {name}: {code(st.string)} ({_gpus(st.gpus)}, {st.gpus_per_instance} per instance)", ""]
    lines.append(f"- **instances = {st.instances}**: independent copies of the model; each serves its own requests.")
    lines.append(f"- **pp = {st.pp}**: layers per stage {list(st.layers_per_stage)}.")
    lines.append(f"- **tp = {st.tp}**: attention heads per GPU {model.heads // st.tp} of {model.heads}.")
    lines.append(f"- **attention dp = {st.dp}**: each attention-dp rank serves its own requests inside the "
                 "instance and keeps its own KV cache; it is not a replica (the MoE layers join the ranks).")
    if model.experts:
        replicas = st.experts_per_gpu * st.ep - model.experts
        of = f"of {model.experts}" + (f" and {replicas} redundant replicas" if replicas > 0 else "")
        lines.append(f"- **ep = {st.ep}, etp = {st.etp}**: {st.experts_per_gpu} routed experts per GPU "
                     f"({of}), each split {st.etp} way(s); ep x etp = tp x attention dp = "
                     f"{st.ep * st.etp}, so ep does not multiply the GPU count.")
    lines.append(f"- Batch per attention-dp rank: {ph.batch_per_attention_dp_rank:,.2f}; step {_s(ph.step_s)}.")
    lines.append("")
    return lines


def _gpus(n: int) -> str:
    return f"{n:,} GPU" + ("" if n == 1 else "s")


def _range(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def _memory_table(ph: PhaseFigures) -> list[str]:
    m = ph.memory_per_gpu_bytes
    rows = ["| part | per GPU |", "|---|---|"]
    for key in ("weights", "kv_cache", "activations", "reserve", "total", "usable", "capacity"):
        rows.append(f"| {key} | {_gib(getattr(m, key))} |")
    return rows + [""]


def _mapping(ph: PhaseFigures, offset: int) -> list[str]:
    """GPU ids of each instance and stage, and how attention-dp / tp ranks sit inside."""
    st = ph.strategy
    gpi, g_stage = st.gpus_per_instance, st.tp * st.dp
    rows = ["| GPUs | instance | stage | inside the stage |", "|---|---|---|---|"]
    shown = 0
    for inst in range(st.instances):
        for p in range(st.pp):
            first = offset + inst * gpi + p * g_stage
            inside = (f"attention dp ranks of {st.tp} GPUs (tp group) each: "
                      f"{first}-{first + st.tp - 1}, {first + st.tp}-{first + 2 * st.tp - 1}, ..."
                      if st.dp > 1 else f"one tp group of {st.tp}")
            rows.append(f"| {_range(first, first + g_stage - 1)} | {inst} | {p} | {inside} |")
            shown += 1
            if shown >= 8:
                rows.append(f"| ... | ({st.instances} instances x {st.pp} stages in all) | | |")
                return rows + [""]
    return rows + [""]


def _pools(plan: Plan) -> list[tuple[str, PhaseFigures]]:
    """(title, phase figures) per pool: one shared pool when aggregated (its decode figures, which
    hold the KV cache), else each phase's own."""
    if plan.aggregated:
        return [("Prefill and decode on the same instances", plan.phases.decode)]
    return [(f"{phase.value.capitalize()} pool", ph) for phase, ph in plan.phases.present()]


def _text(v: object) -> object:
    """A value the problem may set, as literal Markdown when it is text."""
    return escape(v) if isinstance(v, str) else v


def render(doc: Plan | dict[str, Any]) -> str:
    """The Markdown plan (of a Plan, or of a plan JSON, read by plan.plan_json.from_json)."""
    plan = as_plan(doc)
    model, spec = plan.model, plan.problem_spec
    prefill_gpu = spec.prefill_gpu.name if spec.prefill_gpu is not None else None
    where = escape(gpus_in_words(spec.gpu.name, prefill_gpu))
    out = [f"# Deployment plan: {escape(model.name)} on {where} ({escape(plan.problem)})", ""]
    verdict = plan.verdict
    status = "meets every requirement" if plan.feasible else "does NOT meet every requirement (see Validation)"
    out += ["## Summary", ""]
    if verdict.status is not Status.FEASIBLE:
        out += [f"**No plan meets the problem: {escape(verdict.message)}.**", ""]
    figures = (f"- TTFT {_s(plan.ttft_s)}, TPOT {_s(plan.tpot_s)}; output {_n(plan.output_tok_s_per_gpu)} tok/s "
               f"per GPU, {_n(plan.output_tok_s)} tok/s in total; input {_n(plan.input_tok_s_per_gpu)} tok/s per GPU."
               if verdict.figures else "- No TTFT, TPOT or throughput: the layout cannot load the weights.")
    out += [f"- **{escape(plan.label)}**, **{_gpus(plan.gpus_total)} in total**; this plan {status}.",
            figures,
            f"- Concurrency {_n(plan.concurrency)} requests in flight (most that fit: {_n(plan.max_concurrency)}).",
            f"- Model: {model.params_total / 1e9:,.2f}B parameters ({model.params_active / 1e9:,.2f}B active per "
            f"token), {model.layers} layers, {escape(model.attention.value)} attention, "
            + (f"{model.experts} experts top-{model.top_k}." if model.experts else "dense."),
            f"- KV cache: {plan.kv_cache_bytes_per_token:,.0f} bytes per token for the whole model (one copy).", ""]
    out += ["## Validation against each requirement", "", "| requirement | target | predicted | met |", "|---|---|---|---|"]
    for c in plan.requirements_check:
        fmt = _s if c.unit is CheckUnit.SECONDS else (_gib if c.unit is CheckUnit.BYTES else _n)
        out.append(f"| {escape(c.requirement.value)} | {fmt(c.target)} | {fmt(c.predicted)} | "
                   f"{'yes' if c.met else '**NO**'} |")
    out.append("")
    for c in plan.requirements_check:
        if not c.met:
            out.append(f"- **{escape(c.requirement.value)} cannot be met** by this plan: predicted {_n(c.predicted)} "
                       f"vs target {_n(c.target)}.")
            if c.bound:
                out.append(f"  Bound: {escape(c.bound.message)}.")
    out.append("")
    out += ["## Strategy per phase", ""]
    pools = _pools(plan)
    for title, ph in pools:
        out += _strategy_lines(title, ph, model)
    out += ["## Memory per GPU", ""]
    for title, ph in pools:
        out += [f"{title} (fullest pipeline stage):", ""] + _memory_table(ph)
    out += ["## GPU mapping", ""]
    offset = 0
    for title, ph in pools:
        out += [f"{title}, GPUs from {offset}:", ""] + _mapping(ph, offset)
        offset += ph.strategy.gpus
    out += ["## Aggregated against disaggregated", ""]
    by_mode = plan.aggregated_vs_disaggregated
    for mode, c in (("aggregated", by_mode.aggregated), ("disaggregated", by_mode.disaggregated)):
        out.append(f"- {escape(mode)}: " + ("none feasible" if c is None else
                   f"{escape(c.label)}, {_gpus(c.gpus_total)}, {_n(c.output_tok_s_per_gpu)} output tok/s per GPU, "
                   f"TTFT {_s(c.ttft_s)}, TPOT {_s(c.tpot_s)}"))
    out += ["", "## Rejected alternatives", "", "| alternative | GPUs | tok/s per GPU | why it lost |", "|---|---|---|---|"]
    for c in plan.runner_ups:
        per = c.output_tok_s_per_gpu if c.output_tok_s_per_gpu is not None else c.input_tok_s_per_gpu
        out.append(f"| {escape(c.label)} | {c.gpus_total} | {_n(per)} | {escape(c.why_lost)} |")
    for c in plan.pruned.examples:
        why = "; ".join(v.message for v in c.violations)
        out.append(f"| {escape(c.label)} | {c.gpus_total} | pruned | {escape(why)} |")
    out += ["", f"Search: {plan.search.layouts:,} legal layouts, {plan.search.operating_points:,} operating points.", ""]
    if plan.pareto:
        out += ["## Pareto frontier", "", "Feasible points not beaten on both output tokens/s per GPU and tokens/s "
                "per user (1/TPOT).", "", "| candidate | GPUs | concurrency | tok/s per GPU | tok/s per user |",
                "|---|---|---|---|---|"]
        for c in plan.pareto:
            per_user = "n/a" if not c.tpot_s else f"{1 / c.tpot_s:,.1f}"
            out.append(f"| {escape(c.label)} | {c.gpus_total} | {_n(c.concurrency)} | "
                       f"{_n(c.output_tok_s_per_gpu)} | {per_user} |")
        out.append("")
    out += ["## Notes and assumptions", ""]
    out += [f"- {code(n.field)}: {escape(n.message)}" for n in plan.notes]
    a, used = spec.assumptions, plan.assumptions_used
    gemm = ", ".join(f"{f.name} {getattr(used.gemm_efficiency_used, f.name):.2f}" for f in fields(PartFactors))
    hbm = ", ".join(f"{f.name} {getattr(used.hbm_efficiency_used, f.name):.2f}" for f in fields(PartFactors))
    out.append(f"- Cost-model factors: GEMM efficiency ({gemm}), HBM efficiency ({hbm}), link efficiency "
               f"{a.comm_efficiency}, expert popularity CV {a.expert_load_cv}, two-batch overlap "
               f"{used.two_batch_overlap_used} (see `meshplan/specs/assumptions.py`).")
    e = spec.engine  # the problem may override any of its facts: text is escaped
    out.append(f"- Engine: {_text(e.display_name)} {_text(e.version) or '(newest profile)'}: "
               f"{_text(e.prefill_policy)} prefill, overlap scheduler {'on' if e.overlap_scheduler else 'off'}, KV "
               f"admission {_text(e.kv_admission)}, MoE exchange {_text(e.a2a_backend)} "
               f"({_text(e.a2a_backend_across_nodes) or _text(e.a2a_backend)} across nodes, dispatch "
               f"{_text(e.dispatch_dtype)}); attention kernels: {_text(e.attention_kernels) or 'unstated'}; MoE "
               f"kernels: {_text(e.moe_kernels) or 'unstated'}; attention-dp requests: "
               f"{_text(e.attention_dp_balancing) or 'unstated'} (profile and sources in `meshplan/catalog/engines/`).")
    return "\n".join(out) + "\n"
