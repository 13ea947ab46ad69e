"""A simulation as a picture (matplotlib, the optional ``plot`` extra): the TTFT and TPOT
distributions as CDFs with the targets marked, and output tokens per second over the run with the
requests waiting at each moment, so saturation (a queue that keeps growing) shows at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meshplan.report.pyplot import pyplot
from meshplan.simulate.summary import per_request, timeline

BINS = 100
"""Time bins of the throughput panel."""


def _cdf(ax, x: np.ndarray, label: str, target: float | None, unit: float = 1e3) -> None:
    x = np.sort(x[np.isfinite(x)]) * unit
    if x.size:
        ax.plot(x, np.arange(1, x.size + 1) / x.size, label=label)
    if target:
        ax.axvline(target * unit, color="tab:red", linestyle="--", label=f"target {target * unit:g} ms")
    ax.set_xlabel(f"{label} (ms)")
    ax.set_ylabel("share of requests")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")


def plot_simulation(res, title: str, path: str, ttft_target_s: float | None = None,
                    tpot_target_s: float | None = None) -> None:
    """Write the picture to ``path`` (PNG, SVG or PDF by its suffix)."""
    plt = pyplot()
    ttft, tpot, _ = per_request(res)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    _cdf(axes[0], ttft, "TTFT", ttft_target_s)
    _cdf(axes[1], tpot, "TPOT", tpot_target_s)
    ax = axes[2]
    mid, rate, waiting = timeline(res, BINS)
    ax.plot(mid, rate, color="tab:blue", label="output tok/s")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("output tokens/s per instance")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(mid, waiting, color="tab:orange", label="requests waiting for a first token")
    twin.set_ylabel("requests waiting")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(Path(path))
    plt.close(fig)
