"""Problem files (YAML, JSON, the seed's Markdown) and command-line overrides -> Problem.

Every source becomes one raw mapping in the file schema below, flags are merged into it, and it
is validated once, so all inputs are checked the same way.

File schema (YAML or JSON)::

    name: my-problem                 # optional; default the file stem
    model: deepseek-v3               # catalog name | path to config.json | mapping
                                     #   (a mapping with `base: NAME` overrides catalog fields)
    gpu: h800                        # catalog name | mapping (`base: NAME` + overrides)
    gpus: 1024                       # GPU budget; omit for no limit
    precision: {weights: fp8, attention: bf16, experts: fp8, kv_cache: bf16}
    workload: {isl: 4000, osl: 500, concurrency: 1024}   # isl/osl: number or [min, max]; prefix_hit_rate: 0.5
    requirements: {ttft_s: 2.0, tpot_s: 0.05, min_output_tok_s_per_gpu: 1000}
    phase: both                      # prefill | decode | both
    serving: auto                    # auto | aggregated | disaggregated (full serving only)
    engine: vllm                     # trtllm | sglang | vllm, or {name: sglang, version: 0.5.9}
    strategy: "tp=8,dp=1,ep=8"       # or prefill_strategy + decode_strategy
    assumptions: {gemm_efficiency: 0.7}
    calibration: silicon-dev         # fitted step-model factors: bundled name | YAML path | null
    hardware_profile: h800.yaml      # optional: kernels timed by calibrate --microbench (io.hardware_profile)
    speculative: {method: mtp, draft_tokens: 3, acceptance: [0.85, 0.63, 0.63]}   # or accepted_tokens: 1.8;
                                     #   method eagle | draft (with draft_model: NAME)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshplan.errors import SpecError, suggest
from meshplan.io.calibration import (DEFAULT_PROFILE, calibrated_assumptions, calibrated_engine, load_profile,
                                     partition_for)
from meshplan.io.catalog import CATALOG, load_gpu, load_model
from meshplan.io.engines import load_engine
from meshplan.io.hardware_profile import load_hardware_profile, measured_gpu
from meshplan.io.seed_markdown import read_seed_markdown
from meshplan.io.seed_plan import looks_like_plan, read_seed_plan
from meshplan.io.spec_build import build
from meshplan.io.user_file import load_json, load_yaml, read_text
from meshplan.specs.assumptions import CostAssumptions
from meshplan.specs.dtypes import parse_dtype
from meshplan.specs.engine import DEFAULT_ENGINE, EngineProfile
from meshplan.specs.hardware import GpuSpec
from meshplan.specs.model import ModelSpec
from meshplan.specs.problem import Note, Precision, Problem, SeedStrategy
from meshplan.specs.speculative import SpecMethod, Speculative
from meshplan.io.workload_file import read_workload
from meshplan.specs.workload import Phase, Requirements, Serving

DEFAULT_PROBLEM = CATALOG / "problems" / "seed-10b-moe.md"
"""The seed's problem, bundled: what every command plans when given no problem."""

TOP_KEYS = ("name", "model", "gpu", "gpus", "precision", "engine", "workload", "requirements", "phase", "serving", "strategy",
            "prefill_strategy", "decode_strategy", "assumptions", "calibration", "hardware_profile", "seed_strategy", "notes", "speculative",
            "prefill_gpu", "decode_gpu")

def read_raw(path: str | Path) -> dict[str, Any]:
    """A problem file as a raw mapping in the file schema (Markdown goes through the seed reader)."""
    p = Path(path)
    text = read_text(p, "problem")
    if p.suffix.lower() in {".md", ".markdown"}:
        if looks_like_plan(text):
            return read_seed_plan(text, p.name, read_raw(str(DEFAULT_PROBLEM)))
        raw = read_seed_markdown(text, source=p.name)
    elif p.suffix.lower() == ".json":
        raw = load_json(text, "problem", p.name)
    else:
        raw = load_yaml(text, "problem", p.name)
    if not isinstance(raw, dict):
        raise SpecError("problem", p.name, "must be a mapping of keys (model, gpu, workload, ...)")
    raw.setdefault("name", p.stem)
    return raw


