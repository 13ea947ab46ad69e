"""Check a plan document (a seed-format Markdown plan, or a problem that states a layout):
the layout statements, every numeric claim, and the problem's own gaps."""

from __future__ import annotations

from collections import defaultdict

from meshplan.check.claims import Claim, ClaimKind, extract_claims
from meshplan.check.verdict import Check, Report, Verdict, compare, fmt
from meshplan.io.seed_plan import layout_statements
from meshplan.plan.document import Plan
from meshplan.plan.plan import candidate_plan
from meshplan.search.evaluate import evaluate_aggregated, one_layout_allowed
from meshplan.search.search import search
from meshplan.specs.model import AttentionKind
from meshplan.specs.params import count_params, kv_heads_per_rank
from meshplan.specs.problem import Problem
from meshplan.strategy.mesh import stage_layers
from meshplan.strategy.notation import from_seed
from meshplan.strategy.rules import layout_violations


def _grouped(claims: list[Claim]) -> dict[tuple[ClaimKind, float], list[Claim]]:
    groups: dict[tuple[ClaimKind, float], list[Claim]] = defaultdict(list)
    for c in claims:
        groups[(c.kind, c.value)].append(c)
    return groups


def check_document(problem: Problem, text: str, source: str, tolerance: float) -> Report:
    """Every claim of ``text`` (a plan or a problem with a stated layout) against meshplan."""
    if problem.seed_strategy is None:
        raise ValueError("the document states no layout (DP/TP/PP/EP)")
    reading = from_seed(problem.seed_strategy, problem.model)
    lay = reading.layout
    one_layout_allowed(problem, str(lay), "seed_strategy")
    cand = evaluate_aggregated(problem, lay)
    plan = candidate_plan(problem, cand)
    best = search(problem).best
    report = Report(source=source, kind="document", reading=reading.to_dict(), plan=plan)
    claims = extract_claims(text)
    if problem.seed_strategy.gpus is not None and not any(c.kind is ClaimKind.GPUS_TOTAL for c in claims):
        line = next((i for i, t in enumerate(text.splitlines(), 1) if "gpus" in t.lower()), 0)
        claims.append(Claim(kind=ClaimKind.GPUS_TOTAL, value=float(problem.seed_strategy.gpus), line=line,
                            text=text.splitlines()[line - 1].strip() if line else ""))
    report.checks += _layout_checks(problem, lay, reading, claims, text)
    report.checks += _claim_checks(problem, lay, plan, claims, tolerance)
    report.checks += _problem_notes(problem)
    if best is not None:
        report.checks.append(Check(subject="best_plan", verdict=Verdict.NOTED, meshplan=float(best.gpus_total),
                                   message=(f"meshplan's own plan for this problem: {best.label}, {best.gpus_total} "
                                            f"GPU(s), {best.output_tok_s_per_gpu or 0:,.0f} output tok/s per GPU")))
    return report


def _layout_checks(problem, lay, reading, claims, text) -> list[Check]:
    out: list[Check] = []
    totals = _grouped([c for c in claims if c.kind is ClaimKind.GPUS_TOTAL])
    if len(totals) > 1:
        where = "; ".join(f"{v:,.0f} (line{'s' if len(cs) > 1 else ''} {', '.join(str(c.line) for c in cs)})"
                          for (_, v), cs in totals.items())
        out.append(Check(subject="gpus_total", verdict=Verdict.WRONG,
                         lines=tuple(c.line for cs in totals.values() for c in cs), unit="GPUs",
                         rule="one deployment has one GPU count",
                         message=f"the document states contradicting GPU totals: {where}"))
    for (_, value), cs in totals.items():
        verdict = Verdict.CONFIRMED if value == lay.gpus else Verdict.WRONG
        out.append(Check(subject="gpus_total", verdict=verdict, lines=tuple(c.line for c in cs), claimed=value,
                         meshplan=float(lay.gpus), unit="GPUs", text=cs[0].text,
                         rule="GPUs = instances x pp x tp x attention dp; ep folds onto tp x attention dp",
                         message=(f"{value:,.0f} GPUs; the consistent reading of the final layout ({lay}) has "
                                  f"{lay.gpus}")))
    statements, _ = layout_statements(text)
    for st in statements:
        d = st.degrees
        dp, ep, tp, pp = d.get("dp", 1), d.get("ep", 1), d.get("tp", 1), d.get("pp", 1)
        if st.gpus and ep > 1 and dp > 1 and st.gpus == dp * ep * tp * pp:
            out.append(Check(subject="gpus_total", verdict=Verdict.WRONG, lines=(st.line,), claimed=float(st.gpus),
                             unit="GPUs", text=st.text(),
                             rule="tp x attention dp = ep x etp inside an instance: EP never multiplies the GPU count",
                             message=(f"{st.gpus} = DP {dp} x EP {ep} (x TP {tp} x PP {pp}) multiplies EP into the GPU "
                                      f"count; EP {ep} with TP {tp} already needs attention dp {ep // tp} inside each "
                                      f"instance, so this count holds only if DP means {dp} independent instances, "
                                      "which the document's own DP=1 for the same GPUs contradicts")))
    for f in reading.findings:
        mismatch = "not the" in f and "GPUs stated" in f
        out.append(Check(subject="gpus_total" if mismatch else "layout",
                         verdict=Verdict.WRONG if mismatch else Verdict.NOTED,
                         rule="GPUs = instances x pp x tp x attention dp" if mismatch else "", message=f))
    for v in layout_violations(problem, lay):
        out.append(Check(subject="layout", verdict=Verdict.WRONG, rule=v.rule.value, message=v.message))
    return out


