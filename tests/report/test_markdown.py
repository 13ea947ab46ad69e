"""The Markdown report renders from the plan document: its figures are the document's."""

import re

from meshplan.io.problem_file import load_problem
from meshplan.plan.plan import plan_document
from meshplan.report.markdown import render
from meshplan.search.search import search
from meshplan.units import GIB


def test_markdown_figures_come_from_the_json():
    doc = plan_document(search(load_problem(None)))
    text = render(doc)
    for section in ("## Summary", "## Validation against each requirement", "## Strategy per phase",
                    "## Memory per GPU", "## GPU mapping", "## Rejected alternatives", "## Notes and assumptions"):
        assert section in text
    assert f"{doc['output_tok_s_per_gpu']:,.0f}" in text
    assert f"{doc['memory_per_gpu_bytes']['kv_cache'] / GIB:,.2f} GiB" in text
    assert re.search(r"\*\*1 GPU in total\*\*", text)
    # Every runner-up's reason is printed.
    for r in doc["runner_ups"]:
        assert r["why_lost"] in text
