"""A plan's pictures as PNG files (matplotlib, the optional ``plot`` extra): the throughput against
interactivity trade-off with the chosen plan marked, and memory per GPU by part."""

from __future__ import annotations

from pathlib import Path

from meshplan.plan.document import Plan
from meshplan.report.pyplot import pyplot
from meshplan.units import GIB


def plot_pareto(plan: Plan, path: Path) -> Path:
    """Output tokens/s per GPU against tokens/s per user (1 / TPOT): the search's frontier, the
    runner-ups and the chosen plan."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))

    def pts(items):
        items = [c for c in items if c.tpot_s and c.output_tok_s_per_gpu is not None]
        items = sorted(items, key=lambda c: 1.0 / c.tpot_s)
        return [1.0 / c.tpot_s for c in items], [c.output_tok_s_per_gpu for c in items]

    x, y = pts(plan.pareto)
    if x:
        ax.plot(x, y, "o-", label="search's Pareto frontier")
    x, y = pts(plan.runner_ups)
    if x:
        ax.plot(x, y, "D", color="tab:orange", label="runner-ups")
    x, y = pts([plan])
    if x:
        ax.plot(x, y, "*", markersize=18, color="tab:red", markeredgecolor="k", label=f"chosen: {plan.label}")
    ax.set_xlabel("output tokens/s per user (1 / TPOT)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(f"meshplan: {plan.problem}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_memory(plan: Plan, path: Path) -> Path:
    """Stacked bars of memory per GPU per phase: weights, KV cache, activations, reserve, free."""
    plt = pyplot()
    bars = [(phase.value, p.memory_per_gpu_bytes) for phase, p in plan.phases.present()]
    bars = bars or [("plan", plan.memory_per_gpu_bytes)]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    bottom = [0.0] * len(bars)
    for part in ("weights", "kv_cache", "activations", "reserve", "free"):
        vals = [(max(m.capacity - m.total, 0.0) if part == "free" else getattr(m, part)) / GIB for _, m in bars]
        ax.bar([b for b, _ in bars], vals, bottom=bottom, label=part.replace("_", " "),
               color="#dddddd" if part == "free" else None)
        bottom = [a + b for a, b in zip(bottom, vals)]
    ax.set_ylabel("GiB per GPU")
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title("memory per GPU (fullest stage)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
