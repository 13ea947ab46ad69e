"""check.engines and check.trtllm_yaml: a command line or LLM-API YAML is read once, every value
checked as the engine's own parser would, and a bad one reported under the flag the user wrote with
the value as written (issue 12)."""

import pytest

from meshplan.check.engine_check import check_engine
from meshplan.check.engines import parse_sglang, parse_trtllm, parse_vllm
from meshplan.errors import SpecError
from meshplan.specs.dtypes import DType

VLLM = "vllm serve Qwen/Qwen3-30B-A3B "
SGL = "python -m sglang.launch_server --model-path Qwen/Qwen3-30B-A3B "


def _error(parse, arg):
    with pytest.raises(SpecError) as err:
        parse(arg)
    return err.value


@pytest.mark.parametrize("cmd, field, value", [
    (VLLM + "-tp 2 --max-num-seqs -5", "--max-num-seqs", "-5"),  # -5 was read as a flag: cap 1, accepted
    (VLLM + "-tp two", "-tp", "two"),  # was reported as `-tp = None`
    (VLLM + "-tp 0", "-tp", "0"),  # was a pydantic ValidationError from Layout
    (VLLM + "-tp 1.5", "-tp", "1.5"),
    (VLLM + "--gpu-memory-utilization most", "--gpu-memory-utilization", "most"),  # was a bare float() ValueError
    (VLLM + "--gpu-memory-utilization 1.5", "--gpu-memory-utilization", "1.5"),  # was requirements.memory_headroom
    (VLLM + "--gpu-memory-utilization nan", "--gpu-memory-utilization", "nan"),
    (VLLM + "--max-model-len 0", "--max-model-len", "0"),  # was "--isl ... exceeds the context of 0"
    (VLLM + "--max-model-len 1.5K", "--max-model-len", "1.5K"),  # vLLM: binary suffixes take whole numbers only
    (VLLM + "--max-num-seqs 99999999999999999999", "--max-num-seqs", "99999999999999999999"),
    (VLLM + "--kv-cache-dtype fp3", "--kv-cache-dtype", "fp3"),  # was dropped: the checkpoint's format was used
    (VLLM + "--enable-expert-parallel=false", "--enable-expert-parallel", "false"),
    (VLLM + "--max-num-seqs", "--max-num-seqs", None),
    ("vllm serve 'Qwen/Qwen3-30B-A3B -tp 2", "--vllm", "vllm serve 'Qwen/Qwen3-30B-A3B -tp 2"),  # shlex ValueError
    (SGL + "--tp 0", "--tp", "0"),
    (SGL + "--tp 2 --ep-size 0", "--ep-size", "0"),  # was a ZeroDivisionError
    (SGL + "--tp 2 --mem-fraction-static half", "--mem-fraction-static", "half"),
    (SGL + "--tp 2 --max-running-requests -3", "--max-running-requests", "-3"),
    (SGL + "--tp 2 --kv-cache-dtype int2", "--kv-cache-dtype", "int2"),
])
def test_a_bad_flag_is_named_as_written(cmd, field, value):
    err = _error(parse_vllm if cmd.startswith("vllm") else parse_sglang, cmd)
    assert (err.field, err.value) == (field, value), str(err)
    assert "\n" not in str(err)


def test_unknown_kv_cache_dtype_lists_the_known_ones():
    rule = _error(parse_vllm, VLLM + "--kv-cache-dtype fp3").rule
    assert "fp8_e4m3" in rule and "bfloat16" in rule and "auto" in rule
    assert "fp4_e2m1" in _error(parse_sglang, SGL + "--kv-cache-dtype int2").rule


def test_values_read_as_the_engine_reads_them():
    v = parse_vllm(VLLM + "--max-model-len 32k --max-num-seqs=64 --kv-cache-dtype fp8_e5m2 -tp 2 "
                          "--tensor-parallel-size 4 --gpu-memory-utilization .85")
    # 32k = 32,000 and 32K = 32,768 (vLLM human_readable_int); the last of -tp / --tensor-parallel-size wins.
    assert (v.context_tokens, v.max_running_per_rank, v.kv_cache_dtype, v.layout.tp, v.memory_fraction) == \
        (32_000, 64, DType.FP8, 4, 0.85)
    assert parse_vllm(VLLM + "--max-model-len 32K").context_tokens == 32_768
    auto = parse_vllm(VLLM + "--kv-cache-dtype auto")
    assert auto.kv_cache_dtype is None and auto.max_running_per_rank is None and auto.memory_fraction == 0.9
    # A switch never takes the next word: the model after it is still the model.
    ep = parse_vllm("vllm serve --enable-expert-parallel Qwen/Qwen3-30B-A3B -tp 2")
    assert (ep.model, ep.layout.ep) == ("Qwen/Qwen3-30B-A3B", 2)
    assert parse_vllm(VLLM + "--served-model-name x").ignored == ("--served-model-name",)


def test_sglang_running_cap_is_shared_by_dp_attention_ranks():
    # SGLang gives each DP-attention rank max_running_requests // dp_size: 512 // 8 = 64 per rank, 512 in all.
    s = parse_sglang("python -m sglang.launch_server --model-path M --tp 8 --dp 8 --enable-dp-attention "
                     "--max-running-requests 512")
    assert (s.max_running_per_rank, s.concurrency) == (64, 512)
    # Without DP attention each of the 2 replicas gets the whole cap: 100 each, 200 in all.
    r = parse_sglang(SGL + "--tp 2 --dp 2 --max-running-requests 100")
    assert (r.layout.instances, r.max_running_per_rank, r.concurrency) == (2, 100, 200)
    # 3 over 4 ranks leaves 0 per rank: refused, not run with a cap of 0.
    assert parse_sglang("python -m sglang.launch_server --model-path M --tp 4 --dp 4 --enable-dp-attention "
                        "--max-running-requests 3").refusals


