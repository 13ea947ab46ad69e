"""Steady state of a closed loop of clients, as serving benchmarks run them.

Clients keep a fixed number of requests in flight; each request has a prompt of ISL tokens and
generates OSL tokens, and a finished request's client sends the next one at once. Requests that
start together decode in lockstep (one token per iteration each) and, with a fixed OSL, finish
together, so prompts arrive in clumps rather than one by one.

Aggregated (``solve_aggregated``), per attention-dp rank and micro-batch, with n requests held
(KV memory and the engine's batch limit may hold fewer than are in flight; the rest wait for a
slot, Little's law):
- Mixed policy (vLLM, TensorRT-LLM: running requests first, new prompts in the budget left): a
  clump of g = room / ISL prompts is prefilled in the iteration after it arrives, riding with the
  decodes; the n / g clumps of a rank stay one iteration apart, so a fraction
  f = (n / g) x chunks / (OSL - 1 + chunks) of iterations carries prefill. TPOT is the mean
  iteration; TTFT is the wait for the iteration being scheduled (1.5 iterations when the overlap
  scheduler has formed the next one already, else 0.5) plus the clump's own chunk iterations. The
  run's first wave arrives all at once and is prefilled in whole clumps (room / ISL prompts each),
  n / whole x chunks iterations; over a run of R requests per client the mean one waits half of
  them beyond its own, once in R: (n / whole x chunks - 1) / 2 such iterations / R.
- Separate policy (SGLang: waiting prompts are prefilled first, decoding pauses): every request
  of a wave starts decoding after the last prefill batch, so the waves stay whole. A wave is
  b = n x ISL / budget prefill batches and OSL - 1 decode iterations; the j-th batch's prompts
  wait j batches for their first token and b - j more before decoding resumes, so
  TTFT = wait + (b + 1) / 2 batches and TPOT = decode + (b - 1) / 2 batches / (OSL - 1). With
  SGLang's receive interval of R decode iterations the wait is R / 2 iterations instead of 0.5.
  Output lengths that differ (a range, read as uniform on [2 x mean - max, max]) end a wave's
  requests over s = 2 x (max - mean) decode iterations, so their next prompts reach the engine in
  groups of g = n x R / s (at least 1, at most n) rather than whole; how much of the wave still
  arrives together is CostAssumptions.wave_coherence (g + coherence x (n - g) prompts). A group of
  b' batches: TTFT = wait + (b' + 1) / 2 batches, and the n / g groups' prefills of a lifetime pause
  every request's decoding, TPOT = decode + (n / g x b' - (b' + 1) / 2) batches / (OSL - 1) (with
  g = n, the whole-wave figures above). The run's first wave arrives whole all the same; its TTFT
  replaces the group's once per client's run (requests_per_client), as under the mixed policy.
Attention-dp ranks run in lockstep and receive their share of every clump together. With
TensorRT-LLM's attention-dp balancing (EngineProfile.attention_dp_balance) a prompt is also held
until every rank has one, or for a timeout (``adp_balance_wait_s``).

With a prefix cache (WorkloadSpec.prefix_hit_rate) ISL above is the part of a prompt prefill
computes; its tokens attend to the cached prefix as well.

With speculative decoding an iteration yields tau tokens per decoding sequence
(cost.speculative): a request decodes in (OSL - 1) / tau iterations and TPOT is the mean
iteration over tau.

Disaggregated (``solve_disaggregated``): decode instances run pure decode iterations; prompts
reach the prefill instances at the loop's completion rate and queue there (M/D/1, cost.queueing), and their KV
cache moves to the decode instance before the first token. A decode rank holds the requests the
loop's rate keeps decoding (Little's law: rate x (OSL - 1) x TPOT, over the decode ranks), at most
what its KV memory and batch limit hold: the others wait for their first token, in the prefill
queue or for a decode slot. When the prefill pool caps the rate, the decode ranks run smaller
batches than concurrency / ranks; when the decode slots cap it, rate = slots / ((OSL - 1) x TPOT).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshplan.cost.attention import Work, decode_work
from meshplan.cost.capacity import decode_capacity
from meshplan.cost.floats import Floats
from meshplan.cost.inputs import CostInputs
from meshplan.cost.iteration import graph_limit, iteration, overlapped, prefill_budget
from meshplan.cost.kv_transfer import kv_transfer_s
from meshplan.cost.layer import Par
from meshplan.cost.queueing import loop_rate, md1_wait_capped_s

SECANT_STEPS = 3
"""Secant steps that solve a disaggregated loop's decode batch (``secant_fixed_point``): on the
dev set three agree with the converged point within 0.01% (two within 0.4%)."""


def secant_fixed_point(f, start, lo, hi):
    """x = f(x)[0] within [lo, hi] (``f`` returns the new x and what it computed on the way): one
    plain step from ``start``, then SECANT_STEPS secant steps on f(x) - x; returns (x, *extras) of
    the last evaluation. Hand check: f(x) = 1 + x / 2 from 4 gives 3 (plain step), then the secant
    through (4, -1) and (3, -0.5) hits 2, the fixed point, exactly."""
    x0 = np.asarray(start, dtype=float)
    out = f(x0)
    g0 = out[0] - x0
    x1 = np.clip(out[0], lo, hi)
    for _ in range(SECANT_STEPS):
        out = f(x1)
        g1 = out[0] - x1
        slope = g1 - g0
        flat = np.abs(slope) <= 1e-12 * np.maximum(1.0, np.abs(x1))  # no secant: keep the last point
        x2 = np.clip(np.where(flat, x1, x1 - g1 * (x1 - x0) / np.where(flat, 1.0, slope)), lo, hi)
        x0, g0, x1 = x1, g1, x2
    return (x1, *f(x1)[1:])


@dataclass(frozen=True, kw_only=True, slots=True)
class Serving:
    """Full serving figures per instance and per GPU (arrays over candidates)."""

    ttft_s: Floats
    tpot_s: Floats
    output_tok_s_per_gpu: Floats
    input_tok_s_per_gpu: Floats
    concurrency_per_instance: Floats
    """Requests in flight per instance."""
    prefill_share: Floats
    """Share of a rank's iterations that carry prefill work (0 for disaggregated)."""


