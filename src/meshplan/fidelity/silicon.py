"""Measured serving runs in the silicon CSV format (shared/cases/README.md), read into typed cases.

One row is one benchmark run: a closed loop of ``silicon_concurrency`` clients, fixed ISL and
OSL, one engine, one layout (aggregated) or a prefill pool and a decode pool (disaggregated),
and the measured mean TTFT and TPOT. A row whose layout is incomplete or inconsistent is kept
as a ``Skip`` with the reason; nothing missing is guessed.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from pathlib import Path

from meshplan.errors import SpecError
from meshplan.fidelity.harness import AS_STATED, Harness, harness_of
from meshplan.io.catalog import load_gpu, load_model
from meshplan.io.user_file import read_text
from meshplan.specs.dtypes import DType, parse_dtype
from meshplan.specs.engine import Engine
from meshplan.specs.model import ModelSpec
from meshplan.strategy.layout import Layout
from meshplan.strategy.rules import STRUCTURE, check_layout

REQUIRED_COLUMNS = ("id", "backend", "model_path", "system", "mode", "isl", "osl", "silicon_ttft_ms",
                    "silicon_tpot_ms")
"""Columns every file must have; the layout columns are read by mode, and the concurrency from a
``concurrency`` column or, as the dev set states it, from silicon_data_source (one of the two)."""

CONCURRENCY = re.compile(r"silicon_concurrency=(\d{1,9})\b")
"""Requests in flight as the data source states them (at most nine digits: a billion clients is a typo)."""

MEASURED = re.compile(r"measured=(\d{4})-(\d{2})-(\d{2})")
"""The day the run was measured, where the data source states it (``measured=2026-02-12T...``)."""


class SkipReason(StrEnum):
    """Why a row cannot be predicted; rows are grouped by these in the report."""

    NO_WORKERS = "disaggregated without worker counts (GPUs per pool unknown)"
    NO_CONCURRENCY = "no concurrency (a concurrency column, or silicon_concurrency=N in silicon_data_source)"
    LAYOUT = "layout fields empty or inconsistent"
    MEASUREMENT = "measured TTFT or TPOT missing or not positive"
    UNKNOWN = "model, GPU or format not in the catalog"
    STRUCTURE = "the model cannot be split this way"


@dataclass(frozen=True, kw_only=True, slots=True)
class Skip:
    id: str
    reason: SkipReason
    detail: str
    """The field and value that made the row unusable."""
    partition: tuple[str, str, str, str] = ("", "", "", "")
    """(backend, system, model_path, mode) as the row states them."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SiliconCase:
    """One measured run, as the file states it."""

    id: str
    engine: Engine
    engine_version: str
    """As written ('' when the file leaves it empty)."""
    model: str
    """Hugging Face id from model_path."""
    gpu: str
    """The system column (h100_sxm, b200_sxm, gb200, ...)."""
    gemm_format: DType | None
    """Format of the attention and dense GEMMs (gemm_quant_mode), None when not stated."""
    moe_format: DType | None
    """Format of the routed experts (moe_quant_mode), None when not stated or not MoE."""
    disaggregated: bool
    isl: int
    osl: int
    concurrency: int
    """Requests in flight across the whole deployment (closed loop)."""
    layout: Layout | None
    """Aggregated: the worker's layout (one instance)."""
    prefill: Layout | None
    """Disaggregated: the prefill pool, instances = prefill workers."""
    decode: Layout | None
    """Disaggregated: the decode pool, instances = decode workers."""
    ttft_ms: float
    tpot_ms: float
    harness: Harness = AS_STATED
    """The benchmark client that measured it (from silicon_data_source; fidelity.harness)."""
    prefix_hit_rate: float = 0.0
    """Share of each prompt found in the engine's prefix cache, where the file has a
    ``prefix_hit_rate`` column (a user's runs on a cached workload); 0 otherwise."""
    measured: date | None = None
    """The day it was measured, where silicon_data_source states it (``measured=YYYY-MM-DD``): a
    harness's launch scripts changed over time (Launch.measured_since)."""

    @property
    def partition(self) -> tuple[str, str, str, str]:
        """(backend, system, model, mode): the unit the validation table reports."""
        return (self.engine.value, self.gpu, self.model, "disagg" if self.disaggregated else "agg")

    @property
    def gpus(self) -> int:
        if self.disaggregated:
            return self.prefill.gpus + self.decode.gpus
        return self.layout.gpus


def _num(row: dict[str, str], key: str) -> float | None:
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise _Bad(key, text) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _Bad(key, text)
    return value


class _Bad(Exception):
    def __init__(self, key: str, value: object) -> None:
        super().__init__(key, value)
        self.key, self.value = key, value


