"""Issue 16 point 4: enums, not strings. The DAG reads each operator's kind from the cost model's
record of it (never from its name), the ring factor is driven by a Collective, and a published case
is read by the schema its ``kind`` names (never by its id)."""

import copy
from pathlib import Path

import pytest
import yaml

from meshplan.cost.roofline import Collective, OpCost, OpKind, ring_factor
from meshplan.dag import build
from meshplan.dag.build import DAG_ONLY_KIND, build_dag, phase_costs
from meshplan.dag.nodes import NodeKind
from meshplan.errors import SpecError
from meshplan.fidelity.cases import CaseKind, predict_cases
from meshplan.io.catalog import CATALOG
from meshplan.io.problem_file import problem_from_raw
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import Axis, parse_strategy
from meshplan.strategy.mesh import group


def _problem(model: str, engine: dict | None = None):
    return problem_from_raw({"model": model, "gpu": "b200", "precision": {"weights": "fp8"},
                             "workload": {"isl": 512, "osl": 64}, "engine": engine or {"name": "vllm"}})


# ---- operator kinds ----------------------------------------------------------------------------

def test_node_kind_comes_from_the_record_whatever_its_name():
    # Names no set of names ever held: the record alone says what the node is.
    assert NodeKind.of(OpCost(name="never_seen_transfer", kind=OpKind.COMM)) is NodeKind.COMM
    assert NodeKind.of(OpCost(name="never_seen_gemm", kind=OpKind.COMPUTE)) is NodeKind.COMPUTE
    assert NodeKind.of(OpCost(name="never_seen_gate", kind=OpKind.COMPUTE, routes=True)) is NodeKind.ROUTE


@pytest.mark.parametrize("phase", [Phase.PREFILL, Phase.DECODE])
def test_every_dag_node_takes_its_kind_from_its_op_record(phase):
    # SGLang with DeepEP's all-to-all, so the tokens move by ep_dispatch and ep_combine.
    p = _problem("deepseek-v3", {"name": "sglang", "a2a_backend": "all_to_all"})
    lay = parse_strategy("tp=2,dp=2,ep=4", is_moe=True)
    costs = phase_costs(p, lay, phase, 8.0)
    dag = build_dag(p, lay, phase, 8.0, expand=True)
    without_record = set()
    for n in dag.nodes:
        if n.op in costs:
            assert n.kind is NodeKind.of(costs[n.op]), n.op
        else:
            assert n.kind is DAG_ONLY_KIND, n.op
            without_record.add(n.op)
    # Only the DAG's own endpoints and the MoE sum have no operator in the cost model.
    assert without_record == {"input", "output", "moe_sum"}
    kinds = {n.op: n.kind for n in dag.nodes}
    assert kinds["router"] is NodeKind.ROUTE  # cost.layer marks it routes=True
    assert kinds["ep_dispatch"] is NodeKind.COMM and kinds["tp_all_reduce_attn"] is NodeKind.COMM
    assert kinds["experts"] is NodeKind.COMPUTE and kinds["qkv_proj"] is NodeKind.COMPUTE


def test_a_record_of_another_kind_changes_the_node_not_its_name(monkeypatch):
    # Give the TP all-reduce a compute record: a name-matching DAG would still draw a transfer.
    real = build.phase_costs

    def relabelled(*args):
        costs = dict(real(*args))
        op = costs["tp_all_reduce_attn"]
        costs["tp_all_reduce_attn"] = OpCost(name=op.name, kind=OpKind.COMPUTE, time_s=op.time_s)
        return costs

    monkeypatch.setattr(build, "phase_costs", relabelled)
    dag = build_dag(_problem("llama-3.1-8b"), parse_strategy("tp=2", is_moe=False), Phase.DECODE, 8.0)
    assert {n.kind for n in dag.nodes if n.op == "tp_all_reduce_attn"} == {NodeKind.COMPUTE}
    assert {n.kind for n in dag.nodes if n.op == "tp_all_reduce_ffn"} == {NodeKind.COMM}


def test_dag_phase_is_the_enum_and_text_reads_the_same():
    p, lay = _problem("llama-3.1-8b"), parse_strategy("tp=2", is_moe=False)
    dag = build_dag(p, lay, Phase.DECODE, 8.0)
    assert dag.phase is Phase.DECODE
    assert [n.id for n in build_dag(p, lay, "decode", 8.0).nodes] == [n.id for n in dag.nodes]


# ---- collectives -------------------------------------------------------------------------------

def test_collective_drives_the_ring_factor():
    # NCCL ring: an all-reduce sends 2(n-1)/n of the buffer per GPU, all-gather and reduce-scatter
    # (n-1)/n. n = 4: 2 x 3/4 = 1.5 and 3/4 = 0.75; n = 1 sends nothing.
    assert float(ring_factor(4, Collective.ALL_REDUCE)) == 1.5
    assert float(ring_factor(4, Collective.REDUCE_SCATTER)) == 0.75
    assert float(ring_factor(4, Collective.ALL_GATHER)) == 0.75
    assert float(ring_factor(1, Collective.ALL_REDUCE)) == 0.0
    with pytest.raises(AttributeError):  # a name is not a collective: a string has no ring passes
        ring_factor(4, "all_reduce")


