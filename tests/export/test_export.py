"""Engine launch configs: round trip through the checker's parsers, what engines cannot express,
and the DeviceMesh snippet built on CPU with torch's fake process group."""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from meshplan.check.engines import parse_sglang, parse_trtllm, parse_vllm
from meshplan.errors import SpecError
from meshplan.export.common import context_tokens
from meshplan.export.devicemesh import snippet
from meshplan.export.export import export
from meshplan.io.catalog import load_gpu, load_model
from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.pools import Pool
from meshplan.strategy.layout import Layout, parse_strategy
from meshplan.strategy.mesh import group
from meshplan.strategy.space import enumerate_layouts


def _problem(model="deepseek-v3", gpu="h800"):
    return problem_from_raw({"model": model, "gpu": gpu, "precision": {"weights": "fp8", "kv_cache": "fp8"},
                             "workload": {"isl": 2000, "osl": 500}})


def _pool(lay, role="aggregated"):
    phases = ("prefill", "decode") if role == "aggregated" else (role,)
    return Pool(phases=phases, layout=lay, B={p: 8.0 for p in phases}, offset=0)


def command(script: str, start: str) -> str:
    """The command of a generated script: from the line starting with ``start``, continuations joined."""
    text = script[script.index(start):]
    return text.replace("\\\n", " ")


def _layouts(model, gpu, cap):
    la = enumerate_layouts(load_model(model), load_gpu(gpu), cap, redundant_experts=0)
    return [Layout(tp=int(a), dp=int(b), pp=int(c), ep=int(d), etp=int(e))
            for a, b, c, d, e in zip(la.tp, la.dp, la.pp, la.ep, la.etp)]


CASES = [("deepseek-v3", "h800", 32), ("qwen3-30b-a3b", "h100-sxm", 16), ("llama-3.1-70b", "h100-sxm", 16)]


@pytest.mark.parametrize("model, gpu, cap", CASES)
def test_round_trip_for_every_searchable_layout(model, gpu, cap):
    problem = _problem(model, gpu)
    expressed = {"vllm": 0, "sglang": 0, "trtllm": 0}
    for lay in _layouts(model, gpu, cap):
        for engine in ("vllm", "sglang", "trtllm"):
            res = export(problem, [_pool(lay)], engine)
            if res.substitutions:
                assert res.substitutions[0].reason  # said why
                continue
            expressed[engine] += 1
            if engine == "vllm":
                back = parse_vllm(command(res.files["aggregated-instance0-node0.sh"], "vllm serve")).layout
            elif engine == "sglang":
                back = parse_sglang(command(res.files["aggregated-instance0-node0.sh"], "python -m sglang")).layout
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "c.yaml"
                    path.write_text(res.files["aggregated-config.yaml"])
                    back = parse_trtllm(str(path), model).layout
            assert back == lay, (engine, lay, back)
    assert all(n > 0 for n in expressed.values()), expressed


def test_vllm_cannot_express_hybrid_expert_tensor_parallel_and_offers_the_nearest():
    problem = _problem()
    lay = Layout(tp=8, dp=1, ep=2, etp=4)
    res = export(problem, [_pool(lay)], "vllm")
    sub = res.substitutions[0]
    assert "etp" in sub.reason and sub.nearest is not None
    near = re.search(r"tp=(\d+),dp=(\d+),ep=(\d+),etp=(\d+)", sub.nearest).groups()
    tp, dp, ep, etp = map(int, near)
    assert tp * dp == 8 and (ep == 1 or etp == 1)  # an all-EP or all-TP MoE, as vLLM can run
    assert sub.nearest_tok_s_per_gpu > 0 and sub.planned_tok_s_per_gpu > 0


def test_trtllm_cannot_mix_attention_tp_and_dp():
    res = export(_problem(), [_pool(Layout(tp=2, dp=4, ep=8))], "trtllm")
    assert res.substitutions and "all-or-nothing" in res.substitutions[0].reason