def _degree(row: dict[str, str], key: str, default: int | None = None) -> int:
    value = _num(row, key)
    if value is None:
        if default is None:
            raise _Bad(key, "")
        return default
    if value < 1 or value != int(value):
        raise _Bad(key, row.get(key))
    return int(value)


def _layout(row: dict[str, str], prefix: str, moe: bool, instances: int = 1) -> Layout:
    """tp, pp and attention dp of a worker; for MoE models the expert degrees must fold onto the
    same GPUs (moe_tp x moe_ep = tp x attention_dp). Dense models' MoE columns do not apply."""
    tp = _degree(row, f"{prefix}tp_size")
    pp = _degree(row, f"{prefix}pp_size", 1)
    dp = _degree(row, f"{prefix}attention_dp_size", 1)
    if not moe:
        return Layout(instances=instances, pp=pp, tp=tp, dp=dp, ep=1, etp=1)
    etp = _degree(row, f"{prefix}moe_tp_size")
    ep = _degree(row, f"{prefix}moe_ep_size")
    if etp * ep != tp * dp:
        raise _Bad(f"{prefix}moe_tp_size x {prefix}moe_ep_size", f"{etp} x {ep} != tp {tp} x attention dp {dp}")
    return Layout(instances=instances, pp=pp, tp=tp, dp=dp, ep=ep, etp=etp)


def _agg_workers(row: dict[str, str], concurrency: int) -> int:
    """Workers of an aggregated run. The file states the batch per attention-dp rank (batch_size,
    shared/cases/README.md), so a run whose concurrency is k >= 2 times batch_size x attention_dp
    served its clients on k workers of the layout: aiconfigurator's runs of DeepSeek-R1-NVFP4 on B200
    (4,000 / 1,000 tokens, TP 4, batch 56 at 224 clients: 4 workers, 16 GPUs) and Qwen3-32B-NVFP4 on
    GB200 (15,000 / 500, TP 2, batch 14 at 448 clients: 32 workers). One worker where batch_size is
    empty or 0, or the concurrency is at most one batch; a fractional multiple is inconsistent."""
    batch = _num(row, "batch_size")
    if batch is not None and (batch < 0 or batch != int(batch)):
        raise _Bad("batch_size", f"{row.get('batch_size')} (a whole number >= 0)")
    if not batch:
        return 1
    per_worker = batch * _degree(row, "attention_dp_size", 1)
    workers = concurrency / per_worker
    if workers <= 1:
        return 1
    if workers != int(workers):
        raise _Bad("batch_size", f"{row.get('batch_size')} (concurrency {concurrency} is not a whole number of "
                                 f"workers of batch_size x attention_dp_size = {per_worker:g})")
    return int(workers)


def _format(row: dict[str, str], key: str) -> DType | None:
    text = (row.get(key) or "").strip()
    return parse_dtype(text, key) if text else None


def _model(path: str) -> ModelSpec | None:
    try:
        return load_model(path)
    except SpecError:
        return None


