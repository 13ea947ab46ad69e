"""One self-contained HTML page per plan: the verdict, the GPU map, the Pareto frontier, memory per
GPU, the simulation when there is one, the DAG picture, every candidate and the assumptions.

Everything the page needs is inside it (plotly's JavaScript inlined, the DAG as inline SVG), so it
opens offline and travels by email. Every string that came from a user (problem and model names,
notes that quote their input) is HTML-escaped, and figure data is embedded as JSON with <, > and
& written as \\u escapes, so no input can close a script tag or add markup.
"""

from __future__ import annotations

from typing import Any

from meshplan.plan.candidates import CandidateSummary, RunnerUp
from meshplan.plan.document import CheckUnit, Plan, Status
from meshplan.plan.pools import Pool
from meshplan.specs.assumptions import CostAssumptions
from meshplan.specs.engine import EngineProfile
from meshplan.specs.problem import Problem
from meshplan.strategy.mesh import coords_of, experts_of, slots_text
from meshplan.report.html_parts import esc, figure_html, fmt_num, fmt_s, plotly_modules
from meshplan.report.html_simulation import Simulated, simulated_candidates, simulation_section
from meshplan.units import GIB

POOL_COLOURS = {"aggregated": "#4c78a8", "prefill": "#f58518", "decode": "#54a24b"}
"""Base colour of each pool on the GPU map; stages and attention-dp groups shade it."""

MAX_MAP_GPUS = 4_096
"""GPUs drawn on the map one by one; a larger deployment shows its pools as counts."""


def _summary(plan: Plan) -> str:
    v = plan.verdict
    cls = "ok" if v.status is Status.FEASIBLE else "bad"
    rows = [("layout", plan.label), ("GPUs (total)", plan.gpus_total),
            ("TTFT (mean, per request)", fmt_s(plan.ttft_s)), ("TPOT (mean, per request)", fmt_s(plan.tpot_s)),
            ("output tokens/s per GPU", fmt_num(plan.output_tok_s_per_gpu)),
            ("output tokens/s (total)", fmt_num(plan.output_tok_s)),
            ("requests in flight (total)", fmt_num(plan.concurrency))]
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(x)}</td></tr>" for k, x in rows)
    return (f'<section id="summary"><h2>Verdict</h2><p class="{cls}">{esc(v.message or v.status.value)}</p>'
            f"<table>{body}</table></section>")


def _with_unit(x: Any, unit: CheckUnit) -> str:
    """A requirement's figure in the unit people read it in."""
    if x is None:
        return "-"
    if unit is CheckUnit.SECONDS:
        return fmt_s(x)
    if unit is CheckUnit.BYTES:
        return f"{x / GIB:,.1f} GiB"
    return f"{x:,.4g} {unit.value}".strip()


def _requirements(plan: Plan) -> str:
    rows = []
    for r in plan.requirements_check:
        target, predicted = _with_unit(r.target, r.unit), _with_unit(r.predicted, r.unit)
        cls, verdict = ("ok", "met") if r.met else ("bad", "not met")
        rows.append(f'<tr class="{cls}"><td>{esc(r.requirement.value)}</td>'
                    f'<td>{esc(target)}</td><td>{esc(predicted)}</td>'
                    f'<td>{verdict}</td><td>{esc(r.bound.message if r.bound else "")}</td></tr>')
    if not rows:
        return ""
    return ('<section id="requirements"><h2>Requirements</h2><table><tr><th>requirement</th><th>target</th>'
            "<th>predicted</th><th>verdict</th><th>bound (what no layout can beat)</th></tr>"
            + "".join(rows) + "</table></section>")


