"""matplotlib's pyplot (the optional ``plot`` extra), drawing to files only, or a one-line error
naming the extra when it is not installed."""

from __future__ import annotations

from meshplan.errors import SpecError


def pyplot():
    # matplotlib is an optional extra: imported here, when a picture is asked for.
    try:
        import matplotlib
    except ImportError:
        raise SpecError("--plot", "", "needs matplotlib: pip install 'meshplan[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
