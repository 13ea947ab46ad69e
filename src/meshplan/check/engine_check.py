"""Check an engine launch command: does the engine accept it, does it start (the weights and one
request of its full context fit the memory it may use), how many requests run at once, and what
TTFT, TPOT and throughput to expect.

A cap on running requests (vLLM --max-num-seqs, SGLang --max-running-requests, TensorRT-LLM
max_batch_size) is not memory reserved at start-up. The engines size their KV cache from the
memory fraction and then admit a request only while the cache has room for it: vLLM and SGLang by
the tokens it holds so far, preempting (vLLM) or retracting (SGLang) a request when the cache
runs out; TensorRT-LLM's GUARANTEED_NO_EVICT scheduler by its whole length (the engine profiles'
kv_admission, catalog/engines/*.yaml). A cap above what the cache holds is never reached and
further requests wait: not an error. What must fit is one request of the full context: vLLM
refuses to start otherwise (vllm/v1/core/kv_cache_utils.py, check_enough_kv_cache_memory), and the
other engines could never run such a request.
"""

from __future__ import annotations

import math

import numpy as np

from meshplan.check.engines import EngineReading
from meshplan.check.verdict import Check, Report, Verdict, fmt
from meshplan.cost.capacity import decode_capacity, kv_context
from meshplan.cost.inputs import CostInputs
from meshplan.cost.iteration import prefill_budget
from meshplan.cost.layer import Par
from meshplan.cost.phase import max_sequences_per_rank, memory
from meshplan.errors import SpecError, finite_number
from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.plan import candidate_plan
from meshplan.search.evaluate import evaluate_aggregated
from meshplan.specs.engine import KvAdmission
from meshplan.strategy.rules import layout_violations


def _first(x) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def _length(value: float | None, flag: str) -> float | None:
    if value is not None and not (finite_number(value) and value > 0):
        raise SpecError(flag, value, "must be a positive, finite number of tokens")
    return value


def _lengths(r: EngineReading, isl: float | None, osl: float | None) -> tuple[int, float, float, list[str]]:
    """(context, isl, osl, notes): the command's context, and the lengths to predict at (half the
    context each when neither is given, the rest of the context when one is)."""
    notes = []
    context = r.context_tokens
    if context is None:
        if isl is None or osl is None:
            raise SpecError("--isl/--osl", None, f"the command sets no {r.context_flag}; give --isl and --osl")
        context = math.ceil(isl + osl)
        notes.append(f"the command sets no {r.context_flag} ({r.engine.value} takes it from the model's config); "
                     f"checked at isl + osl = {context:,} tokens")
    if isl is None and osl is None:
        isl_v = osl_v = context / 2
        notes.append(f"performance is predicted at isl {isl_v:g} / osl {osl_v:g} (give --isl/--osl to change)")
    else:
        isl_v = isl if isl is not None else context - osl
        osl_v = osl if osl is not None else context - isl
    if isl_v <= 0 or osl_v <= 0 or isl_v + osl_v > context:
        flag, value = ("--isl", isl) if isl is not None else ("--osl", osl)
        raise SpecError(flag, value, f"isl + osl = {isl_v + osl_v:g} does not fit the command's {r.context_flag} "
                        f"of {context:,} tokens (with room for both)")
    return context, isl_v, osl_v, notes


def raw_problem(r: EngineReading, gpu: str, weights: str | None, source: str, isl: float, osl: float, context: int,
                concurrency: int | None, calibration: str | None = None) -> dict:
    """The problem the command serves: its engine (with its cap on running requests, when the
    command sets one, and the scheduler settings it states), the checkpoint's formats unless --weights or a KV-cache format says
    otherwise, and the command's memory fraction."""
    engine: dict = {"name": r.engine.value, **dict(r.engine_settings)}
    if r.max_running_per_rank is not None:
        engine["max_batch"] = [{"min_memory_gib": 0, "value": r.max_running_per_rank}]
    precision = {k: v for k, v in (("weights", weights), ("kv_cache", r.kv_cache_dtype and r.kv_cache_dtype.value))
                 if v}
    workload = {"isl": isl, "osl": osl, "isl_max": context - osl}
    if concurrency:
        workload["concurrency"] = concurrency
    return {"name": source, "model": r.model, "gpu": gpu, "gpus": r.layout.gpus, "engine": engine,
            **({"precision": precision} if precision else {}), "workload": workload,
            **({"assumptions": dict(r.assumption_settings)} if r.assumption_settings else {}),
            "requirements": {"memory_headroom": r.memory_fraction},
            **({"calibration": calibration} if calibration is not None else {})}


