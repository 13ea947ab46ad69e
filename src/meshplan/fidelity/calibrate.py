"""Fit named factors of the step model on measured runs (robust least squares on log error).

Only factors listed in FACTORS (fidelity.factors) may be fitted, each bounded to a physical range; a fit records the
rows it saw (count and a hash of their ids) and its error, and ``cross_validate`` reports the error
on groups of runs (model x GPU) that the fit did not see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.errors import SpecError
from meshplan.fidelity.factors import FACTORS, Factor
from meshplan.fidelity.predict import Group, predict_group
from meshplan.io.engines import load_engine
from meshplan.specs.assumptions import CostAssumptions
from meshplan.specs.calibration import CalibrationProfile, FitError, FittedFactor, PartitionFit, SimulationFit


LOSS_SCALE = 0.15
"""Log error (0.15: a 16% error) beyond which a fit's soft-L1 loss counts a residual linearly, so
that outlying runs do not pull the fit."""

Held = tuple[tuple[Factor, float], ...]
"""Factors a fit keeps at a base profile's values (not fitted), with those values."""


def held_from(profile: CalibrationProfile | None, fitted: list[Factor]) -> Held:
    """Every factor ``profile`` holds that this fit does not move, at the profile's value."""
    if profile is None:
        return ()
    names = {f.name for f in fitted}
    return tuple((f, v) for f in FACTORS if f.name not in names and (v := value_in(profile, f)) is not None)


def value_in(profile: CalibrationProfile | None, f: Factor) -> float | None:
    """``profile``'s value of ``f``, None where it has none."""
    if profile is None:
        return None
    entry = _section(profile, f).get(f.key)
    return None if entry is None else entry.value


def _section(profile: CalibrationProfile, f: Factor) -> dict:
    """The part of ``profile`` that holds ``f`` (its engine's entries for an engine factor)."""
    return profile.engines.get(f.engine, {}) if f.section == "engines" else getattr(profile, f.section)


def fitted_entry(f: Factor, value: float, uncertainty: float) -> FittedFactor:
    """A fitted value as a profile records it (an undetermined uncertainty as 0)."""
    return FittedFactor(value=float(value), uncertainty=float(0.0 if np.isnan(uncertainty) else uncertainty),
                        lower=f.lower, upper=f.upper)


def entry_of(profile: CalibrationProfile, f: Factor):
    """The profile's FittedFactor for ``f``."""
    return _section(profile, f)[f.key]


def adjust_for(factors: list[Factor], values, held: Held = ()) -> callable:
    """The change to a group's inputs that ``values`` of ``factors`` make (and the ``held`` ones)."""
    factors = [f for f, _ in held] + list(factors)
    values = [v for _, v in held] + list(values)

    def adjust(group: Group) -> CostInputs:
        # One after another: each factor scales the inputs as the ones before it left them (the
        # sustained GEMM share and the grouped GEMM efficiency both scale the experts' rate).
        ci = group.ci
        for f, v in zip(factors, values):
            fields = f.apply(ci, float(v), group.cases[0].harness)
            if fields:
                ci = replace(ci, **fields)
        return ci
    return adjust


def log_errors(groups: list[Group], adjust=None) -> tuple[np.ndarray, np.ndarray]:
    """log(predicted / measured) of TTFT and TPOT over every run of ``groups``."""
    t_err, p_err = [], []
    for g in groups:
        ttft, tpot = predict_group(g, adjust)
        mt = np.array([c.ttft_ms for c in g.cases]) / 1e3
        mp = np.array([c.tpot_ms for c in g.cases]) / 1e3
        t_err.append(np.log(np.maximum(ttft, 1e-9) / mt))
        p_err.append(np.log(np.maximum(tpot, 1e-9) / mp))
    return np.concatenate(t_err), np.concatenate(p_err)


@dataclass(frozen=True, kw_only=True, slots=True)
class FitResult:
    values: tuple[float, ...]
    uncertainty: tuple[float, ...]
    """One standard error per value from the Jacobian at the optimum (robust-loss weighted)."""
    rows: int
    rows_hash: str
    """sha256 of the sorted run ids, first 16 hex digits."""
    median_abs_ttft: float
    median_abs_tpot: float


