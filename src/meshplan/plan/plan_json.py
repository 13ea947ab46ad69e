"""The plan document <-> its versioned JSON (schema SCHEMA): the one writer and the one reader.

``to_json(plan)`` gives the JSON-ready dict, keys in the order meshplan has always written them, so
plan files and goldens stay byte for byte what they were. ``from_json(doc)`` reads a plan JSON (a
file a user may have edited) back into the typed tree, checking every field it keeps: a wrong one
is one SpecError naming the field by its JSON path (``plan.phases.decode.strategy.string``), the
value and the rule. The sections that restate the problem are written from ``problem_spec`` (their
one owner) and read from it; a file whose restated section says otherwise (edited there) is refused,
as is a key meshplan does not write: nothing in a plan file is silently ignored.

Nested sections are written and read by their dataclass's fields, in field order, through their
type hints (a field with a default may be missing; one without must be there, even if null).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import StrEnum
from functools import cache
from typing import Any, Union

from meshplan.errors import SpecError
from meshplan.io.spec_build import build
from meshplan.plan.candidates import Evaluation, SimulatedCandidate
from meshplan.plan.document import VERDICT_KEYS, AssumptionsUsed, Plan
from meshplan.specs.problem import Problem

SCHEMA = "meshplan.plan/1"
"""The schema version every plan JSON states."""

MISSING = "missing; is this a plan JSON written by meshplan plan --json?"


def _write(value: Any) -> Any:
    """A section of the tree as JSON-ready values: a dataclass as a dict of its fields (or of the
    keys its ``json_keys`` gives), tuples as lists, enums as their values."""
    if dataclasses.is_dataclass(value):
        keys = value.json_keys() if hasattr(value, "json_keys") else [f.name for f in dataclasses.fields(value)]
        return {k: _write(getattr(value, k)) for k in keys}
    if isinstance(value, tuple):
        return [_write(v) for v in value]
    if isinstance(value, dict):
        return {_write(k): _write(v) for k, v in value.items()}
    if isinstance(value, StrEnum):
        return value.value
    return value


def _problem_sections(p: Problem) -> dict[str, dict[str, Any]]:
    """The sections of the JSON that restate the problem, as meshplan has always written them."""
    s = p.speculative
    return {
        "gpu": {"name": p.gpu.name, "memory_bytes": p.gpu.memory_bytes, "nvlink_domain_gpus": p.gpu.nvlink_domain_gpus,
                "budget": p.gpu_budget, "prefill": p.prefill_gpu.name if p.prefill_gpu is not None else None},
        "workload": p.workload.model_dump(),
        "precision": p.precision.model_dump(mode="json"),
        "requirements": p.requirements.model_dump(),
        "speculative": None if s is None else {"method": s.method.value, "draft_tokens": s.draft_tokens,
                                               "tokens_per_step": s.tokens_per_step},
        "assumptions": p.assumptions.model_dump(mode="json"),
        "engine": p.engine.model_dump(mode="json"),
    }


RESTATED = ("gpu", "workload", "precision", "requirements", "speculative", "engine")
"""The sections that restate the problem (written from problem_spec; assumptions restate it too,
beside the factors the plan used)."""

CANDIDATE_KEYS = ("mode", "label", "gpus_total", "feasible", "violations", "ttft_s", "tpot_s", "output_tok_s",
                  "output_tok_s_per_gpu", "input_tok_s_per_gpu", "concurrency", "max_concurrency",
                  "memory_per_gpu_bytes", "kv_cache_bytes_per_token", "phases")
"""The chosen candidate's keys, in the order they follow schema, problem and objective."""
TAIL_KEYS = ("runner_ups", "aggregated_vs_disaggregated", "pruned", "pareto", "search")
"""The keys between engine and problem_spec."""
PLAN_KEYS = ("requirements_check", "verdict", "budget_use", "notes")
"""The plan's own sections between the restated requirements and speculative."""


def to_json(plan: Plan) -> dict[str, Any]:
    """The plan as a JSON-ready dict (schema SCHEMA)."""
    restated = _problem_sections(plan.problem_spec)
    doc: dict[str, Any] = {"schema": SCHEMA, "problem": plan.problem, "objective": plan.objective.value}
    doc |= {k: _write(getattr(plan, k)) for k in CANDIDATE_KEYS}
    doc["model"] = _write(plan.model)
    doc |= {k: restated[k] for k in ("gpu", "workload", "precision", "requirements")}
    doc |= {k: _write(getattr(plan, k)) for k in PLAN_KEYS}
    doc["speculative"] = restated["speculative"]
    doc["assumptions"] = restated["assumptions"] | _write(plan.assumptions_used)
    doc["engine"] = restated["engine"]
    doc |= {k: _write(getattr(plan, k)) for k in TAIL_KEYS}
    doc["problem_spec"] = plan.problem_spec.model_dump(mode="json")
    if plan.simulation is not None:
        doc["simulation"] = _write(plan.simulation)
    if plan.evaluation is not None:
        doc |= {k: v for k, v in _write(plan.evaluation).items() if k != "seed_reading" or v is not None}
    return doc


# ---------------------------------------------------------------------------------------------
# Reading


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(where, value, "must be a number")
    return value  # as written: an int stays an int, so the file reads back byte for byte


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and not value.is_integer()):
        raise SpecError(where, value, "must be a whole number")
    return int(value)