TRT_OK = "tensor_parallel_size: 2\nmoe_expert_parallel_size: 2\nmax_batch_size: 32\n"


@pytest.mark.parametrize("text, field, value", [
    (TRT_OK + "pipeline_parallel_size: 1.5\n", "pipeline_parallel_size", 1.5),  # was int(1.5) = 1, accepted
    ("tensor_parallel_size: eight\n", "tensor_parallel_size", "eight"),
    ("tensor_parallel_size: 2\nmoe_expert_parallel_size: 0\n", "moe_expert_parallel_size", 0),  # was `or 1`
    ("tensor_parallel_size: 2\nmoe_expert_parallel_size: 2\nmax_batch_size: -4\n", "max_batch_size", -4),
    ("tensor_parallel_size: true\n", "tensor_parallel_size", True),
    (TRT_OK + "kv_cache_config: 5\n", "kv_cache_config", 5),  # was an AttributeError
    (TRT_OK + "kv_cache_config: {dtype: fp3}\n", "kv_cache_config.dtype", "fp3"),  # was dropped
    (TRT_OK + "kv_cache_config: {free_gpu_memory_fraction: most}\n", "kv_cache_config.free_gpu_memory_fraction",
     "most"),
    (TRT_OK + "enable_attention_dp: 'yes please'\n", "enable_attention_dp", "yes please"),
])
def test_a_bad_trtllm_key_is_named_as_written(tmp_path, text, field, value):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    err = _error(parse_trtllm, str(path))
    assert (err.field, err.value) == (field, value), str(err)
    assert "t.yaml" in err.rule


@pytest.mark.parametrize("content, rule", [
    (b"- tensor_parallel_size: 2\n", "mapping"),  # was a TypeError from list.pop
    (bytes(range(256)), "not UTF-8"),  # was a UnicodeDecodeError
    ("tensor_parallel_size: 2\n".encode("utf-16"), "UTF-16"),
    (b"a: [1\n", "not valid YAML"),
])
def test_a_trtllm_file_that_cannot_be_read_is_named(tmp_path, content, rule):
    path = tmp_path / "t.yaml"
    path.write_bytes(content)
    err = _error(parse_trtllm, str(path))
    assert err.field == "--trtllm" and "t.yaml" in str(err.value) and rule in err.rule, str(err)


def test_trtllm_moe_degrees_and_cap(tmp_path):
    path = tmp_path / "t.yaml"
    # moe_expert_parallel_size left out: 8 // moe_tensor_parallel_size 2 = 4 (tensorrt_llm/mapping.py).
    path.write_text("model: deepseek-ai/DeepSeek-R1\ntensor_parallel_size: 8\nmoe_tensor_parallel_size: 2\n"
                    "enable_attention_dp: true\nmax_batch_size: 16\nkv_cache_config: {dtype: fp8, enable_block_reuse: "
                    "false}\nbackend: pytorch\n")
    r = parse_trtllm(str(path))
    # Attention dp 8 ranks of 16 running requests each: 128 in all.
    assert (r.layout.dp, r.layout.ep, r.layout.etp, r.max_running_per_rank, r.concurrency) == (8, 4, 2, 16, 128)
    assert r.kv_cache_dtype is DType.FP8 and r.memory_fraction == 0.9
    assert r.ignored == ("backend", "kv_cache_config.enable_block_reuse")


DSV3_DP8 = ("python -m sglang.launch_server --model-path deepseek-ai/DeepSeek-V3 --tp 8 --dp 8 --enable-dp-attention "
            "--moe-a2a-backend deepep --context-length 8192 ")


def _weights(cmd: str) -> float:
    report = check_engine(parse_sglang(cmd), gpu="h200", weights=None, isl=4000, osl=1000, source="test")
    return report.plan.phases.decode.memory_per_gpu_bytes.weights


def test_sglang_redundant_experts_cost_memory_and_balance_only_when_placed_by_load():
    plain = parse_sglang(DSV3_DP8)
    unplaced = parse_sglang(DSV3_DP8 + "--ep-num-redundant-experts 32")
    placed = parse_sglang(DSV3_DP8 + "--ep-num-redundant-experts 32 --enable-eplb")
    assert plain.assumption_settings == () and "--ep-num-redundant-experts" not in unplaced.ignored
    assert dict(placed.assumption_settings) == {"redundant_experts": 32}
    # Replicas placed in a fixed order leave the popularity imbalance whole.
    assert dict(unplaced.assumption_settings) == {"redundant_experts": 32, "eplb_residual": 1.0}
    assert "not placed by load" in unplaced.notes[0] and placed.notes == ()
    # 32 replicas over ep 8 are 4 more experts per GPU in each of DeepSeek-V3's 58 MoE layers, each
    # 3 x 7,168 x 2,048 FP8 weights at 1 byte (specs.dtypes leaves out the FP32 block scales, 0.02%):
    # 4 x 58 x 44,040,192 = 10,217,324,544 bytes more per GPU.
    extra = _weights(DSV3_DP8 + "--ep-num-redundant-experts 32") - _weights(DSV3_DP8)
    assert extra == 10_217_324_544