def check_engine(r: EngineReading, *, gpu: str | None, weights: str | None, isl: float | None, osl: float | None,
                 source: str, calibration: str | None = None) -> Report:
    report = Report(source=source, kind=f"{r.engine} command")
    for why in r.refusals:
        report.checks.append(Check(subject="engine_accepts", verdict=Verdict.WRONG, rule=f"{r.engine} argument checks",
                                   message=f"the engine refuses this command: {why}"))
    if r.layout is None:
        return report
    if not r.model:
        raise SpecError("model", None, f"the {r.engine} command names no model")
    if not gpu:
        raise SpecError("--gpu", None, "an engine command does not say which GPU it runs on; give --gpu")
    context, isl_v, osl_v, notes = _lengths(r, _length(isl, "--isl"), _length(osl, "--osl"))
    notes += r.notes
    problem = problem_from_raw(raw_problem(r, gpu, weights, source, isl_v, osl_v, context, None, calibration))
    lay = r.layout
    for v in layout_violations(problem, lay):
        report.checks.append(Check(subject="layout", verdict=Verdict.WRONG, rule=v.rule.value, message=v.message))
    ci = CostInputs.from_problem(problem)
    par = Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    report.checks.append(_starts(ci, par, r, context))
    concurrency, running = _running(ci, par, r)
    report.checks.append(concurrency)
    served = problem_from_raw(raw_problem(r, gpu, weights, source, isl_v, osl_v, context, max(running, 1), calibration))
    cand = evaluate_aggregated(served, lay)
    report.plan = candidate_plan(served, cand)
    report.reading = {"layout": str(lay), "engine": r.engine.value, "model": problem.model.name,
                      "context_tokens": context, "max_running": int(concurrency.claimed or 0), "running": running,
                      "memory_fraction": r.memory_fraction, "flags_not_used": list(r.ignored), "notes": notes}
    report.checks.append(Check(subject="prediction", verdict=Verdict.NOTED, message=(
        f"at {cand.concurrency:,.0f} requests in flight: TTFT {fmt(cand.ttft_s, 's')}, TPOT {fmt(cand.tpot_s, 's')}, "
        f"{fmt(cand.output_tok_s, 'tok/s')} output in total, {cand.output_tok_s_per_gpu or 0:,.0f} tok/s per GPU")))
    return report


def _starts(ci: CostInputs, par: Par, r: EngineReading, context: int) -> Check:
    """Whether the engine starts and can hold its longest request: weights + KV of one request of
    the full context + activations of a pass of the token budget (what vLLM's start-up profiling
    run measures) + runtime reserve <= the memory fraction x capacity, on the fullest stage."""
    m = memory(ci, par, prefill_budget(ci, par), 1.0, 1.0, float(context))
    weights, kv, total, usable = _first(m.weights), _first(m.kv_cache), _first(m.total), _first(m.usable)
    share = f"{fmt(usable, 'bytes')} usable ({r.memory_flag} {r.memory_fraction:g})"
    if weights + m.reserve > usable:
        return Check(subject="fits", verdict=Verdict.WRONG, meshplan=weights, unit="bytes",
                     rule="weights of the fullest stage + runtime reserve <= usable memory (cost.phase.usable_bytes)",
                     message=(f"the weights alone need {fmt(weights, 'bytes')} per GPU (+ {fmt(m.reserve, 'bytes')} "
                              f"reserve) of {share}: the engine cannot start"))
    if total > usable:
        return Check(subject="fits", verdict=Verdict.WRONG, meshplan=total, unit="bytes",
                     rule=("weights + KV of one request of the full context + activations + reserve <= usable "
                           "(vLLM's start-up check, v1/core/kv_cache_utils.py)"),
                     message=(f"one request of the full context ({r.context_flag} {context:,} tokens) needs KV "
                              f"{fmt(kv, 'bytes')} per GPU; with weights {fmt(weights, 'bytes')}, that is "
                              f"{fmt(total, 'bytes')} of {share}: the engine cannot hold its longest request "
                              f"(lower {r.context_flag} or raise {r.memory_flag})"))
    return Check(subject="fits", verdict=Verdict.CONFIRMED, meshplan=total, unit="bytes", message=(
        f"weights {fmt(weights, 'bytes')} + KV {fmt(kv, 'bytes')} for one request of the full context "
        f"({context:,} tokens) + activations + reserve = {fmt(total, 'bytes')} per GPU of {share}: the engine "
        "starts and holds its longest request"))


def _running(ci: CostInputs, par: Par, r: EngineReading) -> tuple[Check, int]:
    """(the note on concurrency, requests that run at once across the command's GPUs): the cap
    on running requests, and what the KV cache holds at the workload's lengths (cost.capacity)."""
    lay = r.layout
    ranks = lay.dp * lay.instances
    ctx, extra = kv_context(ci)
    fit = int(_first(max_sequences_per_rank(ci, par, ctx, extra_context=extra))) * lay.pp * ranks
    running = int(_first(decode_capacity(ci, par))) * lay.pp * ranks
    per_rank = r.max_running_per_rank or ci.max_batch
    cap = per_rank * ranks
    said = (f"{r.running_flag} {per_rank:,}" if r.max_running_per_rank is not None
            else f"{r.running_flag} left at {ci.engine.display_name}'s default of {per_rank:,}")
    said += f" per attention-dp rank x {ranks} ranks" if ranks > 1 else ""
    full = ci.engine.kv_admission is KvAdmission.RESERVE_FULL
    held = f"{ctx:,.0f} tokens (their whole length)" if full else f"{ctx:,.0f} tokens (prompt + half the output)"
    if fit == 0:
        message = (f"{said} caps running requests at {cap:,}, but the KV cache holds no request of {held} beside the "
                   "weights (see fits)")
    elif fit >= cap:
        message = (f"{said} caps running requests at {cap:,}; the KV cache holds {fit:,} requests of {held}, "
                   f"so {running:,} run at once")
    else:
        admits = ("admits a request only while the cache holds its whole length (GUARANTEED_NO_EVICT)" if full else
                  "admits a request only while free KV blocks hold it, and sends a running one back to the queue "
                  "when the cache runs out")
        message = (f"{said} caps running requests at {cap:,}, but the KV cache holds {fit:,} requests of {held}: "
                   f"at most {running:,} run at once and the rest wait ({ci.engine.display_name} {admits}). "
                   "A cap is not memory reserved up front, so this is no error")
    return Check(subject="concurrency", verdict=Verdict.NOTED, claimed=float(cap), meshplan=float(running),
                 unit="requests", rule="running requests <= min(cap, requests the KV cache holds)",
                 message=message), running
