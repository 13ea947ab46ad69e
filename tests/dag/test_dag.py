"""DAG invariants over catalog models and strategies (issue: the deployment DAG)."""

import math
import re
import shutil
import subprocess
import sys
from collections import Counter

import networkx as nx
import pytest

from meshplan.dag.build import build_dag, phase_costs
from meshplan.dag.export import to_dot, to_json
from meshplan.dag.lint import lint_dot
from meshplan.dag.nodes import NodeKind
from meshplan.io.catalog import CATALOG, model_keys
from meshplan.io.problem_file import load_problem, problem_from_raw
from meshplan.strategy.layout import parse_strategy
from meshplan.strategy.mesh import coords_of, experts_of, group
from meshplan.strategy.notation import from_seed

STRATEGIES = {
    "moe": ["tp=1", "dp=4,ep=4", "tp=2,dp=2,ep=2,etp=2", "pp=2,dp=2,ep=2", "tp=2,dp=2,ep=1,etp=4", "instances=2,dp=2,ep=2"],
    "dense": ["tp=1", "tp=4", "pp=2,tp=2", "instances=2,tp=2"],
}


def b200_problem(key):
    return problem_from_raw({"model": key, "gpu": "b200", "precision": {"weights": "fp8"},
                             "workload": {"isl": 512, "osl": 64}})


def model_strategy_cases(strategies=None):
    """(model, strategy) for every catalog model and each strategy its heads and experts divide."""
    for key in model_keys():
        p = b200_problem(key)
        for s in (strategies or STRATEGIES)["moe" if p.model.is_moe else "dense"]:
            lay = parse_strategy(s, is_moe=p.model.is_moe)
            if p.model.num_heads % lay.tp or (p.model.is_moe and p.model.num_experts % lay.ep):
                continue
            yield key, s


CASES = list(model_strategy_cases())


def _multiplicity(n):
    per = n.groups if n.kind is NodeKind.COMM else (1 if n.op in ("input", "output") else len(n.gpus))
    return n.num_layers * per


def _totals(dag):
    flops = sum(n.flops * n.num_layers * len(n.gpus) for n in dag.nodes if n.kind is not NodeKind.COMM)
    hbm = sum(n.hbm_bytes * n.num_layers * len(n.gpus) for n in dag.nodes if n.kind is not NodeKind.COMM)
    comm = sum(n.comm_bytes * n.num_layers * len(n.gpus) for n in dag.nodes if n.kind is NodeKind.COMM)
    mult = Counter()
    for n in dag.nodes:
        mult[n.op] += _multiplicity(n)
    return flops, hbm, comm, mult


@pytest.mark.parametrize("key, strategy", CASES)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_structure_gpus_costs_and_views_agree(key, strategy, phase):
    p = b200_problem(key)
    lay = parse_strategy(strategy, is_moe=p.model.is_moe)
    collapsed = build_dag(p, lay, phase, 2.0)
    expanded = build_dag(p, lay, phase, 2.0, expand=True)
    costs = phase_costs(p, lay, phase, 2.0)
    for dag in (collapsed, expanded):
        g = nx.DiGraph((e.src, e.dst) for e in dag.edges)
        g.add_nodes_from(n.id for n in dag.nodes)
        assert len(g) == len(dag.nodes)  # ids are unique
        assert nx.is_directed_acyclic_graph(g)
        assert [n for n in g if g.in_degree(n) == 0] == [dag.nodes[0].id]  # only the input
        assert [n for n in g if g.out_degree(n) == 0] == [dag.nodes[-1].id]  # only the output
        # Every GPU of the layout appears, and no other.
        assert set().union(*(set(n.gpus) for n in dag.nodes)) == set(range(lay.gpus))
        # Communication bytes are the cost model's (one owner of the formula).
        for n in dag.nodes:
            if n.kind is NodeKind.COMM:
                assert n.comm_bytes == float(costs[n.op].comm_bytes.reshape(-1)[0])
                assert n.comm_bytes > 0
    # Collapsed and expanded agree on FLOPs, bytes and multiplicities.
    a, b = _totals(collapsed), _totals(expanded)
    for x, y in zip(a[:3], b[:3]):
        assert math.isclose(x, y, rel_tol=1e-9)
    assert a[3] == b[3]
    # Expanded: each transfer joins exactly the rank map's group, each compute node sits on one
    # GPU of its own stage, and experts where the rank map says.
    axis = {"tp_all_reduce_attn": "tp", "tp_all_reduce_ffn": "tp", "tp_all_reduce_moe": "tp", "ep_dispatch": "ep",
            "ep_combine": "ep", "etp_reduce_scatter": "etp", "embed_all_reduce": "tp", "logits_gather": "tp"}
    for n in expanded.nodes:
        if n.op in axis:
            assert sorted(n.gpus) == group(n.gpus[0], lay, axis[n.op]), (n.op, n.gpus)
        if n.kind is NodeKind.COMPUTE:
            assert len(n.gpus) == 1 and coords_of(n.gpus[0], lay).pp == n.stage
        if n.op == "experts" and lay.ep > 1:
            m = re.match(r"experts? (\d+)(?:-(\d+))?", n.detail)
            first, last = int(m.group(1)), int(m.group(2) or m.group(1))
            hosted = experts_of(n.gpus[0], lay, p.model.num_experts, redundant=p.assumptions.redundant_experts)
            assert hosted.start == first and hosted.stop - 1 == last


