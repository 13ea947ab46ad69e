"""The plan executed on torch.distributed (gloo, CPU processes): every strategy family at 2, 4
and 8 processes generates the tokens of a single-process run, logits agree within 1e-9 (float64),
collectives move the bytes the cost model charges, and faults end the run with the rank named."""

import math
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from meshplan.cost.attention import decode_work, prefill_work  # noqa: E402
from meshplan.cost.imbalance import busiest_rank_load  # noqa: E402
from meshplan.cost.inputs import CostInputs  # noqa: E402
from meshplan.cost.layer import Par, moe_ops, tp_all_reduce  # noqa: E402
from meshplan.errors import SpecError  # noqa: E402
from meshplan.execute.launch import (RunFailed, RunSpec, choose_devices, refuse_illegal,  # noqa: E402
                                     refuse_oversized, run)
from meshplan.execute.model import ReferenceModel, Weights, WeightShapes, config_from_spec  # noqa: E402
from meshplan.execute.profile import (DeviceProfile, calibrate, calibration_layers, measure,  # noqa: E402
                                      predict, run_problem)
from meshplan.execute.runner import Runner, rank_weight_bytes  # noqa: E402
from meshplan.execute.worker import prompts  # noqa: E402
from meshplan.io.problem_file import load_problem, problem_from_raw  # noqa: E402
from meshplan.strategy.layout import Layout, parse_strategy  # noqa: E402
from meshplan.strategy.mesh import coords_of  # noqa: E402

SEED = load_problem(None)
CFG = config_from_spec(SEED.model)
REQ, ISL, OSL = 4, 6, 4
TOL = 1e-9
"""float64 logits of a parallel run against the single-process run: only summation order differs."""


def _run(lay, cfg=CFG, **kw):
    return run(RunSpec(layout=lay, config=cfg, requests=REQ, isl=ISL, osl=OSL, dtype="float64", **kw))


def _tokens(reports):
    return {k: v for r in reports for k, v in r["generated"].items()}


def _logits(reports):
    return {k: v for r in reports for k, v in r["logits"].items()}


@pytest.fixture(scope="module")
def reference():
    return _run(Layout())


FAMILIES = {
    "tp": ["tp=2", "tp=4", "tp=8"],
    "dp+ep": ["dp=2,ep=2", "dp=4,ep=4", "dp=8,ep=8"],
    "tp+ep with etp": ["tp=2,dp=2,ep=2,etp=2", "tp=2,dp=4,ep=4,etp=2"],
    "pp": ["pp=2", "pp=4", "pp=8"],
    "pp+ep": ["pp=2,dp=2,ep=2", "pp=2,dp=4,ep=4"],
    "instances": ["instances=2", "instances=2,dp=2,ep=2", "instances=2,tp=2,dp=2,ep=4"],
}
CASES = [s for family in FAMILIES.values() for s in family]


@pytest.mark.parametrize("strategy", CASES)
def test_parallel_run_equals_single_process(strategy, reference):
    lay = parse_strategy(strategy)
    assert lay.gpus in (2, 4, 8)
    out = _run(lay)
    assert _tokens(out) == _tokens(reference)
    ref_logits, got = _logits(reference), _logits(out)
    assert ref_logits.keys() == got.keys()
    worst = max(abs(a - b) for rid in got for step_a, step_b in zip(got[rid], ref_logits[rid])
                for a, b in zip(step_a, step_b))
    assert worst < TOL, worst


def test_gqa_heads_replicated_under_tp():
    # Qwen3-30B-A3B has 4 KV heads: tp 8 keeps one replicated KV head per GPU.
    problem = problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h100", "workload": {"isl": 8, "osl": 4}})
    cfg = config_from_spec(problem.model)
    cfg = type(cfg)(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, "layers": cfg.layers[:4]})
    ref = _run(Layout(), cfg)
    out = _run(parse_strategy("tp=8"), cfg)
    assert _tokens(out) == _tokens(ref)


