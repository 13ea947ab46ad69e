"""The benchmark client of a measured run: the request shapes it sent (catalog/cases/harnesses.yaml)."""

import csv
import dataclasses
import math

import numpy as np
import pytest

from meshplan.errors import SpecError
from meshplan.fidelity import simulated
from meshplan.fidelity.calibrate import FACTORS
from meshplan.fidelity.harness import AS_STATED, harness_of, launch_entry, steady_spread
from meshplan.fidelity.predict import group_cases, predict_group
from meshplan.fidelity.problems import case_problem, launch_of
from meshplan.fidelity.silicon import read_silicon
from meshplan.io.calibration import DEFAULT_PROFILE, load_profile
from meshplan.plan.build import par_of
from meshplan.simulate import requests
from meshplan.simulate.instance import simulate_instance
from meshplan.simulate.summary import per_request
from meshplan.specs.engine import Engine
from meshplan.specs.workload import Serving

from tests.fidelity.test_silicon import COLUMNS, read_rows, silicon_row

INFERENCEX = "db-dump/2026-04-27; config_id=733; silicon_concurrency=64; workflow_run_id=758; vllm/vllm-openai:v0.19.0"
AIC = "source_file=/Users/x/aic-auto-gap-analysis/data/h100_sxm/trtllm/1.0.0rc3/q.csv; silicon_concurrency=64"


def test_a_rows_source_names_its_client():
    assert harness_of(INFERENCEX).name == "inferencex"
    assert harness_of("source_file=2026-04-06.csv; model=DeepSeek-R1; silicon_concurrency=8").name == "inferencex"
    assert harness_of(AIC).name == "aiconfigurator"
    # The per-model gap analyses re-report InferenceX's measured runs (harnesses.yaml [IX11]).
    assert harness_of("source_file=qwen3.5-397b-gap-analysis.csv; silicon_concurrency=4").name == "inferencex"
    assert harness_of("source_file=kimi-k2.5-gap-analysis.csv; silicon_concurrency=4").name == "inferencex"
    assert harness_of("bench; silicon_concurrency=4") is AS_STATED


def test_a_run_is_served_with_its_launch_scripts_engine_settings(tmp_path):
    cases, _ = read_rows(tmp_path, [
        silicon_row(id="ix", silicon_data_source=INFERENCEX, attention_dp_size=8, tp_size=1),
        silicon_row(id="aic", silicon_data_source=AIC, attention_dp_size=8, tp_size=1)])
    ix, aic = (case_problem(c).engine for c in cases)
    # InferenceX's trtllm-serve scripts turn attention-dp balancing on (timeout 60, batching wait 0);
    # a client whose launch is not known keeps TensorRT-LLM's default, off.
    assert ix.attention_dp_balance and ix.adp_balance_timeout_iters == 60 and ix.adp_balance_batching_wait_iters == 0
    assert not aic.attention_dp_balance
    assert harness_of(INFERENCEX).settings_for("vllm", "deepseek-r1") == {}
    assert harness_of(INFERENCEX).settings_for("trtllm", "gpt-oss-120b") == {"attention_dp_balance": True}


def test_launch_settings_may_depend_on_the_gpu_and_the_concurrency():
    def recv(model, gpu, conc):
        return harness_of(INFERENCEX).settings_for("sglang", model, gpu, conc).get("recv_interval_iters")
    # InferenceX's SGLang scripts for DeepSeek on B200 read new requests every 10 decode iterations
    # below 16 clients and every 30 from 16 up; on H200 they keep SGLang's default (every iteration).
    assert recv("deepseek-r1", "b200", 8) == 10 and recv("deepseek-r1", "b200", 16) == 30
    assert recv("deepseek-r1", "h200", 64) is None and recv("qwen3.5-397b-a17b", "b300", 64) == 10


def test_a_launch_entry_with_an_unknown_key_is_refused():
    with pytest.raises(SpecError) as err:
        launch_entry("x", {"engine": "sglang", "gpu": ["b200"], "settings": {"recv_interval_iters": 10}})
    assert err.value.field == "harnesses.yaml x.launch.gpu"
    assert launch_entry("x", {"engine": "sglang", "serving": "aggregated", "settings": {}}).serving == "aggregated"


