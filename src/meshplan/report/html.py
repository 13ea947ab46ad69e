"""One self-contained HTML page per plan: the verdict, the GPU map, the Pareto frontier, memory per
GPU, the simulation when there is one, the DAG picture, every candidate and the assumptions.

Everything the page needs is inside it (plotly's JavaScript inlined, the DAG as inline SVG), so it
opens offline and travels by email. Every string that came from a user (problem and model names,
notes that quote their input) is HTML-escaped, and figure data is embedded as JSON with <, > and
& written as \\u escapes, so no input can close a script tag or add markup.
"""

from __future__ import annotations

from typing import Any

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


def _summary(doc: dict) -> str:
    v = doc.get("verdict") or {}
    status = v.get("status", "")
    cls = "ok" if status == "feasible" else "bad"
    rows = [("layout", doc.get("label")), ("GPUs (total)", doc.get("gpus_total")),
            ("TTFT (mean, per request)", fmt_s(doc.get("ttft_s"))), ("TPOT (mean, per request)", fmt_s(doc.get("tpot_s"))),
            ("output tokens/s per GPU", fmt_num(doc.get("output_tok_s_per_gpu"))),
            ("output tokens/s (total)", fmt_num(doc.get("output_tok_s"))),
            ("requests in flight (total)", fmt_num(doc.get("concurrency")))]
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(x)}</td></tr>" for k, x in rows)
    return (f'<section id="summary"><h2>Verdict</h2><p class="{cls}">{esc(v.get("message") or status)}</p>'
            f"<table>{body}</table></section>")


def _with_unit(x: Any, unit: str) -> str:
    """A requirement's figure in the unit people read it in."""
    if x is None:
        return "-"
    if unit == "s":
        return fmt_s(x)
    if unit == "bytes":
        return f"{x / GIB:,.1f} GiB"
    return f"{x:,.4g} {unit}".strip()


def _requirements(doc: dict) -> str:
    rows = []
    for r in doc.get("requirements_check") or []:
        bound = r.get("bound") or {}
        target, predicted = (_with_unit(r.get(k), r.get("unit", "")) for k in ("target", "predicted"))
        cls, verdict = ("ok", "met") if r.get("met") else ("bad", "not met")
        rows.append(f'<tr class="{cls}"><td>{esc(r.get("requirement"))}</td>'
                    f'<td>{esc(target)}</td><td>{esc(predicted)}</td>'
                    f'<td>{verdict}</td><td>{esc(bound.get("message", ""))}</td></tr>')
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


def _pareto(go, doc: dict) -> str:
    pts = doc.get("pareto") or []
    ups = doc.get("runner_ups") or []

    def xy(c):
        return (1.0 / c["tpot_s"] if c.get("tpot_s") else None), c.get("output_tok_s_per_gpu")

    def hover(c):
        return (f"{esc(c['label'])}<br>{c.get('gpus_total')} GPUs<br>TTFT {fmt_s(c.get('ttft_s'))}, TPOT "
                f"{fmt_s(c.get('tpot_s'))}<br>{fmt_num(c.get('output_tok_s_per_gpu'))} tok/s per GPU")

    modes = sorted({c.get("mode", "") for c in pts})
    frontier = f"search's Pareto frontier ({', '.join(modes)})" if modes else "search's Pareto frontier"
    fig = go.Figure()
    for name, items, style in ((frontier, pts, {"mode": "lines+markers", "marker": {"size": 7}}),
                               ("runner-ups", ups, {"mode": "markers", "marker": {"size": 9, "symbol": "diamond"}})):
        items = [c for c in items if xy(c)[0] is not None and xy(c)[1] is not None]
        if items:
            items = sorted(items, key=lambda c: xy(c)[0])
            fig.add_trace(go.Scatter(x=[xy(c)[0] for c in items], y=[xy(c)[1] for c in items], name=name,
                                     text=[hover(c) for c in items], hoverinfo="text", **style))
    x, y = xy(doc)
    if x is not None and y is not None:
        fig.add_trace(go.Scatter(x=[x], y=[y], name="chosen plan", mode="markers", text=[hover(doc)], hoverinfo="text",
                                 marker={"size": 18, "symbol": "star", "color": "#e45756",
                                         "line": {"width": 1, "color": "#000"}}))
    fig.update_layout(height=460, margin={"l": 70, "r": 20, "t": 10, "b": 50},
                      xaxis={"title": "output tokens/s per user (1 / TPOT)"},
                      yaxis={"title": "output tokens/s per GPU"}, legend={"orientation": "h"})
    return ("<section><h2>Throughput against interactivity</h2><p>Each point is a layout at its operating "
            "point: up is more tokens per GPU (cheaper), right is faster per user. The star is the chosen "
            "plan.</p>" + figure_html("pareto", fig) + "</section>")


