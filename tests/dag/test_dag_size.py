"""The DAG's size counted from the layout before building (issue 12 point 9), and the limits on
what `meshplan dag` builds and draws."""

import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from meshplan.cli.main import main
from meshplan.dag import build, export
from meshplan.dag.build import build_dag, dag_size
from meshplan.dag.size import MAX_BUILD_NODES, MAX_RENDER_NODES, DagSize, count_size
from meshplan.errors import SpecError
from meshplan.io.problem_file import load_problem, problem_from_raw
from meshplan.specs.model import LayerKind
from meshplan.strategy.layout import parse_strategy
from tests.dag.test_dag import b200_problem, model_strategy_cases

STRATEGIES = {
    "moe": ["tp=1", "dp=4,ep=4", "tp=2,dp=2,ep=2,etp=2", "pp=3,dp=2,ep=2", "tp=2,dp=2,ep=1,etp=4",
            "instances=2,dp=2,ep=2", "instances=2,pp=2,tp=2,dp=2,ep=4"],
    "dense": ["tp=1", "tp=4", "pp=3,tp=2", "instances=2,tp=2", "instances=2,pp=2,tp=2,dp=2"],
}
DEEPSEEK = ["--model", "deepseek-v3", "--gpu", "h800", "--weights", "fp8", "--isl", "4000", "--osl", "500"]


def _cases():
    return model_strategy_cases(STRATEGIES)


def _built(p, lay, phase, expand):
    dag = build_dag(p, lay, phase, 2.0, expand=expand)
    return DagSize(nodes=len(dag.nodes), edges=len(dag.edges))


@pytest.mark.parametrize("key, strategy", list(_cases()))
def test_count_equals_the_built_dag(key, strategy):
    p = b200_problem(key)
    lay = parse_strategy(strategy, is_moe=p.model.is_moe)
    for phase in ("prefill", "decode"):
        for expand in (False, True):
            assert dag_size(p, lay, phase, 2.0, expand=expand) == _built(p, lay, phase, expand), (phase, expand)


def test_hand_counted_dense_tp2():
    # Llama-3.1-8B (32 dense layers), tp=2, expanded: 2 GPUs, 1 tp group.
    # nodes: input 1 + embedding 2 + embed_all_reduce 1
    #        + 32 layers x (4 attention steps x 2 GPUs + tp all-reduce 1 + 2 ffn steps x 2 GPUs + all-reduce 1 = 14)
    #        + lm_head 2 + logits_gather 1 + output 1 = 8 + 448 = 456
    # edges: embedding 2 + embed_all_reduce 2 (one per member)
    #        + 32 x (8 + 2 + 4 + 2 = 16) + lm_head 2 + logits_gather 2 + output 1 (one distinct tail) = 9 + 512 = 521
    p = b200_problem("llama-3.1-8b")
    lay = parse_strategy("tp=2", is_moe=False)
    assert dag_size(p, lay, "decode", 2.0, expand=True) == _built(p, lay, "decode", True) == DagSize(nodes=456, edges=521)


def test_hand_counted_moe_all_to_all():
    # Seed 10B MoE (16 MoE layers, no shared experts), dp=2,ep=2, decode, expanded: 2 GPUs, one ep
    # group, the cost model charges the all-to-all (ep_dispatch, ep_combine).
    # per layer nodes: attention 4 x 2 + ffn_norm, router 2 x 2 + dispatch 1 + experts 2 + combine 1 + moe_sum 2 = 18
    # per layer edges: 8 + 4 + dispatch 2 x 2 (tail and the gate's dashed edge) + experts 2 + combine 2 + moe_sum 2 = 22
    # nodes: input 1 + embedding 2 + 16 x 18 + lm_head 2 + output 1 = 294
    # edges: embedding 2 + 16 x 22 + lm_head 2 + output 2 (two distinct tails) = 358
    p = load_problem(None)
    lay = parse_strategy("dp=2,ep=2")
    assert dag_size(p, lay, "decode", 8.0, expand=True) == _built(p, lay, "decode", True) == DagSize(nodes=294, edges=358)


def test_hand_counted_pure_count_with_shared_experts_and_pipeline():
    # tp=1, dp=2, ep=2, pp=2 on one instance; 2 MoE layers with shared experts, all-to-all charged.
    # Units per stage 2. Per MoE layer: 20 nodes (the 18 above + 2 shared), 26 edges (22 + shared 2
    # + moe_sum's second input 2). pp_send_recv: 2 nodes, 2 edges into stage 1.
    # nodes: 1 + 2 + 2 + 2 x 20 + 2 + 1 = 48; edges: 2 + 2 + 2 x 26 + 2 + 2 = 60
    lay = parse_strategy("pp=2,dp=2,ep=2", is_moe=True)
    size = count_size(lay, [LayerKind.MOE, LayerKind.MOE], charged=frozenset({"ep_dispatch", "ep_combine"}),
                      shared_experts=True, expand=True)
    assert size == DagSize(nodes=48, edges=60)