def test_a_launch_entry_reads_its_engine_and_serving_as_enums():
    entry = launch_entry("x", {"engine": "sglang", "serving": "disaggregated", "settings": {}})
    assert entry.engine is Engine.SGLANG and entry.serving is Serving.DISAGGREGATED
    both = launch_entry("x", {"engine": "vllm", "settings": {}})
    assert both.serving is None  # no serving: the scripts' settings hold aggregated and disaggregated
    assert both.applies(Engine.VLLM, "m", "g", 1, False) and both.applies(Engine.VLLM, "m", "g", 1, True)
    assert entry.applies(Engine.SGLANG, "m", "g", 1, True) and not entry.applies(Engine.SGLANG, "m", "g", 1, False)
    assert not entry.applies(Engine.VLLM, "m", "g", 1, True)
    for key, value, rule in [("engine", "tgi", "trtllm, sglang or vllm"),
                             ("serving", "auto", "aggregated or disaggregated")]:
        with pytest.raises(SpecError) as err:  # a typo would otherwise never match
            launch_entry("x", {"engine": "sglang", "settings": {}} | {key: value})
        assert (err.value.field, err.value.value, err.value.rule) == (f"harnesses.yaml x.launch.{key}", value, rule)


def test_inferencex_draws_lengths_from_eight_tenths_to_the_whole():
    # benchmark_serving.py sample_random_requests: uniform on [int(1024 x 0.8), 1024] = [819, 1024].
    assert harness_of(INFERENCEX).lengths(1024) == [819.0, 1024.0]
    assert harness_of(AIC).lengths(1024) == 1024.0


def test_a_run_is_predicted_with_its_clients_workload(tmp_path):
    cases, _ = read_rows(tmp_path, [silicon_row(id="ix", silicon_data_source=INFERENCEX),
                                    silicon_row(id="aic", silicon_data_source=AIC)])
    ix, aic = (case_problem(c) for c in cases)
    # InferenceX: mean (819 + 1024) / 2 = 921.5 tokens, memory sized for 1024; ten requests per client.
    assert math.isclose(ix.workload.isl_tokens, 921.5) and ix.workload.isl_max_tokens == 1024
    assert math.isclose(ix.workload.osl_tokens, 921.5) and ix.workload.requests_per_client == 10
    # aiconfigurator's runs: lengths as stated, requests per client from the calibration profile.
    assert aic.workload.isl_tokens == 1024 and aic.workload.osl_max_tokens == 1024
    fitted = load_profile(DEFAULT_PROFILE).benchmark["requests_per_client"].value
    assert aic.workload.requests_per_client == fitted
    # The two runs share everything but their client, so they are predicted apart.
    assert len(group_cases(cases)) == 2


def test_a_fit_moves_requests_per_client_only_where_the_client_does_not_state_it(tmp_path):
    cases, _ = read_rows(tmp_path, [silicon_row(id="ix", silicon_data_source=INFERENCEX),
                                    silicon_row(id="aic", silicon_data_source=AIC)])
    ix, aic = group_cases(cases, calibration=None)
    factor = next(f for f in FACTORS if f.name == "requests_per_client")
    assert factor.apply(ix.ci, 5.0, ix.cases[0].harness) == {}
    assert factor.apply(aic.ci, 5.0, aic.cases[0].harness) == {"requests_per_client": 5.0}