def read_case(row: dict[str, str]) -> SiliconCase | Skip:
    """One CSV row as a case, or the reason it cannot be predicted."""
    def cell(key: str) -> str:  # a short row has no value (None) for its missing columns
        return (row.get(key) or "").strip()

    rid = cell("id")
    model = _model(cell("model_path"))
    if model is None:
        return Skip(id=rid, reason=SkipReason.UNKNOWN, detail=f"model_path = {cell('model_path')!r}")
    moe = model.is_moe
    found = CONCURRENCY.search(row.get("silicon_data_source") or "")
    if cell("concurrency"):
        try:
            concurrency = _degree(row, "concurrency")
        except _Bad as bad:
            return Skip(id=rid, reason=SkipReason.LAYOUT, detail=f"concurrency = {bad.value!r} (a whole number >= 1)")
    elif found:
        concurrency = int(found.group(1))
    else:
        return Skip(id=rid, reason=SkipReason.NO_CONCURRENCY, detail="concurrency / silicon_data_source")
    if cell("mode") not in ("agg", "disagg"):
        return Skip(id=rid, reason=SkipReason.LAYOUT, detail=f"mode = {cell('mode')!r} (agg or disagg)")
    disagg = cell("mode") == "disagg"
    try:
        ttft, tpot = _num(row, "silicon_ttft_ms"), _num(row, "silicon_tpot_ms")
        if not (ttft and tpot and ttft > 0 and tpot > 0):
            return Skip(id=rid, reason=SkipReason.MEASUREMENT, detail=f"ttft {ttft}, tpot {tpot}")
        if disagg:
            pw, dw = _num(row, "prefill_num_workers"), _num(row, "decode_num_workers")
            if not pw or not dw:
                return Skip(id=rid, reason=SkipReason.NO_WORKERS, detail="prefill_num_workers/decode_num_workers empty")
            layout, prefill = None, _layout(row, "prefill_", moe, _degree(row, "prefill_num_workers"))
            decode = _layout(row, "decode_", moe, _degree(row, "decode_num_workers"))
        else:
            layout, prefill, decode = _layout(row, "", moe, _agg_workers(row, concurrency)), None, None
        isl, osl = _degree(row, "isl"), _degree(row, "osl")
        gemm, moe_fmt = _format(row, "gemm_quant_mode"), _format(row, "moe_quant_mode") if moe else None
    except _Bad as bad:
        return Skip(id=rid, reason=SkipReason.LAYOUT, detail=f"{bad.key} = {bad.value!r}")
    except SpecError as err:
        return Skip(id=rid, reason=SkipReason.UNKNOWN, detail=str(err))
    harness = harness_of(row.get("silicon_data_source") or "")
    if cell("requests_per_client"):
        try:
            per_client = _num(row, "requests_per_client")
            if per_client < 1:
                raise _Bad("requests_per_client", cell("requests_per_client"))
        except _Bad as bad:
            return Skip(id=rid, reason=SkipReason.LAYOUT, detail=f"requests_per_client = {bad.value!r} (a number >= 1)")
        harness = replace(harness, requests_per_client=per_client)
    hit_rate = 0.0
    if cell("prefix_hit_rate"):
        try:
            hit_rate = _num(row, "prefix_hit_rate")
            if not 0 <= hit_rate < 1:
                raise _Bad("prefix_hit_rate", cell("prefix_hit_rate"))
        except _Bad as bad:
            return Skip(id=rid, reason=SkipReason.LAYOUT, detail=f"prefix_hit_rate = {bad.value!r} (0 to below 1)")
    try:
        engine = Engine(cell("backend"))
        gpu = load_gpu(cell("system"))
    except (ValueError, SpecError):
        return Skip(id=rid, reason=SkipReason.UNKNOWN, detail=f"backend = {cell('backend')!r}, system = {cell('system')!r}")
    for lay in (layout, prefill, decode):
        if lay is None:
            continue
        # The CSV states no redundant experts: each rank holds E/ep of them.
        broken = [v for v in check_layout(model, gpu, lay.tp, lay.dp, lay.pp, lay.ep, lay.etp, redundant=0)
                  if v.rule in STRUCTURE]
        if broken:
            return Skip(id=rid, reason=SkipReason.STRUCTURE, detail=broken[0].message)
    return SiliconCase(id=rid, engine=engine, engine_version=cell("backend_version"),
                       model=cell("model_path"), gpu=cell("system"), gemm_format=gemm,
                       moe_format=moe_fmt, disaggregated=disagg, isl=isl, osl=osl, concurrency=concurrency,
                       layout=layout, prefill=prefill, decode=decode, ttft_ms=ttft, tpot_ms=tpot,
                       harness=harness, prefix_hit_rate=hit_rate, measured=_measured(row.get("silicon_data_source") or ""))


def _measured(source: str) -> date | None:
    """The measurement day a data source states, None where it states none (or no real day)."""
    found = MEASURED.search(source)
    if found is None:
        return None
    try:
        return date(*(int(g) for g in found.groups()))
    except ValueError:
        return None


def partition_of_row(row: dict[str, str]) -> tuple[str, str, str, str]:
    """The row's (backend, system, model_path, mode), as written."""
    return tuple((row.get(k) or "").strip() for k in ("backend", "system", "model_path", "mode"))  # type: ignore[return-value]


def read_silicon(path: str | Path) -> tuple[list[SiliconCase], list[Skip]]:
    """Every row of a silicon CSV file, as cases or skips (in file order)."""
    text = read_text(path, "cases")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if "concurrency" not in header and "silicon_data_source" not in header:
            missing.append("concurrency (or silicon_data_source with silicon_concurrency=N)")
        if missing:
            raise SpecError("cases", str(path), f"not a silicon CSV: missing columns {', '.join(missing)}")
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:
            raise SpecError(f"cases.{twice[0]}", str(path), "a column stated twice; which one holds the runs?")
        rows = list(reader)
    except csv.Error as err:
        raise SpecError("cases", str(path), f"cannot read it as CSV ({err})") from None
    if not rows:
        raise SpecError("cases", str(path), "holds a header and no runs")
    cases: list[SiliconCase] = []
    skips: list[Skip] = []
    for row in rows:
        out = read_case(row)
        if isinstance(out, Skip):
            out = Skip(id=out.id, reason=out.reason, detail=out.detail, partition=partition_of_row(row))
            skips.append(out)
        else:
            cases.append(out)
    return cases, skips