def _shade(hex_colour: str, k: int, n: int) -> str:
    """The pool's colour, lighter for later stages or groups (k of n)."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    f = 0.55 * k / max(n - 1, 1)
    return f"rgb({int(r + (255 - r) * f)},{int(g + (255 - g) * f)},{int(b + (255 - b) * f)})"


def gpu_cells(problem: Problem, pools: list[Pool]) -> list[dict]:
    """One entry per GPU: its global id, node, slot in the node, pool, coordinates and experts."""
    per_node = problem.gpu.nvlink_domain_gpus if problem.gpu.nvlink_domain_gpus <= 8 else 8
    experts = problem.model.num_experts
    cells = []
    for pool in pools:
        lay = pool.layout
        for rank in range(pool.offset, pool.offset + lay.gpus):
            c = coords_of(rank, lay, pool.offset)
            hosted = (experts_of(rank, lay, experts, redundant=problem.assumptions.redundant_experts, offset=pool.offset)
                      if experts else range(0))
            cells.append({"gpu": rank, "node": rank // per_node, "slot": rank % per_node, "pool": pool.role,
                          "instance": c.instance, "pp": c.pp, "dp": c.dp, "tp": c.tp, "ep": c.ep, "etp": c.etp,
                          "experts": f"routed {slots_text(hosted, experts)}" if len(hosted) else "no routed experts",
                          "stages": lay.pp, "groups": lay.dp})
    return cells


def _gpu_map(go, problem: Problem, pools: list[Pool]) -> str:
    total = sum(p.layout.gpus for p in pools)
    head = '<section><h2>GPU map</h2><p>Nodes as rows, GPUs as squares, coloured by pool; lighter squares are ' \
           "later pipeline stages (or, with one stage, attention-dp groups). Hover a GPU for its coordinates and " \
           "the routed experts it hosts.</p>"
    if total > MAX_MAP_GPUS:
        counts = ", ".join(f"{p.role}: {p.layout.gpus:,} GPUs ({esc(p.layout.short)})" for p in pools)
        return head + f'<p id="gpu-map">{counts} (more than {MAX_MAP_GPUS:,} GPUs: not drawn one by one)</p></section>'
    cells = gpu_cells(problem, pools)
    fig = go.Figure()
    for role in dict.fromkeys(c["pool"] for c in cells):
        mine = [c for c in cells if c["pool"] == role]
        colours = [_shade(POOL_COLOURS[role], c["pp"] if c["stages"] > 1 else c["dp"],
                          c["stages"] if c["stages"] > 1 else c["groups"]) for c in mine]
        text = [f"GPU {c['gpu']} ({role})<br>instance {c['instance']}, stage {c['pp']}, attention-dp rank {c['dp']}, "
                f"tp rank {c['tp']}<br>expert-parallel rank {c['ep']}, expert-tp rank {c['etp']}<br>"
                f"{c['experts']}" for c in mine]
        fig.add_trace(go.Scatter(x=[c["slot"] for c in mine], y=[c["node"] for c in mine], mode="markers", name=role,
                                 text=text, hoverinfo="text",
                                 marker={"symbol": "square", "size": 18, "color": colours,
                                         "line": {"width": 1, "color": "#333"}}))
    nodes = max(c["node"] for c in cells) + 1
    fig.update_layout(height=min(120 + 26 * nodes, 900), margin={"l": 60, "r": 20, "t": 10, "b": 40},
                      xaxis={"title": "GPU in node", "dtick": 1}, yaxis={"title": "node", "autorange": "reversed",
                                                                         "dtick": 1 if nodes <= 40 else None},
                      legend={"orientation": "h"})
    return head + figure_html("gpu-map", fig) + "</section>"


def _pareto(go, plan: Plan) -> str:
    pts, ups = plan.pareto, plan.runner_ups

    def xy(c: CandidateSummary | Plan):
        return (1.0 / c.tpot_s if c.tpot_s else None), c.output_tok_s_per_gpu

    def hover(c: CandidateSummary | Plan):
        return (f"{esc(c.label)}<br>{c.gpus_total} GPUs<br>TTFT {fmt_s(c.ttft_s)}, TPOT "
                f"{fmt_s(c.tpot_s)}<br>{fmt_num(c.output_tok_s_per_gpu)} tok/s per GPU")

    modes = sorted({c.mode.value for c in pts})
    frontier = f"search's Pareto frontier ({', '.join(modes)})" if modes else "search's Pareto frontier"
    fig = go.Figure()
    for name, items, style in ((frontier, pts, {"mode": "lines+markers", "marker": {"size": 7}}),
                               ("runner-ups", ups, {"mode": "markers", "marker": {"size": 9, "symbol": "diamond"}})):
        items = [c for c in items if xy(c)[0] is not None and xy(c)[1] is not None]
        if items:
            items = sorted(items, key=lambda c: xy(c)[0])
            fig.add_trace(go.Scatter(x=[xy(c)[0] for c in items], y=[xy(c)[1] for c in items], name=name,
                                     text=[hover(c) for c in items], hoverinfo="text", **style))
    x, y = xy(plan)
    if x is not None and y is not None:
        fig.add_trace(go.Scatter(x=[x], y=[y], name="chosen plan", mode="markers", text=[hover(plan)], hoverinfo="text",
                                 marker={"size": 18, "symbol": "star", "color": "#e45756",
                                         "line": {"width": 1, "color": "#000"}}))
    fig.update_layout(height=460, margin={"l": 70, "r": 20, "t": 10, "b": 50},
                      xaxis={"title": "output tokens/s per user (1 / TPOT)"},
                      yaxis={"title": "output tokens/s per GPU"}, legend={"orientation": "h"})
    return ("<section><h2>Throughput against interactivity</h2><p>Each point is a layout at its operating "
            "point: up is more tokens per GPU (cheaper), right is faster per user. The star is the chosen "
            "plan.</p>" + figure_html("pareto", fig) + "</section>")


def _memory(go, plan: Plan) -> str:
    bars = [(phase.value, p.memory_per_gpu_bytes) for phase, p in plan.phases.present()]
    if not bars:
        bars = [("plan", plan.memory_per_gpu_bytes)]
    parts = ("weights", "kv_cache", "activations", "reserve")
    fig = go.Figure()
    for part in parts:
        fig.add_trace(go.Bar(x=[b for b, _ in bars], y=[getattr(m, part) / GIB for _, m in bars],
                             name=part.replace("_", " ")))
    fig.add_trace(go.Bar(x=[b for b, _ in bars], y=[max(m.capacity - m.total, 0.0) / GIB for _, m in bars],
                         name="free", marker={"color": "#dddddd"}))
    fig.update_layout(barmode="stack", height=380, margin={"l": 70, "r": 20, "t": 10, "b": 40},
                      yaxis={"title": "GiB per GPU"}, legend={"orientation": "h"})
    return ("<section><h2>Memory per GPU</h2><p>Per phase (an aggregated plan runs both on the same GPUs), on "
            "the fullest pipeline stage; free is what is left of the GPU's capacity.</p>" + figure_html("memory", fig) + "</section>")


def why_set_aside(c: CandidateSummary) -> str:
    """Why a runner-up lost, or the rules a pruned candidate broke."""
    return (c.why_lost if isinstance(c, RunnerUp) else "") or "; ".join(v.message for v in c.violations)


def _candidates(plan: Plan) -> str:
    rows = []
    chosen = plan.label
    for kind, items in (("runner-up", plan.runner_ups), ("rejected", plan.pruned.examples)):
        for c in items:
            why = why_set_aside(c)
            rows.append(f"<tr><td>{esc(kind)}</td><td>{esc(c.label)}</td><td>{esc(c.gpus_total)}</td>"
                        f"<td data-v=\"{c.ttft_s or ''}\">{fmt_s(c.ttft_s)}</td>"
                        f"<td data-v=\"{c.tpot_s or ''}\">{fmt_s(c.tpot_s)}</td>"
                        f"<td data-v=\"{c.output_tok_s_per_gpu or ''}\">{fmt_num(c.output_tok_s_per_gpu)}</td>"
                        f"<td>{'yes' if c.feasible else 'no'}</td><td>{esc(why)}</td></tr>")
    if not rows:
        return ""
    return (f"<section><h2>Other layouts</h2><p>Runner-ups and layouts the search set aside, with why each lost "
            f"to the chosen plan ({esc(chosen)}). Click a column to sort.</p>"
            '<table id="candidates" class="sortable"><thead><tr><th>kind</th><th>layout</th><th>GPUs</th><th>TTFT</th>'
            "<th>TPOT</th><th>tok/s per GPU</th><th>feasible</th><th>why</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></section>")


def _assumptions(plan: Plan) -> str:
    fields = CostAssumptions.model_fields
    spec = plan.problem_spec
    rows = []
    stated = spec.assumptions.model_dump(mode="json") | {"two_batch_overlap_used":
                                                         plan.assumptions_used.two_batch_overlap_used}
    for k, v in stated.items():
        if isinstance(v, (dict, list)):
            continue
        why = _first_sentence(fields[k].description) if k in fields else ""
        rows.append(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td><td>{esc(why)}</td></tr>")
    eng = spec.engine
    efields = EngineProfile.model_fields
    erows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(_short_value(v))}</td>"
                    f"<td>{esc(_first_sentence(efields[k].description if k in efields else ''))}</td></tr>"
                    for k, v in eng.model_dump(mode="json").items() if k not in ("engine", "version", "display_name"))
    notes = "".join(f"<li><b>{esc(n.field)}</b>: {esc(n.message)}</li>" for n in plan.notes)
    return (f"<section><h2>Assumptions</h2><p>Engine: {esc(eng.display_name)} {esc(eng.version)}. "
            "Every factor below is a named input with its default's source in meshplan's specs "
            "(src/meshplan/specs/assumptions.py, catalog/engines/*.yaml); the plan's notes say which were fitted "
            "and which profile was used.</p>"
            '<table id="assumptions"><tr><th>assumption</th><th>value</th><th>what it is (first sentence of its '
            "source note)</th></tr>" + "".join(rows) + "</table><h3>Engine profile</h3><p>Each figure's source is "
            "cited beside it in catalog/engines/*.yaml.</p>"
            f'<table id="engine"><tr><th>fact</th><th>value</th><th>what it is</th></tr>{erows}</table>'
            f"<h3>Notes</h3><ul>{notes}</ul></section>")


def _first_sentence(text: str | None) -> str:
    """The first sentence of a field's source note, on one line."""
    flat = " ".join((text or "").split())
    end = flat.find(". ")
    return flat if end < 0 else flat[:end + 1]


