"""The typed plan (plan.document) and its one JSON writer and reader (plan.plan_json): a plan file
reads back into the same tree and writes out byte for byte as it was; a malformed file is one
SpecError naming the field, the value and the rule; pools come from one place (plan.pools)."""

import ast
import copy
import json
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner

from meshplan.cli.dag_cmd import resolve
from meshplan.cli.evaluate_cmd import run_evaluate
from meshplan.cli.main import main
from meshplan.cli.plan_cmd import plan_doc
from meshplan.errors import SpecError
from meshplan.io.catalog import CATALOG
from meshplan.io.problem_file import load_problem, problem_from_raw
from meshplan.plan.document import Plan, Status
from meshplan.plan.plan import candidate_document, plan_document
from meshplan.plan.plan_json import SCHEMA, from_json, to_json
from meshplan.plan.pools import pools_from_doc, pools_of
from meshplan.plan.simulated import simulated_plan
from meshplan.search.evaluate import evaluate_disaggregated
from meshplan.search.search import search
from meshplan.strategy.layout import parse_strategy

PROBLEMS = sorted(p.stem for p in (CATALOG / "problems").glob("*.md"))
"""Every bundled problem (seed-plan.md is a plan: meshplan evaluates the layout it claims)."""
SRC = Path(__file__).parents[2] / "src" / "meshplan"


def _text(doc: dict) -> str:
    """A plan as meshplan plan --json writes it (cli.main._write)."""
    return json.dumps(doc, indent=2, default=float)


@cache
def _written(name: str) -> str:
    """The plan JSON meshplan writes for a bundled problem (plan --json; evaluate --json for seed-plan)."""
    problem = load_problem(CATALOG / "problems" / f"{name}.md")
    if name == "seed-plan":
        return _text(run_evaluate(problem, None, None, None, None))
    return _text(to_json(plan_doc(problem, "max-per-gpu", False)))


@pytest.mark.parametrize("name", PROBLEMS)
def test_a_bundled_plan_reads_back_and_writes_out_byte_for_byte(name):
    text = _written(name)
    doc = json.loads(text)
    plan = from_json(doc)
    assert isinstance(plan, Plan) and doc["schema"] == SCHEMA
    assert to_json(plan) == doc
    assert _text(to_json(plan)) == text
    # The typed tree holds what the file says: a few leaves read by attribute, against the file's keys.
    decode = plan.phases.decode or plan.phases.prefill
    key = "decode" if plan.phases.decode else "prefill"
    assert decode.strategy.string == doc["phases"][key]["strategy"]["string"]
    assert plan.verdict.status.value == doc["verdict"]["status"]
    assert plan.memory_per_gpu_bytes.total == doc["memory_per_gpu_bytes"]["total"]


def test_plans_of_every_verdict_and_with_a_simulation_read_back():
    # Nothing fits: DeepSeek-V3's ~671B parameters in fp8 weigh ~671 GB, more than 8 H100s x 80 GB hold
    # with one request, so the verdict is does_not_fit (its keys in their own order, smallest_fit last).
    big = problem_from_raw({"model": "deepseek-v3", "gpu": "h100", "gpus": 8,
                            "workload": {"isl": 2000, "osl": 500, "concurrency": 64}})
    # A TPOT p99 of 1 us no candidate can meet (one decode step reads the weights from HBM, far
    # longer than 1 us): simulated, then requirements_unmet with the 'p99' rule.
    sim = problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h200", "gpus": 8, "requirements": {"tpot_p99_s": 1e-6},
                            "workload": {"isl": 2000, "osl": 500, "concurrency": 64}})
    for plan, status in ((from_json(plan_document(search(big))), Status.DOES_NOT_FIT),
                         (simulated_plan(search(sim)), Status.REQUIREMENTS_UNMET)):
        assert plan.verdict.status is status
        text = _text(to_json(plan))
        again = from_json(json.loads(text))
        assert again.verdict == plan.verdict
        assert _text(to_json(again)) == text
    assert again.simulation and [u.rule for u in again.verdict.unmet] == ["p99"]
    assert list(json.loads(text)["verdict"]) == ["status", "figures", "unmet", "message"]


# ---------------------------------------------------------------------------------------------
# A malformed plan file


@cache
def _seed_plan_text() -> str:
    return _text(plan_document(search(load_problem(None))))


def _edited(edit) -> dict:
    doc = json.loads(_seed_plan_text())
    edit(doc)
    return doc


def _set(*path_and_value):
    *path, value = path_and_value

    def edit(doc):
        for k in path[:-1]:
            doc = doc[k]
        doc[path[-1]] = value
    return edit


def _del(*path):
    def edit(doc):
        for k in path[:-1]:
            doc = doc[k]
        del doc[path[-1]]
    return edit


MALFORMED = [
    # (edit, field named, value shown, words of the rule)
    (_set("phases", "decode", "strategy", "tp", "two"), "plan.phases.decode.strategy.tp", "two", "whole number"),
    (_set("verdict", "status", "maybe"), "plan.verdict.status", "maybe",
     "one of feasible, requirements_unmet, does_not_fit"),
    (_set("violations", [{"rule": "vibes", "message": "m"}]), "plan.violations[0].rule", "vibes", "one of folding"),
    (_del("requirements_check"), "plan.requirements_check", None, "missing"),
    (_set("schema", "meshplan.plan/0"), "plan.schema", "meshplan.plan/0", SCHEMA),
    (_set("phases", "decode", "memory_per_gpu_bytes", [1, 2]), "plan.phases.decode.memory_per_gpu_bytes", "list",
     "must be an object"),
    (_set("notes", [{"field": "x", "message": 5}]), "plan.notes[0].message", 5, "must be a string"),
    (_set("feasible", "yes"), "plan.feasible", "yes", "true or false"),
    (_set("gpus_total", 2.5), "plan.gpus_total", 2.5, "whole number"),
    (_del("phases", "decode", "operators"), "plan.phases.decode.operators", None, "missing"),
]