def test_the_clients_own_time_is_stated_for_the_reference_client_and_fitted_for_the_other(tmp_path):
    cases, _ = read_rows(tmp_path, [silicon_row(id="ix", silicon_data_source=INFERENCEX),
                                    silicon_row(id="aic", silicon_data_source=AIC)])
    ix, aic = (case_problem(c) for c in cases)
    # InferenceX's benchmark_serving.py is the reference: engines' request overhead is what it sees.
    assert ix.workload.client_overhead_s == 0.0
    fitted = load_profile(DEFAULT_PROFILE).benchmark["client_overhead_s"].value
    assert aic.workload.client_overhead_s == fitted > 0.0
    gix, gaic = group_cases(cases, calibration=None)
    factor = next(f for f in FACTORS if f.name == "client_overhead_s")
    assert factor.apply(gix.ci, 0.05, gix.cases[0].harness) == {}
    assert factor.apply(gaic.ci, 0.05, gaic.cases[0].harness) == {"client_overhead_s": 0.05}


def test_how_the_run_after_its_first_wave_is_simulated_is_the_harness_s(tmp_path, monkeypatch):
    # Every run's first wave goes out at once. InferenceX's runs, and aiconfigurator's SGLang runs,
    # are simulated so whole; aiconfigurator's TensorRT-LLM and vLLM runs have their first wave
    # simulated alone and the rest by a loop whose clients start spread over one request lifetime
    # (catalog/cases/harnesses.yaml [AIC-S]).
    for engine in Engine:
        assert harness_of(INFERENCEX).steady_spread_for(engine) == 0.0
        assert AS_STATED.steady_spread_for(engine) == 0.0
    assert harness_of(AIC).steady_spread_for(Engine.SGLANG) == 0.0
    assert harness_of(AIC).steady_spread_for(Engine.TRTLLM) == harness_of(AIC).steady_spread_for(Engine.VLLM) == 1.0
    cases, _ = read_rows(tmp_path, [silicon_row(id="aic", silicon_data_source=AIC),
                                    silicon_row(id="aic-sglang", silicon_data_source=AIC, backend="sglang",
                                                backend_version="0.5.9")])
    seen = {}
    real = requests.closed_loop

    def spy(clients, n, isl, osl, start_spread_s=0.0, seed=0):
        seen[len(seen)] = (n, start_spread_s, seed)
        return real(clients, n, isl, osl, start_spread_s, seed)

    monkeypatch.setattr(simulated, "closed_loop", spy)
    for group in group_cases(cases):
        seen.clear()
        (case,) = group.cases
        assert set(simulated.simulate_groups([group])) == {case.id}
        n = seen[0][0]
        assert n > case.concurrency  # several requests per client
        # Each of the run's replicas (fidelity.simulated.REPLICAS) with its own seed.
        seeds = [simulated.SEED + k for k in range(simulated.REPLICAS)]
        if case.engine is Engine.SGLANG:
            assert list(seen.values()) == [(n, 0.0, s) for s in seeds]
        else:
            # One lifetime: the closed form's TTFT + (OSL - 1) x TPOT of the run; then the first
            # wave alone, one request per client, all at once.
            (ttft,), (tpot,) = predict_group(group)
            life = float(ttft + (case.osl - 1) * tpot)
            assert list(seen.values()) == [x for s in seeds for x in ((n, life, s), (case.concurrency, 0.0, s))]
            assert life > 0


def test_a_staggered_runs_first_requests_have_the_first_waves_ttft(tmp_path):
    # A TensorRT-LLM run of aiconfigurator's (steady_spread 1) whose clients send one request each is
    # its first wave only: its mean TTFT is that of 64 requests sent at once, simulated here
    # directly, well above the staggered loop's (where no two requests arrive together).
    (case,), _ = read_rows(tmp_path, [silicon_row(id="aic", silicon_data_source=AIC)])
    (group,) = group_cases([case])
    one = dataclasses.replace(group, ci=dataclasses.replace(group.ci, requests_per_client=1.0))
    ttft_s, _ = simulated.simulate_case(one, case, life_s=1.0)
    isl, osl = np.full(64, case.isl), np.full(64, case.osl)
    # The run's replicas each draw their own overheads (seeds SEED + k): the mean of their waves.
    seeds = [simulated.SEED + k for k in range(simulated.REPLICAS)]
    waves = [simulate_instance(one.ci, par_of(case.layout), requests.closed_loop(64, 64, isl, osl, seed=s))
             for s in seeds]
    staggered = simulate_instance(one.ci, par_of(case.layout), requests.closed_loop(64, 64, isl, osl, 1.0))
    wave_s = float(np.mean([np.mean(per_request(w)[0]) for w in waves]))
    assert case.concurrency == 64 and ttft_s == pytest.approx(wave_s, rel=1e-12)
    assert ttft_s > 1.5 * float(np.mean(per_request(staggered)[0]))


