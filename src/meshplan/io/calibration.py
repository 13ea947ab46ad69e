"""Calibration profiles: the bundled one (fitted on shared/cases/silicon-dev.csv) or a user's file."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from meshplan.errors import SpecError
from meshplan.io.catalog import CATALOG
from meshplan.specs.assumptions import CostAssumptions
from meshplan.specs.calibration import CalibrationProfile
from meshplan.specs.engine import EngineProfile

DEFAULT_PROFILE = "silicon-dev"
"""The profile problems use unless they name another or ``none``."""


@cache
def load_profile(name: str | None = DEFAULT_PROFILE) -> CalibrationProfile | None:
    """A bundled profile by name, a YAML file by path, or None for ``none``."""
    if name is None or str(name).lower() == "none":
        return None
    bundled = CATALOG / "calibration" / f"{name}.yaml"
    path = Path(str(bundled)) if bundled.is_file() else Path(str(name))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError("calibration", name, "no such profile (a bundled name, a YAML path, or none)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise SpecError("calibration", name, f"cannot read it ({err.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise SpecError("calibration", name, "must be a mapping (see catalog/calibration/silicon-dev.yaml)")
    try:
        profile = CalibrationProfile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        value = None if first["type"] == "missing" else first.get("input")
        raise SpecError("calibration." + ".".join(str(x) for x in first["loc"]), value, first["msg"]) from None
    for key in profile.assumptions:
        if key not in CostAssumptions.model_fields:
            raise SpecError(f"calibration.assumptions.{key}", key, "not a CostAssumptions field")
    for engine, fields in profile.engines.items():
        for key in fields:
            if key not in EngineProfile.model_fields:
                raise SpecError(f"calibration.engines.{engine.value}.{key}", key, "not an EngineProfile field")
    return profile


def calibrated_assumptions(a: CostAssumptions, profile: CalibrationProfile | None, stated: set[str]) -> CostAssumptions:
    """``a`` with the profile's fitted factors, except those the problem states itself."""
    if profile is None:
        return a
    update = {k: f.value for k, f in profile.assumptions.items() if k not in stated}
    return a.model_copy(update=update) if update else a


def calibrated_engine(e: EngineProfile, profile: CalibrationProfile | None, stated: set[str] = frozenset()) -> EngineProfile:
    """``e`` with the profile's fitted factors for its engine, except those the problem states itself."""
    if profile is None or e.engine not in profile.engines:
        return e
    update = {k: f.value for k, f in profile.engines[e.engine].items() if k not in stated}
    return e.model_copy(update=update) if update else e
