"""Checkpoints and the newer architectures: a checkpoint id resolves to its model with the number
formats its quantization config states, and KV and weight bytes follow from the shipped configs."""

import json
import math

import pytest

from meshplan.cost.inputs import CostInputs
from meshplan.cost.memory import kv_bytes_per_token, stage_weights
from meshplan.errors import SpecError
from meshplan.io.catalog import CATALOG, checkpoints, load_model
from meshplan.io.checkpoint import checkpoint_precision
from meshplan.io.problem_file import problem_from_raw
from meshplan.specs.dtypes import DType
from meshplan.specs.model import LayerKind


def _ci(model, gpu="h100-sxm", **raw):
    return CostInputs.from_problem(problem_from_raw({"model": model, "gpu": gpu, "calibration": "none",
                                                     "workload": {"isl": 1000, "osl": 100}, **raw}))


def test_modelopt_nvfp4_checkpoint_formats_come_from_its_exclude_list():
    m = load_model("nvidia/DeepSeek-R1-NVFP4")
    assert m.name == "deepseek-r1" and m.checkpoint == "nvidia/DeepSeek-R1-NVFP4"
    prec = m.checkpoint_precision
    # hf_quant_config.json: quant_algo NVFP4, kv_cache_quant_algo FP8; exclude_modules lists every
    # layer's q_a/q_b/kv_a/kv_b projections and lm_head, but not o_proj nor the experts.
    quant = json.loads((CATALOG / "models" / "nvidia--DeepSeek-V3.1-NVFP4.hf_quant_config.json").read_text())
    excluded = quant["quantization"]["exclude_modules"]
    assert "model.layers.3.self_attn.q_b_proj" in excluded and not any("o_proj" in x for x in excluded)
    assert (prec.experts, prec.attention, prec.attention_out, prec.kv_cache) == (DType.FP4, DType.BF16, DType.FP4, DType.FP8)


def test_fp8_config_checkpoint_and_mxfp4_experts():
    # Qwen3-235B-A22B-FP8's config.json quantization_config: fp8 block scales on every linear layer.
    fp8 = load_model("Qwen/Qwen3-235B-A22B-FP8").checkpoint_precision
    assert (fp8.weights, fp8.experts, fp8.kv_cache) == (DType.FP8, DType.FP8, DType.BF16)
    # gpt-oss ships MXFP4 experts and BF16 attention (its quantization_config excludes self_attn).
    oss = load_model("openai/gpt-oss-120b").checkpoint_precision
    assert (oss.experts, oss.attention, oss.weights) == (DType.FP4, DType.BF16, DType.BF16)


def test_every_listed_checkpoint_resolves():
    for key in ("deepseek-v3", "glm-5", "minimax-m2.5", "qwen3.5-397b-a17b", "llama-3.1-70b"):
        for ckpt, prec in checkpoints(key).items():
            assert load_model(ckpt).name == key
            assert prec.kv_cache in (DType.FP8, DType.BF16)


def test_unknown_checkpoint_is_a_spec_error():
    with pytest.raises(SpecError) as err:
        load_model("nvidia/DeepSeek-R9-NVFP4")
    assert err.value.field == "model"


def test_qwen35_kv_bytes_per_token_counts_only_full_attention_layers():
    # Qwen3.5-397B-A17B: 60 layers, full attention every 4th -> 15 layers keep a KV cache;
    # 2 KV heads x 256 head dim, K and V, BF16: 15 x 2 x 2 x 256 x 2 B = 30,720 B per token.
    # The 45 Gated DeltaNet layers keep a fixed-size state per sequence instead.
    ci = _ci("qwen3.5-397b")
    assert kv_bytes_per_token(ci) == 15 * 2 * 2 * 256 * 2


def test_mla_kv_bytes_per_token_fp8():
    # DeepSeek-R1 NVFP4: 61 layers x (kv_lora_rank 512 + rope 64) x 1 B (FP8 cache) = 35,136 B.
    assert kv_bytes_per_token(_ci("nvidia/DeepSeek-R1-NVFP4")) == 61 * (512 + 64)


def test_gpt_oss_120b_fits_one_80gb_gpu():
    # OpenAI's model card: gpt-oss-120b runs on a single 80 GB GPU. By hand, from its config.json:
    # experts 36 layers x 128 x 3 x 2880 x 2880 = 114.66e9 parameters at 4.5 bits (meshplan counts
    # every FP4 format as NVFP4, one scale per 16 values; MXFP4's per-32 scale would be 4.25 bits)
    # = 64.50 GB; in BF16: embedding and LM head 2 x 201,088 x 2880 = 1,158.3e6, attention
    # 36 x (2880 x 4096 + 2 x 2880 x 512 + 4096 x 2880) = 955.5e6, routers 36 x 2880 x 128 = 13.3e6,
    # expert biases 36 x 128 x 3 x 2880 = 39.8e6: 2,166.9e6 x 2 B = 4.33 GB. Total 68.83 GB, which
    # leaves 11 GB of an 80 GB GPU for the KV cache and the runtime (norms and sinks not counted here).
    ci = _ci("openai/gpt-oss-120b")
    m = ci.model
    moe = sum(1 for k in m.layer_kinds if k is LayerKind.MOE)
    w = float(stage_weights(ci, 1, 1, 1, m.num_layers - moe, moe, 1, 1).total)
    assert math.isclose(w, 68.83e9, rel_tol=0.005)


@pytest.mark.parametrize("quant, field", [
    ([], "hf_quant_config.quantization"),
    ({"quantization": "fp8"}, "hf_quant_config.quantization"),
    ({"quantization": {"quant_algo": "W8A8"}}, "hf_quant_config.quant_algo"),
    ({"quantization": {"quant_algo": "FP8", "exclude_modules": ["re:model.layers.(0"]}},
     "hf_quant_config.exclude_modules"),
])
def test_malformed_quant_config_names_the_field(quant, field):
    with pytest.raises(SpecError) as err:
        checkpoint_precision(load_model("deepseek-v3"), {}, quant)
    assert err.value.field == field
