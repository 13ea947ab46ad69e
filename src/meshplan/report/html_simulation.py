"""The report's simulation: latency CDFs, the run's throughput and queue, every iteration, and
plan --sim's re-scored candidates."""

from __future__ import annotations

from dataclasses import dataclass

from meshplan.plan.document import Plan
from meshplan.report.html_parts import esc, figure_html, fmt_num, fmt_s


@dataclass(frozen=True, kw_only=True, slots=True)
class Simulated:
    """What a simulation of the chosen plan adds to the page (arrays per request and per time bin)."""

    ttft_s: list[float]
    tpot_s: list[float]
    time_s: list[float]
    output_tok_s: list[float]
    waiting: list[float]
    ttft_target_s: float | None
    tpot_target_s: float | None
    caption: str
    iterations: list[tuple] = ()
    """(start s, duration s, identical iterations, decode sequences, prompt tokens, pool role) per
    run of identical iterations of a micro-batch group."""


def simulation_section(go, sim: Simulated) -> str:
    """Latency CDFs against the targets, throughput and queue over time, and every iteration."""
    fig = go.Figure()
    for name, xs, target in (("TTFT", sim.ttft_s, sim.ttft_target_s), ("TPOT", sim.tpot_s, sim.tpot_target_s)):
        xs = sorted(x * 1e3 for x in xs if 0 < x < float("inf"))
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=[(i + 1) / len(xs) for i in range(len(xs))], name=f"{name} (ms)",
                                     mode="lines"))
        if target:  # a trace, not a shape: shapes on a log axis take log10 coordinates
            fig.add_trace(go.Scatter(x=[target * 1e3, target * 1e3], y=[0, 1], mode="lines",
                                     name=f"{name} target {target * 1e3:g} ms",
                                     line={"dash": "dash", "color": "#e45756" if name == "TTFT" else "#9d755d"}))
    fig.update_layout(height=380, margin={"l": 60, "r": 20, "t": 10, "b": 40}, xaxis={"title": "ms", "type": "log"},
                      yaxis={"title": "share of requests"}, legend={"orientation": "h"})
    t = go.Figure()
    t.add_trace(go.Scatter(x=sim.time_s, y=sim.output_tok_s, name="output tokens/s per instance", mode="lines"))
    t.add_trace(go.Scatter(x=sim.time_s, y=sim.waiting, name="requests waiting for a first token", mode="lines",
                           yaxis="y2"))
    t.update_layout(height=380, margin={"l": 70, "r": 70, "t": 10, "b": 40}, xaxis={"title": "time (s)"},
                    yaxis={"title": "output tokens/s"}, yaxis2={"title": "waiting", "overlaying": "y", "side": "right"},
                    legend={"orientation": "h"})
    it = go.Figure()
    kinds: dict[str, list[tuple]] = {}
    for start, dur, count, seqs, prompt, role in sim.iterations:
        kind = "prefill + decode" if prompt and seqs else "prefill" if prompt else "decode"
        kinds.setdefault(f"{role}: {kind}", []).append((start, dur, count, seqs, prompt))
    for name, rows in kinds.items():
        it.add_trace(go.Scatter(x=[r[0] for r in rows], y=[r[1] * 1e3 for r in rows], mode="markers", name=name,
                                  marker={"size": 4}, hoverinfo="text",
                                  text=[f"{name}{f' x{r[2]}' if r[2] > 1 else ''}<br>{r[3]} sequences decoding, "
                                        f"{r[4]:,} prompt tokens<br>{r[1] * 1e3:.2f} ms each" for r in rows]))
    it.update_layout(height=340, margin={"l": 70, "r": 20, "t": 10, "b": 40}, xaxis={"title": "time (s)"},
                     yaxis={"title": "iteration (ms)"}, legend={"orientation": "h"})
    return (f"<section><h2>Simulation</h2><p>{esc(sim.caption)}</p>" + figure_html("latency-cdf", fig)
            + figure_html("timeline", t) + "<p>Every iteration (a run of identical ones is one point): when it "
            "started and how long it took, by what it carried.</p>" + figure_html("iterations", it) + "</section>")


def simulated_candidates(plan: Plan) -> str:
    """plan --sim's re-scored candidates: percentiles and goodput beside the closed form's means."""
    sims = plan.simulation or ()
    if not sims:
        return ""
    rows = []
    for s in sims:
        good = "-" if s.goodput is None else f"{s.goodput:.0%}"
        rows.append(f"<tr><td>{esc(s.label)}</td><td>{esc(s.gpus_total)}</td>"
                    f"<td>{fmt_s(s.closed_form.ttft_s)}</td><td>{fmt_s(s.ttft_s.p50)}</td>"
                    f"<td>{fmt_s(s.ttft_s.p99)}</td><td>{fmt_s(s.closed_form.tpot_s)}</td>"
                    f"<td>{fmt_s(s.tpot_s.p50)}</td><td>{fmt_s(s.tpot_s.p99)}</td>"
                    f"<td>{fmt_num(s.output_tok_s_per_gpu)}</td><td>{good}</td></tr>")
    rows = "".join(rows)
    return ("<section><h2>Candidates simulated</h2><p>The search's best candidates served request by request "
            "(plan --sim): the closed form's means beside the simulated percentiles, tokens/s per GPU and goodput "
            '(share of requests within the targets).</p><table id="simulated" class="sortable"><thead><tr>'
            "<th>layout</th><th>GPUs</th><th>TTFT closed form</th><th>TTFT p50</th><th>TTFT p99</th>"
            "<th>TPOT closed form</th><th>TPOT p50</th><th>TPOT p99</th><th>tok/s per GPU</th><th>goodput</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></section>")