def _short_value(v: Any) -> str:
    """An engine fact for a table cell: tiers by GPU memory as 'from N GiB: value'."""
    if isinstance(v, list) and v and all(isinstance(t, dict) and "value" in t for t in v):
        return ", ".join(f"from {t.get('min_memory_gib', 0):g} GiB: {t['value']}" for t in v)
    return str(v)


def _fidelity(closeness: list[dict] | None) -> str:
    if closeness is None:
        return ""
    if not closeness:
        return ('<section><h2>How close meshplan has been</h2><p id="fidelity">No measured runs of this model '
                "or this GPU in the validation data.</p></section>")
    rows = "".join(f"<tr><td>{esc(r['what'])}</td><td>{esc(r['backend'])}</td><td>{esc(r['gpu'])}</td>"
                   f"<td>{esc(r['model'])}</td><td>{esc(r['mode'])}</td><td>{r['predicted']}</td>"
                   f"<td>{r['ttft_abs']:.0%}</td><td>{r['tpot_abs']:.0%}</td></tr>" for r in closeness)
    return ("<section><h2>How close meshplan has been</h2><p>Median |predicted / measured - 1| on the measured "
            "runs of the validation data (meshplan validate) for this model or this GPU.</p>"
            '<table id="fidelity"><tr><th>match</th><th>engine</th><th>GPU</th><th>model</th><th>mode</th>'
            "<th>runs</th><th>TTFT</th><th>TPOT</th></tr>" + rows + "</table></section>")


SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th, col) {
  th.style.cursor = "pointer";
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.dataset.asc !== "1";
    th.dataset.asc = asc ? "1" : "0";
    function key(r) { var c = r.cells[col]; var v = c.dataset.v; var n = parseFloat(v === undefined ? c.textContent : v);
      return isNaN(n) ? c.textContent : n; }
    rows.sort(function (a, b) { var x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ddd; padding: 0.25em 0.6em;
text-align: left; vertical-align: top; } th { background: #f4f4f4; }
.ok { color: #2a7a2a; } .bad { color: #b22; } .plot { width: 100%; }
.dag { max-height: 640px; overflow: auto; border: 1px solid #ddd; } .dag svg { max-width: 100%; height: auto; }
"""


def render_html(plan: Plan, pools: list[Pool], *, sim: Simulated | None = None,
                dag_svgs: list[tuple[str, str]] | None = None, dag_note: str = "",
                closeness: list[dict] | None = None) -> str:
    """The page. ``pools``: the plan's (plan.pools.pools_of); ``dag_svgs``: (caption, SVG markup
    from Graphviz) per pool; ``dag_note`` says why there is none; ``closeness``: validation medians
    for this model and GPU."""
    go, get_plotlyjs = plotly_modules()
    problem = plan.problem_spec
    model = problem.model
    name = plan.problem
    title = f"meshplan plan: {name if name != 'flags' else f'{model.name} on {problem.gpu.name}'}"
    dag = "".join(f'<h3>{esc(caption)}</h3><div class="dag">{svg}</div>' for caption, svg in (dag_svgs or []))
    dag_section = (f'<section id="dag"><h2>Deployment DAG (collapsed)</h2>{dag or ""}'
                   f"{('<p>' + esc(dag_note) + '</p>') if dag_note else ''}</section>")
    subtitle = (f"{model.name} on {problem.gpu.name}, engine {problem.engine.display_name}; ISL "
                f"{problem.workload.isl_tokens:,.0f}, OSL {problem.workload.osl_tokens:,.0f} tokens")
    parts = [_summary(plan), _requirements(plan), _gpu_map(go, problem, pools), _pareto(go, plan), _memory(go, plan)]
    if sim is not None:
        parts.append(simulation_section(go, sim))
    parts += [simulated_candidates(plan), dag_section, _candidates(plan), _assumptions(plan), _fidelity(closeness)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>"
            f"<h1>{esc(title)}</h1><p>{esc(subtitle)}</p>" + "\n".join(p for p in parts if p)
            + f"<script>{SORT_JS}</script></body></html>\n")