def test_multinode_arguments():
    problem = _problem()
    res = export(problem, [_pool(Layout(tp=1, dp=16, ep=16), "decode")], "vllm")
    node1 = res.files["decode-instance0-node1.sh"]
    assert "--data-parallel-size-local 8" in node1 and "--data-parallel-start-rank 8" in node1
    assert "--headless" in node1 and "VLLM_ALL2ALL_BACKEND=deepep_low_latency" in node1
    res = export(problem, [_pool(Layout(tp=1, dp=16, ep=16), "prefill")], "sglang")
    node1 = res.files["prefill-instance0-node1.sh"]
    assert "--nnodes 2" in node1 and "--node-rank 1" in node1 and "--disaggregation-mode prefill" in node1
    assert "--deepep-mode normal" in node1


def test_disaggregated_front_ends():
    problem = _problem()
    pools = [Pool(phases=("prefill",), layout=Layout(tp=1, dp=8, ep=8), B={"prefill": 2.0}, offset=0),
             Pool(phases=("decode",), layout=Layout(tp=1, dp=16, ep=16), B={"decode": 64.0}, offset=8)]
    assert "--pd-disaggregation" in export(problem, pools, "sglang").files["router.sh"]
    assert "context_servers" in export(problem, pools, "trtllm").files["disagg.yaml"]


@pytest.mark.parametrize("spec", ["instances=2,pp=2,tp=2,dp=2,ep=4,etp=1", "pp=1,tp=2,dp=4,ep=2,etp=4"])
def test_devicemesh_matches_the_rank_map(spec):
    # torch is optional (the executor's extra): only this test needs it, so only it skips without it.
    pytest.importorskip("torch")
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    lay = parse_strategy(spec)
    namespace: dict = {}
    exec(compile(snippet(lay), "devicemesh.py", "exec"), namespace)
    for rank in (0, lay.gpus - 1, lay.gpus // 2 + 1):
        dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=lay.gpus)
        try:
            attention, experts = namespace["build_meshes"]("cpu")
            assert attention["tp"].mesh.tolist() == group(rank, lay, "tp")
            assert attention["dp"].mesh.tolist() == group(rank, lay, "dp")
            assert attention["pp"].mesh.tolist() == group(rank, lay, "pp")
            assert experts["ep"].mesh.tolist() == group(rank, lay, "ep")
            assert experts["etp"].mesh.tolist() == group(rank, lay, "etp")
        finally:
            dist.destroy_process_group()