def _claim_checks(problem: Problem, lay, plan: Plan, claims: list[Claim], tol: float) -> list[Check]:
    out: list[Check] = []
    decode = plan.phases.decode
    mem = decode.memory_per_gpu_bytes if decode else plan.memory_per_gpu_bytes
    params = count_params(problem.model).total
    replicated = _replicated_note(plan)
    req = problem.requirements.min_output_tok_s_per_gpu
    gpu_counts = {c.value for c in claims if c.kind is ClaimKind.GPUS_TOTAL} | {float(lay.gpus)}
    ours = {
        ClaimKind.PARAMS: (params, "params", "structural count from the stated dimensions (specs.params)"),
        ClaimKind.WEIGHTS_PER_GPU: (mem.weights, "bytes", "weights per GPU: " + replicated),
        ClaimKind.ACTIVATIONS_PER_GPU: (mem.activations, "bytes", "activation bytes of one pass (cost.memory)"),
        ClaimKind.KV_PER_GPU: (mem.kv_cache, "bytes", _kv_rule(problem, lay)),
        ClaimKind.MEMORY_PER_GPU: (mem.total, "bytes", "weights + KV cache + activations + runtime reserve"),
        ClaimKind.MEMORY_UTILIZATION: (mem.total / mem.capacity, "fraction", "total memory per GPU / capacity"),
        ClaimKind.OUTPUT_TOK_S: (plan.output_tok_s, "tok/s", "predicted output tokens/s of the deployment"),
        ClaimKind.OUTPUT_TOK_S_PER_GPU: (plan.output_tok_s_per_gpu, "tok/s", "predicted output tokens/s per GPU"),
        ClaimKind.TTFT: (plan.ttft_s, "s", "predicted TTFT at the problem's concurrency"),
        ClaimKind.TPOT: (plan.tpot_s, "s", "predicted TPOT at the problem's concurrency"),
    }
    for (kind, value), cs in _grouped(claims).items():
        lines, text = tuple(c.line for c in cs), cs[0].text
        if kind is ClaimKind.GPUS_TOTAL:
            continue
        if kind is ClaimKind.GPU_UTILIZATION:
            out.append(Check(subject=kind.value, verdict=Verdict.UNVERIFIABLE, lines=lines, claimed=value,
                             unit="fraction", text=text, message=(
                                 "'GPU utilization' without saying of what (compute, memory, time) cannot be checked; "
                                 f"memory use per GPU is {fmt(mem.total / mem.capacity, 'fraction')}")))
            continue
        if kind is ClaimKind.LAYERS_PER_STAGE:
            out.append(_stage_check(problem, lay, value, lines, text))
            continue
        if kind in (ClaimKind.OUTPUT_TOK_S, ClaimKind.OUTPUT_TOK_S_PER_GPU) and req:
            circular = [n for n in sorted(gpu_counts) if abs(value - req * n) <= 1e-6 * value] + \
                       ([1.0] if abs(value - req) <= 1e-6 * value else [])
            if circular:
                n = circular[0]
                predicted = ours[kind][0]
                out.append(Check(subject=kind.value, verdict=Verdict.WRONG, lines=lines, claimed=value,
                                 meshplan=predicted, unit="tok/s", text=text,
                                 rule="a requirement is not a capability: throughput is predicted from the cost model",
                                 message=(f"{fmt(value, 'tok/s')} restates the requirement "
                                          f"({fmt(req, 'tok/s')} per GPU" + (f" x {n:,.0f} GPUs" if n != 1 else "")
                                          + f") instead of deriving it; predicted {fmt(predicted, 'tok/s')}")))
                continue
        mine, unit, rule = ours[kind]
        out.append(compare(kind.value, value, mine, unit, rule, lines, text, tol))
    memory_claims = [c for c in claims if c.kind in (ClaimKind.MEMORY_PER_GPU, ClaimKind.WEIGHTS_PER_GPU)]
    concurrency = plan.concurrency or 0.0
    total_kv = plan.kv_cache_bytes_per_token * concurrency * problem.workload.max_context_tokens
    if memory_claims and not any(c.kind is ClaimKind.KV_PER_GPU for c in claims):
        first = memory_claims[0]
        out.append(Check(subject="kv_cache_per_gpu", verdict=Verdict.WRONG, lines=(first.line,), claimed=0.0,
                         meshplan=mem.kv_cache, unit="bytes", text=first.text,
                         rule="KV bytes per token x tokens held by the GPU (cost.memory)",
                         message=(f"the memory figures leave out the KV cache: {fmt(mem.kv_cache, 'bytes')} per GPU "
                                  f"in this layout, {fmt(total_kv, 'bytes')} across the deployment "
                                  f"({plan.kv_cache_bytes_per_token:,.0f} bytes per token x {concurrency:,.0f} "
                                  f"sequences x up to {problem.workload.max_context_tokens:,.0f} tokens)")))
    return out


