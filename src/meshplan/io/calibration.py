"""Calibration profiles: the bundled one (fitted on shared/cases/silicon-dev.csv) or a user's file."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from meshplan.errors import SpecError
from meshplan.io.catalog import CATALOG
from meshplan.io.engines import load_engine
from meshplan.io.spec_build import build
from meshplan.specs.assumptions import CostAssumptions
from meshplan.specs.calibration import CalibrationProfile
from meshplan.specs.engine import EngineProfile
from meshplan.specs.workload import WorkloadSpec

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
    profile = build(CalibrationProfile, data, "calibration")
    sections = [("assumptions", profile.assumptions, CostAssumptions), ("benchmark", profile.benchmark, WorkloadSpec)]
    sections += [(f"partitions[{i}].assumptions", part.assumptions, CostAssumptions)
                 for i, part in enumerate(profile.partitions)]
    sections += [(f"engines.{e.value}", fields, EngineProfile) for e, fields in profile.engines.items()]
    for section, fields, spec in sections:
        for key, f in fields.items():
            where = f"calibration.{section}.{key}"
            if key not in spec.model_fields:
                raise SpecError(where, key, f"not a {spec.__name__} field")
            if not f.lower <= f.value <= f.upper:
                raise SpecError(where, f.value, f"outside the bounds it was fitted within [{f.lower:g}, {f.upper:g}]")
    # The values must be ones their fields take (types and ranges of the specs).
    build(CostAssumptions, {k: f.value for k, f in profile.assumptions.items()}, "calibration.assumptions")
    for e, fields in profile.engines.items():
        build(EngineProfile, load_engine(e.value).model_dump() | {k: f.value for k, f in fields.items()},
              f"calibration.engines.{e.value}")
    return profile


def partition_for(profile: CalibrationProfile | None, gpu: str | None, engine=None):
    """The profile's most specific partition fit for this GPU and engine (GPU and engine over GPU
    over engine), or None."""
    if profile is None:
        return None
    fits = [p for p in profile.partitions
            if (p.gpu is None or p.gpu == gpu) and (p.engine is None or p.engine == engine)]
    return max(fits, key=lambda p: (p.gpu is not None) * 2 + (p.engine is not None), default=None)


def calibrated_assumptions(a: CostAssumptions, profile: CalibrationProfile | None, stated: set[str],
                           gpu: str | None = None, engine=None) -> CostAssumptions:
    """``a`` with the profile's fitted factors (its partition's for this GPU and engine where it
    has one), except those the problem states itself."""
    if profile is None:
        return a
    fitted = dict(profile.assumptions)
    part = partition_for(profile, gpu, engine)
    if part is not None:
        fitted.update(part.assumptions)
    update = {k: f.value for k, f in fitted.items() if k not in stated}
    return build(CostAssumptions, a.model_dump() | update, "calibration.assumptions") if update else a


def calibrated_engine(e: EngineProfile, profile: CalibrationProfile | None, stated: set[str] = frozenset()) -> EngineProfile:
    """``e`` with the profile's fitted factors for its engine, except those the problem states itself."""
    if profile is None or e.engine not in profile.engines:
        return e
    update = {k: f.value for k, f in profile.engines[e.engine].items() if k not in stated}
    return build(EngineProfile, e.model_dump() | update, f"calibration.engines.{e.engine.value}") if update else e
