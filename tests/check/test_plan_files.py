"""Plan files given to meshplan check: the file itself (cli.check_cmd), meshplan plan JSON/YAML
(check.plan_doc through plan.pools) and meshplan's own Markdown plans (check.plan_markdown)."""

import json

import pytest
from click.testing import CliRunner

from meshplan.cli.check_cmd import build_report
from meshplan.cli.main import main
from meshplan.errors import SpecError

QWEN = "model: qwen3-30b-a3b\ngpu: h100-sxm\ngpus: 8\nworkload: {isl: 1024, osl: 256}\n"


def _check(plan, problem=None):
    return build_report(plan=str(plan), problem_path=None if problem is None else str(problem), vllm=None, sglang=None,
                        trtllm=None, gpu=None, weights=None, isl=None, osl=None, tolerance=0.25)


def _error(plan, problem=None) -> SpecError:
    with pytest.raises(SpecError) as err:
        _check(plan, problem)
    return err.value


def _plan(*args) -> None:
    result = CliRunner().invoke(main, ["plan", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name, content, rule", [
    ("plans", None, "folder"),
    ("plan.md", bytes(range(256)) * 4, "not UTF-8"),  # was a UnicodeDecodeError
    ("plan.md", "# Deployment Plan\n\nDP=1, PP=1, TP=1, EP=16\n".encode("utf-16"), "UTF-16"),
    ("plan.json", b"[1, 2]", "neither a meshplan plan"),
    ("plan.json", b'{"problem_spec": {}, "problem_spec": {}}', "twice"),
    ("missing.md", b"", "no such file"),
])
def test_a_plan_file_that_cannot_be_read_is_one_line(tmp_path, name, content, rule):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif name != "missing.md":
        path.write_bytes(content)
    err = _error(path)
    assert err.field == "PLAN" and name in str(err.value) and rule in err.rule, str(err)


@pytest.fixture(scope="module")
def seed_plan_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    _plan("--json", str(out))
    return json.loads(out.read_text())


@pytest.mark.parametrize("edit, field, value", [
    (lambda d: d.update(gpus_total="many"), "plan.gpus_total", "many"),  # were bare float() ValueErrors
    (lambda d: d.update(ttft_s="fast"), "plan.ttft_s", "fast"),
    (lambda d: d["memory_per_gpu_bytes"].update(total="lots"), "plan.memory_per_gpu_bytes.total", "lots"),
    (lambda d: d.update(gpus_total=1.5), "plan.gpus_total", 1.5),
    (lambda d: d["problem_spec"].update(workload=5), "plan.problem_spec.workload", 5),  # was a ValidationError
    (lambda d: d["phases"]["decode"].pop("strategy"), "plan.phases.decode.strategy", None),  # was a KeyError
])
def test_a_plan_json_is_checked_before_it_is_trusted(tmp_path, seed_plan_json, edit, field, value):
    doc = json.loads(json.dumps(seed_plan_json))
    edit(doc)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    err = _error(path)
    assert (err.field, err.value) == (field, value), str(err)


def test_meshplan_markdown_plan_round_trip(tmp_path):
    """meshplan plan --markdown, then meshplan check of that file: every figure confirmed (it said
    'no complete layout stated' before)."""
    md = tmp_path / "plan.md"
    _plan("--markdown", str(md))  # the bundled seed problem, as check pairs it by default
    r = _check(md)
    figures = {c.subject for c in r.checks if c.verdict.value == "confirmed"}
    assert {"gpus_total", "ttft_s", "tpot_s", "output_tok_s_per_gpu", "memory_per_gpu"} <= figures
    assert not r.any_wrong and r.kind == "meshplan Markdown plan"
    # An edited figure is wrong, on its line: TTFT written 10x smaller.
    lines = md.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("- TTFT "))
    ttft = lines[at].split("TTFT ")[1].split(",")[0]
    value, unit = ttft.split()
    lines[at] = lines[at].replace(f"TTFT {ttft}", f"TTFT {float(value) / 10:.2f} {unit}")
    md.write_text("\n".join(lines) + "\n")
    wrong = [c for c in _check(md).checks if c.verdict.value == "wrong"]
    assert [(c.subject, c.lines) for c in wrong] == [("ttft_s", (at + 1,))]


def test_meshplan_markdown_disaggregated_plan_with_its_problem(tmp_path):
    problem = tmp_path / "p.yaml"
    problem.write_text(QWEN + "serving: disaggregated\n")
    md = tmp_path / "p.md"
    _plan(str(problem), "--markdown", str(md))
    r = _check(md, problem)
    confirmed = {c.subject for c in r.checks if c.verdict.value == "confirmed"}
    assert {"memory_per_gpu (prefill pool)", "memory_per_gpu (decode pool)", "ttft_s"} <= confirmed
    assert not r.any_wrong
    # Paired with the wrong problem (by default the bundled seed problem): refused, naming --problem.
    err = _error(md)
    assert err.field == "--problem" and "qwen3-30b-a3b on h100-sxm" in err.rule


def test_meshplan_markdown_plan_on_two_kinds_of_gpu_with_its_problem(tmp_path):
    # The heading names both GPUs ("on h100-sxm (prefill) and h200 (decode)"); check pairs it with
    # the problem that states them and confirms the pools' memory.
    problem = tmp_path / "p.yaml"
    problem.write_text(QWEN.replace("gpu: h100-sxm", "gpu: h200") + "prefill_gpu: h100\n")
    md = tmp_path / "p.md"
    _plan(str(problem), "--markdown", str(md))
    assert "h100-sxm (prefill) and h200 (decode)" in md.read_text().splitlines()[0]
    r = _check(md, problem)
    confirmed = {c.subject for c in r.checks if c.verdict.value == "confirmed"}
    assert {"memory_per_gpu (prefill pool)", "memory_per_gpu (decode pool)"} <= confirmed
    assert not r.any_wrong