def adp_balance_wait_s(ci: CostInputs, par: Par, held, rate, iteration_s):
    """Mean time TensorRT-LLM's attention-dp balancing (EngineProfile.attention_dp_balance) holds a
    prompt, with ``held`` requests per rank sending ``rate`` prompts per second per rank in all.

    The instance's dp ranks receive prompts at dp x rate per second. A new request goes to a rank
    below the mean number of active requests (TensorRT-LLM _balance_requests_across_ranks), in a
    closed loop the rank whose request has just finished, which is any rank alike; so every rank has a
    prompt after dp x H(dp) arrivals (the coupon collector's mean, H the harmonic number). Held prompts
    are released then, after batching-wait iterations more, or when the timeout's iterations have
    passed, whichever comes first (the timeout counter restarts at each release); a prompt arriving
    at a uniform moment of that cycle waits half of it. A rank with a single request has nothing to
    decode while its next prompt waits, and the engine then releases at once: no wait below two
    requests per rank. Not modelled: a rank whose every request waits as a prompt also has nothing to
    decode and releases at once, which shortens the wait at few requests per rank.
    Hand check: dp 2, held 4, rate 4/s (8 prompts/s), 20 ms iterations, timeout 60 (1.2 s), batching
    10 (0.2 s): fill 2 x 1.5 / 8 = 0.375 s, cycle 0.575 s, wait 0.2875 s; with dp 8 the fill is
    8 x 2.718 / 32 = 0.68 s at 4/s, and at 1/s (8 prompts/s) 2.72 s: past the timeout, wait 0.6 s."""
    e = ci.engine
    dp = np.asarray(par.dp, dtype=float)
    arrivals = np.maximum(np.asarray(rate, dtype=float) * dp, 1e-12)
    fill = dp * harmonic(dp) / arrivals
    timeout = e.adp_balance_timeout_iters * iteration_s
    batching = e.adp_balance_batching_wait_iters * iteration_s if e.adp_balance_batching_wait_iters else 0.0
    cycle = np.where(fill < timeout, fill + batching, timeout)
    on = e.attention_dp_balance & (dp > 1) & (np.asarray(held) >= 2.0)
    return np.where(on, cycle / 2.0, 0.0)


