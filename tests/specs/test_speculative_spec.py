"""Speculative decoding's spec: tokens per iteration by hand, and what it refuses."""

import math

import pytest

from meshplan.errors import SpecError
from meshplan.io.problem_file import problem_from_raw
from meshplan.specs.speculative import SpecMethod, Speculative


def test_tokens_per_step_from_acceptance_per_position():
    # tau = 1 + a1 + a1 a2 + a1 a2 a3 = 1 + 0.85 + 0.85 x 0.63 + 0.85 x 0.63 x 0.63
    #     = 1 + 0.85 + 0.5355 + 0.337365 = 2.722865
    s = Speculative(method=SpecMethod.MTP, draft_tokens=3, acceptance=(0.85, 0.63, 0.63))
    assert math.isclose(s.tokens_per_step, 2.722865)


def test_one_acceptance_value_applies_to_every_position():
    # K = 3, a = 0.8: 1 + 0.8 + 0.64 + 0.512 = 2.952
    s = Speculative(method=SpecMethod.EAGLE, draft_tokens=3, acceptance=(0.8,))
    assert s.position_acceptance == (0.8, 0.8, 0.8)
    assert math.isclose(s.tokens_per_step, 2.952)


def test_mean_accepted_tokens_and_the_rate_that_gives_them():
    s = Speculative(method=SpecMethod.EAGLE, draft_tokens=2, accepted_tokens=0.75)
    assert s.tokens_per_step == 1.75
    # a + a^2 = 0.75 has the root a = 0.5 (0.5 + 0.25).
    assert s.rates == pytest.approx((0.5, 0.5), abs=1e-9)


@pytest.mark.parametrize("fields, blamed", [
    ({"acceptance": (0.8,), "accepted_tokens": 1.0}, "speculative.acceptance"),
    ({}, "speculative.acceptance"),
    ({"acceptance": (0.8, 0.7)}, "speculative.acceptance"),  # 2 values for 3 positions
    ({"acceptance": (1.2,)}, "speculative.acceptance"),
    ({"accepted_tokens": 3.5}, "speculative.accepted_tokens"),  # more than K = 3
])
def test_refusals_name_the_field(fields, blamed):
    with pytest.raises(Exception) as err:
        Speculative(method=SpecMethod.EAGLE, draft_tokens=3, **fields)
    cause = err.value if isinstance(err.value, SpecError) else err.value.errors()[0]["ctx"]["error"]
    assert cause.field == blamed


def _raw(**spec):
    return {"model": "llama-3.1-70b", "gpu": "h100-sxm", "workload": {"isl": 1000, "osl": 500},
            "speculative": spec}


def test_problem_refuses_mtp_on_a_model_without_the_module():
    with pytest.raises(SpecError) as err:
        problem_from_raw(_raw(method="mtp", draft_tokens=2, acceptance=0.8))
    assert err.value.field == "speculative.method" and "multi-token-prediction" in err.value.rule


def test_problem_reads_a_draft_model_and_checks_its_vocabulary():
    p = problem_from_raw(_raw(method="draft", draft_tokens=4, acceptance=0.7, draft_model="llama-3.1-8b"))
    assert p.speculative.draft_model.name == "llama-3.1-8b"
    with pytest.raises(SpecError) as err:  # Qwen3's tokenizer is not Llama's
        problem_from_raw(_raw(method="draft", draft_tokens=4, acceptance=0.7, draft_model="qwen3-32b"))
    assert err.value.field == "speculative.draft_model"


def test_problem_refuses_an_unknown_key():
    with pytest.raises(SpecError) as err:
        problem_from_raw(_raw(method="eagle", draft_tokens=2, acceptance=0.8, acceptence=0.8))
    assert err.value.field == "speculative.acceptence"
