"""Readers of a model's structure (Hugging Face config.json, seed Markdown problems and plans):
a bad value is refused where it is read, naming the key (or FILE:LINE and the bullet), the
value as written and the rule; nothing is truncated, defaulted or read as another number."""

import json
import re
import time

import pytest

from meshplan.errors import SpecError
from meshplan.io.catalog import CATALOG
from meshplan.io.hf_config import hf_config_to_spec, load_hf_config
from meshplan.io.problem_file import DEFAULT_PROBLEM, load_problem, read_raw
from meshplan.io.seed_markdown import read_seed_markdown
from meshplan.io.seed_plan import read_seed_plan
from meshplan.specs.model import MAX_LAYERS, ModelSpec

LLAMA = json.loads((CATALOG / "models" / "meta-llama--Meta-Llama-3.1-8B.config.json").read_text())
MIXTRAL = json.loads((CATALOG / "models" / "mistralai--Mixtral-8x7B-v0.1.config.json").read_text())
SEED = (CATALOG / "problems" / "seed-10b-moe.md").read_text()


def refusal(cfg: dict, **changes) -> SpecError:
    with pytest.raises(SpecError) as err:
        hf_config_to_spec(dict(cfg, **changes), name="cfg", source="/models/cfg.json")
    assert "\n" not in str(err.value) and "pydantic" not in str(err.value)
    return err.value


@pytest.mark.parametrize("value, shown", [(1.7, "1.7"), (True, "true"), ("big", '"big"'), (None, "null"),
                                          (float("nan"), "NaN"), ([16], "[16]")])
def test_config_numbers_must_be_whole(value, shown):
    err = refusal(LLAMA, num_hidden_layers=value)
    assert str(err) == f"cfg.json:num_hidden_layers = {shown}: must be a whole number"


@pytest.mark.parametrize("changes, key, value", [
    (dict(num_attention_heads=0), "num_attention_heads", "0"),
    (dict(num_key_value_heads=3), "num_key_value_heads", "3"),
    (dict(vocab_size=-5), "vocab_size", "-5"),
    (dict(intermediate_size=-1), "intermediate_size", "-1"),
    (dict(hidden_size=10**7), "hidden_size", "10000000"),
    (dict(tie_word_embeddings="no"), "tie_word_embeddings", '"no"'),
])
def test_spec_refusals_name_the_config_key(changes, key, value):
    err = refusal(LLAMA, **changes)
    assert err.field == f"cfg.json:{key}" and str(err.value) == value


def test_moe_refusals_name_the_config_key():
    err = refusal(MIXTRAL, num_experts_per_tok=0)
    assert str(err) == "cfg.json:num_experts_per_tok = 0: must be between 1 and num_local_experts = 8"
    assert refusal(MIXTRAL, num_local_experts="eight").field == "cfg.json:num_local_experts"


def test_a_billion_layers_is_refused_at_once():
    start = time.monotonic()
    err = refusal(LLAMA, num_hidden_layers=1e9)
    assert err.field == "cfg.json:num_hidden_layers" and f"at most {MAX_LAYERS:,}" in err.rule
    assert time.monotonic() - start < 1.0


def test_model_spec_bounds_and_truth_values():
    base = dict(name="m", num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=4, head_dim=16, attention="mha",
                vocab_size=100, ffn_size=128)
    ModelSpec(**base)
    for bad in (dict(num_layers=MAX_LAYERS + 1), dict(num_layers=True), dict(num_heads=10**20)):
        with pytest.raises(ValueError):
            ModelSpec(**(base | bad))


