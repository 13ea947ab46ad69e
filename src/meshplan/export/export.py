"""Write the launch files of a plan for one engine, and say what the engine cannot express."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from meshplan.export import devicemesh, sglang, trtllm, vllm
from meshplan.export.common import ExportTarget, Inexpressible, Launch, settings
from meshplan.export.deployable import blockers
from meshplan.export.nearest import nearest
from meshplan.io.user_file import output_folder
from meshplan.plan.pools import Pool
from meshplan.printable import printable
from meshplan.search.evaluate import evaluate_aggregated
from meshplan.specs.problem import Problem
from meshplan.specs.workload import PoolRole
from meshplan.strategy.layout import Layout


@dataclass(frozen=True, kw_only=True, slots=True)
class Substitution:
    """A pool the engine cannot express, and what was exported instead."""

    role: PoolRole
    layout: str
    reason: str
    nearest: str | None
    planned_tok_s_per_gpu: float | None
    nearest_tok_s_per_gpu: float | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportResult:
    engine: ExportTarget
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    substitutions: list[Substitution] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    """Why a pool cannot run as exported (export.deployable); written only with --force."""


def expressible(engine: ExportTarget, lay: Layout, problem: Problem, pool: Pool) -> bool:
    """Whether the engine can launch ``lay`` in the role of ``pool``."""
    try:
        _launch(ExportTarget(engine), Pool(phases=pool.phases, layout=lay, B=pool.B, offset=pool.offset), problem)
    except Inexpressible:
        return False
    return True


def _launch(engine: ExportTarget, pool: Pool, problem: Problem) -> Launch:
    s = settings(problem, pool)
    if engine is ExportTarget.VLLM:
        return vllm.launch(pool, s)
    if engine is ExportTarget.SGLANG:
        return sglang.launch(pool, s)
    if engine is ExportTarget.TRTLLM:
        return trtllm.launch(pool, s)
    out = Launch(engine=ExportTarget.DEVICEMESH, role=s.role)
    out.files[f"devicemesh_{s.role}.py"] = devicemesh.snippet(pool.layout)
    return out


def export(problem: Problem, pools: list[Pool], engine: ExportTarget) -> ExportResult:
    """Launch files for every pool (substituting the nearest expressible layout where needed);
    ``engine`` given by its name ("vllm") is read as the ExportTarget member (ValueError if none)."""
    engine = ExportTarget(engine)
    result = ExportResult(engine=engine)
    plain = problem
    for pool in pools:
        result.blocked.extend(f"{pool.role} pool {pool.layout.short}: [{v.rule.value}] {v.message}"
                              for v in blockers(plain.for_pool(pool.role), pool))
    used: list[Pool] = []
    for pool in pools:
        problem = plain.for_pool(pool.role)  # a prefill pool on its own GPU (Problem.prefill_gpu)
        try:
            launch = _launch(engine, pool, problem)
            used.append(pool)
        except Inexpressible as err:
            near = nearest(problem, pool.layout, pool.role, lambda lay: expressible(engine, lay, problem, pool))
            planned = evaluate_aggregated(problem, pool.layout)
            sub = Substitution(role=pool.role, layout=str(pool.layout), reason=str(err),
                               nearest=str(near[0]) if near else None,
                               planned_tok_s_per_gpu=planned.output_tok_s_per_gpu or planned.input_tok_s_per_gpu,
                               nearest_tok_s_per_gpu=(near[1].output_tok_s_per_gpu or near[1].input_tok_s_per_gpu)
                               if near else None)
            result.substitutions.append(sub)
            if near is None:
                continue
            pool = Pool(phases=pool.phases, layout=near[0], B=pool.B, offset=pool.offset)
            launch = _launch(engine, pool, problem)
            used.append(pool)
        result.files.update(launch.files)
        result.notes.extend(launch.notes)
    roles = {p.role: p for p in used}
    if PoolRole.PREFILL in roles and PoolRole.DECODE in roles:
        prefill, decode = roles[PoolRole.PREFILL], roles[PoolRole.DECODE]
        if engine is ExportTarget.SGLANG:
            result.files["router.sh"] = sglang.router(prefill, decode)
        elif engine is ExportTarget.TRTLLM:
            result.files["disagg.yaml"] = trtllm.disagg_config(prefill, decode)
        elif engine is ExportTarget.VLLM:
            result.notes.append("disaggregated: put a proxy in front that sends each request to a prefill instance "
                                "then a decode instance (vLLM's disagg_proxy example); both pools use NixlConnector")
    return result


def _warned(text: str, warning: str) -> str:
    """``text`` with a comment line at the top (after a script's #! line) that it cannot run."""
    line = f"# WARNING: written with --force; this layout cannot run as planned: {printable(warning, one_line=True)}\n"
    if text.startswith("#!"):
        first, _, rest = text.partition("\n")
        return f"{first}\n{line}{rest}"
    return line + text


def write(result: ExportResult, out_dir: Path, force: bool = False) -> list[Path]:
    """Write the files; a result with blockers is written only with ``force``, each file warned."""
    if result.blocked and not force:
        return []
    output_folder(str(out_dir), "--out")
    paths = []
    for name, text in result.files.items():
        if result.blocked:
            text = _warned(text, "; ".join(result.blocked))
        path = out_dir / name
        path.write_text(text)
        if name.endswith(".sh"):
            path.chmod(0o755)
        paths.append(path)
    return paths
