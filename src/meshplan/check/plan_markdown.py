"""meshplan's own Markdown plan (``meshplan plan --markdown``) -> PlanClaims.

The Markdown is written by report.markdown.render; this reader follows that layout line by line:
the heading names the model, the GPU and the problem; the Summary states the GPU count, TTFT,
TPOT, throughput and KV bytes per token; "Strategy per phase" gives each pool's strategy string
(one pool "on the same instances" when aggregated, a prefill and a decode pool when
disaggregated); "Memory per GPU" gives each pool's total. The Markdown does not carry the workload,
so the plan is paired with the problem it was made from (check's --problem, by default the bundled
seed problem, as for meshplan plan), which must name the same model and GPU.
"""

from __future__ import annotations

import re

from meshplan.check.plan_doc import PlanClaims
from meshplan.errors import SpecError
from meshplan.specs.hardware import gpus_in_words
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import parse_strategy
from meshplan.units import GIB, MS, US

HEADING = "# Deployment plan: "
_STRATEGY = re.compile(r"^### (?P<title>.+?): `(?P<strategy>[^`]+)` \(")
_POOLS = {"Prefill and decode on the same instances": "", "Prefill pool": "prefill", "Decode pool": "decode"}
"""Pool titles of report.markdown._pools -> pool ('' the one aggregated pool)."""
_GPUS = re.compile(r"\*\*(?P<n>[0-9][0-9,]*) GPUs? in total\*\*")
_SPEEDS = re.compile(r"^- TTFT (?P<ttft_s>.+?), TPOT (?P<tpot_s>.+?); output (?P<output_tok_s_per_gpu>.+?) tok/s "
                     r"per GPU, (?P<output_tok_s>.+?) tok/s in total; input (?P<input_tok_s_per_gpu>.+?) tok/s per GPU\.$")
_KV = re.compile(r"^- KV cache: (?P<n>[0-9][0-9,]*) bytes per token")
_MEMORY_TITLE = re.compile(r"^(?P<title>.+) \(fullest pipeline stage\):$")
_TOTAL = re.compile(r"^\| total \| (?P<gib>[0-9][0-9,]*(?:\.[0-9]+)?) GiB \|$")
_SECONDS = re.compile(r"(?P<x>[0-9][0-9,]*(?:\.[0-9]+)?) (?P<unit>s|ms|us)")
_COUNT = re.compile(r"(?P<x>[0-9][0-9,]*)")
_UNESCAPE = re.compile(r"\\([\\`*~\[\]|])")


def is_meshplan_markdown(text: str) -> bool:
    """Whether ``text`` is a plan meshplan wrote (report.markdown.render)."""
    return text.lstrip().startswith(HEADING) and "\n## Strategy per phase" in text


def _unescape(text: str) -> str:
    """report.markdown.escape undone (backslash escapes, then the three entities)."""
    return _UNESCAPE.sub(r"\1", text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _value(text: str, key: str, where: str) -> float | None:
    """One Summary figure as render writes it: 'n/a', seconds (s, ms, us) or a count."""
    if text == "n/a":
        return None
    timed = key in ("ttft_s", "tpot_s")
    m = (_SECONDS if timed else _COUNT).fullmatch(text)
    if m is None:
        raise SpecError(where, text, f"not a {key} figure as meshplan writes it")
    scale = {"s": 1.0, "ms": MS, "us": US}[m.group("unit")] if timed else 1.0
    return float(m.group("x").replace(",", "")) * scale


def read_plan_markdown(text: str, source: str, problem: Problem, problem_origin: str) -> PlanClaims:
    """The claims of a meshplan Markdown plan, paired with ``problem`` (named ``problem_origin``
    in errors)."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip())
    heading = _unescape(lines[first].strip())
    gpus = gpus_in_words(problem.gpu.name, problem.prefill_gpu.name if problem.prefill_gpu else None)
    made_for = f"{HEADING}{problem.model.name} on {gpus} ("
    if not heading.startswith(made_for):
        raise SpecError("--problem", problem.name, (
            f"{source} is meshplan's plan '{heading[len(HEADING):]}', not for {problem.model.name} on "
            f"{gpus} ({problem_origin}); give the problem it was made from with --problem FILE, or check "
            "its --json, which carries the problem"))
    figures: dict[str, float] = {}
    where: dict[str, int] = {}
    pools: dict[str, tuple[str, int]] = {}
    memory: list[tuple[str, float]] = []
    memory_pool = None
    for no, line in enumerate(lines, 1):
        at = f"{source}:{no}"
        if (m := _GPUS.search(line)) and "gpus_total" not in figures:
            figures["gpus_total"], where["gpus_total"] = float(m.group("n").replace(",", "")), no
        elif (m := _SPEEDS.match(line)) and "ttft_s" not in where:
            for key, value in m.groupdict().items():
                got = _value(value, key, at)
                if got is not None:
                    figures[key], where[key] = got, no
        elif (m := _KV.match(line)) and "kv_cache_bytes_per_token" not in figures:
            figures["kv_cache_bytes_per_token"] = float(m.group("n").replace(",", ""))
            where["kv_cache_bytes_per_token"] = no
        elif m := _STRATEGY.match(line):
            if m.group("title") not in _POOLS:
                raise SpecError(at, m.group("title"), "not a pool meshplan writes (" + ", ".join(_POOLS) + ")")
            pools[_POOLS[m.group("title")]] = (m.group("strategy"), no)
        elif m := _MEMORY_TITLE.match(line):
            memory_pool = _POOLS.get(m.group("title"))
        elif (m := _TOTAL.match(line)) and memory_pool is not None:
            memory.append((memory_pool, float(m.group("gib").replace(",", "")) * GIB))
            where[f"memory:{memory_pool}"] = no
            memory_pool = None
    moe = problem.model.is_moe
    if set(pools) == {""}:
        order = [""]
    elif set(pools) == {"prefill", "decode"}:
        order = ["prefill", "decode"]
    else:
        raise SpecError("PLAN", source, "states no complete strategy: one pool on the same instances, or a prefill "
                        "and a decode pool (## Strategy per phase)")
    layouts = tuple(parse_strategy(pools[p][0], is_moe=moe, field=f"{source}:{pools[p][1]}") for p in order)
    return PlanClaims(problem=problem, layouts=layouts, figures=figures, memory=tuple(memory), lines=where,
                      kind="meshplan Markdown plan")