def test_a_harness_states_its_steady_spread_for_known_engines_in_lifetimes():
    assert steady_spread("h", 0.5) == tuple((e, 0.5) for e in Engine)
    assert steady_spread("h", {"sglang": 0}) == ((Engine.SGLANG, 0.0),)
    for raw, field, value in [({"tgi": 1.0}, "tgi", "tgi"), ({"vllm": -1}, "vllm", -1), (True, "trtllm", True),
                              ({"sglang": "soon"}, "sglang", "soon")]:
        with pytest.raises(SpecError) as err:
            steady_spread("h", raw)
        assert err.value.field == f"harnesses.yaml h.steady_spread.{field}" and err.value.value == value


def test_a_users_run_on_a_cached_workload_states_its_prefix_hit_rate(tmp_path):
    rows = [silicon_row(id="cold"), silicon_row(id="warm", prefix_hit_rate="0.5"),
            silicon_row(id="bad", prefix_hit_rate="1.5")]
    path = tmp_path / "runs.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*COLUMNS, "prefix_hit_rate"])
        w.writeheader()
        w.writerows(rows)
    cases, skips = read_silicon(path)
    assert [s.id for s in skips] == ["bad"] and "prefix_hit_rate = '1.5'" in skips[0].detail
    cold, warm = group_cases(cases)  # predicted apart: their prompts cost differently
    assert warm.problem.workload.prefix_hit_rate == 0.5 and cold.problem.workload.prefix_hit_rate == 0.0
    # Half of each 1,024-token prompt cached: the same run's TTFT is lower.
    assert predict_group(warm)[0][0] < predict_group(cold)[0][0]


def _ix(date: str = "", conc: int = 64) -> str:
    return f"db-dump/2026-04-27; config_id=1; silicon_concurrency={conc};" + (f" measured={date}T00:00:00.000Z;" if date else "")


