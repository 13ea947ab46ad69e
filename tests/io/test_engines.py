"""Engine profiles: releases pick their facts, problems may restate a field, bad names fail in one line."""

import pytest

from meshplan.errors import SpecError
from meshplan.io.engines import load_engine, version_key
from meshplan.io.problem_file import problem_from_raw
from meshplan.specs.engine import A2ABackend, Engine


def test_version_strings():
    assert version_key("0.5.8.post1") == (0, 5, 8)
    assert version_key("1.2.0rc6") == (1, 2, 0)
    assert version_key("v0.11") == (0, 11, 0)
    assert version_key("nightly-dev") is None


def test_releases_pick_their_facts():
    # catalog/engines/trtllm.yaml: 1.0-1.2 use allgather + reduce-scatter outside NVL72, 1.3 the
    # NVLink one-sided all-to-all first.
    assert load_engine("trtllm", "1.2.0rc6").a2a_backend is A2ABackend.ALLGATHER_REDUCESCATTER
    assert load_engine("trtllm", "1.3.0").a2a_backend is A2ABackend.ALL_TO_ALL
    # No version, or one that is not a number, gives the newest facts.
    assert load_engine("trtllm").a2a_backend is A2ABackend.ALL_TO_ALL
    assert load_engine("trtllm", "main").a2a_backend is A2ABackend.ALL_TO_ALL
    # A release older than the first entry gets the first entry's facts.
    assert load_engine("trtllm", "0.9").a2a_backend is A2ABackend.ALLGATHER_REDUCESCATTER


def test_sglang_token_budget_changed_in_0_5_3():
    # catalog/engines/sglang.yaml [C]: chunked_prefill_size on a GPU of 35-60 GiB was 8,192 tokens
    # up to 0.5.2 and 4,096 from 0.5.3; on 80 GB GPUs it stays 8,192.
    old, new = load_engine("sglang", "0.5.2"), load_engine("sglang", "0.5.3")
    assert old.tier(old.token_budget, 40 * 2**30) == 8192
    assert new.tier(new.token_budget, 40 * 2**30) == 4096
    assert new.tier(new.token_budget, 80 * 2**30) == 8192


def test_engine_names_are_forgiving_about_spelling():
    assert load_engine("TensorRT-LLM").engine is Engine.TRTLLM
    assert load_engine("SGLang").engine is Engine.SGLANG


def test_unknown_engine_names_the_field():
    with pytest.raises(SpecError) as err:
        load_engine("tgi")
    assert err.value.field == "engine" and "trtllm, sglang or vllm" in str(err.value)


def _problem(engine, calibration="silicon-dev"):
    return problem_from_raw({"model": "llama-3.1-8b", "gpu": "h100-sxm", "engine": engine,
                             "calibration": calibration, "workload": {"isl": 1000, "osl": 100}})


def test_a_problem_may_restate_a_profile_field_and_calibration_keeps_it():
    p = _problem({"name": "vllm", "host_gap_s": 0.002, "overlap_scheduler": False})
    assert p.engine.host_gap_s == 0.002 and p.engine.overlap_scheduler is False
    assert any("host_gap_s 0.002" in n.message for n in p.notes)
    # The bundled calibration fits vLLM's host_gap_s, but the problem's own value wins.
    plain = _problem("vllm")
    assert plain.engine.host_gap_s != 0.002


def test_unknown_engine_field_is_one_line_with_a_suggestion():
    with pytest.raises(SpecError) as err:
        _problem({"name": "sglang", "host_gap": 0.001})
    assert err.value.field == "engine.host_gap" and "host_gap_s" in str(err.value)


def test_attention_dp_balancing_is_tensorrt_llms_alone():
    assert _problem({"name": "trtllm", "attention_dp_balance": True}).engine.adp_balance_timeout_iters == 50
    with pytest.raises(SpecError) as err:
        _problem({"name": "sglang", "attention_dp_balance": True})
    assert err.value.field == "engine.attention_dp_balance" and "only TensorRT-LLM" in str(err.value)


def test_a_receive_interval_is_sglangs_alone():
    assert _problem({"name": "sglang", "recv_interval_iters": 30}).engine.recv_interval_iters == 30
    with pytest.raises(SpecError) as err:
        _problem({"name": "vllm", "recv_interval_iters": 30})
    assert err.value.field == "engine.recv_interval_iters" and "only SGLang" in str(err.value)


def test_bad_engine_field_value_names_the_rule():
    with pytest.raises(SpecError) as err:
        _problem({"name": "sglang", "host_gap_s": -1})
    assert "host_gap_s" in err.value.field


@pytest.mark.parametrize("engine, field", [
    ({"name": "vllm", "engine": "sglang"}, "engine.engine"),  # the identity comes from name and version
    ({"name": "vllm", "display_name": "x"}, "engine.display_name"),
    ({"name": "vllm", "token_budget": []}, "engine.token_budget"),
])
def test_engine_identity_and_empty_tiers_are_refused(engine, field):
    with pytest.raises(SpecError) as err:
        _problem(engine)
    assert err.value.field == field