def test_build_refused_before_building(monkeypatch):
    def not_built(*args, **kwargs):
        raise AssertionError("built a DAG past the limit")

    monkeypatch.setattr(build, "_Builder", not_built)
    p = problem_from_raw({"model": "deepseek-v3", "gpu": "h800", "precision": {"weights": "fp8"},
                          "workload": {"isl": 4000, "osl": 500}})
    lay = parse_strategy("instances=6,tp=4,dp=80,ep=320", is_moe=True)
    size = dag_size(p, lay, "decode", 64.0, expand=True)
    assert size.nodes > MAX_BUILD_NODES
    with pytest.raises(SpecError) as err:
        build_dag(p, lay, "decode", 64.0, expand=True)
    assert err.value.field == "--expand" and f"{size.nodes:,} nodes" in str(err.value)


def test_write_refuses_pictures_past_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "MAX_RENDER_NODES", 100)
    dag = build_dag(load_problem(None), parse_strategy("dp=2,ep=2"), "decode", 8.0, expand=True)
    with pytest.raises(SpecError) as err:
        export.write(dag, tmp_path / "out", ["dot", "svg"], "decode")
    assert err.value.field == "--format" and "294 nodes" in str(err.value)
    assert not (tmp_path / "out").exists()  # refused before anything is written
    assert export.write(dag, tmp_path / "out", ["dot", "json"], "decode") == [
        tmp_path / "out" / "decode.dot", tmp_path / "out" / "decode.json"]


def _dag_cli(*args):
    return CliRunner().invoke(main, ["dag", *args])


def test_cli_skips_pictures_and_writes_dot_and_json(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "MAX_RENDER_NODES", 100)
    r = _dag_cli("--strategy", "dp=2,ep=2", "--expand", "--format", "dot,svg,png,json", "--out", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert "prefill: dp2 ep2, 294 nodes, 358 edges (counted from the layout)" in r.stdout
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "decode_expanded.dot", "decode_expanded.json", "prefill_expanded.dot", "prefill_expanded.json"]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "skipped prefill_expanded.svg, prefill_expanded.png (294 nodes); decode_expanded.svg, "
        "decode_expanded.png (294 nodes): svg and png are drawn up to 100 nodes")


def test_cli_only_pictures_too_big_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "MAX_RENDER_NODES", 100)
    r = _dag_cli("--strategy", "dp=2,ep=2", "--expand", "--format", "svg,png", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2
    assert r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: --format = 'svg,png': the prefill DAG (dp2 ep2) has 294 nodes")
    assert not (tmp_path / "o").exists()
    # The collapsed DAG is small enough to draw, so only svg is fine there.
    ok = _dag_cli("--strategy", "dp=2,ep=2", "--format", "dot", "--out", str(tmp_path / "c"), "--dag-phase", "decode")
    assert ok.exit_code == 0 and (tmp_path / "c" / "decode.dot").exists()


def test_cli_real_limits(tmp_path):
    """The shipped limits, on DeepSeek-V3: 17,462 nodes (dp=ep=32) are not drawn, 1,467,810
    (instances=8 of 320 GPUs) not built; both refused in well under a second of work."""
    r = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "dag", *DEEPSEEK, "--strategy", "dp=32,ep=32",
                        "--expand", "--dag-phase", "decode", "--out", str(tmp_path / "a")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "17,462 nodes, 24,800 edges" in r.stdout
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(
        f"skipped decode_expanded.svg (17,462 nodes): svg and png are drawn up to {MAX_RENDER_NODES:,} nodes")
    assert sorted(f.name for f in (tmp_path / "a").iterdir()) == ["decode_expanded.dot", "decode_expanded.json"]
    r = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "dag", *DEEPSEEK, "--strategy",
                        "instances=8,tp=4,dp=80,ep=320", "--expand", "--format", "dot", "--out", str(tmp_path / "b")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: --expand = 'prefill 8x(tp4 dp80 ep320)': the DAG would have 1,467,810 nodes")
    assert not (tmp_path / "b").exists()


def test_help_states_the_limits_and_exit_codes():
    text = " ".join(_dag_cli("--help").output.split())
    assert f"drawn only up to {MAX_RENDER_NODES:,} nodes" in text
    assert f"No DAG past {MAX_BUILD_NODES:,} nodes is built" in text
    assert f"are drawn up to {MAX_RENDER_NODES:,} nodes; dot and json at any size" in text
    assert "Exit codes: 0" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed (.ci/run installs it)")
def test_one_global_ranking_keeps_dot_fast(tmp_path):
    """Without newrank=true Graphviz took over 5 minutes on this 1,202-node DAG (export._RANKING);
    with it, well under a second."""
    p = problem_from_raw({"model": "deepseek-v3", "gpu": "b200", "precision": {"weights": "fp8"},
                          "workload": {"isl": 512, "osl": 64}})
    dag = build_dag(p, parse_strategy("dp=2,ep=2", is_moe=True), "decode", 8.0, expand=True)
    assert len(dag.nodes) == 1202
    text = export.to_dot(dag)
    assert "newrank=true" in text  # the structural fix; the render below only guards against a hang
    subprocess.run(["dot", "-Tsvg", "-o", str(tmp_path / "d.svg")], input=text, text=True, check=True, timeout=600)
    assert (tmp_path / "d.svg").stat().st_size > 0