def harmonic(n):
    """H(n) = 1 + 1/2 + ... + 1/n by its asymptotic series ln n + gamma + 1/(2n) - 1/(12 n^2), within
    1/(120 n^4) (Abramowitz and Stegun 6.3.18). Hand check: n = 2 gives 1.4995 (exact 1.5)."""
    n = np.maximum(np.asarray(n, dtype=float), 1.0)
    return np.log(n) + 0.5772156649015329 + 1.0 / (2.0 * n) - 1.0 / (12.0 * n * n)


def _chunks(ci: CostInputs, room, isl: float):
    """(chunks per prompt, tokens per chunk) when an iteration has ``room`` prompt tokens."""
    if ci.engine.chunked_prefill:
        n = np.maximum(1.0, np.ceil(isl / np.maximum(room, 1.0)))
    else:
        n = np.ones_like(np.asarray(room, dtype=float))
    return n, isl / n


def _wave_group(ci: CostInputs, held, recv):
    """Prompts per rank that a separate-policy engine prefills together in a closed loop whose
    engine reads new requests every ``recv`` decode iterations (see the module doc). Hand check:
    32 held, outputs of 81-121 tokens (a spread of 40 iterations), reads every 30: 32 x 30 / 40 = 24
    prompts end between two reads; with wave_coherence 0.5, 24 + 0.5 x (32 - 24) = 28."""
    w = ci.workload
    spread = 2.0 * (w.osl_max_tokens - w.osl_tokens) / ci.spec_tau  # a uniform range's width, in iterations
    if spread <= 0.0:
        return held
    apart = np.clip(held * recv / spread, 1.0, held)
    return apart + ci.wave_coherence * (held - apart)


def _prefill_work(ci: CostInputs, n_dec, ctx, p, dp) -> Work:
    """A pass with n_dec decoding sequences and p computed prompt tokens on every rank (prompts of
    WorkloadSpec.computed_prompt_tokens each, attending to prefill_attended_tokens keys)."""
    w = ci.workload
    return Work(decode_seqs=n_dec, decode_context=ctx, prefill_tokens=p, prefill_seqs=p / w.computed_prompt_tokens,
                prefill_attended=w.prefill_attended_tokens, moe_tokens=dp * (n_dec + p))


