"""Predict the published cases (shared/cases/published.yaml; a copy ships in the package, which
adds the schema fields ``kind`` and ``engine`` to every case, and ``speculative`` and
``gpus_per_node`` where they apply).

Each figure is predicted with the same evaluation as `meshplan evaluate`, at the layout,
precision and workload the case states. A case's ``kind`` (CaseKind) names the schema its figures
follow, and so how they are predicted; it is read from the case, never from its id. Figures whose
inputs the source does not publish (input length, speculative acceptance) are skipped and listed
with the reason, or predicted at a stated assumption that the figure's name says, never guessed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from meshplan.errors import SpecError
from meshplan.io.catalog import CATALOG
from meshplan.io.calibration import DEFAULT_PROFILE
from meshplan.io.problem_file import problem_from_raw
from meshplan.io.user_file import load_yaml, read_text
from meshplan.search.evaluate import evaluate_aggregated
from meshplan.specs.speculative import SpecMethod
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import Axis, Layout


class CaseKind(StrEnum):
    """What a published case carries, and so how its figures are predicted (``kind`` in the file).

    mlperf: MLPerf scenarios (offline, server, interactive) with a maximum input length but no
    mean: not predicted. perf_table: ``rows`` of model, GPUs and layout, each with output tok/s
    (``output_tok_s``, of the group, or ``output_tok_s_per_gpu``) keyed "isl/osl", at unbounded
    concurrency. max_throughput: one layout at a stated ``workload`` concurrency, measured output
    tok/s per GPU. min_latency: the same, measured tok/s per user, with ``speculative`` decoding
    if the case states it. phases: prefill and decode under ``phases``, each predicted alone at
    its layout, context and batch, measured per GPU (or per node of ``gpus_per_node`` GPUs).
    decode_rows: ``rows`` of precisions, each with the ``decode`` phase it measured."""

    MLPERF = "mlperf"
    PERF_TABLE = "perf_table"
    MAX_THROUGHPUT = "max_throughput"
    MIN_LATENCY = "min_latency"
    PHASES = "phases"
    DECODE_ROWS = "decode_rows"


@dataclass(frozen=True, kw_only=True, slots=True)
class CaseRow:
    case: str
    figure: str
    predicted: float
    measured: float

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1.0


def _precision(entry: dict[str, Any]) -> dict[str, Any]:
    """The formats a case or row states, as a problem's ``precision``: its ``precision`` mapping
    (formats per part), else ``weights`` and ``kv_cache``; BF16 where none is stated."""
    if entry.get("precision") is not None:
        return {"kv_cache": "bf16", **entry["precision"]}
    return {"weights": entry.get("weights") or "bf16", "kv_cache": entry.get("kv_cache") or "bf16"}


def _layout(d: dict[str, Any], gpus: int | None) -> Layout:
    lay = Layout(**{axis.value: d.get(axis, 1) for axis in Axis})
    if gpus and Axis.INSTANCES not in d:
        lay = lay.with_instances(max(1, gpus // lay.gpus_per_instance))
    return lay


def _predict(model, gpu, precision, lay: Layout, isl, osl, phase: Phase, engine, concurrency=None, tbo=False,
             calibration: str | None = DEFAULT_PROFILE, speculative: dict[str, Any] | None = None) -> Any:
    raw = {"name": "case", "model": model, "gpu": gpu, "precision": precision, "phase": phase.value,
           "calibration": calibration or "none",
           "workload": {"isl": isl, "osl": osl, "concurrency": concurrency},
           "assumptions": {"two_batch_overlap": tbo}, "engine": engine}
    if speculative is not None:
        raw["speculative"] = speculative
    return evaluate_aggregated(problem_from_raw(raw), lay)


MTP_ACCEPTANCE = (0.85, 0.63, 0.63)
"""Acceptance per draft position assumed for DeepSeek-R1's MTP module where a case does not
publish it (trt-dsr1-b200-minlat): not fitted. The first, 0.85, is the low end of the 85-90% the
DeepSeek-V3 technical report (section 5.4.3) measures for the second token. The later positions
reuse the one module autoregressively, which accepts less: Nebius's MTP-DeepSeek-V3-0324 model card
measures a mean acceptance length of 3.20 for the original module drafting 7 tokens (temperature 0,
MT-bench, HumanEval, GSM8K); 1 + 0.85 (1 + a + ... + a^6) = 3.20 gives a = 0.63."""


SKIP_REASONS = {
    CaseKind.MLPERF: "the source publishes no mean input length (only a maximum); not guessed",
}
"""Why the cases of a kind are not predicted."""


def skipped_cases(path: str | None = None) -> list[tuple[str, str]]:
    """Cases in the file that predict_cases does not predict, with the reason."""
    out = []
    for case in _load(path):
        if not _case_rows(case):
            out.append((case["id"], SKIP_REASONS.get(CaseKind(case["kind"]), "no predictable figure")))
    return out


_OLDER = ("; shared/cases/published.yaml predates the schema fields kind and engine: the bundled copy "
          "(meshplan validate without a file) has them")


def _load(path: str | None) -> list[dict[str, Any]]:
    """The cases of a published-cases file: a mapping whose ``cases`` is a list of mappings, each
    with a text id and a ``kind`` (CaseKind)."""
    source = Path(path) if path else CATALOG / "cases" / "published.yaml"
    data = load_yaml(read_text(source, "cases"), "cases", source.name)
    if not isinstance(data, dict):
        raise SpecError("cases", str(source), "not a published-cases file: a mapping whose `cases` is a list")
    cases = data.get("cases")
    if not isinstance(cases, list):
        raise SpecError(f"{source.name}: cases", cases, "must be a list of cases")
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or not isinstance(case.get("id"), str):
            raise SpecError(f"cases[{i}].id", case.get("id") if isinstance(case, dict) else case,
                            "every case is a mapping with a text id")
        if not isinstance(case.get("kind"), str) or case["kind"] not in set(CaseKind):
            raise SpecError(f"cases.{case['id']}.kind", case.get("kind"), "every case states the schema its figures "
                            f"follow: one of {', '.join(CaseKind)}" + _OLDER)
        if not isinstance(case.get("engine"), dict):
            raise SpecError(f"cases.{case['id']}.engine", case.get("engine"), "every case states the engine it ran "
                            "on, as a problem's engine key does ({name: trtllm})" + _OLDER)
    return cases


def predict_cases(path: str | None = None, calibration: str | None = DEFAULT_PROFILE) -> list[CaseRow]:
    """Every predictable figure of a published-cases file, under ``calibration`` (a profile name,
    a YAML path, or None / "none" for the sourced defaults)."""
    rows: list[CaseRow] = []
    for case in _load(path):
        try:
            rows += _case_rows(case, calibration)
        except SpecError as err:
            raise SpecError(f"cases.{case['id']}.{err.field}", err.value, err.rule) from None
        except (KeyError, IndexError) as err:
            raise SpecError(f"cases.{case['id']}", err.args[0] if err.args else None,
                            "missing from the case (the format of published.yaml)") from None
        except (TypeError, ValueError, AttributeError) as err:
            raise SpecError(f"cases.{case['id']}", None, f"a field is not in the format of published.yaml "
                            f"({err.__class__.__name__})") from None
    return rows


def _case_rows(case: dict[str, Any], calibration: str | None = DEFAULT_PROFILE) -> list[CaseRow]:
    """The figures of one case, read as its kind says (none for a kind in SKIP_REASONS)."""
    kind = CaseKind(case["kind"])
    if kind in SKIP_REASONS:
        return []
    predict = functools.partial(_predict, calibration=calibration, engine=case["engine"])
    read = {CaseKind.PERF_TABLE: _perf_table, CaseKind.MAX_THROUGHPUT: _max_throughput,
            CaseKind.MIN_LATENCY: _min_latency, CaseKind.PHASES: _phases, CaseKind.DECODE_ROWS: _decode_rows}
    return read[kind](case, predict)


def _perf_table(case: dict[str, Any], predict) -> list[CaseRow]:
    out = []
    for r in case["rows"]:
        prec = _precision({"weights": r.get("weights", case.get("weights")), "kv_cache": r.get("kv_cache")})
        lay = _layout(r["layout"], r["gpus"])
        figures = r.get("output_tok_s") or r.get("output_tok_s_per_gpu")
        for key, measured in figures.items():
            isl, osl = (float(x) for x in key.split("/"))
            c = predict(r["model"], case["gpu"], prec, lay, isl, osl, Phase.BOTH)
            per_gpu = c.output_tok_s_per_gpu
            pred = per_gpu * r["gpus"] if "output_tok_s" in r else per_gpu
            out.append(CaseRow(case=f"{case['id']}/{r['model']}", figure=f"{key} output tok/s"
                               + ("" if "output_tok_s" in r else " per GPU"), predicted=pred, measured=measured))
    return out


def _max_throughput(case: dict[str, Any], predict) -> list[CaseRow]:
    w = case["workload"]
    c = predict(case["model"], case["gpu"], _precision(case), _layout(case["layout"], case["gpus"]),
                w["isl"], w["osl"], Phase.BOTH, concurrency=w["concurrency"])
    return [CaseRow(case=case["id"], figure="output tok/s per GPU", predicted=c.output_tok_s_per_gpu,
                    measured=case["measured"]["output_tok_s_per_gpu"])]


def _min_latency(case: dict[str, Any], predict) -> list[CaseRow]:
    w = case["workload"]
    spec, label = _speculative(case.get("speculative"))
    c = predict(case["model"], case["gpu"], _precision(case), _layout(case["layout"], case["gpus"]),
                w["isl"], w["osl"], Phase.BOTH, concurrency=w["concurrency"], speculative=spec)
    return [CaseRow(case=case["id"], figure=f"tok/s per user{label}", predicted=1.0 / c.tpot_s,
                    measured=case["measured"]["per_user_tok_s"])]


def _speculative(stated: Any) -> tuple[dict[str, Any] | None, str]:
    """The case's speculative decoding as a problem states it, and the figure's note on it. An
    acceptance the source does not publish is MTP_ACCEPTANCE, for MTP only (it is measured for
    DeepSeek's module), and the figure says it is assumed."""
    if stated is None:
        return None, ""
    if not isinstance(stated, dict):
        raise SpecError("speculative", stated, "must be a mapping {method, draft_tokens, acceptance}")
    spec = {k: v for k, v in stated.items() if v is not None}
    method = str(spec.get("method", "")).upper()
    if "acceptance" in spec or "accepted_tokens" in spec:
        return spec, f" ({method})"
    drafts = spec.get("draft_tokens")
    if spec.get("method") != SpecMethod.MTP or not isinstance(drafts, int) or not 1 <= drafts <= len(MTP_ACCEPTANCE):
        raise SpecError("speculative.acceptance", None, "not stated: an acceptance is assumed only for MTP with "
                        f"1 to {len(MTP_ACCEPTANCE)} draft tokens (fidelity.cases.MTP_ACCEPTANCE); state it")
    return spec | {"acceptance": list(MTP_ACCEPTANCE[:drafts])}, f" ({method}, acceptance assumed)"


def _phase_figure(case: dict[str, Any], phase: Phase, entry: dict[str, Any], precision: dict[str, Any],
                  predict) -> tuple[float, float]:
    """(predicted, measured) throughput per GPU of one phase measured alone: input tok/s for the
    prefill, output tok/s for decode. The phase's own ``isl`` (or the ``context`` a decode ran at),
    else the case workload's; the workload's ``osl``, else 1. Concurrency: prefill batches of
    ``tokens_per_gpu_per_batch`` whole prompts, or ``batch_per_gpu``, on ``gpus`` GPUs, else the
    engine's own (unbounded). Figures per node are divided by the case's ``gpus_per_node``."""
    w = case.get("workload") or {}
    isl = entry.get("isl") or entry.get("context") or w["isl"]
    osl = w.get("osl") or 1
    gpus = entry.get("gpus")
    concurrency = None
    if entry.get("tokens_per_gpu_per_batch"):
        concurrency = entry["tokens_per_gpu_per_batch"] // isl * gpus
    elif entry.get("batch_per_gpu"):
        concurrency = entry["batch_per_gpu"] * gpus
    c = predict(case["model"], case["gpu"], precision, _layout(entry["layout"], gpus), isl, osl, phase,
                concurrency=concurrency, tbo=bool(entry.get("two_microbatch_overlap", False)))
    stem = "input" if phase is Phase.PREFILL else "output"
    predicted = c.input_tok_s_per_gpu if phase is Phase.PREFILL else c.output_tok_s_per_gpu
    per_node = entry.get(f"{stem}_tok_s_per_node")
    measured = per_node / case["gpus_per_node"] if per_node is not None else entry[f"{stem}_tok_s_per_gpu"]
    return predicted, measured


PHASES = (Phase.PREFILL, Phase.DECODE)
"""The phases a case may measure alone, in the order they are listed."""


def _phases(case: dict[str, Any], predict) -> list[CaseRow]:
    given = case["phases"]
    for key in given:
        if key not in PHASES:
            raise SpecError("phases", key, f"a phase measured alone is one of {', '.join(PHASES)}")
    out = []
    for phase in (p for p in PHASES if p in given):
        predicted, measured = _phase_figure(case, phase, given[phase], _precision(case), predict)
        stem = "input" if phase is Phase.PREFILL else "output"
        out.append(CaseRow(case=case["id"], figure=f"{phase.value} {stem} tok/s per GPU", predicted=predicted,
                           measured=measured))
    return out


def _decode_rows(case: dict[str, Any], predict) -> list[CaseRow]:
    out = []
    for r in case["rows"]:
        predicted, measured = _phase_figure(case, Phase.DECODE, r["decode"], _precision(r),
                                            predict)
        out.append(CaseRow(case=case["id"], figure=f"decode tok/s per GPU ({r['label']})", predicted=predicted,
                           measured=measured))
    return out
