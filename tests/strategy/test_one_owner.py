"""One owner per fact (DESIGN.md section 13): what one GPU holds is counted in one place, and the
plan text, the memory model, the DAG, the HTML map and the rule checks agree on it."""

import numpy as np
import pytest

from meshplan.cli.evaluate_cmd import run_evaluate
from meshplan.cost.inputs import CostInputs
from meshplan.cost.memory import expert_weight_bytes, kv_heads_per_gpu
from meshplan.errors import SpecError
from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.build import strategy_dict
from meshplan.report.html import gpu_cells
from meshplan.report.markdown import render
from meshplan.plan.pools import Pool
from meshplan.specs.params import attention_params, attention_params_per_gpu, count_params, kv_heads_per_rank
from meshplan.strategy.layout import parse_strategy
from meshplan.strategy.rules import Rule, layout_violations


def _deepseek(redundant: int = 0):
    return problem_from_raw({"model": "deepseek-v3", "gpu": "h200", "precision": {"weights": "fp8"},
                             "workload": {"isl": 1024, "osl": 128}, "assumptions": {"redundant_experts": redundant}})


def test_the_plan_counts_the_redundant_experts_that_memory_charges():
    # DeepSeek-V3 has 256 routed experts; with 32 redundant replicas over ep 32 each GPU holds
    # (256 + 32) / 32 = 9 expert slots (the plan said 256 / 32 = 8 while memory charged 9).
    lay = parse_strategy("dp=32,ep=32", is_moe=True)
    assert strategy_dict(lay, _deepseek(32))["experts_per_gpu"] == 9
    assert strategy_dict(lay, _deepseek(0))["experts_per_gpu"] == 8
    # The memory model charges the same slots: 9 experts' bytes where 8 were, a ratio of 9 / 8.
    with_r = expert_weight_bytes(CostInputs.from_problem(_deepseek(32)), 32, 1)
    without = expert_weight_bytes(CostInputs.from_problem(_deepseek(0)), 32, 1)
    assert float(with_r / without) == pytest.approx(9 / 8, rel=1e-12)


def test_the_gpu_map_shows_the_replica_slots():
    # dp 32 x tp 1 = ep 32 x etp 1: GPU r is expert-parallel rank r and hosts slots 9r .. 9r + 8.
    # GPU 28: slots 252-260, the model's last four experts and five replicas; GPU 31: 279-287, all replicas.
    problem = _deepseek(32)
    lay = parse_strategy("dp=32,ep=32", is_moe=True)
    cells = gpu_cells(problem, [Pool(phases=("decode",), layout=lay, B={"decode": 1.0}, offset=0)])
    assert cells[0]["experts"] == "routed experts 0-8"
    assert cells[28]["experts"] == "routed experts 252-260 (some redundant replicas)"
    assert cells[31]["experts"] == "routed experts 279-287 (redundant replicas)"


def test_every_caller_with_a_problem_reads_its_redundant_experts():
    # 256 experts do not divide over ep 72; 256 + 32 = 288 = 4 x 72 do.
    lay = parse_strategy("dp=72,ep=72", is_moe=True)
    rules = lambda p: {v.rule for v in layout_violations(p, lay)}  # noqa: E731
    assert Rule.EXPERTS_DIVISIBLE in rules(_deepseek(0))
    assert Rule.EXPERTS_DIVISIBLE not in rules(_deepseek(32))


def test_the_executor_refuses_redundant_experts_it_would_not_place():
    pytest.importorskip("torch")  # the executor's modules import torch
    from meshplan.execute.launch import refuse_illegal
    from meshplan.execute.model import config_from_spec
    problem = _deepseek(32)
    lay = parse_strategy("dp=8,ep=8", is_moe=True)
    with pytest.raises(SpecError, match="assumptions.redundant_experts"):
        refuse_illegal(problem, lay, config_from_spec(problem.model))


@pytest.mark.parametrize("kv, tp, expected", [(8, 1, 8), (8, 4, 2), (8, 8, 1), (8, 16, 1), (4, 32, 1)])
def test_kv_heads_per_rank_split_or_replicated(kv, tp, expected):
    # K / tp when tp divides K; one replicated head per GPU when tp exceeds K.
    assert kv_heads_per_rank(kv, tp) == expected
    assert float(kv_heads_per_rank(kv, np.array([tp]))[0]) == expected


def test_attention_parameters_per_gpu_add_up_to_the_model_count():
    # Llama-3.1-70B: D 8192, 64 heads, 8 KV heads, head_dim 128, no bias. At tp 1:
    # q 8192*64*128 = 67,108,864; k, v 2*8192*8*128 = 16,777,216; o 67,108,864; norms 2*8192 = 16,384
    # -> 151,011,328 per layer. At tp 8: q and o / 8, k and v one head each (8 / 8), norms whole:
    # inputs 8,388,608 + 2,097,152 + 16,384 = 10,502,144; output 8,388,608.
    m = problem_from_raw({"model": "llama-3.1-70b", "gpu": "h100", "workload": {"isl": 128, "osl": 8}}).model
    assert attention_params(m) == 151_011_328
    shard = attention_params_per_gpu(m, 8)
    assert (shard.inputs, shard.output) == (10_502_144, 8_388_608)
    assert count_params(m).attention_per_layer == 151_011_328


def test_the_cost_model_reads_the_same_kv_heads():
    ci = CostInputs.from_problem(problem_from_raw({"model": "llama-3.1-70b", "gpu": "h100",
                                                   "workload": {"isl": 128, "osl": 8}}))
    assert list(kv_heads_per_gpu(ci, np.array([1, 4, 16]))) == [8.0, 2.0, 1.0]


def test_the_markdown_plan_names_the_replicas():
    # 9 slots x ep 32 - 256 experts = 32 replicas.
    text = render(run_evaluate(_deepseek(32), "dp=32,ep=32", None, None, None))
    assert "9 routed experts per GPU (of 256 and 32 redundant replicas)" in text
