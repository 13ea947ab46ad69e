"""A simulation as a picture (matplotlib, the optional ``plot`` extra): the TTFT and TPOT
distributions as CDFs with the targets marked, and output tokens per second over the run with the
requests waiting at each moment, so saturation (a queue that keeps growing) shows at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meshplan.errors import SpecError

BINS = 100
"""Time bins of the throughput panel."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SpecError("--plot", "", "needs matplotlib: pip install 'meshplan[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


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
    from meshplan.simulate.summary import per_request

    plt = _pyplot()
    ttft, tpot, _ = per_request(res)
    r = res.requests
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    _cdf(axes[0], ttft, "TTFT", ttft_target_s)
    _cdf(axes[1], tpot, "TPOT", tpot_target_s)
    ax = axes[2]
    end = max(float(np.nanmax(r.finish_s)), 1e-9)
    edges = np.linspace(0.0, end, BINS + 1)
    width = edges[1] - edges[0]
    # Output tokens per bin: each request's tokens spread evenly from its first token to its last.
    rate = np.zeros(BINS)
    for first, last, n in zip(r.first_s, r.finish_s, r.generated):
        if not (np.isfinite(first) and np.isfinite(last)):
            continue
        span = max(last - first, width)
        lo, hi = np.searchsorted(edges, [first, first + span])
        lo, hi = max(lo - 1, 0), min(max(hi, lo + 1), BINS)
        rate[lo:hi] += n / span * width
    mid = (edges[:-1] + edges[1:]) / 2
    ax.plot(mid, rate / width, color="tab:blue", label="output tok/s")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("output tokens/s per instance")
    ax.grid(alpha=0.3)
    waiting = np.array([np.sum((r.send_s <= t) & ~(r.first_s <= t)) for t in mid])
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