def _kv_rule(problem: Problem, lay) -> str:
    """How KV cache splits over tp for this model (DESIGN.md section 3)."""
    m = problem.model
    base = "KV bytes per token x tokens of the GPU's own attention-dp rank's sequences"
    if m.attention is AttentionKind.MLA:
        return base + f"; the MLA latent is replicated on each of the {lay.tp} tp ranks"
    if lay.tp > m.num_kv_heads:
        return (base + f"; tp {lay.tp} exceeds the {m.num_kv_heads} KV heads, so each GPU keeps one head and every "
                f"head is replicated {lay.tp // m.num_kv_heads} times (not a 1/{lay.tp} split)")
    return base + f"; KV heads split {kv_heads_per_rank(m.num_kv_heads, lay.tp)} per GPU over tp {lay.tp}"


def _replicated_note(plan: Plan) -> str:
    st = plan.main_phase.strategy
    return (f"attention and embeddings are replicated on every one of the {st.ep} expert-parallel ranks "
            f"(1/tp = 1/{st.tp} each); only the routed experts divide by ep ({st.experts_per_gpu} per GPU)")


def _stage_check(problem, lay, value, lines, text) -> Check:
    stages = [len(s) for s in stage_layers(problem.model.num_layers, lay.pp)]
    even = len(set(stages)) == 1
    ok = even and value == stages[0]
    return Check(subject="layers_per_stage", verdict=Verdict.CONFIRMED if ok else Verdict.WRONG, lines=lines,
                 claimed=value, meshplan=float(max(stages)), unit="layers", text=text,
                 rule="layers split over pp stages; uneven splits give the first stages one more (strategy.mesh)",
                 message=(f"claimed {value:g} layers per stage; {problem.model.num_layers} layers over pp {lay.pp} "
                          f"give {stages}" + ("" if even else " (uneven)")))


def _problem_notes(problem: Problem) -> list[Check]:
    out = []
    for n in problem.notes:
        if n.field in ("model.top_k", "model.vocab_size", "workload.osl"):
            out.append(Check(subject=n.field, verdict=Verdict.NOTED, message=n.message))
    m = problem.model
    if m.declared_params:
        total = count_params(m).total
        out.append(compare("declared_params", m.declared_params, total, "params",
                           "structural count from the stated dimensions (specs.params)", (), "the problem's stated total (weights)",
                           extra="the problem's declared size disagrees with its own dimensions"
                           if abs(m.declared_params / total - 1) > TOLERANCE_PARAMS else ""))
    return out


TOLERANCE_PARAMS = 0.02
"""Declared and structural parameter counts agree within 2% for every catalog model."""
