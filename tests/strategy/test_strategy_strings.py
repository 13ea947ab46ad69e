"""Strategy strings and foreign notations: labels as meshplan prints them, ASCII digits, limits,
and every refusal a one-line SpecError naming the field."""

import itertools

import pytest

from meshplan.errors import SpecError
from meshplan.io.catalog import load_model
from meshplan.specs.problem import SeedStrategy
from meshplan.strategy.layout import MAX_DEGREE, MAX_GPUS, Layout, parse_strategy
from meshplan.strategy.notation import from_megatron, from_seed, from_sglang, from_trtllm, from_vllm

DENSE = load_model("llama-3.1-8b")
MOE = load_model("qwen3-30b-a3b")


def test_every_printed_layout_reads_back():
    for inst, pp, tp, dp, ep, etp in itertools.product((1, 3), (1, 2), (1, 4), (1, 8), (1, 2, 32), (1, 2)):
        lay = Layout(instances=inst, pp=pp, tp=tp, dp=dp, ep=ep, etp=etp)
        assert parse_strategy(lay.short) == lay, lay.short
        assert parse_strategy(f"aggregated: {lay.short}  ({lay.gpus} GPUs)") == lay


@pytest.mark.parametrize("label, degrees", [
    ("tp8 dp2", dict(tp=8, dp=2)),
    ("4x(dp2 etp2)", dict(instances=4, dp=2, etp=2)),
    ("prefill: 8x(1 GPU)  (8 GPUs)", dict(instances=8)),
    ("decode dp8 ep8", dict(dp=8, ep=8)),
    ("1 GPU", {}),
])
def test_labels_are_read_as_printed(label, degrees):
    assert parse_strategy(label) == Layout(**degrees)


def test_key_value_form_keeps_its_defaults():
    assert parse_strategy("tp=4,dp=8") == Layout(tp=4, dp=8, ep=32)
    assert parse_strategy("tp=4,dp=8", is_moe=False) == Layout(tp=4, dp=8)
    assert parse_strategy("") == Layout()


@pytest.mark.parametrize("text, shown", [
    ("prefill 2x(dp8 etp8) + decode dp8 ep8", "more than one pool"),
    ("tp=\u00b2", "\u00b2"), ("tp=\u0663", "\u0663"), ("tp=\uff11", "\uff11"), ("tp\u00b2", "\u00b2"),
    ("tp=0", "'0'"), ("tp=-1", "'-1'"), ("tp=1.5", "'1.5'"), ("tp=abc", "'abc'"),
    ("dp=99999999999999999999", "at most 100,000"), (f"dp={MAX_DEGREE + 1}", "at most 100,000"),
    ("tp=" + "9" * 5000, "at most 100,000"),
    ("dp=1000,instances=1001", f"at most {MAX_GPUS:,}"),
    ("tp8 dp2 (8 GPUs)", "comes to 16"), ("tp8 xp2", "'xp2'"), ("tp8 tp2", "given twice"), ("4x()", "no layout"),
    ("tp=4,\ndp=8,\nfoo", "'foo'"),
])
def test_bad_strategies_are_one_line_spec_errors(text, shown):
    with pytest.raises(SpecError) as err:
        parse_strategy(text)
    assert err.value.field == "strategy" and shown in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("stated, field", [
    (dict(tp=0), "seed_strategy.tp"), (dict(ep=-4), "seed_strategy.ep"), (dict(pp=10**20), "seed_strategy.pp"),
    (dict(gpus=0, tp=1), "seed_strategy.gpus"), (dict(sp=0), "seed_strategy.sp"),
])
def test_seed_degrees_are_never_read_as_one(stated, field):
    with pytest.raises(SpecError) as err:
        from_seed(SeedStrategy(**stated), MOE)
    assert err.value.field == field


def test_no_seed_layout_is_a_spec_error():
    with pytest.raises(SpecError, match="states no layout"):
        from_seed(None, MOE)


@pytest.mark.parametrize("call, flag", [
    (lambda: from_vllm(0), "--tensor-parallel-size"), (lambda: from_vllm(2, -1), "--data-parallel-size"),
    (lambda: from_sglang(8, 0, True), "--dp-size"), (lambda: from_sglang(8, ep_size=0), "--ep-size"),
    (lambda: from_trtllm(8, moe_expert_parallel_size=0), "moe_expert_parallel_size"),
    (lambda: from_trtllm(8, moe_expert_parallel_size=3), "moe_expert_parallel_size"),
    (lambda: from_megatron(0), "tensor_model_parallel_size"), (lambda: from_megatron(2, world_size=0), "world_size"),
])
def test_engine_degrees_name_the_engine_flag(call, flag):
    with pytest.raises(SpecError) as err:
        call()
    assert err.value.field == flag


def test_engine_notations_still_read_valid_degrees():
    assert from_vllm(2, 4, enable_expert_parallel=True) == Layout(tp=2, dp=4, ep=8)
    assert from_sglang(8, 8, True, 8) == Layout(dp=8, ep=8)
    assert from_trtllm(8, moe_expert_parallel_size=4) == Layout(tp=8, ep=4, etp=2)
    assert from_vllm(2, 4, is_moe=DENSE.is_moe) == Layout(instances=4, tp=2)