def merge(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overlay flag values (already in file-schema shape; None means not given) onto ``raw``."""
    out = dict(raw)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and key != "engine":
            current = out.get(key)
            if current is not None and not isinstance(current, (str, dict)):
                raise SpecError(key, current, "must be a mapping of keys" + (" or a catalog name" if key in
                                                                            ("model", "gpu") else ""))
            # A catalog name with field overrides (--top-k on a named model) becomes `base: NAME`.
            inner = {"base": current} if isinstance(current, str) else dict(current or {})
            inner.update({k: v for k, v in value.items() if v is not None})
            out[key] = inner
        else:
            out[key] = value
    return out


def _catalog_or_mapping(value: Any, field: str, load: Any, cls: type, what: str) -> Any:
    """A catalog name, or a mapping of fields (``base: NAME`` starts from a catalog entry)."""
    if isinstance(value, str):
        return load(value)
    if not isinstance(value, dict):
        raise SpecError(field, value, f"must be {what} or a mapping")
    fields = dict(value)
    base = fields.pop("base", None)
    if base is not None:
        fields = load(str(base)).model_dump() | fields
    return build(cls, fields, field)


def _model(value: Any) -> ModelSpec:
    if isinstance(value, dict) and "base" not in value:
        value = {"name": "custom", **value}
    return _catalog_or_mapping(value, "model", load_model, ModelSpec, "a catalog name, a config.json path")


def _gpu(value: Any) -> GpuSpec:
    return _catalog_or_mapping(value, "gpu", load_gpu, GpuSpec, "a catalog name")


def _precision(value: Any, model: ModelSpec, notes: list[Note]) -> Precision:
    """The formats to plan with: the checkpoint's (model.checkpoint_precision), with what the
    problem states replacing it. A stated ``weights`` format applies to every weight part the
    problem does not name separately (``--weights fp8`` means all weights in FP8); the KV cache
    keeps the checkpoint's format unless ``kv_cache`` is given."""
    ckpt = model.checkpoint_precision
    if isinstance(value, str):
        value = {"weights": value}
    if value is not None and not isinstance(value, dict):
        raise SpecError("precision", value, "must be a format name or a mapping {weights, attention, experts, kv_cache}")
    given = {}
    for key, v in (value or {}).items():
        if key not in Precision.model_fields:
            raise SpecError(f"precision.{key}", v, "unknown key" + suggest(key, list(Precision.model_fields)))
        if v is not None:
            given[key] = parse_dtype(v, f"precision.{key}")
    if "weights" in given:
        fields = {"weights": given["weights"], "kv_cache": ckpt.kv_cache}
    else:
        fields = ckpt.model_dump()
    fields.update(given)
    prec = build(Precision, fields, "precision")
    origin = model.checkpoint_precision_source or "BF16 (no checkpoint formats known)"
    stated = ", ".join(f"{k} {given[k].value}" for k in Precision.model_fields if k in given)
    notes.append(Note(field="precision", message=(
        f"formats: {prec.describe()}; checkpoint {origin}"
        + (f"; stated in the problem: {stated}" if stated else "; override with --weights/--kv-cache"))))
    return prec


ENGINE_FIELDS = tuple(k for k in EngineProfile.model_fields if k not in ("engine", "version", "display_name"))
"""Profile fields a problem may restate (the engine's identity comes from name and version)."""


def _engine(value: Any, notes: list[Note]) -> EngineProfile:
    """``engine: NAME`` or ``engine: {name: NAME, version: X}``; the default engine when absent."""
    if value is None:
        profile = load_engine(DEFAULT_ENGINE.value)
        notes.append(Note(field="engine", message=(
            f"no engine named: predictions are for {profile.display_name} (the default; --engine trtllm|sglang|vllm)")))
        return profile
    if isinstance(value, str):
        name, version = value, None
    elif isinstance(value, dict):
        for key in value:
            if key not in ("name", "version") and key not in ENGINE_FIELDS:
                raise SpecError(f"engine.{key}", value[key], "unknown key; an engine has name, version and the "
                                "fields of its profile (catalog/engines/*.yaml)" + suggest(key, list(ENGINE_FIELDS)))
        name, version = value.get("name"), value.get("version")
        if not isinstance(name, str):
            raise SpecError("engine.name", name, "must be trtllm, sglang or vllm")
    else:
        raise SpecError("engine", value, "must be trtllm, sglang or vllm, or {name, version}")
    if version is not None and not isinstance(version, (str, int, float)):
        raise SpecError("engine.version", version, "must be a release such as 0.5.9")
    profile = load_engine(name, None if version is None else str(version))
    overrides = {k: v for k, v in value.items() if k not in ("name", "version")} if isinstance(value, dict) else {}
    if overrides:
        profile = build(EngineProfile, profile.model_dump() | overrides, "engine")
        notes.append(Note(field="engine", message="profile fields stated in the problem: "
                          + ", ".join(f"{k} {v}" for k, v in overrides.items())))
    return profile


def _prefill_gpu(value: Any, gpu: GpuSpec, notes: list[Note]) -> GpuSpec | None:
    """The prefill pool's GPU when it is not ``gpu`` (None when absent or the same)."""
    if value is None:
        return None
    try:
        pre = _gpu(value)
    except SpecError as err:
        raise SpecError("prefill_gpu", value, err.rule) from None
    if pre == gpu:
        return None
    link = min(pre.inter_node_bw_bytes_per_s, gpu.inter_node_bw_bytes_per_s)
    notes.append(Note(field="prefill_gpu", message=(
        f"prefill pool on {pre.name}, decode pool on {gpu.name} (disaggregated serving only): each pool is "
        f"searched on its own GPU, and a prompt's KV cache moves over the slower of the two GPUs' NICs "
        f"({link / 1e9:,.0f} GB/s per GPU before the link efficiency); the fitted factors of the calibration profile "
        "apply to both")))
    return pre


SPECULATIVE_KEYS = ("method", "draft_tokens", "acceptance", "accepted_tokens", "draft_model", "draft_checkpoint")


def _speculative(value: Any, model: ModelSpec, notes: list[Note]) -> Speculative | None:
    """``speculative: {method, draft_tokens, acceptance | accepted_tokens, draft_model}``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecError("speculative", value, "must be a mapping {method, draft_tokens, acceptance or accepted_tokens}")
    for key in value:
        if key not in SPECULATIVE_KEYS:
            raise SpecError(f"speculative.{key}", value[key], "unknown key" + suggest(key, list(SPECULATIVE_KEYS)))
    fields = dict(value)
    if isinstance(fields.get("acceptance"), (int, float)) and not isinstance(fields.get("acceptance"), bool):
        fields["acceptance"] = [fields["acceptance"]]
    if fields.get("draft_model") is not None:
        try:
            fields["draft_model"] = _model(fields["draft_model"])
        except SpecError as err:
            raise SpecError("speculative.draft_model", fields["draft_model"], err.rule) from None
        if fields["draft_model"].is_moe:
            raise SpecError("speculative.draft_model", fields["draft_model"].name, "a draft model is a small dense "
                            "model; this one has experts")
    spec = build(Speculative, fields, "speculative")
    if spec.method is SpecMethod.MTP and not model.mtp_modules:
        raise SpecError("speculative.method", "mtp", f"{model.name} ships no multi-token-prediction module "
                        "(config.json num_nextn_predict_layers); use eagle or a draft model")
    if spec.draft_model is not None and spec.draft_model.vocab_size != model.vocab_size:
        raise SpecError("speculative.draft_model", spec.draft_model.name, f"its vocabulary ({spec.draft_model.vocab_size:,}) "
                        f"differs from {model.name}'s ({model.vocab_size:,}); a draft must share the tokenizer")
    notes.append(Note(field="speculative", message=(
        f"speculative decoding: {spec.describe()} (stated, not derived); each decode pool is searched with it and "
        "without it")))
    return spec


def _serving(value: Any) -> Serving:
    if not isinstance(value, str) or value not in {s.value for s in Serving}:
        raise SpecError("serving", value, "must be auto, aggregated or disaggregated")
    return Serving(value)


MAX_NAME = 200
"""Longest problem name (characters)."""


def _consistent(phase: str, serving: Serving, requirements: Any) -> None:
    """Settings that contradict the phase planned: serving applies to full serving only, and a
    latency target to the phase that has it."""
    if phase != Phase.BOTH.value and serving is not Serving.AUTO:
        raise SpecError("serving", serving.value, f"applies when both phases are planned; phase is {phase}")
    if not isinstance(requirements, dict):
        return
    if phase == Phase.DECODE.value and requirements.get("ttft_s") is not None:
        raise SpecError("requirements.ttft_s", requirements["ttft_s"], "a TTFT target needs the prefill phase "
                        "planned; phase is decode")
    if phase == Phase.PREFILL.value and requirements.get("tpot_s") is not None:
        raise SpecError("requirements.tpot_s", requirements["tpot_s"], "a TPOT target needs the decode phase "
                        "planned; phase is prefill")


def problem_from_raw(raw: dict[str, Any]) -> Problem:
    """Validate a raw mapping into a Problem."""
    for key in raw:
        if key not in TOP_KEYS:
            raise SpecError(key, raw[key], "unknown key" + suggest(key, list(TOP_KEYS)))
    if raw.get("decode_gpu") is not None:
        try:
            decode = _gpu(raw["decode_gpu"])
        except SpecError as err:
            raise SpecError("decode_gpu", raw["decode_gpu"], err.rule) from None
        if raw.get("gpu") is not None and _gpu(raw["gpu"]) != decode:
            raise SpecError("decode_gpu", raw["decode_gpu"], f"gpu names {raw['gpu']!r}: gpu is the decode pool's GPU "
                            "when pools differ; give one of the two")
        raw = {**raw, "gpu": raw["decode_gpu"]}
    for key in ("model", "gpu", "workload"):
        if raw.get(key) is None:
            raise SpecError(key, None, f"missing; a problem needs a {key} (file key or --{key} flag)")
    stated_notes = raw.get("notes", [])
    if not isinstance(stated_notes, list):
        raise SpecError("notes", stated_notes, "must be a list of {field, message} notes")
    notes = [build(Note, n, "notes") if isinstance(n, dict) else n for n in stated_notes]
    if not all(isinstance(n, Note) for n in notes):
        raise SpecError("notes", stated_notes, "must be a list of {field, message} notes")
    name = raw.get("name", "problem")
    if not isinstance(name, (str, int, float)) or isinstance(name, bool) or len(str(name)) > MAX_NAME:
        raise SpecError("name", name, f"must be a short text (at most {MAX_NAME} characters)")
    model = _model(raw["model"])
    if isinstance(raw["model"], dict) and raw["model"].get("top_k") is not None and not model.is_moe:
        raise SpecError("model.top_k", raw["model"]["top_k"], f"{model.name} is dense (no experts); top-k is the "
                        "number of experts each token is routed to")
    workload = read_workload(raw["workload"], notes)
    precision = _precision(raw.get("precision"), model, notes)
    calibration = raw.get("calibration", DEFAULT_PROFILE)
    if calibration is not None and not isinstance(calibration, str):
        raise SpecError("calibration", calibration, "must be a profile name, a YAML path, or none")
    profile = load_profile(calibration)
    raw_engine = raw.get("engine")
    engine_stated = {k for k in raw_engine if k not in ("name", "version")} if isinstance(raw_engine, dict) else set()
    engine = calibrated_engine(_engine(raw_engine, notes), profile, engine_stated)
    stated = raw.get("assumptions") or {}
    if not isinstance(stated, dict):
        raise SpecError("assumptions", stated, "must be a mapping of factor names to values")
    gpu = _gpu(raw["gpu"])
    prefill_gpu = _prefill_gpu(raw.get("prefill_gpu"), gpu, notes)
    assumptions = calibrated_assumptions(build(CostAssumptions, stated, "assumptions"), profile, set(stated),
                                         gpu.name, engine.engine)
    hardware = raw.get("hardware_profile")
    if hardware is not None:
        if not isinstance(hardware, str):
            raise SpecError("hardware_profile", hardware, "must be the path of a calibrate --microbench profile")
        gpu, message = measured_gpu(gpu, load_hardware_profile(hardware), assumptions.comm_efficiency, hardware)
        notes.append(Note(field="hardware_profile", message=message))
    if profile is not None:
        part = partition_for(profile, gpu.name, engine.engine)
        values = profile.assumptions | (part.assumptions if part is not None else {})
        fitted = ", ".join(f"{k} {f.value:.3g}" for k, f in values.items() if k not in stated)
        if part is not None:
            fitted += f" (refitted on its {' and '.join(x for x in (part.gpu, part.engine and part.engine.value) if x)} runs)"
        eng = ", ".join(f"{k} {f.value:.3g}" for k, f in profile.engines.get(engine.engine, {}).items()
                        if k not in engine_stated)
        notes.append(Note(field="calibration", message=(
            f"profile {profile.name} (fitted on {profile.fitted_on}): {fitted}"
            + (f"; {engine.display_name}: {eng}" if eng else "") + " (calibration: none for the sourced defaults)")))
    phase = raw.get("phase", "both")
    if not isinstance(phase, str) or phase not in {p.value for p in Phase}:
        raise SpecError("phase", phase, "must be prefill, decode or both")
    serving = _serving(raw.get("serving", "auto"))
    _consistent(phase, serving, raw.get("requirements"))
    budget = raw.get("gpus")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0):
        raise SpecError("gpus", budget, "must be a positive whole number of GPUs")
    speculative = _speculative(raw.get("speculative"), model, notes)
    return build(Problem, dict(
        name=str(name), model=model, speculative=speculative, prefill_gpu=prefill_gpu, gpu=gpu, gpu_budget=budget,
        precision=precision, engine=engine, workload=workload,
        requirements=build(Requirements, raw.get("requirements") or {}, "requirements"),
        phase=Phase(phase), serving=serving, strategy=raw.get("strategy"), prefill_strategy=raw.get("prefill_strategy"),
        decode_strategy=raw.get("decode_strategy"),
        seed_strategy=build(SeedStrategy, raw["seed_strategy"], "seed_strategy") if raw.get("seed_strategy") else None,
        assumptions=assumptions, calibration=profile.name if profile is not None else "",
        notes=tuple(notes)), "problem")


def load_problem(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Problem:
    """A problem from a file (None: the bundled seed problem), with flag overrides merged in."""
    source = path if path is not None else str(DEFAULT_PROBLEM)
    raw = merge(read_raw(source), overrides or {})
    return problem_from_raw(raw)