def test_tp_all_reduce_bytes_are_the_cost_models():
    lay = parse_strategy("tp=2,dp=1,ep=2")
    out = _run(lay)
    measured = out[0]["bytes"]["tp_all_reduce_attn"]
    # The cost model's TP all-reduce for the same shapes, per pass: T tokens x D hidden over tp 2
    # (ring: 2 x 1/2 of the buffer), counted in bf16 there and float64 here (x 8/2). With attention
    # dp 1 all 4 requests sit on one dp rank: T = 4 x 6 prompt tokens in the prefill, then 4 per
    # decode step for 3 steps; 16 layers. 16 x 36 x (2 x 1/2 x 128 x 8) = 589,824 bytes.
    problem = run_problem(SEED, CFG, DeviceProfile(flops=1e9, bw_bytes_per_s=1e9, op_overhead_s=0.0), ISL, OSL)
    ci = CostInputs.from_problem(problem)
    per_token = float(tp_all_reduce(ci, Par.of(2, 1, 2, 1, 1), 1.0, "x").comm_bytes) / ci.act_bytes_per_value * 8
    tokens = REQ * ISL + (OSL - 1) * REQ
    assert math.isclose(measured, 16 * tokens * per_token)


def test_illegal_layout_is_refused_before_any_process_starts():
    with pytest.raises(SpecError) as err:
        refuse_illegal(SEED, parse_strategy("tp=3"), CFG)
    assert "heads" in str(err.value)


FAULT_TIMEOUT_S = 20.0
"""No-progress timeout of the fault runs: long beside any healthy phase of the tiny model (under
3 s on 2 busy cores with 8 ranks); start-up is not timed by it (watchdog.py)."""


@pytest.mark.parametrize("kind, phase", [("die", "step 2"), ("hang", "step 2"), ("hang", "warm-up")])
def test_a_failing_rank_is_named_with_its_phase(kind, phase):
    with pytest.raises(RunFailed) as err:
        _run(parse_strategy("dp=2,ep=2"), timeout_s=FAULT_TIMEOUT_S, fault={"rank": 1, "phase": phase, "kind": kind})
    message = str(err.value)
    assert message.startswith("rank 1 ") and f"at {phase}" in message, message
    assert ("(hung)" in message) == (kind == "hang"), message


def test_a_rank_that_starts_after_the_timeout_is_not_hung(reference):
    # Rank 1 takes longer to start than the timeout (as importing torch does on a busy machine);
    # rank 0 waits for it in the rendezvous. The run completes and generates the reference tokens.
    out = _run(parse_strategy("dp=2,ep=2"), timeout_s=FAULT_TIMEOUT_S,
               fault={"rank": 1, "phase": "start", "kind": "sleep", "seconds": 1.5 * FAULT_TIMEOUT_S})
    assert _tokens(out) == _tokens(reference)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs (NCCL)")
def test_nccl_run_on_gpus(reference):
    out = run(RunSpec(layout=parse_strategy("dp=2,ep=2"), config=CFG, requests=REQ, isl=ISL, osl=OSL,
                      dtype="float64", cuda=True))
    assert _tokens(out) == _tokens(reference)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (NCCL)")
def test_one_gpu_nccl_run_equals_the_cpu_run(reference):
    # The lent GPU machines have one GPU: NCCL with world size 1, weights and caches on the GPU,
    # and the device profile measured and calibrated there.
    out = run(RunSpec(layout=Layout(), config=CFG, requests=REQ, isl=ISL, osl=OSL, dtype="float64", cuda=True))
    assert _tokens(out) == _tokens(reference)
    profile = calibrate(SEED, measure("float32", cuda=True), "float32", True, ISL)
    assert profile.flops > 1e12 and profile.op_overhead_s > 0


def test_the_single_process_run_equals_the_readable_reference(reference):
    # Two implementations: the plain unsharded decoder in execute/model.py and the rank runner
    # under the 1-GPU layout. Same tokens, logits within float64 round-off.
    model = ReferenceModel(CFG, 0, torch.float64)
    got = _tokens(reference)
    ref_logits = _logits(reference)
    for rid, prompt in enumerate(prompts(CFG, REQ, ISL, 0)):
        tokens, logits = model.generate(prompt, OSL)
        assert got[str(rid)] == tokens
        for a, b in zip(ref_logits[str(rid)], logits):
            assert max(abs(x - float(y)) for x, y in zip(a, b)) < TOL