def test_cost_model_tp_all_reduce_is_an_all_reduce():
    # Llama-3.1-8B decode, 8 sequences on one attention-dp rank, tp = 2: the all-reduce after
    # attention carries the [T, D] = [8, 4096] activations at 2 bytes (bf16); each GPU sends
    # 2 x (2-1)/2 = 1 buffer: 8 x 4096 x 2 = 65,536 bytes.
    costs = phase_costs(_problem("llama-3.1-8b"), parse_strategy("tp=2", is_moe=False), Phase.DECODE, 8.0)
    assert float(costs["tp_all_reduce_attn"].comm_bytes) == 65_536


def test_mesh_groups_by_axis():
    # tp=2, dp=4 on 8 GPUs: rank 5 is dp rank 2, tp rank 1 (rank = dp x tp + tp_rank).
    lay = parse_strategy("tp=2,dp=4,ep=8", is_moe=True)
    assert group(5, lay, Axis.TP) == [4, 5]
    assert group(5, lay, Axis.DP) == [1, 3, 5, 7]
    with pytest.raises(ValueError):  # the axis is read as an Axis: an unknown name is refused
        group(5, lay, "tensor")


# ---- published cases by schema -------------------------------------------------------------------

def _bundled() -> list[dict]:
    return yaml.safe_load((CATALOG / "cases" / "published.yaml").read_text())["cases"]


def _write(tmp_path: Path, cases: list[dict]) -> str:
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump({"cases": [copy.deepcopy(c) for c in cases]}))  # no YAML aliases
    return str(path)


def test_every_bundled_case_states_a_known_kind():
    assert {c["kind"] for c in _bundled()} <= set(CaseKind)


@pytest.mark.parametrize("kind", ["blog_post", None, 3])
def test_a_case_of_unknown_kind_is_refused_naming_the_field(tmp_path, kind):
    case = next(c for c in _bundled() if c["id"] == "trt-dsr1-b200-maxtput-fp8kv") | {"kind": kind}
    if kind is None:
        del case["kind"]
    with pytest.raises(SpecError) as err:
        predict_cases(_write(tmp_path, [case]))
    assert err.value.field == "cases.trt-dsr1-b200-maxtput-fp8kv.kind"
    assert err.value.value == kind
    assert "max_throughput" in err.value.rule


def test_a_case_without_its_engine_is_refused_naming_the_field(tmp_path):
    case = {k: v for k, v in next(c for c in _bundled() if c["id"] == "sglang-gb200-decode").items() if k != "engine"}
    with pytest.raises(SpecError) as err:
        predict_cases(_write(tmp_path, [case]))
    assert err.value.field == "cases.sglang-gb200-decode.engine" and err.value.value is None
    assert "bundled copy" in err.value.rule  # the shared file predates the field: the rule says where it is


def test_a_case_is_read_by_its_kind_not_its_id(tmp_path):
    # The min-latency case under a new id keeps its prediction: MTP comes from its speculative field.
    minlat = next(c for c in _bundled() if c["id"] == "trt-dsr1-b200-minlat")
    renamed = minlat | {"id": "my-own-run"}
    plain = {k: v for k, v in minlat.items() if k != "speculative"} | {"id": "no-speculation"}
    rows = predict_cases(_write(tmp_path, [minlat, renamed, plain]))
    by_id = {r.case: r for r in rows}
    assert by_id["my-own-run"].predicted == by_id["trt-dsr1-b200-minlat"].predicted
    assert "MTP, acceptance assumed" in by_id["my-own-run"].figure
    # Without speculative decoding one token per step: slower per user, and the figure says nothing of MTP.
    assert by_id["no-speculation"].predicted < by_id["my-own-run"].predicted
    assert "MTP" not in by_id["no-speculation"].figure


def test_an_unpublished_acceptance_is_assumed_only_for_mtp(tmp_path):
    minlat = next(c for c in _bundled() if c["id"] == "trt-dsr1-b200-minlat")
    eagle = minlat | {"speculative": {"method": "eagle", "draft_tokens": 3, "acceptance": None}}
    with pytest.raises(SpecError) as err:
        predict_cases(_write(tmp_path, [eagle]))
    assert err.value.field == "cases.trt-dsr1-b200-minlat.speculative.acceptance"


def test_a_phase_outside_prefill_and_decode_is_refused(tmp_path):
    case = next(c for c in _bundled() if c["id"] == "sglang-gb200-decode")
    case["phases"] = {"both": case["phases"]["decode"]}
    with pytest.raises(SpecError) as err:
        predict_cases(_write(tmp_path, [case]))
    assert err.value.field == "cases.sglang-gb200-decode.phases" and err.value.value == "both"
