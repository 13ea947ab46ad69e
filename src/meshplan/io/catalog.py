"""The shipped catalogs: models (Hugging Face config.json files) and GPUs (YAML with sources)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from meshplan.errors import SpecError, suggest
from meshplan.specs.hardware import GpuSpec
from meshplan.specs.model import ModelSpec
from meshplan.io.checkpoint import checkpoint_precision
from meshplan.io.hf_config import load_hf_config, read_json_file
from meshplan.specs.precision import Precision

CATALOG = resources.files("meshplan") / "catalog"


def _norm(name: str) -> str:
    """Lower-case with dashes; 'DeepSeek-V3', 'deepseek_v3' and 'DEEPSEEK V3' meet here."""
    return str(name).strip().lower().replace("_", "-").replace(" ", "-")


@cache
def model_index() -> dict[str, dict]:
    """The catalog's model index (models/index.yaml): catalog key -> its entry."""
    return yaml.safe_load((CATALOG / "models" / "index.yaml").read_text())


@cache
def _model_names() -> dict[str, tuple[str, str | None]]:
    """Every spelling -> (catalog key, checkpoint id or None for the default checkpoint)."""
    names: dict[str, tuple[str, str | None]] = {}
    for key, entry in model_index().items():
        names[key] = (key, None)
        for alias in entry.get("aliases", []):
            names[_norm(alias)] = (key, None)
            names.setdefault(_norm(alias.split("/")[-1]), (key, None))
        for ckpt in entry.get("checkpoints", {}) or {}:
            names[_norm(ckpt)] = (key, ckpt)
            names.setdefault(_norm(ckpt.split("/")[-1]), (key, ckpt))
    return names


def checkpoints(key: str) -> dict[str, Precision]:
    """Every checkpoint of catalog model ``key``, its Hugging Face id -> its formats (the
    default checkpoint first)."""
    m = load_model(key)
    out = {m.checkpoint: m.checkpoint_precision}
    for ckpt in model_index()[key].get("checkpoints", {}) or {}:
        out[ckpt] = load_model(ckpt).checkpoint_precision
    return out


def model_keys() -> list[str]:
    return list(model_index())


MAX_NAME = 1024
"""Longest model name, checkpoint id or config path (Linux's PATH_MAX is 4096, Hugging Face ids
are at most 96 characters)."""


@cache
def load_model(name: str) -> ModelSpec:
    """A catalog model by any common spelling or checkpoint id (with that checkpoint's formats),
    or a path to a local config.json (with an hf_quant_config.json beside it, if there is one)."""
    if len(name) > MAX_NAME:
        raise SpecError("model", name, f"longer than {MAX_NAME} characters: not a model name, id or path")
    if name.endswith(".json") or "/" in name and Path(name).exists():
        return _local_model(Path(name))
    found = _model_names().get(_norm(name))
    if found is None:
        raise SpecError("model", name, "not in the catalog and not a config.json path"
                        + suggest(_norm(name), sorted(model_index())))
    key, ckpt = found
    entry = model_index()[key]
    folder = CATALOG / "models"
    spec = load_hf_config(str(folder / entry["file"]), name=key, published_params=entry.get("published_params"))
    default_id = next((a for a in entry.get("aliases", []) if "/" in a), key)
    if ckpt is None:
        prec, source = checkpoint_precision(spec, read_json_file(folder / entry["file"], "model"), None)
        return spec.model_copy(update=dict(checkpoint=default_id, checkpoint_precision=prec,
                                           checkpoint_precision_source=f"{default_id} {source}"))
    c = entry["checkpoints"][ckpt] or {}
    if "formats" in c:
        prec = Precision(**c["formats"])
        source = f"stated in the catalog ({c.get('note', '')})"
    else:
        config = read_json_file(folder / c["config"], "model") if "config" in c else {}
        quant = read_json_file(folder / c["quant"], "model") if "quant" in c else None
        prec, source = checkpoint_precision(spec, config, quant)
        if c.get("note"):
            source += f"; {c['note']}"
    return spec.model_copy(update=dict(checkpoint=ckpt, checkpoint_precision=prec,
                                       checkpoint_precision_source=f"{ckpt} {source}"))


def _local_model(path: Path) -> ModelSpec:
    """A config.json on disk; its formats from its quantization_config and, when present, the
    ModelOpt hf_quant_config.json in the same folder (or NAME.hf_quant_config.json beside
    NAME.config.json)."""
    spec = load_hf_config(path)
    quant_path = None
    for candidate in (path.with_name(path.name.replace(".config.json", ".hf_quant_config.json")),
                      path.with_name("hf_quant_config.json")):
        if candidate != path and candidate.is_file():
            quant_path = candidate
            break
    quant = read_json_file(quant_path, "model") if quant_path else None
    prec, source = checkpoint_precision(spec, read_json_file(path, "model"), quant)
    return spec.model_copy(update=dict(checkpoint=str(path), checkpoint_precision=prec,
                                       checkpoint_precision_source=f"{path.name} {source}"))


@cache
def _gpu_table() -> dict[str, GpuSpec]:
    table = {}
    for f in sorted((CATALOG / "hardware").iterdir()):
        if f.name.endswith(".yaml"):
            spec = GpuSpec.model_validate(yaml.safe_load(f.read_text()))
            table[spec.name] = spec
    return table


def gpu_keys() -> list[str]:
    return list(_gpu_table())


def load_gpu(name: str) -> GpuSpec:
    """A catalog GPU by its key or any alias (``H100`` -> ``h100-sxm``)."""
    table = _gpu_table()
    wanted = _norm(name)
    for spec in table.values():
        if wanted == spec.name or wanted in {_norm(a) for a in spec.aliases}:
            return spec
    raise SpecError("gpu", name, "not in the GPU catalog" + suggest(wanted, sorted(table)))


def model_alias(name: str) -> str:
    """The Hugging Face repository id of a catalog model (its first alias with an owner), else
    the name itself (a local config or a custom model)."""
    entry = model_index().get(name)
    if entry:
        for alias in entry.get("aliases", []):
            if "/" in alias:
                return alias
    return name