@pytest.mark.parametrize("edit, field, value, rule", MALFORMED)
def test_a_malformed_plan_names_the_field_the_value_and_the_rule(edit, field, value, rule):
    with pytest.raises(SpecError) as err:
        from_json(_edited(edit))
    assert (err.value.field, err.value.value) == (field, value)
    assert rule in err.value.rule and "\n" not in str(err.value)


@pytest.mark.parametrize("command", [["dag", "{plan}", "--format", "dot", "--out", "{d}/o"], ["check", "{plan}"]])
def test_a_malformed_plan_file_is_one_line_and_exit_2(tmp_path, command):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(_edited(_set("verdict", "status", "maybe"))))
    r = CliRunner().invoke(main, [a.format(plan=path, d=tmp_path) for a in command])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines == ["error: plan.verdict.status = 'maybe': must be one of feasible, requirements_unmet, does_not_fit"]


# ---------------------------------------------------------------------------------------------
# Pools: one place


@cache
def _disaggregated_text() -> str:
    problem = problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h200", "gpus": 8,
                                "workload": {"isl": 2000, "osl": 500, "concurrency": 64}})
    cand = evaluate_disaggregated(problem, parse_strategy("dp=2,ep=2"), parse_strategy("dp=4,ep=4"))
    return _text(candidate_document(problem, cand))


def test_pools_come_from_the_file(tmp_path):
    doc = json.loads(_disaggregated_text())
    doc["phases"]["prefill"]["batch_per_attention_dp_rank"] = 3.0  # the file's operating point, not a recomputed one
    pools = pools_of(from_json(doc))
    # dp=2,ep=2 is one instance of tp 1 x dp 2 x pp 1 = 2 GPUs (0-1); the decode pool dp=4,ep=4 is
    # 4 GPUs and starts after the prefill pool's 2 (GPUs 2-5).
    assert [(p.role, p.layout.gpus, p.offset) for p in pools] == [("prefill", 2, 0), ("decode", 4, 2)]
    assert pools[0].B == {"prefill": 3.0}
    # Every reader gets the same pools: dag, export, run and lint-dag (cli.dag_cmd.resolve), and pools_from_doc.
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    problem, via_cli = resolve(str(path), None, None)
    assert via_cli == pools and pools_from_doc(copy.deepcopy(doc))[1] == pools
    assert problem == from_json(doc).problem_spec


PLAN_KEYS = {"phases", "strategy", "pools", "memory_per_gpu_bytes", "verdict", "requirements_check", "runner_ups",
             "pareto", "pruned", "aggregated_vs_disaggregated", "budget_use", "simulation", "operators"}
"""Keys only a plan document has."""
READERS = ("plan", "report", "check", "export", "dag", "cli")
"""Packages that read plans."""


def _modules():
    for package in READERS:
        for path in sorted((SRC / package).rglob("*.py")):
            yield path.relative_to(SRC).as_posix(), ast.parse(path.read_text())


def _key(node: ast.AST) -> str | None:
    """The string key of ``x["key"]`` or ``x.get("key")``."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return node.slice.value if isinstance(node.slice.value, str) else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def test_no_reader_walks_the_plan_json_and_only_plan_pools_parses_strategies():
    walks, parses = [], []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if _key(node) in PLAN_KEYS and name != "plan/plan_json.py":
                walks.append(f"{name}:{node.lineno} [{_key(node)!r}]")
            called = getattr(node.func, "id", getattr(node.func, "attr", "")) if isinstance(node, ast.Call) else None
            if called == "parse_strategy" and any(isinstance(a, ast.Attribute) and a.attr == "string"
                                                  for a in ast.walk(node)):
                parses.append(name)
    assert walks == []
    assert parses == ["plan/pools.py"]


def test_a_restated_section_edited_apart_from_the_problem_is_refused():
    # The workload is read from problem_spec; a file whose restated workload says otherwise would
    # otherwise be silently ignored.
    doc = json.loads(json.dumps(plan_document(search(problem_from_raw(
        {"model": "qwen3-30b-a3b", "gpu": "h100", "gpus": 8, "workload": {"isl": 2000, "osl": 500}})))))
    from_json(doc)  # as written: reads
    edited = doc | {"workload": doc["workload"] | {"isl_tokens": 4000}}
    with pytest.raises(SpecError) as err:
        from_json(edited)
    assert err.value.field == "plan.workload" and "problem_spec" in err.value.rule
    with pytest.raises(SpecError) as err:
        from_json(doc | {"my_note": "x"})
    assert err.value.field == "plan.my_note"
    with pytest.raises(SpecError) as err:
        from_json(doc | {"budget_use": doc["budget_use"] | {"spare": 1}})
    assert err.value.field == "plan.budget_use.spare"


def test_a_verdict_key_of_another_status_is_refused():
    # smallest_fit belongs to a does_not_fit verdict; on a feasible plan it would be dropped unread.
    doc = json.loads(json.dumps(plan_document(search(problem_from_raw(
        {"model": "qwen3-30b-a3b", "gpu": "h100", "gpus": 8, "workload": {"isl": 2000, "osl": 500}})))))
    assert doc["verdict"]["status"] != "does_not_fit"
    with pytest.raises(SpecError) as err:
        from_json(doc | {"verdict": doc["verdict"] | {"smallest_fit": None}})
    assert err.value.field == "plan.verdict.smallest_fit"