def test_devices_one_gpu_per_rank_or_cpu_processes():
    lay = parse_strategy("dp=2,ep=2")
    assert choose_devices(lay, "full", 8).backend == "nccl"
    cpu = choose_devices(lay, "tiny", 1)
    assert cpu.backend == "gloo" and "2 ranks and 1 GPU" in cpu.note
    assert choose_devices(lay, "tiny", 0).note is None
    with pytest.raises(SpecError) as err:
        choose_devices(lay, "full", 1)
    assert "needs 2 GPUs" in str(err.value) and "has 1" in str(err.value)


def _four_layer_cfg():
    problem = problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h100", "workload": {"isl": 8, "osl": 4}})
    cfg = config_from_spec(problem.model)
    return type(cfg)(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, "layers": cfg.layers[:4]})


@pytest.mark.parametrize("strategy", ["tp=2", "pp=2,dp=2,ep=2", "tp=2,dp=2,ep=2,etp=2", "tp=8"])
def test_the_shapes_counted_are_the_tensors_a_runner_draws(strategy):
    # rank_weight_bytes builds the Runner with WeightShapes (meta tensors, nothing drawn); the same
    # Runner with the real Weights must hold tensors of exactly those shapes, rank by rank.
    cfg, lay = _four_layer_cfg(), parse_strategy(strategy)
    for rank in range(lay.gpus):
        comm = SimpleNamespace(c=coords_of(rank, lay))
        real = Runner(cfg, lay, comm, 0, torch.float64).weights()
        shapes = Runner(cfg, lay, comm, 0, torch.float64, weights=WeightShapes).weights()
        assert [tuple(t.shape) for t in real] == [tuple(t.shape) for t in shapes]
        assert all(t.device.type == "meta" for t in shapes)


def test_rank_weight_bytes_by_hand():
    # Four MoE layers of the reference Qwen3-30B-A3B (hidden 256, 32 heads and 4 KV heads of 8,
    # 128 experts of FFN 32, vocabulary 256) at pp=2, dp=2, ep=2 (tp 1), 8 bytes per value. Per
    # layer: norms 2 x 256 = 512, wq and wo 2 x 256 x 256 = 131,072, wk and wv 2 x 4 x 8 x 256 =
    # 16,384, router 128 x 256 = 32,768, 64 experts x 3 x 256 x 32 = 1,572,864: 1,753,600 values.
    # Two layers per stage, 3,507,200; the first stage adds the embedding 256 x 256 = 65,536, the
    # last the LM head 65,536 and the final norm 256.
    cfg, lay = _four_layer_cfg(), parse_strategy("pp=2,dp=2,ep=2")
    for rank in range(lay.gpus):
        values = 3_507_200 + (65_536 if coords_of(rank, lay).pp == 0 else 65_536 + 256)
        assert rank_weight_bytes(cfg, lay, rank, 8) == 8 * values


def test_a_model_too_big_for_its_gpus_is_refused():
    problem = problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h100", "workload": {"isl": 8, "osl": 4}})
    full = config_from_spec(problem.model, "full")
    # 30.5e9 parameters in float32 are ~114 GiB: one 80 GiB GPU cannot hold them, eight can.
    with pytest.raises(SpecError) as err:
        refuse_oversized(full, Layout(), 4, 80 * 2**30)
    assert "rank 0" in str(err.value) and "GiB" in str(err.value)
    refuse_oversized(full, parse_strategy("dp=8,ep=8"), 4, 80 * 2**30)


def test_calibration_uses_one_layer_of_each_kind():
    def layers(name):
        return calibration_layers(problem_from_raw({"model": name, "gpu": "h100", "workload": {"isl": 8, "osl": 4}}).model)

    assert layers("llama-3.1-8b") == 1  # all dense
    assert layers("qwen3-30b-a3b") == 1  # all MoE
    assert layers("deepseek-v3") == 4  # 3 dense layers first, then MoE
    assert layers("llama-4-maverick") == 2  # dense and MoE interleaved: MoE on layers 1, 3, ...