def test_the_kv_cache_format_is_the_launch_scripts_where_they_set_one(tmp_path):
    fp8 = dict(precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8_block")
    gptoss = dict(model_path="openai/gpt-oss-120b", precision="fp4", gemm_quant_mode="bf16", moe_quant_mode="mxfp4",
                  tp_size=1, moe_tp_size=1, moe_ep_size=1)
    cases, skips = read_rows(tmp_path, [
        silicon_row(id="sglang-b200", backend="sglang", silicon_data_source=_ix(), **fp8),
        silicon_row(id="sglang-h200", backend="sglang", system="h200_sxm", silicon_data_source=_ix(), **fp8),
        silicon_row(id="sglang-aic", backend="sglang", silicon_data_source=AIC, **fp8),
        silicon_row(id="vllm-nov", backend="vllm", silicon_data_source=_ix("2025-11-20"), **gptoss),
        silicon_row(id="vllm-feb", backend="vllm", silicon_data_source=_ix("2026-02-10"), **gptoss),
        silicon_row(id="vllm-undated", backend="vllm", silicon_data_source=_ix(), **gptoss),
        silicon_row(id="vllm-no-day", backend="vllm", silicon_data_source=_ix("2026-02-30"), **gptoss)])
    assert not skips
    kv = {c.id: case_problem(c).precision.kv_cache.value for c in cases}
    # InferenceX's SGLang scripts for DeepSeek-R1 on B200 pass --kv-cache-dtype fp8_e4m3; on H200 they
    # pass none, and aiconfigurator's launch is not known: there the FP8 checkpoint's BF16 cache stays.
    assert (kv["sglang-b200"], kv["sglang-h200"], kv["sglang-aic"]) == ("fp8", "bf16", "bf16")
    # vLLM's gpt-oss B200 config sets an FP8 cache from 2025-12-05 on: a run of November keeps BF16, one
    # of February has FP8, and a run whose source states no day is not guessed (BF16).
    # February has no 30th: no day is read (and none guessed).
    assert (kv["vllm-nov"], kv["vllm-feb"], kv["vllm-undated"], kv["vllm-no-day"]) == ("bf16", "fp8", "bf16", "bf16")
    assert [c.measured.isoformat() if c.measured else None for c in cases[3:]] == ["2025-11-20", "2026-02-10", None, None]


def test_runs_served_with_other_launch_settings_are_predicted_apart(tmp_path):
    # InferenceX's SGLang DeepSeek scripts on B200 read requests every 10 decode iterations below 16
    # clients and every 30 from 16 up: runs at 8 and 16 clients are two problems, each with its own
    # interval (not the one of whichever run comes first).
    cases, _ = read_rows(tmp_path, [
        silicon_row(id=f"c{c}", backend="sglang", silicon_data_source=_ix(conc=c)) for c in (8, 16, 32)])
    groups = group_cases(cases)
    assert [[c.id for c in g.cases] for g in groups] == [["c8"], ["c16", "c32"]]
    assert [g.ci.engine.recv_interval_iters for g in groups] == [10, 30]


def test_a_launch_entry_states_a_known_kv_format_and_a_real_day():
    import datetime
    ok = launch_entry("x", {"engine": "vllm", "kv_cache": "fp8", "measured_since": datetime.date(2025, 12, 6)})
    assert ok.kv_cache.value == "fp8" and ok.settings == ()
    assert not ok.applies(Engine.VLLM, "m", "g", 1, False, datetime.date(2025, 12, 5))
    assert ok.applies(Engine.VLLM, "m", "g", 1, False, datetime.date(2025, 12, 6))
    assert not ok.applies(Engine.VLLM, "m", "g", 1, False, None)
    for entry, field, rule in [
            ({"engine": "vllm", "kv_cache": "fp9"}, "harnesses.yaml x.launch.kv_cache", "a format: "),
            ({"engine": "vllm", "kv_cache": "fp8", "measured_since": "soon"}, "harnesses.yaml x.launch.measured_since",
             "a day, YYYY-MM-DD"),
            ({"engine": "vllm"}, "harnesses.yaml x.launch", "an entry has engine and a settings mapping or a kv_cache format")]:
        with pytest.raises(SpecError) as err:
            launch_entry("x", entry)
        assert err.value.field == field and err.value.rule.startswith(rule)


def test_a_launch_entry_may_be_for_some_prompt_lengths_only():
    entry = launch_entry("x", {"engine": "vllm", "isl": [1024], "settings": {"token_budget": [{"min_memory_gib": 0, "value": 2048}]}})
    assert entry.applies(Engine.VLLM, "m", "g", 1, False, None, 1024)
    assert not entry.applies(Engine.VLLM, "m", "g", 1, False, None, 8192)
    assert launch_entry("x", {"engine": "vllm", "kv_cache": "fp8"}).applies(Engine.VLLM, "m", "g", 1, False, None, 8192)
    for bad in ([0], ["1k"], 1024, [True]):
        with pytest.raises(SpecError) as err:
            launch_entry("x", {"engine": "vllm", "isl": bad, "kv_cache": "fp8"})
        assert err.value.field == "harnesses.yaml x.launch.isl" and err.value.value == bad


def test_vllm_runs_get_the_token_budget_graphs_and_kv_format_their_scripts_pass(tmp_path):
    minimax = dict(model_path="MiniMaxAI/MiniMax-M2.5", precision="fp8", gemm_quant_mode="fp8_block",
                   moe_quant_mode="fp8_block", tp_size=4, moe_tp_size=4, moe_ep_size=1)
    llama = dict(model_path="meta-llama/Llama-3.1-70B", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="",
                 tp_size=4, moe_tp_size=4, moe_ep_size=1)
    cases, skips = read_rows(tmp_path, [
        silicon_row(id="mm-mar", backend="vllm", silicon_data_source=_ix("2026-03-28"), **minimax),
        silicon_row(id="mm-apr-1k", backend="vllm", silicon_data_source=_ix("2026-04-08"), **minimax),
        silicon_row(id="mm-apr-8k", backend="vllm", silicon_data_source=_ix("2026-04-08"), isl="8192", **minimax),
        silicon_row(id="llama-b200", backend="vllm", silicon_data_source=_ix("2025-10-29"), **llama),
        silicon_row(id="llama-h100", backend="vllm", system="h100_sxm", silicon_data_source=_ix("2025-10-29"), **llama)])
    assert not skips
    p = {c.id: case_problem(c) for c in cases}
    budget = {k: [t.value for t in v.engine.token_budget] for k, v in p.items()}
    graphs = {k: [t.value for t in v.engine.cuda_graph_max_batch] for k, v in p.items()}
    kv = {k: v.precision.kv_cache.value for k, v in p.items()}
    # MiniMax-M2.5 on B200: the scripts of March pass nothing (vLLM's 8,192 tokens and its graphs up to
    # 512 tokens, the checkpoint's BF16 cache); from 2026-04-03 --max-num-batched-tokens $((ISL * 2)),
    # --max-cudagraph-capture-size 2048 and an FP8 cache ([IX10]).
    assert budget["mm-mar"] == [2048, 8192] and graphs["mm-mar"] == [512] and kv["mm-mar"] == "bf16"
    assert budget["mm-apr-1k"] == [2048] and budget["mm-apr-8k"] == [16384]
    assert graphs["mm-apr-1k"] == graphs["mm-apr-8k"] == [2048] and kv["mm-apr-1k"] == kv["mm-apr-8k"] == "fp8"
    # Llama-3.1-70B (2025-10-29): an FP8 cache on both GPUs (as its FP8 checkpoint has); on B200
    # cudagraph_mode FULL_DECODE_ONLY.
    assert kv["llama-b200"] == kv["llama-h100"] == "fp8"
    assert launch_of(cases[3])[1].value == launch_of(cases[4])[1].value == "fp8"
    assert p["llama-b200"].engine.cuda_graph_mixed is False and p["llama-h100"].engine.cuda_graph_mixed is True


def test_trtllm_runs_get_the_token_budget_their_scripts_pass(tmp_path):
    gptoss = dict(model_path="openai/gpt-oss-120b", precision="fp4", gemm_quant_mode="bf16", moe_quant_mode="mxfp4",
                  tp_size=1, moe_tp_size=1, moe_ep_size=1)
    llama = dict(model_path="meta-llama/Llama-3.1-70B", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="",
                 tp_size=4, moe_tp_size=4, moe_ep_size=1)
    cases, skips = read_rows(tmp_path, [
        silicon_row(id="gptoss-h200", system="h200_sxm", silicon_data_source=_ix("2025-12-15"), **gptoss),
        silicon_row(id="llama-b200", silicon_data_source=_ix("2025-10-29"), **llama),
        silicon_row(id="llama-aic", silicon_data_source=AIC, **llama)])
    assert not skips
    p = {c.id: case_problem(c) for c in cases}
    # trtllm-serve --max_num_tokens 20000 (gpt-oss) and 16384 (Llama-3.1-70B) instead of the engine's
    # 8,192, and the Llama scripts' FP8 cache ([IX12]); aiconfigurator's launch is not known: defaults.
    assert [t.value for t in p["gptoss-h200"].engine.token_budget] == [20000]
    assert [t.value for t in p["llama-b200"].engine.token_budget] == [16384]
    # The scripts' FP8 cache is also the FP8 checkpoint's (its hf_quant_config).
    assert launch_of(cases[1])[1].value == p["llama-b200"].precision.kv_cache.value == "fp8"
    assert [t.value for t in p["llama-aic"].engine.token_budget] == [8192] and launch_of(cases[2]) == ({}, None)
