"""check.engine_check: a cap on running requests is not memory reserved up front (issue 12 point 6).

Hand values used below (bf16 checkpoints, vLLM's default --gpu-memory-utilization 0.9):
* Llama-3.3-70B: 70,553,706,496 parameters x 2 B / tp 8 = 17.64 GB of weights per GPU (the embedding
  and LM head are split over tp too); KV per token per GPU = 2 (K, V) x 8 KV heads / 8 x 128 x 2 B x
  80 layers = 40,960 B.
* Llama-3.1-8B: 8,030,261,248 x 2 B = 16.06 GB; KV per token = 2 x 8 x 128 x 2 B x 32 = 131,072 B.
* runtime reserve 2 GiB = 2.147 GB (CostAssumptions.runtime_reserve_bytes).
"""

import pytest

from meshplan.check.engine_check import raw_problem
from meshplan.check.engines import parse_sglang, parse_trtllm
from meshplan.cli.check_cmd import build_report
from meshplan.errors import SpecError
from meshplan.io.problem_file import problem_from_raw

LLAMA70 = "vllm serve meta-llama/Llama-3.3-70B-Instruct -tp 8"


def _report(**kw):
    args = dict(plan=None, problem_path=None, vllm=None, sglang=None, trtllm=None, gpu=None, weights=None, isl=None,
                osl=None, tolerance=0.25)
    return build_report(**(args | kw))


def _by(report, subject):
    return next(c for c in report.checks if c.subject == subject)


@pytest.mark.parametrize("gpu, running", [
    # usable 0.9 x 85.52e9 = 76.97e9; less weights 17.64e9, reserve 2.147e9 and room for one longest request
    # ((9000 - 8500) x 40,960 = 0.02e9): 57.16e9 for requests holding 8000 + 1000/2 = 8500 tokens each,
    # 8500 x 40,960 = 348.2e6 B: 164 requests.
    ("h100-sxm", 164),
    # H200: 0.9 x 150.76e9 = 135.68e9; 135.68 - 17.64 - 2.147 - 0.02 = 115.88e9 / 348.2e6 = 332.
    ("h200", 332),
])
def test_default_vllm_command_is_not_wrong_on_memory(gpu, running):
    r = _report(vllm=LLAMA70, gpu=gpu, isl=8000.0, osl=1000.0)
    # Before: 256 (a hard-coded cap) x 9000 tokens x 40,960 B = 94.4 GB per GPU > 57 GB usable: WRONG.
    assert not r.any_wrong, [c.message for c in r.checks if c.verdict.value == "wrong"]
    assert _by(r, "fits").verdict.value == "confirmed"
    conc = _by(r, "concurrency")
    # vLLM's default --max-num-seqs is 1024 on GPUs of 70 GiB or more (catalog/engines/vllm.yaml [B]).
    assert conc.verdict.value == "noted" and conc.claimed == 1024 and conc.meshplan == running
    assert "not memory reserved" in conc.message
    # Predictions are made at what runs at once, and that operating point fits.
    assert r.evaluation["concurrency"] == running and r.evaluation["feasible"]


@pytest.mark.parametrize("gpu", ["h100-sxm", "h200"])
def test_default_vllm_command_at_the_models_full_context(gpu):
    # One request of 131,072 tokens holds 131,072 x 40,960 B = 5.37 GB per GPU: the engine starts.
    r = _report(vllm=LLAMA70 + " --max-model-len 131072", gpu=gpu)
    assert not r.any_wrong and _by(r, "fits").verdict.value == "confirmed"
    assert 0 < _by(r, "concurrency").meshplan < 1024


def test_sglang_running_cap_is_not_a_reservation():
    r = _report(sglang="python -m sglang.launch_server --model-path meta-llama/Llama-3.3-70B-Instruct --tp 8 "
                       "--max-running-requests 4096 --context-length 9000", gpu="h100-sxm", isl=8000.0, osl=1000.0)
    # --mem-fraction-static 0.88: 0.88 x 85.52e9 = 75.26e9; 75.26 - 17.64 - 2.147 - 0.02 = 55.45e9 / 348.2e6 = 159.
    conc = _by(r, "concurrency")
    assert not r.any_wrong and (conc.claimed, conc.meshplan) == (4096, 159)


def test_a_cap_below_what_fits_is_what_runs():
    r = _report(vllm=LLAMA70 + " --max-num-seqs 64", gpu="h100-sxm", isl=8000.0, osl=1000.0)
    conc = _by(r, "concurrency")
    assert (conc.claimed, conc.meshplan) == (64, 64) and "so 64 run at once" in conc.message