def _memory(go, doc: dict) -> str:
    phases = doc.get("phases") or {}
    bars = [(name, p["memory_per_gpu_bytes"]) for name, p in phases.items() if p and p.get("memory_per_gpu_bytes")]
    if not bars:
        bars = [("plan", doc["memory_per_gpu_bytes"])]
    parts = ("weights", "kv_cache", "activations", "reserve")
    fig = go.Figure()
    for part in parts:
        fig.add_trace(go.Bar(x=[b for b, _ in bars], y=[m[part] / GIB for _, m in bars], name=part.replace("_", " ")))
    fig.add_trace(go.Bar(x=[b for b, _ in bars], y=[max(m["capacity"] - m["total"], 0.0) / GIB for _, m in bars],
                         name="free", marker={"color": "#dddddd"}))
    fig.update_layout(barmode="stack", height=380, margin={"l": 70, "r": 20, "t": 10, "b": 40},
                      yaxis={"title": "GiB per GPU"}, legend={"orientation": "h"})
    return ("<section><h2>Memory per GPU</h2><p>Per phase (an aggregated plan runs both on the same GPUs), on "
            "the fullest pipeline stage; free is what is left of the GPU's capacity.</p>" + figure_html("memory", fig) + "</section>")


def _candidates(doc: dict) -> str:
    rows = []
    chosen = doc.get("label")
    pruned = (doc.get("pruned") or {}).get("examples") or []
    for kind, items in (("runner-up", doc.get("runner_ups") or []), ("rejected", pruned)):
        for c in items:
            why = c.get("why_lost") or "; ".join(v.get("message", "") for v in c.get("violations") or [])
            rows.append(f"<tr><td>{esc(kind)}</td><td>{esc(c.get('label'))}</td><td>{esc(c.get('gpus_total'))}</td>"
                        f"<td data-v=\"{c.get('ttft_s') or ''}\">{fmt_s(c.get('ttft_s'))}</td>"
                        f"<td data-v=\"{c.get('tpot_s') or ''}\">{fmt_s(c.get('tpot_s'))}</td>"
                        f"<td data-v=\"{c.get('output_tok_s_per_gpu') or ''}\">{fmt_num(c.get('output_tok_s_per_gpu'))}</td>"
                        f"<td>{'yes' if c.get('feasible') else 'no'}</td><td>{esc(why)}</td></tr>")
    if not rows:
        return ""
    return (f"<section><h2>Other layouts</h2><p>Runner-ups and layouts the search set aside, with why each lost "
            f"to the chosen plan ({esc(chosen)}). Click a column to sort.</p>"
            '<table id="candidates" class="sortable"><thead><tr><th>kind</th><th>layout</th><th>GPUs</th><th>TTFT</th>'
            "<th>TPOT</th><th>tok/s per GPU</th><th>feasible</th><th>why</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></section>")


def _assumptions(doc: dict) -> str:
    fields = CostAssumptions.model_fields
    rows = []
    for k, v in (doc.get("assumptions") or {}).items():
        if isinstance(v, (dict, list)):
            continue
        why = _first_sentence(fields[k].description) if k in fields else ""
        rows.append(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td><td>{esc(why)}</td></tr>")
    eng = doc.get("engine") or {}
    efields = EngineProfile.model_fields
    erows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(_short_value(v))}</td>"
                    f"<td>{esc(_first_sentence(efields[k].description if k in efields else ''))}</td></tr>"
                    for k, v in eng.items() if k not in ("engine", "version", "display_name"))
    notes = "".join(f"<li><b>{esc(n.get('field'))}</b>: {esc(n.get('message'))}</li>" for n in doc.get("notes") or [])
    return (f"<section><h2>Assumptions</h2><p>Engine: {esc(eng.get('display_name', ''))} {esc(eng.get('version', ''))}. "
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


def render_html(doc: dict, problem: Problem, pools: list[Pool], *, sim: Simulated | None = None,
                dag_svgs: list[tuple[str, str]] | None = None, dag_note: str = "",
                closeness: list[dict] | None = None) -> str:
    """The page. ``dag_svgs``: (caption, SVG markup from Graphviz) per pool; ``dag_note`` says why
    there is none; ``closeness``: validation medians for this model and GPU."""
    go, get_plotlyjs = plotly_modules()
    model = problem.model
    name = doc.get("problem") or ""
    title = f"meshplan plan: {name if name != 'flags' else f'{model.name} on {problem.gpu.name}'}"
    dag = "".join(f'<h3>{esc(caption)}</h3><div class="dag">{svg}</div>' for caption, svg in (dag_svgs or []))
    dag_section = (f'<section id="dag"><h2>Deployment DAG (collapsed)</h2>{dag or ""}'
                   f"{('<p>' + esc(dag_note) + '</p>') if dag_note else ''}</section>")
    subtitle = (f"{model.name} on {problem.gpu.name}, engine {problem.engine.display_name}; ISL "
                f"{problem.workload.isl_tokens:,.0f}, OSL {problem.workload.osl_tokens:,.0f} tokens")
    parts = [_summary(doc), _requirements(doc), _gpu_map(go, problem, pools), _pareto(go, doc), _memory(go, doc)]
    if sim is not None:
        parts.append(simulation_section(go, sim))
    parts += [simulated_candidates(doc), dag_section, _candidates(doc), _assumptions(doc), _fidelity(closeness)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>"
            f"<h1>{esc(title)}</h1><p>{esc(subtitle)}</p>" + "\n".join(p for p in parts if p)
            + f"<script>{SORT_JS}</script></body></html>\n")