@pytest.mark.parametrize("key, strategy", CASES[::3])
def test_own_dags_lint_clean(key, strategy):
    p = b200_problem(key)
    lay = parse_strategy(strategy, is_moe=p.model.is_moe)
    for phase in ("prefill", "decode"):
        dag = build_dag(p, lay, phase, 2.0)
        assert lint_dot(to_dot(dag), "own.dot", p.model, lay, redundant=p.assumptions.redundant_experts) == []


def test_expanded_dag_lints_clean():
    p = load_problem(None)
    lay = parse_strategy("dp=2,ep=2")
    dag = build_dag(p, lay, "decode", 8.0, expand=True)
    assert lint_dot(to_dot(dag), "own.dot", p.model, lay, redundant=p.assumptions.redundant_experts) == []


def test_node_link_json_round_trips_through_networkx():
    p = load_problem(None)
    dag = build_dag(p, parse_strategy("dp=4,ep=4"), "decode", 8.0)
    data = to_json(dag)
    g = nx.node_link_graph(data, edges="links")
    assert g.number_of_nodes() == len(dag.nodes) and g.number_of_edges() == len(dag.edges)
    shapes = {n["kind"]: n["shape"] for n in data["nodes"]}
    assert shapes == {"compute": "rectangle", "comm": "ellipse", "route": "parallelogram"}
    assert any(link["dashed"] for link in data["links"])  # the gate's selection


def test_seed_style_dag_findings():
    p = load_problem(CATALOG / "problems" / "seed-plan.md")
    lay = from_seed(p.seed_strategy, p.model).layout.with_instances(1)
    text = (CATALOG / "problems" / "seed-style-dag.dot").read_text()
    found = {f.rule.value: f for f in lint_dot(text, "seed-style-dag.dot", p.model, lay,
                                                     redundant=p.assumptions.redundant_experts)}
    assert {"no_predecessor", "no_successor", "vague_gpu_label", "gpu_not_in_layout", "placement",
            "cross_gpu_edge_without_transfer", "missing_operator"} <= set(found)
    assert "Orphan_Norm" in found["no_predecessor"].nodes
    assert "DP_Split" in found["vague_gpu_label"].nodes
    assert "Expert_L1_15" in found["gpu_not_in_layout"].nodes  # GPU 19 of a 16-GPU layout


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed (.ci/run installs it)")
def test_cli_writes_every_format(tmp_path):
    r = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "dag", "--out", str(tmp_path),
                        "--format", "dot,svg,png,json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for phase in ("prefill", "decode"):
        assert (tmp_path / f"{phase}.svg").read_text().lstrip().startswith("<?xml")
        assert (tmp_path / f"{phase}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lint_cli_exit_codes(tmp_path):
    problems = CATALOG / "problems"
    bad = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "lint-dag", str(problems / "seed-style-dag.dot"),
                          "--plan", str(problems / "seed-plan.md"), "--json"], capture_output=True, text=True)
    assert bad.returncode == 1 and '"clean": false' in bad.stdout
    subprocess.run([sys.executable, "-m", "meshplan.cli.main", "dag", "--out", str(tmp_path), "--format", "dot",
                    "--strategy", "dp=4,ep=4"], check=True, capture_output=True)
    good = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "lint-dag", str(tmp_path / "decode.dot"),
                           "--strategy", "dp=4,ep=4"], capture_output=True, text=True)
    assert good.returncode == 0, good.stdout
