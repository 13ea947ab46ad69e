"""The benchmark client that measured a run: the request shapes it sends (catalog/cases/harnesses.yaml).

A measured TTFT and TPOT are means over the requests a benchmark client sent, so the workload a run
is predicted with is the client's: InferenceX draws each prompt and output length uniformly from
[0.8 x len, len] (mean 0.9 x len, and requests that start together finish apart), and sends ten
requests per client. A row names its source in silicon_data_source; the harness whose ``match``
text it contains is its client, and a row matching none is read as stated (fixed lengths).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from functools import cache

import yaml

from meshplan.errors import SpecError
from meshplan.io.catalog import CATALOG
from meshplan.specs.dtypes import DType
from meshplan.specs.engine import Engine
from meshplan.specs.workload import Serving


@dataclass(frozen=True, kw_only=True, slots=True)
class Launch:
    """Engine settings a harness's launch scripts pass for one engine (and, where the scripts differ
    by model, for some models): EngineProfile fields, as a problem's ``engine`` key may restate them,
    and the KV-cache format they set instead of the checkpoint's."""

    engine: Engine
    models: tuple[str, ...] = ()
    """Catalog model names (``deepseek-r1``) the scripts are for; empty: every model."""
    gpus: tuple[str, ...] = ()
    """Catalog GPU names (``b200``) the scripts are for; empty: every GPU."""
    min_concurrency: int = 0
    """The scripts set these from this concurrency up (some settings change with CONC)."""
    serving: Serving | None = None
    """Serving.AGGREGATED or Serving.DISAGGREGATED: the runs the scripts launch; None: both."""
    settings: tuple[tuple[str, object], ...] = ()
    kv_cache: DType | None = None
    """The KV-cache format the scripts set (--kv-cache-dtype, kv_cache_config dtype); None: the
    checkpoint's, as the cases README says."""
    measured_since: date | None = None
    """The scripts set these for runs measured from this day on (the commit that added them); a run
    whose source states no date then keeps the defaults (nothing is guessed)."""
    isl: tuple[int, ...] = ()
    """The runs' nominal prompt lengths (the scripts' ISL) the entry is for; empty: every length
    (some scripts derive a setting from ISL: vLLM's --max-num-batched-tokens $((ISL * 2)))."""

    def applies(self, engine: Engine, model: str, gpu: str, concurrency: float, disaggregated: bool,
                measured: date | None = None, isl: int = 0) -> bool:
        dated = self.measured_since is None or (measured is not None and measured >= self.measured_since)
        return (self.engine == engine and (not self.models or model in self.models)
                and (not self.gpus or gpu in self.gpus) and concurrency >= self.min_concurrency and dated
                and (not self.isl or isl in self.isl)
                and self.serving in (None, Serving.DISAGGREGATED if disaggregated else Serving.AGGREGATED))


LAUNCH_KEYS = {f.name for f in fields(Launch)}


def launch_entry(name: str, entry: dict) -> Launch:
    """One ``launch`` entry of harnesses.yaml, its keys checked (a typo would silently never match)."""
    where = f"harnesses.yaml {name}.launch"
    if (not isinstance(entry, dict) or "engine" not in entry or not isinstance(entry.get("settings", {}), dict)
            or not ("settings" in entry or "kv_cache" in entry)):
        raise SpecError(where, entry, "an entry has engine and a settings mapping or a kv_cache format")
    for key in entry:
        if key not in LAUNCH_KEYS:
            raise SpecError(f"{where}.{key}", entry[key], "unknown key; use " + ", ".join(sorted(LAUNCH_KEYS)))
    for key in ("models", "gpus"):
        if not isinstance(entry.get(key, []), list):
            raise SpecError(f"{where}.{key}", entry[key], "a list of catalog names")
    isl = entry.get("isl", [])
    if not isinstance(isl, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in isl):
        raise SpecError(f"{where}.isl", isl, "a list of prompt lengths in tokens (positive integers)")
    engine = _engine(f"{where}.engine", entry["engine"])
    serving = entry.get("serving", "")
    if serving not in ("", Serving.AGGREGATED, Serving.DISAGGREGATED):
        raise SpecError(f"{where}.serving", serving, "aggregated or disaggregated")
    kv = entry.get("kv_cache")
    try:
        kv = None if kv is None else DType(kv)
    except ValueError:
        raise SpecError(f"{where}.kv_cache", kv, "a format: " + ", ".join(d.value for d in DType)) from None
    since = entry.get("measured_since")
    if since is not None and (not isinstance(since, date) or isinstance(since, datetime)):
        raise SpecError(f"{where}.measured_since", since, "a day, YYYY-MM-DD")
    return Launch(engine=engine, models=tuple(entry.get("models", ())), gpus=tuple(entry.get("gpus", ())),
                  min_concurrency=int(entry.get("min_concurrency", 0)), serving=Serving(serving) if serving else None,
                  settings=tuple((entry.get("settings") or {}).items()), kv_cache=kv, measured_since=since,
                  isl=tuple(isl))


