"""Legality rules, strategy strings, rank mapping and notations."""

import pytest

from meshplan.errors import SpecError
from meshplan.io.catalog import load_gpu, load_model
from meshplan.io.problem_file import load_problem
from meshplan.specs.problem import SeedStrategy
from meshplan.strategy.layout import parse_strategy
from meshplan.strategy.mesh import coords_of, group, rank_of, stage_layers
from meshplan.strategy.notation import (from_megatron, from_seed, from_sglang, from_trtllm, from_vllm, to_megatron,
                                        to_sglang, to_vllm)
from meshplan.strategy.rules import Rule, check_layout

DS = load_model("deepseek-v3")
H800 = load_gpu("h800")


def rules(**kw):
    lay = parse_strategy(",".join(f"{k}={v}" for k, v in kw.items()))
    return {v.rule for v in check_layout(DS, H800, lay.tp, lay.dp, lay.pp, lay.ep, lay.etp, redundant=0)}


def test_defaults_fold_ep_over_the_stage():
    lay = parse_strategy("tp=4,dp=8")
    assert (lay.instances, lay.pp, lay.ep, lay.etp, lay.gpus) == (1, 1, 32, 1, 32)


def test_rules_each_fire():
    assert rules(tp=4, dp=8, ep=16) == {Rule.FOLDING}
    assert Rule.HEADS_DIVISIBLE in rules(tp=3, dp=1, ep=3)
    assert Rule.EXPERTS_DIVISIBLE in rules(tp=1, dp=6, ep=6)
    assert Rule.TP_INSIDE_NODE in rules(tp=16, dp=1, ep=16)
    assert Rule.PP_LAYERS in rules(pp=62)
    assert rules(tp=8, dp=4, ep=32) == set()


def test_gpu_budget_rule():
    found = check_layout(DS, H800, 1, 32, 1, 32, 1, redundant=0, gpus=32, budget=16)
    assert [v.rule for v in found] == [Rule.GPU_BUDGET]


def test_bad_strategy_strings():
    for text in ("tp=0", "tq=2", "tp=2,tp=4", "tp"):
        with pytest.raises(SpecError):
            parse_strategy(text)


def test_rank_round_trip_and_groups():
    lay = parse_strategy("instances=2,pp=2,tp=2,dp=4,ep=8")
    for r in range(lay.gpus):
        assert rank_of(coords_of(r, lay), lay) == r
    assert group(21, lay, "tp") == [20, 21]
    assert group(21, lay, "ep") == list(range(16, 24))
    assert group(1, lay, "pp") == [1, 9]


def test_uneven_stages():
    assert [len(s) for s in stage_layers(61, 4)] == [16, 15, 15, 15]


def test_engine_notations():
    assert from_vllm(8, 2, enable_expert_parallel=True).ep == 16
    assert from_vllm(8, 2).etp == 16
    lay = from_sglang(16, 16, True, 16)
    assert (lay.tp, lay.dp, lay.ep, lay.etp) == (1, 16, 16, 1)
    assert from_sglang(**to_sglang(lay)) == lay
    assert from_trtllm(8, enable_attention_dp=True, moe_expert_parallel_size=8).dp == 8
    with pytest.raises(ValueError):
        to_vllm(parse_strategy("tp=8,ep=2,etp=4"))
    with pytest.raises(SpecError):
        from_sglang(16, 3, True)


def test_seed_reading_of_qwen3_fixed_strategy():
    # TP16 x PP4 x DP4 = 256 GPUs, not the 128 stated; with 128 GPUs dp = 128 / (16*4) = 2,
    # tp16 x dp2 = 32 = ep32 x etp1.
    reading = from_seed(SeedStrategy(gpus=128, tp=16, pp=4, dp=4, ep=32), load_model("qwen3-235b-a22b"))
    assert not reading.consistent
    assert (reading.layout.dp, reading.layout.etp, reading.layout.gpus) == (2, 1, 128)


def test_megatron_round_trip():
    # tp 2, ep 8, etp 1 over 16 GPUs with pp 2: dp = 8 x 1 / 2 = 4 per stage, 16 GPUs per instance.
    lay = from_megatron(2, 2, 8, 1, world_size=32)
    assert (lay.instances, lay.dp, lay.gpus_per_instance) == (2, 4, 16)
    back = to_megatron(lay)
    assert from_megatron(back["tensor_model_parallel_size"], back["pipeline_model_parallel_size"],
                         back["expert_model_parallel_size"], back["expert_tensor_parallel_size"], world_size=32) == lay


def test_seed_plan_reading_is_eight_instances_of_sixteen():
    # seed-plan.md's final layout: DP=8, TP=1, PP=1, EP=16, 128 GPUs. The only reading that gives
    # 128 GPUs: 8 independent instances, each attention dp 16 folded with ep 16 (8 x 16 = 128).
    reading = from_seed(SeedStrategy(gpus=128, dp=8, tp=1, pp=1, ep=16), load_problem(None).model)
    assert (reading.layout.instances, reading.layout.dp, reading.layout.ep) == (8, 16, 16)
    assert not reading.consistent