def test_a_layout_that_cannot_hold_the_model_is_refused_unless_forced(tmp_path):
    # DeepSeek-V3 in FP8 is about 671 GB of weights; tp8 on 8 H100s gives 8 x 72 GB usable = 576 GB.
    args = [sys.executable, "-m", "meshplan.cli.main", "export", "--model", "deepseek-v3", "--gpu", "h100",
            "--weights", "fp8", "--isl", "4000", "--osl", "500", "--strategy", "tp=8,ep=8", "--engine", "vllm"]
    r = subprocess.run([*args, "--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert r.returncode == 1 and "[memory]" in r.stderr and not (tmp_path / "a").exists()
    r = subprocess.run([*args, "--out", str(tmp_path / "b"), "--force"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    script = next((tmp_path / "b").glob("*.sh")).read_text().splitlines()
    assert script[0] == "#!/usr/bin/env bash" and script[1].startswith("# WARNING: written with --force")
    # The same model fits 16 H100s (dp16 ep16): exported without a warning.
    r = subprocess.run([*args[:-4], "--strategy", "dp=16,ep=16", "--engine", "vllm", "--out", str(tmp_path / "c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "WARNING" not in next((tmp_path / "c").glob("*.sh")).read_text()


def test_the_launch_context_is_the_workloads_maximum_or_the_models_never_the_mean():
    def ctx(workload):
        return context_tokens(problem_from_raw({"model": "deepseek-v3", "gpu": "h200", "workload": workload}))

    # A range states the longest request: [1000, 4000] + 500 tokens -> 4,500.
    assert ctx({"isl": [1000, 4000], "osl": 500}) == 4500
    # Means alone: DeepSeek-V3's config.json max_position_embeddings, 163,840.
    assert ctx({"isl": 2000, "osl": 500}) == 163840


def _spec_problem(spec, model="deepseek-v3"):
    return problem_from_raw({"model": model, "gpu": "h800", "precision": {"weights": "fp8"},
                             "workload": {"isl": 2000, "osl": 500}, "speculative": spec})


def test_speculative_decoding_in_each_engines_words():
    problem = _spec_problem({"method": "mtp", "draft_tokens": 3, "acceptance": [0.85, 0.63, 0.63]})
    lay = Layout(tp=8, ep=8)
    vllm = command(export(problem, [_pool(lay)], "vllm").files["aggregated-instance0-node0.sh"], "vllm serve")
    assert """--speculative-config '{"method": "mtp", "num_speculative_tokens": 3}'""" in vllm
    assert parse_vllm(vllm).layout == lay  # the checker still reads the command
    sglang = command(export(problem, [_pool(lay)], "sglang").files["aggregated-instance0-node0.sh"], "python -m")
    assert ("--speculative-algorithm EAGLE --speculative-num-steps 3 --speculative-eagle-topk 1 "
            "--speculative-num-draft-tokens 4") in " ".join(sglang.split())
    assert parse_sglang(sglang).layout == lay
    cfg = yaml.safe_load(export(problem, [_pool(lay)], "trtllm").files["aggregated-config.yaml"])
    assert cfg["speculative_config"] == {"decoding_type": "MTP", "num_nextn_predict_layers": 3}


def test_an_eagle_head_is_named_in_the_problem_and_a_draft_model_comes_from_the_catalog():
    spec = {"method": "eagle", "draft_tokens": 2, "acceptance": 0.7}
    unnamed = _spec_problem(spec, model="llama-3.1-70b")
    with pytest.raises(SpecError) as err:  # planned without it; launched only with it
        export(unnamed, [_pool(Layout(tp=8))], "sglang")
    assert err.value.field == "speculative.draft_checkpoint"
    eagle = _spec_problem({**spec, "draft_checkpoint": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"}, model="llama-3.1-70b")
    script = export(eagle, [_pool(Layout(tp=8))], "sglang").files["aggregated-instance0-node0.sh"]
    assert "--speculative-draft-model-path yuhuili/EAGLE3-LLaMA3.1-Instruct-8B" in " ".join(script.split())
    cfg = yaml.safe_load(export(eagle, [_pool(Layout(tp=8))], "trtllm").files["aggregated-config.yaml"])
    assert cfg["speculative_config"] == {"decoding_type": "Eagle", "max_draft_len": 2,
                                         "speculative_model_dir": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"}
    draft = _spec_problem({"method": "draft", "draft_tokens": 4, "acceptance": 0.7, "draft_model": "llama-3.1-8b"},
                          model="llama-3.1-70b")
    script = export(draft, [_pool(Layout(tp=8))], "vllm").files["aggregated-instance0-node0.sh"]
    assert '"method": "draft_model", "num_speculative_tokens": 4, "model": "meta-llama/Meta-Llama-3.1-8B"' in script


def test_attention_dp_balancing_is_launched_as_it_was_costed():
    raw = {"model": "deepseek-v3", "gpu": "h800", "precision": {"weights": "fp8", "kv_cache": "fp8"},
           "workload": {"isl": 2000, "osl": 500},
           "engine": {"name": "trtllm", "attention_dp_balance": True, "adp_balance_timeout_iters": 60,
                      "adp_balance_batching_wait_iters": 0}}
    lay = Layout(tp=1, dp=8, ep=8)
    cfg = yaml.safe_load(export(problem_from_raw(raw), [_pool(lay)], "trtllm").files["aggregated-config.yaml"])
    assert cfg["enable_attention_dp"] is True
    assert cfg["attention_dp_config"] == {"enable_balance": True, "timeout_iters": 60, "batching_wait_iters": 0}
    plain = yaml.safe_load(export(_problem(), [_pool(lay)], "trtllm").files["aggregated-config.yaml"])
    assert "attention_dp_config" not in plain


def test_sglangs_receive_interval_is_launched_as_it_was_costed():
    raw = {"model": "deepseek-v3", "gpu": "h800", "precision": {"weights": "fp8", "kv_cache": "fp8"},
           "workload": {"isl": 2000, "osl": 500}, "engine": {"name": "sglang", "recv_interval_iters": 30}}
    script = export(problem_from_raw(raw), [_pool(Layout(tp=8))], "sglang").files["aggregated-instance0-node0.sh"]
    assert "--scheduler-recv-interval 30" in command(script, "python -m sglang")
    plain = export(_problem(), [_pool(Layout(tp=8))], "sglang").files["aggregated-instance0-node0.sh"]
    assert "--scheduler-recv-interval" not in plain
