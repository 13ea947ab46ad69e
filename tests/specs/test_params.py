"""Structural parameter counts against published totals, and a hand-computed case."""

import pytest

from meshplan.io.catalog import load_model, model_keys
from meshplan.specs.params import count_params


@pytest.mark.parametrize("key", model_keys())
def test_catalog_model_within_2_percent_of_published(key):
    m = load_model(key)
    total = count_params(m).total
    assert abs(total / m.published_params - 1) < 0.02, (key, total / 1e9)


def test_required_catalog_models_present():
    need = {"mixtral-8x7b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "llama-3.3-70b",
            "deepseek-v3", "deepseek-r1", "kimi-k2", "qwen3-30b-a3b", "qwen3-235b-a22b", "gpt-oss-120b",
            "llama-4-maverick"}
    assert need <= set(model_keys())


def test_mixtral_hand_count():
    # Mixtral-8x7B by hand: attention per layer 4096*(32*128 + 2*8*128 + 32*128) = 41,943,040 plus
    # norms 2*4096 = 8,192; experts 8 * 3*4096*14336 = 1,409,286,144; router 4096*8 = 32,768.
    # Per layer 1,451,270,144; x32 = 46,440,644,608; embeddings 2*32000*4096 = 262,144,000;
    # final norm 4096 -> 46,702,792,704.
    assert count_params(load_model("mixtral-8x7b")).total == 46_702_792_704


def test_deepseek_layer_kinds():
    m = load_model("deepseek-v3")
    assert (m.num_dense_layers, m.num_moe_layers) == (3, 58)
    maverick = load_model("llama-4-maverick")
    assert maverick.num_moe_layers == 24 and maverick.layer_kinds[1].value == "moe"