def test_a_list_config_names_the_file(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text("[]")
    with pytest.raises(SpecError) as err:
        load_hf_config(path)
    assert err.value.field == "model" and str(path) in str(err.value) and "list" in err.value.rule


@pytest.mark.parametrize("content", [b"\xff\xfe{\x00}\x00", bytes(range(256)), None])
def test_unreadable_configs_are_spec_errors(tmp_path, content):
    path = tmp_path / "cfg.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(SpecError) as err:
        load_hf_config(path)
    assert err.value.field == "model"


def _bullet(text: str, key: str, value: str) -> str:
    pattern = re.compile(r"^(\s*[*-]\s*\*\*" + re.escape(key) + r"\*\*\s*:\s*).*$", re.M)
    assert pattern.search(text), key
    return pattern.sub(lambda m: m.group(1) + value, text, count=1)


STRATEGY = "\n## **Parallelism Strategy**\n\n* **GPUs **: 16\n* **Tensor parallelism**: {tp}\n" \
           "* **Expert parallelism**: 16\n"


@pytest.mark.parametrize("text, where, value", [
    (SEED + STRATEGY.format(tp="0"), "s.md:37 Tensor parallelism", "0"),
    (SEED + STRATEGY.format(tp="-4"), "s.md:37 Tensor parallelism", "-4"),
    (SEED + STRATEGY.format(tp="some"), "s.md:37 Tensor parallelism", "some"),
    (SEED + STRATEGY.format(tp="4 or 8"), "s.md:37 Tensor parallelism", "4 or 8"),
    (_bullet(SEED, "Layers", "sixteen layers, each with 16 experts."), "s.md:15 Layers", "sixteen"),
    (_bullet(SEED, "Layers", "1.7-layer, Each layer has 16 experts."), "s.md:15 Layers", "1.7"),
    (_bullet(SEED, "Layers", "16-layer, Each layer has 1.5 experts."), "s.md:15 Layers", "1.5"),
    (SEED + "\n* **Top-K Gate**: two\n", "s.md:34 Top-K Gate", "two"),
    (_bullet(SEED, "Batch size", "Each batch consists of many sequences."), "s.md:24 Batch size", "many"),
    (SEED + "\n* **Layers**: 32-layer\n", "s.md:34 Layers", "lines 15 and 34"),
    (SEED + STRATEGY.format(tp="99999999999999999999"), "s.md:37 Tensor parallelism", "99999999999999999999"),
], ids=["tp-zero", "tp-negative", "tp-word", "tp-two-numbers", "layers-word", "layers-fraction", "experts-fraction",
        "top-k-word", "batch-word", "duplicate-bullet", "tp-huge"])
def test_seed_markdown_refusals_name_file_line_and_bullet(text, where, value):
    with pytest.raises(SpecError) as err:
        read_seed_markdown(text, "s.md")
    assert err.value.field == where and value in str(err.value) and "\n" not in str(err.value)


def test_seed_markdown_reads_the_stated_layout():
    raw = read_seed_markdown(SEED + STRATEGY.format(tp="1"), "s.md")
    assert raw["seed_strategy"] == {"gpus": 16, "tp": 1, "pp": None, "dp": None, "ep": 16, "sp": None}


@pytest.mark.parametrize("line, field, value", [
    ("DP=1, PP=1, TP=0, EP=16", "plan.md:3 TP", "0"),
    ("DP=1, PP=1, TP=-2, EP=16", "plan.md:3 TP", "-2"),
    ("DP=1, PP=1, TP=1.5, EP=16", "plan.md:3 TP", "1.5"),
    ("DP=1, DP=2, PP=1, TP=1, EP=16", "plan.md:3 DP", "2"),
    ("DP=1, PP=1, TP=1, EP=16, Total GPUs: 0", "plan.md:3 Total GPUs", "0"),
])
def test_seed_plan_degrees_are_validated(line, field, value):
    with pytest.raises(SpecError) as err:
        read_seed_plan(f"# Deployment Plan\n\n{line}\n", "plan.md", read_raw(str(DEFAULT_PROBLEM)))
    assert err.value.field == field and value in str(err.value)


def test_seed_plan_reads_a_sentence_ending_in_a_degree():
    raw = read_seed_plan("# Deployment Plan\n\nFinal: DP=8, PP=1, TP=1, EP=16.\n", "plan.md",
                         read_raw(str(DEFAULT_PROBLEM)))
    assert raw["seed_strategy"] == {"dp": 8, "tp": 1, "pp": 1, "ep": 16, "gpus": None}


def test_bundled_markdown_problems_parse():
    for path in sorted((CATALOG / "problems").glob("*.md")):
        load_problem(str(path))