def test_cpu_share_scales_the_fixed_time():
    # With compute and bandwidth practically free, a 1-GPU decode step is its operators' fixed
    # time only, so half a core per process doubles it.
    fast = DeviceProfile(flops=1e30, bw_bytes_per_s=1e30, op_overhead_s=1e-3)
    whole = predict(run_problem(SEED, CFG, fast, ISL, OSL), Layout(), 1).tpot_s
    half = predict(run_problem(SEED, CFG, fast, ISL, OSL, share=0.5), Layout(), 1).tpot_s
    assert math.isclose(half, 2 * whole, rel_tol=1e-6)


@pytest.mark.parametrize("strategy", ["dp=4,ep=4", "pp=2,dp=4,ep=4", "tp=2,dp=4,ep=4,etp=2"])
def test_ep_bytes_are_the_cost_models(strategy):
    # Dispatch, combine and etp reduce-scatter bytes of a prefill (a one-step run) and of two
    # decode steps (a three-step run less the one-step run), summed over ranks, against the cost
    # model's moe_ops for the same tokens (cost/layer.py _a2a: prefill sends a token once per
    # destination GPU, (n-1)(1-(1-1/ep)^k) copies for n = ep x etp; decode once per expert).
    # run_problem sets every transfer format to fp32 (4 B) and the run sends float64 (8 B), hence
    # x 2. Dispatch, combine and reduce-scatter are charged for the busiest rank, so its load factor
    # is taken off to compare a mean. The cost model is an expectation over uniform routing and the run routes real
    # (random-weight) tokens: they agree within a stated 6% (measured: 0.2% to 3%).
    lay = parse_strategy(strategy)
    requests, isl = 16, 32
    kinds = ("ep_dispatch", "ep_combine", "etp_reduce_scatter")

    def measured(osl):
        out = run(RunSpec(layout=lay, config=CFG, requests=requests, isl=isl, osl=osl, dtype="float64"))
        return {k: sum(r["bytes"].get(k, 0.0) for r in out) for k in kinds}

    one, three = measured(1), measured(3)
    problem = run_problem(SEED, CFG, DeviceProfile(flops=1e9, bw_bytes_per_s=1e9, op_overhead_s=0.0), isl, 3)
    ci = CostInputs.from_problem(problem)
    par = Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    per_rank = requests // lay.dp
    # Every rank of an instance sees each of the 16 MoE layers once (its stage's layers on its
    # stage), so the total is 16 layers x (GPUs per stage) ranks.
    ranks_layers = 16 * lay.gpus_per_stage
    for decode, tokens in ((False, per_rank * isl), (True, per_rank)):
        work = decode_work(tokens, isl, lay.dp) if decode else prefill_work(tokens, per_rank, isl / 2.0, lay.dp)
        ops = {op.name: float(op.comm_bytes) for op in moe_ops(ci, par, work, 0.0)}
        load = float(busiest_rank_load(lay.dp * tokens * ci.top_k, lay.ep, ci.num_experts, ci.expert_load_cv))
        model = {kind: ops[kind] * 2 / load for kind in kinds}
        for kind in kinds:
            value = (three[kind] - one[kind]) / 2 if decode else one[kind]
            assert value == pytest.approx(model[kind] * ranks_layers, rel=0.06, abs=1e-9), (decode, kind)


def test_a_ranks_block_of_a_weight_is_the_same_block_of_the_whole():
    # Ranks draw only the row blocks they keep; what they get must be exactly the slice of the
    # tensor that the single-process reference draws whole (block edges at 64 rows included).
    w = Weights(CFG, 0, torch.float64)
    whole = w.get("x", 200, 7)
    assert torch.equal(w.get("x", 200, 7, rows=slice(70, 150)), whole[70:150])
    assert torch.equal(w.get("x", 200, 7, rows=slice(0, 64), cols=slice(2, 5)), whole[:64, 2:5])
    assert torch.equal(w.get("x", 200, 7, rows=slice(199, 200)), whole[199:])
    assert not torch.equal(whole[:64], whole[64:128])  # blocks are drawn from different seeds
