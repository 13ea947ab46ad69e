"""Speculative decoding in the cost model: the verify pass, the draft, TPOT over tau, memory."""

import math
from types import SimpleNamespace

import numpy as np

from meshplan.cost.attention import Work, decode_work
from meshplan.cost.closed_loop import solve_aggregated
from meshplan.cost.draft import draft_kv_per_sequence, draft_weight_bytes
from meshplan.cost.inputs import CostInputs
from meshplan.cost.iteration import iteration
from meshplan.cost.layer import Par, attention_block
from meshplan.cost.serving import decode_cost
from meshplan.cost.speculative import draft_cost, verify_work
from meshplan.io.problem_file import problem_from_raw

PAR = Par.of(1, 1, 1, 1, 1)


def _problem(model="llama-3.1-8b", spec=None, weights="bf16", **workload):
    raw = {"model": model, "gpu": "h100-sxm", "precision": {"weights": weights, "kv_cache": "bf16"},
           "engine": "trtllm", "calibration": "none", "workload": {"isl": 1000, "osl": 101, **workload}}
    if spec:
        raw["speculative"] = spec
    return problem_from_raw(raw)


def _ci(*args, **kw):
    return CostInputs.from_problem(_problem(*args, **kw))


EAGLE3 = {"method": "eagle", "draft_tokens": 3, "accepted_tokens": 1.0}  # tau = 2


def test_verify_pass_runs_k_plus_one_positions_per_sequence():
    ci = _ci(spec=EAGLE3)
    w = verify_work(ci, Par.of(1, 4, 4, 1, 1), decode_work(2.0, 1000.0, 4))
    # 2 sequences x (3 drafts + 1) = 8 positions on the rank; the MoE layers see 4 ranks x 8 = 32.
    assert float(w.tokens) == 8.0 and float(w.moe_tokens) == 32.0 and float(w.head_rows) == 8.0


def test_verify_attention_reads_the_cache_once_for_all_positions():
    ci = _ci(spec=EAGLE3)
    core = next(op for op in attention_block(ci, PAR, verify_work(ci, PAR, decode_work(1.0, 1000.0, 1)), 0.0)
                if op.name == "attn_core")
    # Llama-3.1-8B, 1000 cached tokens: K and V 2 x 8 heads x 128 x 2 bytes x 1000 = 4,096,000 bytes
    # read once, plus q and o of 4 positions: 4 x 2 x 32 x 128 x 2 = 65,536 bytes.
    assert float(core.mem_bytes) == 4_096_000 + 65_536
    # FLOPs: each of the 4 positions attends to the 1000 tokens: 4 x 4 x 32 x 128 x 1000.
    assert float(core.flops) == 4 * 16_384_000


def test_without_speculation_nothing_changes():
    ci = _ci()
    w = decode_work(3.0, 500.0, 1)
    assert verify_work(ci, PAR, w) is w
    assert draft_cost(ci, PAR, w) == (0.0, 0.0)


def test_iteration_adds_the_draft_and_tpot_divides_by_tau():
    ci = _ci(spec=EAGLE3)
    B = np.array([1.0, 64.0])
    ctx = 1000 + 101 / 2  # the mean context decode_cost runs at: the prompt and half the output
    it = iteration(ci, PAR, decode_work(B, ctx, 1), np.array([True, True]))
    draft_s, _ = draft_cost(ci, PAR, verify_work(ci, PAR, decode_work(B, ctx, 1)))
    assert np.allclose(it.gpu_s, it.forward.stage_s + draft_s)
    d = decode_cost(ci, PAR, B)
    assert np.allclose(d.latency_s * 2.0, it.cycle_s)  # tau = 1 + 1 accepted token = 2


def test_draft_passes_one_over_the_verified_positions_then_one_token_each():
    ci = _ci(spec=EAGLE3)
    w = verify_work(ci, PAR, decode_work(np.array([8.0]), 1050.0, 1))
    total, _ = draft_cost(ci, PAR, w)
    first, _ = draft_cost(_ci(spec={**EAGLE3, "draft_tokens": 1, "accepted_tokens": 0.5}), PAR,
                          Work(decode_seqs=8.0, decode_context=1050.0, prefill_tokens=0.0, prefill_seqs=0.0,
                               prefill_attended=0.0, moe_tokens=32.0, decode_queries=4.0))
    one, _ = draft_cost(_ci(spec={**EAGLE3, "draft_tokens": 1, "accepted_tokens": 0.5}), PAR,
                        decode_work(np.array([8.0]), 1050.0, 1))
    # K = 3: the first pass over 8 x 4 positions, then 2 passes over 8 tokens.
    assert np.allclose(total, first + 2 * one)


def _step(ci, par, work, graphed):  # a stand-in: 10 ms per iteration, 5 us per prompt token
    t = 0.010 + 5e-6 * np.asarray(work.prefill_tokens, dtype=float)
    return SimpleNamespace(cycle_s=t, pass_s=t, exposed_s=0.0, gpu_s=t, launch_s=0.0, draft_s=0.0)


