"""The shipped catalogs: models (Hugging Face config.json files) and GPUs (YAML with sources)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from meshplan.errors import SpecError, suggest
from meshplan.specs.hardware import GpuSpec
from meshplan.specs.model import ModelSpec
from meshplan.io.hf_config import load_hf_config

CATALOG = resources.files("meshplan") / "catalog"


def _norm(name: str) -> str:
    """Lower-case with dashes; 'DeepSeek-V3', 'deepseek_v3' and 'DEEPSEEK V3' meet here."""
    return str(name).strip().lower().replace("_", "-").replace(" ", "-")


@cache
def _model_index() -> dict[str, dict]:
    return yaml.safe_load((CATALOG / "models" / "index.yaml").read_text())


@cache
def _model_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for key, entry in _model_index().items():
        names[key] = key
        for alias in entry.get("aliases", []):
            names[_norm(alias)] = key
            names[_norm(alias.split("/")[-1])] = key
    return names


def model_keys() -> list[str]:
    return list(_model_index())


@cache
def load_model(name: str) -> ModelSpec:
    """A catalog model by any common spelling, or a path to a local config.json."""
    if name.endswith(".json") or "/" in name and Path(name).exists():
        return load_hf_config(name)
    key = _model_names().get(_norm(name))
    if key is None:
        raise SpecError("model", name, "not in the catalog and not a config.json path"
                        + suggest(_norm(name), sorted(_model_index())))
    entry = _model_index()[key]
    path = CATALOG / "models" / entry["file"]
    return load_hf_config(str(path), name=key, published_params=entry.get("published_params"))


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
    entry = _model_index().get(name)
    if entry:
        for alias in entry.get("aliases", []):
            if "/" in alias:
                return alias
    return name
