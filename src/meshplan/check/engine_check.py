"""Check an engine launch command: does the engine accept it, does the model fit, how much
concurrency fits, and what TTFT, TPOT and throughput to expect."""

from __future__ import annotations

import math

import numpy as np

from meshplan.check.engines import EngineReading
from meshplan.check.verdict import Check, Report, Verdict, fmt
from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.serving import decode_cost
from meshplan.errors import SpecError
from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.plan import candidate_document
from meshplan.search.evaluate import evaluate_aggregated
from meshplan.strategy.rules import check_layout

KV_DTYPES = {"auto": None, "fp8": "fp8", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "bf16": "bf16", "bfloat16": "bf16",
             "fp16": "fp16", "float16": "fp16", "nvfp4": "fp4", "fp4": "fp4"}


def check_engine(r: EngineReading, *, gpu: str | None, weights: str | None, isl: float | None, osl: float | None,
                 source: str) -> Report:
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
    context = r.context_tokens
    if context is None:
        if not (isl and osl):
            raise SpecError("--isl/--osl", None, "the command sets no maximum context; give --isl and --osl")
        context = int(isl + osl)
    osl_v = osl or context / 2
    isl_v = isl or context - osl_v
    if isl_v + osl_v > context:
        raise SpecError("--isl", isl_v, f"isl + osl = {isl_v + osl_v:g} exceeds the command's context of {context}")
    notes = []
    if not (isl and osl):
        notes.append(f"performance is predicted at isl {isl_v:g} / osl {osl_v:g} (give --isl/--osl to change)")
    kv = KV_DTYPES.get(str(r.kv_cache_dtype).lower(), None) if r.kv_cache_dtype else None
    raw = {"name": source, "model": r.model, "gpu": gpu, "gpus": r.layout.gpus,
           "precision": {"weights": weights or "bf16", **({"kv_cache": kv} if kv else {})},
           "workload": {"isl": isl_v, "osl": osl_v, "isl_max": context - osl_v, "concurrency": r.concurrency},
           "requirements": {"memory_headroom": r.memory_fraction or 0.9}}
    problem = problem_from_raw(raw)
    lay = r.layout
    for v in check_layout(problem.model, problem.gpu, lay.tp, lay.dp, lay.pp, lay.ep, lay.etp):
        report.checks.append(Check(subject="layout", verdict=Verdict.WRONG, rule=v.rule.value, message=v.message))
    report.checks += _fit(problem, r, context)
    cand = evaluate_aggregated(problem, lay)
    doc = candidate_document(problem, cand)
    report.evaluation = doc
    report.reading = {"layout": str(lay), "engine": r.engine, "model": problem.model.name,
                      "context_tokens": context, "concurrency": r.concurrency, "memory_fraction": r.memory_fraction,
                      "flags_not_used": r.ignored, "notes": notes}
    report.checks.append(Check(subject="prediction", verdict=Verdict.NOTED, message=(
        f"at {cand.concurrency:,.0f} requests in flight: TTFT {fmt(cand.ttft_s, 's')}, TPOT {fmt(cand.tpot_s, 's')}, "
        f"{fmt(cand.output_tok_s, 'tok/s')} output in total, {cand.output_tok_s_per_gpu or 0:,.0f} tok/s per GPU")))
    return report


def _fit(problem, r: EngineReading, context: int) -> list[Check]:
    ci = CostInputs.from_problem(problem)
    lay = r.layout
    par = Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    slots = lay.dp * lay.pp * lay.instances
    per_rank = math.ceil((r.concurrency or slots) / slots)
    d = decode_cost(ci, par, np.array([float(per_rank)]))
    m = d.memory
    first = lambda x: float(np.asarray(x).reshape(-1)[0])  # noqa: E731
    weights, kv, total, usable = first(m.weights), first(m.kv_cache), first(m.total), float(m.usable)
    max_c = float(np.asarray(d.max_B).reshape(-1)[0]) * slots
    out = []
    if weights + m.reserve > usable:
        out.append(Check(subject="fits", verdict=Verdict.WRONG, meshplan=weights, unit="bytes",
                         rule="weights of the fullest stage + runtime reserve <= memory fraction x capacity",
                         message=(f"the weights alone need {fmt(weights, 'bytes')} per GPU (+ {fmt(m.reserve, 'bytes')} "
                                  f"reserve) of {fmt(usable, 'bytes')} usable")))
    elif total > usable:
        out.append(Check(subject="fits", verdict=Verdict.WRONG, claimed=float(r.concurrency or slots), meshplan=max_c,
                         unit="requests", rule="weights + KV(context x concurrency) + activations + reserve <= usable",
                         message=(f"{r.concurrency:,} requests of {context:,} tokens need {fmt(total, 'bytes')} per GPU "
                                  f"(KV {fmt(kv, 'bytes')}) of {fmt(usable, 'bytes')} usable; at most {max_c:,.0f} fit")))
    else:
        out.append(Check(subject="fits", verdict=Verdict.CONFIRMED, claimed=float(r.concurrency or slots),
                         meshplan=max_c, unit="requests",
                         message=(f"weights {fmt(weights, 'bytes')} + KV {fmt(kv, 'bytes')} for "
                                  f"{r.concurrency or slots:,} requests of {context:,} tokens = {fmt(total, 'bytes')} "
                                  f"per GPU of {fmt(usable, 'bytes')} usable; up to {max_c:,.0f} requests fit")))
    return out