def ids_hash(ids) -> str:
    """sha256 of the sorted run ids, first 16 hex digits: which runs a fit saw."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def rows_hash(groups: list[Group]) -> str:
    return ids_hash(c.id for g in groups for c in g.cases)


def fit(groups: list[Group], factors: list[Factor], start: list[float], loss_scale: float = LOSS_SCALE,
        held: Held = ()) -> FitResult:
    """Least squares on log error with a soft-L1 loss (residuals beyond ``loss_scale`` count
    linearly, so outlying runs do not pull the fit), each factor within its bounds."""
    lower = np.array([f.lower for f in factors])
    upper = np.array([f.upper for f in factors])
    scale = np.maximum(np.abs(upper - lower), 1e-12)
    x0 = (np.clip(start, lower, upper) - lower) / scale

    def residuals(x):
        t, p = log_errors(groups, adjust_for(factors, lower + x * scale, held))
        return np.concatenate([t, p])

    # scipy takes most of a second to import; only calibrate fits, so every command's start-up does not pay it.
    from scipy.optimize import least_squares

    res = least_squares(residuals, x0, bounds=(0.0, 1.0), loss="soft_l1", f_scale=loss_scale, x_scale=1.0,
                        diff_step=1e-3, max_nfev=60)
    values = lower + res.x * scale
    try:
        jtj = res.jac.T @ res.jac
        cov = np.linalg.pinv(jtj) * (2 * res.cost / max(len(res.fun) - len(values), 1))
        unc = np.sqrt(np.maximum(np.diag(cov), 0.0)) * scale
    except np.linalg.LinAlgError:
        unc = np.full(len(values), np.nan)
    t, p = log_errors(groups, adjust_for(factors, values, held))
    return FitResult(values=tuple(float(v) for v in values),
                     uncertainty=tuple(float(u) for u in unc), rows=int(len(t)), rows_hash=rows_hash(groups),
                     median_abs_ttft=float(np.median(np.abs(np.expm1(t)))),
                     median_abs_tpot=float(np.median(np.abs(np.expm1(p)))))


def evaluated(groups: list[Group], held: Held) -> FitResult:
    """No factor fitted: the errors of ``groups`` with the ``held`` values (a profile that only
    records values fitted otherwise, by simulation)."""
    t, p = log_errors(groups, adjust_for([], [], held))
    return FitResult(values=(), uncertainty=(), rows=int(len(t)), rows_hash=rows_hash(groups),
                     median_abs_ttft=float(np.median(np.abs(np.expm1(t)))),
                     median_abs_tpot=float(np.median(np.abs(np.expm1(p)))))


def _fold(train: list[Group], test: list[Group], factors: list[Factor], start: list[float], loss_scale: float,
          held: Held) -> tuple[np.ndarray, np.ndarray]:
    """One fold: fit on ``train``, relative errors on ``test``."""
    result = fit(train, factors, start, loss_scale, held)
    t, p = log_errors(test, adjust_for(factors, result.values, held))
    return np.expm1(t), np.expm1(p)


def cross_validate(groups: list[Group], factors: list[Factor], start: list[float], folds: int = 5,
                   loss_scale: float = LOSS_SCALE, held: Held = (), leave_one_out: bool = False,
                   jobs: int = 1, progress: Callable[[int, int, str], None] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Relative errors of TTFT and TPOT for every run, each predicted by a fit that did not see its
    model x GPU group: runs assigned to ``folds`` folds by a hash of the group, or with
    ``leave_one_out`` one fold per group (``folds`` is then ignored). ``jobs`` processes fit the
    folds side by side (the same figures as one, in the same order). ``progress(done, total,
    label)`` is called as each fold's fit ends (label: the group left out, or the fold's number)."""
    keys = sorted({(g.cases[0].model, g.cases[0].gpu) for g in groups})
    if leave_one_out:
        folds = len(keys)

    def fold_of(g: Group) -> int:
        c = g.cases[0]
        if leave_one_out:
            return keys.index((c.model, c.gpu))
        return int(hashlib.sha256(f"{c.model}|{c.gpu}".encode()).hexdigest(), 16) % folds

    labels = [" x ".join(keys[k]) if leave_one_out else f"fold {k + 1}" for k in range(folds)]
    splits = [([g for g in groups if fold_of(g) != k], [g for g in groups if fold_of(g) == k], labels[k])
              for k in range(folds)]
    splits = [(train, test, label) for train, test, label in splits if train and test]
    done: list = [None] * len(splits)

    def finished(k: int, n: int) -> None:
        if progress is not None:
            progress(n, len(splits), splits[k][2])

    if jobs > 1 and len(splits) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            running = {pool.submit(_fold, tr, te, factors, start, loss_scale, held): k
                       for k, (tr, te, _) in enumerate(splits)}
            for n, future in enumerate(as_completed(running), 1):
                k = running[future]
                done[k] = future.result()
                finished(k, n)
    else:
        for k, (tr, te, _) in enumerate(splits):
            done[k] = _fold(tr, te, factors, start, loss_scale, held)
            finished(k, k + 1)
    t_all, p_all = [t for t, _ in done], [p for _, p in done]
    if not t_all:
        raise SpecError("--folds", folds, "every model x GPU group fell in one fold; cross-validation needs runs "
                        "of several groups (--folds 0 for none)")
    return np.concatenate(t_all), np.concatenate(p_all)


