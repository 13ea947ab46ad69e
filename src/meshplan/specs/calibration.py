"""A calibration profile: values of named step-model factors fitted on measured runs.

meshplan calibrate writes only the factors it names (fidelity.calibrate.FACTORS); a profile is
read only when every entry is a field of the spec it sets and lies within its recorded bounds
(io.calibration.load_profile). Each keeps its bounds, its uncertainty and what it was fitted on, and the profile records the fit's error in-sample and on
groups of runs the fit did not see.
"""

from __future__ import annotations

from pydantic import Field

from meshplan.specs.base import Spec
from meshplan.specs.engine import Engine


class FittedFactor(Spec):
    """One factor's fitted value."""

    value: float
    uncertainty: float = Field(ge=0)
    """One standard error (from the fit's Jacobian); 0 where not estimated (a fit by simulation)."""
    lower: float
    upper: float
    """The physical bounds the fit kept it within."""


class FitError(Spec):
    """Median relative errors of a fit."""

    ttft: float = Field(ge=0)
    tpot: float = Field(ge=0)


class PartitionFit(Spec):
    """The CostAssumptions factors refitted on the runs of one GPU and/or one engine (calibrate
    --by), on top of the profile's pooled values; a problem on that GPU (and engine) uses them."""

    gpu: str | None = None
    """Catalog GPU name; None: every GPU."""
    engine: Engine | None = None
    """None: every engine."""
    rows: int = Field(ge=0)
    assumptions: dict[str, FittedFactor]
    in_sample: FitError
    """This partition's runs with these values."""
    pooled: FitError
    """The same runs with the pooled values."""
    cross_validated: FitError | None = None
    """This partition's runs, each predicted by a partition fit that did not see its model."""


class SimulationFit(Spec):
    """Factors fitted by simulation (calibrate --sim-fit, fidelity.simfit), every other factor at the
    base profile's value or, where --fit named it, refitted by the closed form with these held."""

    factors: list[str]
    rows: int = Field(ge=0)
    """Runs simulated (those the factors reach), each ``replicas`` times per pass."""
    rows_hash: str
    replicas: int = Field(ge=1)
    passes: int = Field(ge=1)
    """Simulations of those runs the search took."""
    error: FitError
    """The simulation's median |error| over those runs at the fitted values."""


class CalibrationProfile(Spec):
    """Fitted factors, applied on top of their sourced defaults when a problem is read."""

    name: str
    fitted_on: str
    """The measurement file (and its rows: count and hash)."""
    rows: int = Field(ge=0)
    rows_hash: str
    command: str
    """The command that produced this profile."""
    base: str = ""
    """The profile whose values this one keeps for the factors it did not fit ("" for none); with
    ``simulated``, also the values the fit by simulation held."""
    simulated: SimulationFit | None = None
    """The factors fitted by simulation, if any (the others, and in_sample, are the closed form's)."""
    assumptions: dict[str, FittedFactor] = {}
    """CostAssumptions fields."""
    engines: dict[Engine, dict[str, FittedFactor]] = {}
    """EngineProfile fields per engine."""
    benchmark: dict[str, FittedFactor] = {}
    """Properties of the measurement protocol (WorkloadSpec fields such as requests_per_client):
    applied when meshplan predicts those measurements (validate), not to plans."""
    in_sample: FitError
    cross_validated: FitError | None = None
    """Runs predicted by fits that did not see their model x GPU group."""
    folds: int = 0
    leave_one_group_out: bool = False
    """The cross-validation held out one model x GPU group per fold (folds = the groups)."""
    partitions: list[PartitionFit] = []
    """Per-GPU and/or per-engine refits (calibrate --by); the most specific match applies."""