@dataclass(frozen=True, kw_only=True, slots=True)
class Harness:
    name: str
    description: str
    match: tuple[str, ...]
    length_range_ratio: float
    """Lengths uniform on [ratio x len, len]; 1 for fixed lengths."""
    requests_per_client: float | None
    """Requests each client sends over a run; None: the calibration profile's benchmark factor."""
    client_overhead_s: float | None
    """What the client adds to each request's TTFT (WorkloadSpec.client_overhead_s); None: the
    calibration profile's benchmark factor."""
    steady_spread: tuple[tuple[Engine, float], ...] = ()
    """How the run after its first wave is simulated, for the runs of each engine; an engine not
    listed, 0. Every client's first request goes out at the run's start (the first wave, simulated
    so); the requests after it are simulated as a loop whose clients start spread over this many
    request lifetimes (TTFT + (OSL - 1) x TPOT): 0 keeps the waves that fixed lengths form whole
    (the loop is the run itself), 1 staggers the clients evenly over one lifetime, a run whose
    engine dissolves its waves. Only the simulation models it."""

    launch: tuple[Launch, ...] = ()
    """Engine settings its launch scripts set: the runs were served so, not with the defaults."""

    def steady_spread_for(self, engine: Engine) -> float:
        """How ``engine``'s runs are simulated after their first wave (steady_spread)."""
        return dict(self.steady_spread).get(engine, 0.0)

    def settings_for(self, engine: Engine, model: str, gpu: str = "", concurrency: float = 0.0,
                     disaggregated: bool = False, measured: date | None = None, isl: int = 0) -> dict[str, object]:
        """The profile fields its launch scripts set for ``engine`` (trtllm, sglang, vllm) serving the
        catalog model ``model`` on the catalog GPU ``gpu`` at ``concurrency``, aggregated or
        disaggregated, in a run measured on the day ``measured`` with ``isl``-token prompts (nominal);
        later entries win."""
        out: dict[str, object] = {}
        for entry in self._entries(engine, model, gpu, concurrency, disaggregated, measured, isl):
            out.update(entry.settings)
        return out

    def kv_cache_for(self, engine: Engine, model: str, gpu: str = "", concurrency: float = 0.0,
                     disaggregated: bool = False, measured: date | None = None, isl: int = 0) -> DType | None:
        """The KV-cache format its launch scripts set for such a run (as settings_for), None where
        they leave the checkpoint's; later entries win."""
        entries = self._entries(engine, model, gpu, concurrency, disaggregated, measured, isl)
        return next((e.kv_cache for e in reversed(entries) if e.kv_cache is not None), None)

    def _entries(self, *run) -> list[Launch]:
        """The launch entries that apply to a run (Launch.applies' arguments), in file order."""
        return [entry for entry in self.launch if entry.applies(*run)]

    def lengths(self, nominal: int) -> float | list[float]:
        """The workload's length for a row's nominal ``nominal`` tokens: a number when fixed, else
        the [min, max] range the client draws from (problem_file reads it as uniform)."""
        if self.length_range_ratio >= 1.0:
            return float(nominal)
        return [float(int(nominal * self.length_range_ratio)), float(nominal)]


AS_STATED = Harness(name="as-stated", description="no known client: lengths as the row states them", match=(),
                    length_range_ratio=1.0, requests_per_client=None, client_overhead_s=0.0)
"""Runs whose source names no known client (a user's own measurements): fixed lengths, the client
taken as the reference one (no time of its own), and requests per client from the row's
``requests_per_client`` column where it has one, else the calibration profile's benchmark factor."""


@cache
def load_harnesses() -> tuple[Harness, ...]:
    raw = yaml.safe_load((CATALOG / "cases" / "harnesses.yaml").read_text(encoding="utf-8"))
    return tuple(Harness(name=name, description=h["description"], match=tuple(h["match"]),
                         length_range_ratio=float(h["length_range_ratio"]),
                         requests_per_client=h.get("requests_per_client"),
                         client_overhead_s=h.get("client_overhead_s"),
                         steady_spread=steady_spread(name, h.get("steady_spread", 0.0)),
                         launch=tuple(launch_entry(name, e) for e in h.get("launch") or ()))
                 for name, h in raw["harnesses"].items())


def _engine(field: str, value) -> Engine:
    """The engine a harnesses.yaml field names."""
    try:
        return Engine(value)
    except ValueError:
        raise SpecError(field, value, "trtllm, sglang or vllm") from None


def steady_spread(name: str, raw) -> tuple[tuple[Engine, float], ...]:
    """A harness's ``steady_spread``: one number for every engine's runs, or a number per engine."""
    where = f"harnesses.yaml {name}.steady_spread"
    by_engine = raw if isinstance(raw, dict) else {e.value: raw for e in Engine}
    out = []
    for key, value in by_engine.items():
        engine = _engine(f"{where}.{key}", key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 10.0:
            raise SpecError(f"{where}.{key}", value, "request lifetimes from 0 to 10")
        out.append((engine, float(value)))
    return tuple(out)


def harness_of(source: str) -> Harness:
    """The harness whose match text appears in a row's silicon_data_source (the first listed)."""
    for h in load_harnesses():
        if any(m in source for m in h.match):
            return h
    return AS_STATED
