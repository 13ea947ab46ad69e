"""Predict the published cases (shared/cases/published.yaml; a copy ships in the package).

Each figure is predicted with the same evaluation as `meshplan evaluate`, at the layout,
precision and workload the case states. Figures whose inputs the source does not publish (input
length, speculative decoding) are skipped and listed with the reason, never guessed.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshplan.errors import SpecError
from meshplan.io.catalog import CATALOG
from meshplan.io.calibration import DEFAULT_PROFILE
from meshplan.io.problem_file import problem_from_raw
from meshplan.io.user_file import load_yaml, read_text
from meshplan.search.evaluate import evaluate_aggregated
from meshplan.strategy.layout import Layout


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
    w = entry.get("weights") or entry.get("precision") or "bf16"
    kv = entry.get("kv_cache") or "bf16"
    if isinstance(w, str) and " " in w:
        # "experts and o_proj fp4; MLA projections fp8" / "experts fp8, attention bf16"
        text = w.lower()
        experts = "fp4" if "experts and o_proj fp4" in text or "experts fp4" in text else "fp8"
        attention = "bf16" if "attention bf16" in text else "fp8"
        if "kv fp8" in text:
            kv = "fp8"
        return {"weights": attention, "attention": attention, "experts": experts, "kv_cache": kv}
    return {"weights": w, "kv_cache": kv}


def _layout(d: dict[str, Any], gpus: int | None) -> Layout:
    lay = Layout(**{k: d.get(k, 1) for k in ("instances", "pp", "tp", "dp", "ep", "etp")})
    if gpus and "instances" not in d:
        lay = lay.with_instances(max(1, gpus // lay.gpus_per_instance))
    return lay


def engine_of(case: dict[str, Any]) -> dict[str, Any]:
    """The engine a published case ran on, from its source: MLPerf and TensorRT-LLM documents ->
    TensorRT-LLM; SGLang and lmsys posts -> SGLang; vLLM posts -> vLLM. DeepSeek's own serving
    system (profile-data) is read as SGLang with DeepEP's all-to-all, the stack SGLang's large-scale
    EP blog reproduces it with."""
    source = str(case.get("source", ""))
    if "deepseek-ai/profile-data" in source:
        return {"name": "sglang", "a2a_backend": "all_to_all"}
    if "vLLM" in source or "vllm-project" in source:
        return {"name": "vllm"}
    if "SGLang" in source or "lmsys" in source or "lm-sys" in source:
        return {"name": "sglang", "a2a_backend": "all_to_all"}
    return {"name": "trtllm"}


def _predict(model, gpu, precision, lay: Layout, isl, osl, phase, concurrency=None, tbo=False, engine=None,
             calibration: str | None = DEFAULT_PROFILE, speculative: dict[str, Any] | None = None) -> Any:
    raw = {"name": "case", "model": model, "gpu": gpu, "precision": precision, "phase": phase,
           "calibration": calibration or "none",
           "workload": {"isl": isl, "osl": osl, "concurrency": concurrency},
           "assumptions": {"two_batch_overlap": tbo}, "engine": engine or {"name": "trtllm"}}
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
    "mlperf": "the source publishes no mean input length (only a maximum); not guessed",
}


def skipped_cases(path: str | None = None) -> list[tuple[str, str]]:
    """Cases in the file that predict_cases does not predict, with the reason."""
    out = []
    for case in _load(path):
        if not _case_rows(case):
            reason = next((r for key, r in SKIP_REASONS.items() if case["id"].startswith(key)), "no predictable figure")
            out.append((case["id"], reason))
    return out


def _load(path: str | None) -> list[dict[str, Any]]:
    """The cases of a published-cases file: a mapping whose ``cases`` is a list of mappings with an id."""
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
    return cases


def predict_cases(path: str | None = None, calibration: str | None = DEFAULT_PROFILE) -> list[CaseRow]:
    """Every predictable figure of a published-cases file, under ``calibration`` (a profile name,
    a YAML path, or None / "none" for the sourced defaults)."""
    rows: list[CaseRow] = []
    for case in _load(path):
        try:
            rows += _case_rows(case, calibration)
        except (KeyError, IndexError) as err:
            raise SpecError(f"cases.{case['id']}", err.args[0] if err.args else None,
                            "missing from the case (the format of published.yaml)") from None
        except (TypeError, ValueError, AttributeError) as err:
            if isinstance(err, SpecError):
                raise
            raise SpecError(f"cases.{case['id']}", None, f"a field is not in the format of published.yaml "
                            f"({err.__class__.__name__})") from None
    return rows


def _case_rows(case: dict[str, Any], calibration: str | None = DEFAULT_PROFILE) -> list[CaseRow]:
    predict = functools.partial(_predict, calibration=calibration)
    cid = case["id"]
    out: list[CaseRow] = []
    if "rows" in case and cid.startswith("trt-perf"):
        for r in case["rows"]:
            prec = _precision({"weights": r.get("weights", case.get("weights")), "kv_cache": r.get("kv_cache")})
            lay = _layout(r["layout"], r["gpus"])
            figures = r.get("output_tok_s") or r.get("output_tok_s_per_gpu")
            for key, measured in figures.items():
                isl, osl = (float(x) for x in key.split("/"))
                c = predict(r["model"], case["gpu"], prec, lay, isl, osl, "both", engine=engine_of(case))
                per_gpu = c.output_tok_s_per_gpu
                pred = per_gpu * r["gpus"] if "output_tok_s" in r else per_gpu
                out.append(CaseRow(case=f"{cid}/{r['model']}", figure=f"{key} output tok/s"
                                   + ("" if "output_tok_s" in r else " per GPU"), predicted=pred, measured=measured))
        return out
    if cid == "trt-dsr1-b200-minlat":
        # Three MTP draft tokens per iteration (the source's "3 MTP layers"); its acceptance is not
        # published, so MTP_ACCEPTANCE is assumed and the figure says so.
        w = case["workload"]
        spec = {"method": "mtp", "draft_tokens": 3, "acceptance": list(MTP_ACCEPTANCE)}
        c = predict(case["model"], case["gpu"], _precision(case), _layout(case["layout"], case["gpus"]),
                    w["isl"], w["osl"], "both", concurrency=w["concurrency"], engine=engine_of(case), speculative=spec)
        return [CaseRow(case=cid, figure="tok/s per user (MTP, acceptance assumed)", predicted=1.0 / c.tpot_s,
                        measured=case["measured"]["per_user_tok_s"])]
    if cid.startswith("trt-dsr1-b200-maxtput"):
        w = case["workload"]
        c = predict(case["model"], case["gpu"], _precision(case), _layout(case["layout"], case["gpus"]),
                     w["isl"], w["osl"], "both", concurrency=w["concurrency"], engine=engine_of(case))
        return [CaseRow(case=cid, figure="output tok/s per GPU", predicted=c.output_tok_s_per_gpu,
                        measured=case["measured"]["output_tok_s_per_gpu"])]
    if cid == "deepseek-profile-h800":
        pf, dc = case["phases"]["prefill"], case["phases"]["decode"]
        c = predict(case["model"], case["gpu"], _precision(case), _layout(pf["layout"], pf["gpus"]), pf["isl"], 1,
                     "prefill", concurrency=pf["tokens_per_gpu_per_batch"] // pf["isl"] * pf["gpus"], tbo=True,
                     engine=engine_of(case))
        out.append(CaseRow(case=cid, figure="prefill input tok/s per GPU", predicted=c.input_tok_s_per_gpu,
                           measured=pf["input_tok_s_per_node"] / 8))
        c = predict(case["model"], case["gpu"], _precision(case), _layout(dc["layout"], dc["gpus"]), dc["context"], 1,
                     "decode", concurrency=dc["batch_per_gpu"] * dc["gpus"], tbo=True, engine=engine_of(case))
        out.append(CaseRow(case=cid, figure="decode output tok/s per GPU", predicted=c.output_tok_s_per_gpu,
                           measured=dc["output_tok_s_per_node"] / 8))
        return out
    if cid == "sglang-gb200-decode":
        dc = case["phases"]["decode"]
        c = predict(case["model"], case["gpu"], _precision(case), _layout(dc["layout"], dc["gpus"]), dc["isl"], 1,
                     "decode", engine=engine_of(case))
        return [CaseRow(case=cid, figure="decode output tok/s per GPU", predicted=c.output_tok_s_per_gpu,
                        measured=dc["output_tok_s_per_gpu"])]
    if cid == "sglang-gb200-part2":
        for r in case["rows"]:
            dc = r["decode"]
            conc = dc["batch_per_gpu"] * dc["gpus"] if dc.get("batch_per_gpu") else None
            c = predict(case["model"], case["gpu"], _precision({"weights": r["precision"]}),
                         _layout(dc["layout"], dc["gpus"]), dc["isl"], 1, "decode", concurrency=conc,
                         engine=engine_of(case))
            out.append(CaseRow(case=cid, figure=f"decode tok/s per GPU ({r['precision']})",
                               predicted=c.output_tok_s_per_gpu, measured=dc["output_tok_s_per_gpu"]))
        return out
    if cid == "vllm-gb200-wide-ep":
        w, prec = case["workload"], _precision(case)
        pf, dc = case["phases"]["prefill"], case["phases"]["decode"]
        c = predict(case["model"], case["gpu"], prec, _layout(pf["layout"], None), w["isl"], w["osl"], "prefill",
                     engine=engine_of(case))
        out.append(CaseRow(case=cid, figure="prefill input tok/s per GPU", predicted=c.input_tok_s_per_gpu,
                           measured=pf["input_tok_s_per_gpu"]))
        c = predict(case["model"], case["gpu"], prec, _layout(dc["layout"], None), w["isl"], w["osl"], "decode",
                     engine=engine_of(case))
        out.append(CaseRow(case=cid, figure="decode output tok/s per GPU", predicted=c.output_tok_s_per_gpu,
                           measured=dc["output_tok_s_per_gpu"]))
        return out
    return out  # MLPerf cases publish no mean input length