def test_closed_loop_decodes_in_fewer_iterations():
    p = _problem(spec=EAGLE3, requests_per_client=None)
    ci = CostInputs.from_problem(p.model_copy(update={
        "assumptions": p.assumptions.model_copy(update={"clump_coherence": 1.0})}))
    s = solve_aggregated(ci, PAR, np.array(32.0), step=_step)
    # TensorRT-LLM, budget 8192: 32 decoding sequences take 32 x 4 = 128 tokens, room 8064 -> clumps
    # of 8 prompts (8000 tokens, 50 ms iterations), 4 per cycle. OSL 101: 100 / tau = 50 decode
    # iterations per request, cycle max(50 + 1, 4) = 51 iterations of which 4 are mixed:
    # mean iteration (47 x 10 + 4 x 50) / 51 = 13.137 ms, TPOT = that / 2.
    assert math.isclose(float(s.tpot_s), (47 * 0.010 + 4 * 0.050) / 51 / 2)


def test_mtp_module_of_deepseek_v3_holds_its_published_size():
    ci = _ci("deepseek-v3", spec={"method": "mtp", "draft_tokens": 2, "acceptance": 0.8})
    params = float(draft_weight_bytes(ci, 1, 1, 1)) / 2.0  # bf16
    # One MoE layer: 256 experts x 3 x 7168 x 2048 = 11,274,289,152, the shared expert 3 x 7168 x 2048 =
    # 44,040,192, the router 7168 x 256 = 1,835,008, MLA attention (q_a 7168 x 1536 + 1536, q_b
    # 1536 x 128 x 192, kv_a 7168 x 576 + 512, kv_b 512 x 128 x 256, o 128 x 128 x 7168, norms
    # 2 x 7168) = 187,121,664; and eh_proj 2 x 7168 x 7168 = 102,760,448: 11,610,046,464 in all.
    assert params == 11_610_046_464
    # With the embedding and head it shares (2 x 129,280 x 7168 = 1.85e9) that is the 14B (684.5B -
    # 671B = 13.5B, both published figures rounded to 0.1B) the checkpoint ships.
    assert abs(params + 2 * 129_280 * 7168 - 13.5e9) < 0.2e9
    # One module, reused for the second draft token: one layer of KV, (512 + 64) x 2 bytes per token.
    assert float(draft_kv_per_sequence(ci, 1, 1000.0)) == 1000 * 576 * 2


def test_draft_model_memory_is_the_whole_small_model():
    ci = _ci("llama-3.1-70b", spec={"method": "draft", "draft_tokens": 4, "acceptance": 0.7,
                                     "draft_model": "llama-3.1-8b"})
    # Llama-3.1-8B at tp 2 in bf16: its KV per token 2 x 32 layers x 8 heads x 128 x 2 bytes / 2 GPUs.
    assert float(draft_kv_per_sequence(ci, 2, 100.0)) == 100 * 2 * 32 * 4 * 128 * 2
    # Its weights at tp 1 in bf16: per layer q and o 2 x 4096^2, k and v 2 x 4096 x 1024, FFN
    # 3 x 4096 x 14336 and two norms 2 x 4096 = 218,112,000, x 32 = 6,979,584,000; embedding and head
    # 2 x 128,256 x 4096 = 1,050,673,152 + the final norm 4,096: 8,030,261,248 (8.03B published).
    params = float(draft_weight_bytes(ci, 1, 1, 1)) / 2.0
    assert params == 8_030_261_248


def test_a_pipelined_prefill_pays_the_drafts_pass_once_per_chunk():
    from meshplan.cost.serving import prefill_cost
    spec = {"method": "eagle", "draft_tokens": 3, "acceptance": 0.7}
    plain, with_draft = _ci("llama-3.1-70b", isl=8000), _ci("llama-3.1-70b", spec=spec, isl=8000)
    par = Par.of(2, 1, 1, 1, 4)
    a, b = prefill_cost(plain, par, np.array([1.0])), prefill_cost(with_draft, par, np.array([1.0]))
    # One prompt of 8,000 tokens, TensorRT-LLM's 8,192-token budget: one chunk through 4 stages. The
    # draft's pass over it runs once, on the last stage, not once per stage: the TTFT grows by exactly
    # that pass (the target's stages are the same: a prompt has no drafts to verify).
    it = iteration(with_draft, par, verify_work(with_draft, par, Work(
        decode_seqs=0.0, decode_context=0.0, prefill_tokens=8000.0, prefill_seqs=1.0,
        prefill_attended=4000.0, moe_tokens=8000.0)), False)
    assert float(np.ravel(it.draft_s)[0]) > 0
    assert math.isclose(float(np.ravel(b.latency_s - a.latency_s)[0]), float(np.ravel(it.draft_s)[0]), rel_tol=1e-6)