def profile_of(result: FitResult, factors: list[Factor], *, name: str, fitted_on: str, command: str,
               cv: tuple[np.ndarray, np.ndarray] | None = None, folds: int = 0,
               base: CalibrationProfile | None = None, held: Held = (),
               simulated: tuple[SimulationFit, list[Factor]] | None = None) -> CalibrationProfile:
    """The calibration profile a fit gives; the ``held`` factors keep ``base``'s entries, except
    those ``simulated`` fitted by simulation before (held at those values here)."""
    sections: dict[str, dict] = {"assumptions": {}, "engines": {}, "benchmark": {}}
    fitted = [(f, fitted_entry(f, v, u)) for f, v, u in zip(factors, result.values, result.uncertainty)]
    by_sim = {f.name for f in simulated[1]} if simulated else set()
    kept = [(f, entry_of(base, f)) for f, _ in held if f.name not in by_sim] if base is not None else []
    # A fit by simulation estimates no standard error (uncertainty 0: not estimated).
    sim = [(f, fitted_entry(f, v, float("nan"))) for f, v in held if f.name in by_sim]
    for f, entry in kept + sim + fitted:
        if f.section == "engines":
            sections["engines"].setdefault(f.engine, {})[f.key] = entry
        else:
            sections[f.section][f.key] = entry
    crossed = None
    if cv is not None:
        crossed = FitError(ttft=float(np.median(np.abs(cv[0]))), tpot=float(np.median(np.abs(cv[1]))))
    return CalibrationProfile(name=name, fitted_on=fitted_on, rows=result.rows, rows_hash=result.rows_hash,
                              command=command, base=base.name if (base is not None and (kept or sim)) else "",
                              simulated=simulated[0] if simulated else None,
                              assumptions=sections["assumptions"], engines=sections["engines"],
                              benchmark=sections["benchmark"],
                              in_sample=FitError(ttft=result.median_abs_ttft, tpot=result.median_abs_tpot),
                              cross_validated=crossed, folds=folds)


def _sourced(f: Factor) -> float | None:
    if f.section == "assumptions":
        return CostAssumptions.model_fields[f.key].default
    if f.section == "engines":
        value = getattr(load_engine(f.engine.value), f.key)
        if value is None:  # unset: it follows another factor's field (Factor.followed_by), so its source
            lead = next((g for g in FACTORS if g.engine is f.engine and f.key in g.followed_by), None)
            return _sourced(lead) if lead is not None else None
        return value
    return None  # benchmark protocol factors have no source


def has_default(f: Factor) -> bool:
    return _sourced(f) is not None


def default_value(f: Factor) -> float:
    """Where a fit starts: the factor's sourced default (the middle of its bounds where it has none)."""
    value = _sourced(f)
    return float(value) if value is not None else (f.lower + f.upper) / 2.0


FEW_RUNS_FACTORS = ("request_overhead_s", "host_gap_s", "kernel_floor_scale")
"""What a fit on few runs moves, in this order, when the default set has more factors than half the
residuals (two per run, TTFT and TPOT): the engine's time per request outside the GPU (TTFT), its
GPU idle per iteration (TPOT) and the per-kernel floor (both), the three that any run informs."""


def informative(groups: list[Group], factors: list[Factor], start: list[float], held: Held = ()) -> list[bool]:
    """Whether any run's prediction moves when each factor moves by a tenth of its range from
    ``start`` (a factor no run depends on, such as MoE factors for dense models, cannot be fitted)."""
    base = np.concatenate(log_errors(groups, adjust_for(factors, start, held)))
    out = []
    for i, f in enumerate(factors):
        step = 0.1 * (f.upper - f.lower)
        moved = list(start)
        moved[i] = start[i] + step if start[i] + step <= f.upper else start[i] - step
        moved_err = np.concatenate(log_errors(groups, adjust_for(factors, moved, held)))
        out.append(bool(np.max(np.abs(moved_err - base)) > 1e-9))
    return out


