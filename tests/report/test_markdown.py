"""The Markdown report renders from the plan document: its figures are the document's."""

import re

from meshplan.io.problem_file import load_problem
from meshplan.plan.plan import plan_document
from meshplan.report.markdown import escape, render
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
    # Every runner-up's reason is printed (as literal text: "<" as an entity).
    for r in doc["runner_ups"]:
        assert escape(r["why_lost"]) in text


HOSTILE = "evil|</td><script>alert(1)</script> `code` [link](http://e) **b** &amp; \\| \x1b[2J\r\n# Heading"


def test_user_strings_cannot_inject_markdown_or_html():
    doc = plan_document(search(load_problem(None)))
    doc["problem"] = doc["model"]["name"] = HOSTILE
    doc["notes"] = [{"field": "x`y", "message": HOSTILE}]
    doc["runner_ups"][0]["why_lost"] = HOSTILE
    text = render(doc)
    assert "<" not in text and ">" not in text and "\x1b" not in text and "\r" not in text
    assert "\n# Heading" not in text and "](" not in text.replace("\\](", "")
    assert "&amp;amp;" in text  # the user's "&amp;" is shown as written, not as "&"
    shown = escape(HOSTILE)
    assert shown == ("evil\\|&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt; \\`code\\` \\[link\\](http://e) "
                     "\\*\\*b\\*\\* &amp;amp; \\\\\\|  # Heading")
    assert f"# Deployment plan: {shown} on " in text
    assert "- ``x`y``: " + shown in text  # a code span the field cannot close
    # The runner-up row keeps its four cells: every "|" of the user's text is escaped.
    row = next(line for line in text.splitlines() if line.endswith(f"| {shown} |"))
    assert len(re.findall(r"(?<!\\)\|", row)) == 5