def solve_aggregated(ci: CostInputs, par: Par, B, step=iteration) -> Serving:
    """Aggregated serving with B requests in flight per attention-dp rank per micro-batch.
    ``step(ci, par, work, graphed)`` gives an iteration (cost.iteration; tests pass their own)."""
    w = ci.workload
    isl, osl = w.computed_prompt_tokens, w.osl_tokens  # a prompt's tokens prefill computes
    dp, pp = par.dp, par.pp
    held = np.maximum(np.minimum(B, decode_capacity(ci, par)), 1.0)
    waiting = np.maximum(B - held, 0.0)
    budget = prefill_budget(ci, par)
    gmax = graph_limit(ci, par)
    ctx = w.decode_context_tokens
    steps = max(osl - 1.0, 1.0) / ci.spec_tau  # decode iterations per request (tau tokens each)
    # A prompt waits for the iteration being formed, or with SGLang's receive interval for the next
    # point where requests are taken in: half the interval's decode iterations on average (an engine
    # with nothing to decode, a lone request's, reads at once).
    recv = np.where(held * par.dp > 1.0, ci.engine.recv_interval_iters, 1.0)
    wait_iterations = recv / 2.0 + overlapped(ci, par)
    if ci.mixed:
        room = np.maximum(budget - held * (1.0 + ci.spec_k), 1.0)  # decodes take 1 (+ K drafts) tokens each
        n_chunks, _ = _chunks(ci, room, isl)
        # Prompts that arrive together are prefilled together, up to what the budget holds;
        # clump_coherence says how much of that clumping survives the run's jitter.
        whole = np.where(n_chunks > 1, 1.0, np.clip(np.floor(room / isl), 1.0, held))
        clump = 1.0 + ci.clump_coherence * (whole - 1.0)
        p = clump * isl / n_chunks
        mixed_iterations = held / clump * n_chunks
        cycle = np.maximum(steps + n_chunks, mixed_iterations)
        f = mixed_iterations / cycle
        n_dec = held * steps / cycle
        t_dec = step(ci, par, decode_work(n_dec, ctx, dp), n_dec <= gmax).cycle_s
        t_mix = step(ci, par, _prefill_work(ci, n_dec, ctx, p, dp),
                     ci.engine.cuda_graph_mixed & (n_dec + p <= gmax)).cycle_s
        tpot = (1.0 - f) * t_dec + f * t_mix
        queued = np.maximum(mixed_iterations - steps - n_chunks, 0.0)  # prefill-bound: clumps wait
        ttft = wait_iterations * t_dec + (n_chunks + queued) * t_mix
        if np.isfinite(ci.requests_per_client):  # a benchmark run (steady state has no first wave)
            # The run's first wave arrives all at once and is prefilled in whole clumps.
            first = held / whole * n_chunks
            p_first = whole * isl / n_chunks
            t_first = step(ci, par, _prefill_work(ci, n_dec, ctx, p_first, dp),
                           ci.engine.cuda_graph_mixed & (n_dec + p_first <= gmax)).cycle_s
            ttft = ttft + (first - 1.0) / 2.0 * t_first / ci.requests_per_client
        life = ttft + steps * tpot
        held_back = adp_balance_wait_s(ci, par, held, held / life, tpot)
        ttft, life = ttft + held_back, life + held_back
    else:
        t_dec = step(ci, par, decode_work(held, ctx, dp), held <= gmax).cycle_s

        def prefill(group):  # (batches, one batch's time) of ``group`` prompts prefilled together
            batches = np.maximum(1.0, np.ceil(group * isl / budget))
            p = group * isl / batches
            return batches, step(ci, par, _prefill_work(ci, 0.0, ctx, p, dp),
                                 ci.engine.cuda_graph_mixed & (p <= gmax)).cycle_s

        group = _wave_group(ci, held, recv)
        batches, t_pre = prefill(group)
        own = (batches + 1.0) / 2.0 * t_pre  # the group's batches up to a prompt's own, on average
        groups = held / group  # groups per lifetime: every held prompt is prefilled once in it
        ttft = wait_iterations * t_dec + own
        if np.isfinite(ci.requests_per_client):  # a benchmark run: its first wave arrives whole
            wave_batches, t_wave = prefill(held)
            ttft = ttft + ((wave_batches + 1.0) / 2.0 * t_wave - own) / ci.requests_per_client
        tpot = t_dec + (groups * batches * t_pre - own) / steps  # every other prefill pauses decoding
        f = groups * batches / (groups * batches + steps)
        life = groups * batches * t_pre + steps * t_dec + wait_iterations * t_dec
    tpot = tpot / ci.spec_tau  # the mean iteration carries tau tokens per sequence
    rate = held / life  # requests per second per rank and micro-batch
    ttft = ttft + waiting / rate + ci.request_overhead_s + ci.client_overhead_s
    per_gpu = rate / par.tp  # rate per (rank, micro-batch) x dp x pp slots, over pp x tp x dp GPUs
    return Serving(ttft_s=ttft, tpot_s=tpot, output_tok_s_per_gpu=per_gpu * osl,
                   input_tok_s_per_gpu=per_gpu * w.isl_tokens,
                   concurrency_per_instance=B * dp * pp, prefill_share=f)