def few_runs_factors(factors: list[Factor], runs: int) -> list[Factor]:
    """At most runs (half the residuals) factors of FEW_RUNS_FACTORS, among ``factors``."""
    keep = [f for key in FEW_RUNS_FACTORS for f in factors if (f.key if f.engine else f.name) == key]
    return keep[:max(runs, 1)]


def factors_for(groups: list[Group], names: list[str] | None = None) -> list[Factor]:
    """The factors a fit on ``groups`` can move (engine factors only for engines in the data):
    those fitted by default, or the ``names`` asked for."""
    engines = {g.ci.engine.engine for g in groups}
    out = [f for f in FACTORS if f.engine is None or f.engine in engines]
    if not names:
        return [f for f in out if f.by_default]
    known = {f.name for f in FACTORS}
    reached = {f.name for f in out}
    for n in names:
        if n not in known:
            raise SpecError("--fit", n, "not a named factor; known: " + ", ".join(sorted(known)))
        if n not in reached:
            raise SpecError("--fit", n, "no run in the file is on its engine")
    return [f for f in out if f.name in names]


BY_KEYS = ("gpu", "engine")
"""What calibrate --by may partition the runs by."""

MIN_RUNS_PER_FACTOR = 5
"""A partition is refitted only with at least this many runs (ten residuals) per factor moved."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Partition:
    key: dict[str, str]
    """{'gpu': catalog name} and/or {'engine': name}."""
    groups: list[Group]


def partitions(groups: list[Group], by: list[str]) -> list[Partition]:
    """The runs split by GPU and/or engine, in a stable order."""
    out: dict[tuple, list[Group]] = {}
    for g in groups:
        key = tuple((k, g.problem.gpu.name if k == "gpu" else g.ci.engine.engine.value) for k in by)
        out.setdefault(key, []).append(g)
    return [Partition(key=dict(k), groups=v) for k, v in sorted(out.items())]


def medians(groups: list[Group], adjust) -> FitError:
    t, p = log_errors(groups, adjust)
    return FitError(ttft=float(np.median(np.abs(np.expm1(t)))), tpot=float(np.median(np.abs(np.expm1(p)))))


def fit_partition(part: Partition, factors: list[Factor], pooled: list[float], held: Held,
                  folds: int, leave_one_out: bool = False) -> tuple[PartitionFit | None, str]:
    """The assumption factors refitted on one partition's runs, the others held at the pooled fit's
    values (and ``held``); None with the reason when the partition cannot be refitted."""
    runs = sum(len(g.cases) for g in part.groups)
    mine = [i for i, f in enumerate(factors) if f.section == "assumptions"]
    moves = informative(part.groups, [factors[i] for i in mine], [pooled[i] for i in mine],
                        held + tuple((f, v) for j, (f, v) in enumerate(zip(factors, pooled)) if j not in mine))
    mine = [i for i, m in zip(mine, moves) if m]
    if not mine:
        return None, "no assumption factor moves its runs"
    if runs < MIN_RUNS_PER_FACTOR * len(mine):
        return None, f"{runs} runs, fewer than {MIN_RUNS_PER_FACTOR} per factor ({len(mine)})"
    keep = held + tuple((f, v) for j, (f, v) in enumerate(zip(factors, pooled)) if j not in mine)
    sub = [factors[i] for i in mine]
    start = [pooled[i] for i in mine]
    result = fit(part.groups, sub, start, held=keep)
    cv = None
    if folds:
        try:
            t, p = cross_validate(part.groups, sub, list(result.values), folds, held=keep, leave_one_out=leave_one_out)
            cv = FitError(ttft=float(np.median(np.abs(t))), tpot=float(np.median(np.abs(p))))
        except SpecError:
            cv = None  # one model x GPU group: nothing to hold out
    entries = {f.key: fitted_entry(f, v, u) for f, v, u in zip(sub, result.values, result.uncertainty)}
    return PartitionFit(gpu=part.key.get("gpu"), engine=part.key.get("engine"), rows=result.rows,
                        assumptions=entries,
                        in_sample=FitError(ttft=result.median_abs_ttft, tpot=result.median_abs_tpot),
                        pooled=medians(part.groups, adjust_for(sub, start, keep)), cross_validated=cv), ""