def _scalar(tp: type, value: Any, where: str) -> Any:
    if tp is float:
        return _number(value, where)
    if tp is int:
        return _whole(value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(where, value, "must be true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise SpecError(where, value, "must be a string")
        return value
    if issubclass(tp, StrEnum):
        choices = [m.value for m in tp]
        if not isinstance(value, str) or value not in choices:
            raise SpecError(where, value, "must be one of " + ", ".join(choices))
        return tp(value)
    raise TypeError(f"no reader for {tp!r} at {where}")  # a field type this module does not know: a bug


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _section(cls: type, value: Any, where: str, whole: bool = True) -> Any:
    """A dataclass read from a JSON object, field by field in order; ``whole``: the object holds
    nothing else."""
    if not isinstance(value, dict):
        raise SpecError(where, type(value).__name__, f"must be an object with {_names(cls)}")
    hints, kw = _hints(cls), {}
    if whole:
        known = {f.name for f in dataclasses.fields(cls)}
        extra = next((k for k in value if k not in known), None)
        if extra is not None:
            raise SpecError(f"{where}.{extra}", value[extra], f"not a field of this section ({_names(cls)})")
    for f in dataclasses.fields(cls):
        if f.name in value:
            kw[f.name] = _read(hints[f.name], value[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING:
            raise SpecError(f"{where}.{f.name}", None, MISSING)
    return cls(**kw)


def _names(cls: type) -> str:
    names = [f.name for f in dataclasses.fields(cls)]
    return ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")


def _read(tp: Any, value: Any, where: str) -> Any:
    """``value`` as type ``tp`` (a field's type hint), or a SpecError naming ``where``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):  # X | None
        (inner,) = [a for a in args if a is not type(None)]
        return None if value is None else _read(inner, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise SpecError(where, type(value).__name__, "must be a list")
        return tuple(_read(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(where, type(value).__name__, "must be an object")
        return {_read(args[0], k, f"{where} key"): _read(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is Problem:
        if not isinstance(value, dict):
            raise SpecError(where, type(value).__name__, "must be the problem as meshplan wrote it")
        return build(Problem, value, where)
    if dataclasses.is_dataclass(tp):
        return _section(tp, value, where)
    return _scalar(tp, value, where)


def _key(doc: dict[str, Any], key: str) -> Any:
    if key not in doc:
        raise SpecError(f"plan.{key}", None, MISSING)
    return doc[key]


FIELDS = ("objective", *CANDIDATE_KEYS, "model", *PLAN_KEYS, *TAIL_KEYS)
"""The plan's fields read from the top level under their own names, in the order written (after
the problem and its name): the writer's key lists."""
TOP_KEYS = {"schema", "problem", "problem_spec", "simulation", "assumptions", *FIELDS, *RESTATED}
"""The top-level keys of a plan JSON (an evaluation's add its fields)."""


def from_json(doc: Any) -> Plan:
    """The plan of a plan JSON (schema SCHEMA), every field it keeps checked."""
    if not isinstance(doc, dict):
        raise SpecError("plan", type(doc).__name__, "must be a JSON object written by meshplan plan --json")
    if "problem_spec" not in doc:
        raise SpecError("plan", doc.get("problem"),
                        "this plan JSON has no problem_spec; re-create it with meshplan plan")
    if doc.get("schema") != SCHEMA:
        raise SpecError("plan.schema", doc.get("schema"), f"must be {SCHEMA} (a plan from this meshplan: re-create it "
                        "with meshplan plan --json)")
    kw: dict[str, Any] = {"problem_spec": _read(Problem, doc["problem_spec"], "plan.problem_spec"),
                          "problem": _read(str, _key(doc, "problem"), "plan.problem")}
    hints = _hints(Plan)
    for key in FIELDS:
        kw[key] = _read(hints[key], _key(doc, key), f"plan.{key}")
    kw["assumptions_used"] = _section(AssumptionsUsed, _key(doc, "assumptions"), "plan.assumptions", whole=False)
    if "simulation" in doc:
        kw["simulation"] = _read(tuple[SimulatedCandidate, ...], doc["simulation"], "plan.simulation")
    evaluation = "why_not" in doc
    if evaluation:
        kw["evaluation"] = _section(Evaluation, doc, "plan", whole=False)
    known = TOP_KEYS | ({f.name for f in dataclasses.fields(Evaluation)} if evaluation else set())
    extra = next((k for k in doc if k not in known), None)
    if extra is not None:
        raise SpecError(f"plan.{extra}", doc[extra], "not a key of a meshplan plan JSON")
    _same_as_problem(doc, kw["problem_spec"], kw["assumptions_used"])
    status = kw["verdict"].status
    extra = next((k for k in doc["verdict"] if k not in VERDICT_KEYS[status]), None)
    if extra is not None:
        raise SpecError(f"plan.verdict.{extra}", doc["verdict"][extra], f"not part of a {status.value} verdict "
                        f"({', '.join(VERDICT_KEYS[status])})")
    return Plan(**kw)


def _same_as_problem(doc: dict[str, Any], problem: Problem, used: AssumptionsUsed) -> None:
    """Refuse a file whose restated sections differ from its problem_spec (read in their stead)."""
    restated = _problem_sections(problem)
    restated["assumptions"] = restated["assumptions"] | _write(used)
    for key in ("assumptions", *RESTATED):
        if key in doc and doc[key] != json.loads(json.dumps(restated[key])):  # as a file holds it (lists, not tuples)
            raise SpecError(f"plan.{key}", doc[key], "restates plan.problem_spec, which is what meshplan reads, "
                            "and differs from it: edit problem_spec, or re-create the plan")


def as_plan(doc: Plan | dict[str, Any]) -> Plan:
    """``doc`` as the typed plan: a Plan as it is, a plan JSON read by from_json."""
    return doc if isinstance(doc, Plan) else from_json(doc)
