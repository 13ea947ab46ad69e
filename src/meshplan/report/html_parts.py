"""Pieces every section of the HTML report uses: plotly (the optional ``report`` extra), escaping
of user text, figures embedded as escaped JSON, and number formats."""

from __future__ import annotations

import html
import json
from typing import Any

from meshplan.errors import SpecError


def plotly_modules():
    # plotly is an optional extra: imported here, when a page is asked for.
    try:
        import plotly.graph_objects as go
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise SpecError("--html", "", "needs plotly: pip install 'meshplan[report]'") from None
    return go, get_plotlyjs


def esc(text: Any) -> str:
    """User text as HTML text."""
    return html.escape(str(text), quote=True)


def safe_json(obj: Any) -> str:
    """JSON that cannot end a <script> element or open markup when embedded in one."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def figure_html(div_id: str, fig) -> str:
    spec = json.loads(fig.to_json())
    return (f'<div id="{div_id}" class="plot"></div>\n<script>Plotly.newPlot("{div_id}", '
            f'{safe_json(spec.get("data", []))}, {safe_json(spec.get("layout", {}))}, '
            '{"displaylogo": false, "responsive": true});</script>')


def fmt_s(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x * 1e3:,.1f} ms" if x < 10 else f"{x:,.1f} s"


def fmt_num(x: Any, unit: str = "") -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}{(' ' + unit) if unit else ''}"