@dataclass(frozen=True, kw_only=True, slots=True)
class DisaggregatedLoop:
    """A disaggregated deployment in a closed loop (whole-deployment figures)."""

    ttft_s: Floats
    tpot_s: Floats
    output_tok_s: Floats
    """Output tokens per second of the whole deployment."""


def solve_disaggregated(ci: CostInputs, par_p: Par, n_prefill: int, par_d: Par, n_decode: int,
                        concurrency: float, step=iteration) -> DisaggregatedLoop:
    """``concurrency`` requests in flight over ``n_prefill`` prefill and ``n_decode`` decode
    instances (see the module doc); ``step`` as in solve_aggregated."""
    w = ci.workload
    isl, osl = w.computed_prompt_tokens, w.osl_tokens  # a prompt's tokens prefill computes
    steps = max(osl - 1.0, 1.0)
    slots_d = n_decode * par_d.dp * par_d.pp
    b = np.maximum(concurrency / slots_d, 1.0)
    run_max = np.maximum(np.minimum(b, decode_capacity(ci, par_d)), 1.0)
    graphs_d = graph_limit(ci, par_d)
    ci_d = ci.for_decode_pool()

    def decode_tpot(run):
        dec = step(ci_d, par_d, decode_work(run, w.decode_context_tokens, par_d.dp), run <= graphs_d)
        return dec.cycle_s / ci.spec_tau

    # Prefill: one prompt alone (in chunks of the budget), and the token rate of full iterations.
    budget = prefill_budget(ci, par_p)
    n_chunks, chunk = _chunks(ci, budget, isl)
    gmax = graph_limit(ci, par_p)

    def prefill_iteration(tokens, busy_ranks):
        # busy_ranks attention-dp ranks carry ``tokens`` each; the MoE layers see all of them.
        work = _prefill_work(ci, 0.0, 0.0, tokens, busy_ranks)
        return step(ci, par_p, work, ci.engine.cuda_graph_mixed & (tokens <= gmax))

    one = prefill_iteration(chunk, 1.0)  # a prompt alone: the other ranks are idle
    # Each chunk passes every stage; a speculative draft's pass over it runs once, on the last stage.
    single = (n_chunks + par_p.pp - 1) * one.pass_s - (par_p.pp - 1) * one.draft_s + n_chunks * one.exposed_s
    full_tokens = np.maximum(budget, chunk)
    full = prefill_iteration(full_tokens, par_p.dp)  # at capacity every rank is full
    capacity = n_prefill * par_p.dp * full_tokens / (full.pass_s + full.exposed_s) / isl  # prompts per second
    transfer = kv_transfer_s(ci, par_p)
    waits = single * (1.5 + overlapped(ci, par_p)) + transfer  # a prompt alone, its wait, the transfer

    def decoding(run):
        # With ``run`` requests per decode rank: TPOT, the loop's rate, and by Little's law on the
        # decode pool the requests per rank that rate keeps decoding (rate x decode time / ranks).
        tpot = decode_tpot(run)
        rate = np.minimum(loop_rate(concurrency, waits + tpot + steps * tpot, single, capacity),
                          run_max * slots_d / (steps * tpot))  # at most what the decode slots hold
        return np.clip(rate * steps * tpot / slots_d, 1.0, run_max), tpot, rate

    run, tpot, rate = secant_fixed_point(decoding, run_max, 1.0, run_max)
    ttft = np.maximum(waits + tpot + md1_wait_capped_s(rate / capacity, single), concurrency / rate - steps * tpot)
    # The run's first prompts all arrive at once: they drain at the pool's capacity, each waiting
    # half the burst on average, which a run of R requests per client carries once in R.
    burst = concurrency / capacity
    ttft = ttft + burst / 2.0 / ci.requests_per_client + ci.request_overhead_s + ci.client_overhead_s
    return DisaggregatedLoop(ttft_s=ttft, tpot_s=tpot, output_tok_s=rate * osl)
