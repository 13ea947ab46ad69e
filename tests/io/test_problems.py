"""Problem files: the shipped seed problems, YAML, and bad input."""

import json
from pathlib import Path

import pytest
import yaml

from meshplan.errors import SpecError
from meshplan.io.catalog import CATALOG, load_gpu, load_model
from meshplan.io.problem_file import load_problem, problem_from_raw
from meshplan.specs.params import count_params

PROBLEMS = Path(str(CATALOG / "problems"))


@pytest.mark.parametrize("name", ["seed-10b-moe.md", "qwen3-235b-prefill-decode.md", "qwen3-235b-fixed-strategy.md"])
def test_seed_format_problems_load(name):
    p = load_problem(PROBLEMS / name)
    assert p.model.num_layers in (16, 94)


def test_seed_problem_assumptions_are_stated():
    p = load_problem(None)
    fields = {n.field for n in p.notes}
    assert {"model.top_k", "workload.osl"} <= fields
    assert p.model.top_k == 2 and p.model.declared_params == 10e9
    assert load_problem(None, {"model": {"top_k": 4}}).model.top_k == 4


def test_names_resolve():
    assert load_model("deepseek-ai/DeepSeek-V3").name == "deepseek-v3"
    assert load_model("DeepSeek-V3").name == "deepseek-v3"
    assert load_gpu("H100").name == "h100-sxm"


@pytest.mark.parametrize("raw, field", [
    ({"model": "deepseek-v9", "gpu": "h800", "workload": {"isl": 1, "osl": 1}}, "model"),
    ({"model": "deepseek-v3", "gpu": "h900", "workload": {"isl": 1, "osl": 1}}, "gpu"),
    ({"model": "deepseek-v3", "gpu": "h800", "workload": {"isl": 0, "osl": 1}}, "workload.isl"),
    ({"model": "deepseek-v3", "gpu": "h800", "workload": {"isl": 1, "osl": 1, "concurency": 4}}, "workload.concurency"),
    ({"model": "deepseek-v3", "gpu": "h800", "workload": {"isl": 1, "osl": 1}, "requirements": {"ttft_s": 0}},
     "requirements.ttft_s"),
    ({"modle": "deepseek-v3", "gpu": "h800", "workload": {"isl": 1, "osl": 1}}, "modle"),
])
def test_bad_input_names_the_field(raw, field):
    with pytest.raises(SpecError) as err:
        problem_from_raw(raw)
    assert err.value.field == field


def test_malformed_markdown(tmp_path):
    f = tmp_path / "bad.md"
    f.write_text("# nothing here\njust text\n")
    with pytest.raises(SpecError):
        load_problem(f)


def test_seed_plan_loads_with_its_final_layout_and_contradictions():
    p = load_problem(PROBLEMS / "seed-plan.md")
    assert p.seed_strategy.ep == 16 and p.seed_strategy.dp == 8 and p.seed_strategy.gpus == 128
    messages = " ".join(n.message for n in p.notes)
    assert "contradicting GPU totals" in messages and "16 (line 4)" in messages


def test_yaml_and_json_files_load_the_same(tmp_path):
    raw = {"model": "deepseek-v3", "gpu": "H800", "gpus": 64, "precision": {"weights": "fp8", "kv_cache": "bf16"},
           "workload": {"isl": [1000, 3000], "osl": 500, "concurrency": 256},
           "requirements": {"ttft_s": 2.0, "tpot_s": 0.1}, "strategy": "dp=32,ep=32"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "p.json").write_text(json.dumps(raw))
    a, b = load_problem(tmp_path / "p.yaml"), load_problem(tmp_path / "p.json")
    assert a.model_dump(exclude={"name"}) == b.model_dump(exclude={"name"})
    assert a.workload.isl_tokens == 2000 and a.workload.isl_max_tokens == 3000
    assert a.gpu.name == "h800" and a.precision.weights.value == "fp8"


def test_local_config_json_goes_through_the_same_loader(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
           "num_key_value_heads": 2, "intermediate_size": 4096, "vocab_size": 1000}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    m = load_model(str(path))
    # 4 layers x (1024*(8*128) + 2*1024*2*128 + 8*128*1024 + 2*1024 norms + 3*1024*4096 FFN)
    # + 2 * 1000 * 1024 embeddings + 1024 final norm.
    per_layer = 1024 * 1024 + 2 * 1024 * 256 + 1024 * 1024 + 2048 + 3 * 1024 * 4096
    assert count_params(m).total == 4 * per_layer + 2 * 1000 * 1024 + 1024
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model_type": "mamba", "hidden_size": 1}))
    with pytest.raises(SpecError):
        load_model(str(bad))


def test_a_prefix_hit_rate_is_stated_in_the_notes_and_bounded():
    raw = {"model": "llama-3.1-8b", "gpu": "h100", "workload": {"isl": 4000, "osl": 500, "prefix_hit_rate": 0.563}}
    p = problem_from_raw(raw)
    # 4,000 x (1 - 0.563) = 1,748 tokens computed per prompt.
    assert p.workload.computed_prompt_tokens == pytest.approx(1748)
    assert any(n.field == "workload.prefix_hit_rate" and "computes 1,748 tokens" in n.message for n in p.notes)
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(SpecError, match="workload.prefix_hit_rate"):
            problem_from_raw({**raw, "workload": {**raw["workload"], "prefix_hit_rate": bad}})