def test_one_request_of_the_full_context_must_fit():
    cmd = "vllm serve meta-llama/Llama-3.1-8B --gpu-memory-utilization 0.5 --max-model-len "
    # usable 0.5 x 48e9 = 24e9. 131,072 tokens x 131,072 B = 17.18e9 of KV + 16.06e9 of weights + 2.147e9 reserve =
    # 35.4e9 > 24e9: vLLM refuses to start (check_enough_kv_cache_memory).
    wrong = _by(_report(vllm=cmd + "131072", gpu="l40s", isl=1024.0, osl=256.0), "fits")
    assert wrong.verdict.value == "wrong" and "--max-model-len" in wrong.message
    # 32,768 tokens: 4.29e9 + 16.06e9 + 2.147e9 = 22.5e9 (+ activations of a 2048-token pass, ~0.2e9) < 24e9.
    assert _by(_report(vllm=cmd + "32768", gpu="l40s", isl=1024.0, osl=256.0), "fits").verdict.value == "confirmed"


def test_weights_that_do_not_fit_are_wrong():
    # tp 1: 70.55e9 x 2 B = 141.1 GB of weights on an 85.5 GB GPU.
    r = _report(vllm="vllm serve meta-llama/Llama-3.3-70B-Instruct", gpu="h100-sxm", isl=1024.0, osl=256.0)
    assert _by(r, "fits").verdict.value == "wrong" and "cannot start" in _by(r, "fits").message
    assert _by(r, "concurrency").meshplan == 0


@pytest.mark.parametrize("isl, osl, field", [(float("inf"), 256.0, "--isl"), (1024.0, float("nan"), "--osl"),
                                             (0.0, 256.0, "--isl"), (1024.0, -1.0, "--osl")])
def test_isl_and_osl_are_checked_at_the_flag(isl, osl, field):
    # inf was an OverflowError (int(inf)); 0 was taken for "not given".
    with pytest.raises(SpecError) as err:
        _report(vllm="vllm serve Qwen/Qwen3-30B-A3B", gpu="h100-sxm", isl=isl, osl=osl)
    assert err.value.field == field


def test_lengths_must_fit_the_commands_context():
    with pytest.raises(SpecError) as err:
        _report(vllm="vllm serve Qwen/Qwen3-30B-A3B --max-model-len 1000", gpu="h100-sxm", isl=1024.0, osl=256.0)
    assert err.value.field == "--isl" and "--max-model-len" in err.value.rule
    # One length given: the other is the rest of the context (4096 - 1024 = 3072).
    r = _report(vllm="vllm serve Qwen/Qwen3-30B-A3B --max-model-len 4096", gpu="h100-sxm", isl=1024.0)
    assert r.evaluation["workload"]["osl_tokens"] == 3072


def test_engine_and_kv_format_of_the_command_are_used():
    r = _report(sglang="python -m sglang.launch_server --model-path Qwen/Qwen3-30B-A3B --tp 2 --kv-cache-dtype "
                       "fp8_e4m3", gpu="h100-sxm", isl=1024.0, osl=256.0)
    assert r.evaluation["engine"]["engine"] == "sglang" and r.evaluation["precision"]["kv_cache"] == "fp8"


def test_scheduler_settings_a_command_states_are_costed(tmp_path):
    sgl = parse_sglang("python -m sglang.launch_server --model-path deepseek-ai/DeepSeek-V3 --tp-size 8 "
                       "--scheduler-recv-interval 30")
    assert sgl.engine_settings == (("recv_interval_iters", 30),) and "--scheduler-recv-interval" not in sgl.ignored
    raw = raw_problem(sgl, "h200", None, "cmd", 1000.0, 500.0, 4096, None, "none")
    assert problem_from_raw(raw).engine.recv_interval_iters == 30
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tensor_parallel_size: 8\nenable_attention_dp: true\nattention_dp_config:\n  enable_balance: true\n"
                   "  timeout_iters: 60\n")
    trt = parse_trtllm(str(cfg), "deepseek-ai/DeepSeek-V3")
    # batching_wait_iters left out: TensorRT-LLM's AttentionDpConfig default, 10.
    assert dict(trt.engine_settings) == {"attention_dp_balance": True, "adp_balance_timeout_iters": 60,
                                         "adp_balance_batching_wait_iters": 10}
    cfg.write_text("tensor_parallel_size: 8\nattention_dp_config:\n  enable_balance: maybe\n")
    with pytest.raises(SpecError) as err:
        parse_trtllm(str(cfg), "deepseek-ai/DeepSeek-V3")
    assert err.value.field == "attention_dp_config.enable_balance"
