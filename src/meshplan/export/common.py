"""What every exporter needs from a plan: per pool, its layout, nodes and serving settings."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePath

from meshplan.cost.inputs import CostInputs
from meshplan.errors import SpecError
from meshplan.export.shell import checked
from meshplan.io.catalog import model_alias
from meshplan.plan.pools import Pool
from meshplan.specs.dtypes import DType
from meshplan.specs.engine import Engine
from meshplan.specs.model import ModelSpec
from meshplan.specs.problem import Problem
from meshplan.specs.speculative import SpecMethod, Speculative
from meshplan.specs.workload import Phase, PoolRole

_HF_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
"""A Hugging Face repository id, owner/name: the ASCII form of huggingface_hub's validate_repo_id
rule. Each part starts with a letter or digit, so an id is never read as an engine flag."""
_BARE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ExportTarget(StrEnum):
    """What ``meshplan export`` writes launch files for: a serving engine, or a torch DeviceMesh."""

    VLLM = Engine.VLLM.value
    SGLANG = Engine.SGLANG.value
    TRTLLM = Engine.TRTLLM.value
    DEVICEMESH = "devicemesh"

    @property
    def engine(self) -> Engine | None:
        """The serving engine launched (the plan is made for it); None for a DeviceMesh."""
        return None if self is ExportTarget.DEVICEMESH else Engine(self.value)


class Inexpressible(ValueError):
    """The engine cannot express this layout; the message says why."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PoolSettings:
    """Serving settings of one pool derived from the plan."""

    role: PoolRole
    served_model: str
    """What the engine loads: a Hugging Face id or a local checkpoint folder (served_model)."""
    context_tokens: int
    """Longest sequence: isl_max + osl_max."""
    seqs_per_rank: int
    """Most sequences per attention-dp rank (the plan's decode batch, rounded up)."""
    memory_fraction: float
    kv_fp8: bool
    chunk_tokens: int
    """The engine's per-iteration token budget setting the plan was costed with (CostInputs.token_budget: the
    engine's default unless the problem sets one); engines that split it over attention-dp ranks
    (SGLang) do so themselves (cost.iteration.prefill_budget)."""
    two_batch_overlap: bool
    redundant_experts: int
    gpus_per_host: int
    """GPUs of one launch node (GpuSpec.host_gpus: 4 per GB200/GB300 tray, 8 per HGX server)."""
    nvlink_domain_gpus: int
    """GPUs that share NVLink (72 in an NVL72 rack)."""
    is_moe: bool
    speculative: Speculative | None = None
    """The plan's speculative decoding (its problem has none when the plan decodes without it)."""
    draft_served: str | None = None
    """What the engine loads as the draft: the draft model (method draft) or the EAGLE head."""
    adp_balance: tuple[int, int] | None = None
    """TensorRT-LLM attention-dp balancing as the plan was costed with it: (timeout_iters,
    batching_wait_iters); None when off (EngineProfile.adp_balance)."""
    recv_interval: int = 1
    """SGLang's receive interval the plan was costed with (EngineProfile.recv_interval_iters)."""


def served_model(model: ModelSpec) -> str:
    """What the engine loads: the checkpoint's Hugging Face id, or the folder of a local
    config.json (engines load a checkpoint folder). The scripts quote it (export.shell); an id
    that is not owner/name of letters, digits, '.', '_', '-', or a path with a control character,
    is refused rather than written."""
    ckpt = model.checkpoint
    if ckpt.endswith(".json"):  # a local config.json (io.catalog loads it from this path)
        return _folder(str(PurePath(checked("model", ckpt)).parent))
    ref = ckpt or model_alias(model.name)
    if not (_HF_ID.fullmatch(ref) or _BARE_NAME.fullmatch(ref)):
        raise SpecError("model" if ckpt else "model.name", ref, "is what the engine loads: a Hugging Face id "
                        "(owner/name of letters, digits, '.', '_', '-'), a catalog name or a config.json path")
    return ref


def _folder(path: str) -> str:
    """A folder as a script word that is never read as a flag."""
    return path if not path.startswith("-") else f"./{path}"


def draft_served(spec: Speculative | None) -> str | None:
    """What the engine loads as the draft (None without one): the draft model's checkpoint, or the
    EAGLE head the problem names (a Hugging Face id or a folder); an EAGLE plan without it cannot be
    launched and is refused."""
    if spec is None or spec.method is SpecMethod.MTP:
        return None
    if spec.draft_model is not None:
        return served_model(spec.draft_model)
    if spec.draft_checkpoint is None:
        raise SpecError("speculative.draft_checkpoint", None, "missing; the launch configs load the EAGLE head: "
                        "name it (--draft-checkpoint, a Hugging Face id or a folder)")
    ref = checked("speculative.draft_checkpoint", spec.draft_checkpoint)
    return ref if _HF_ID.fullmatch(ref) else _folder(ref)


def context_tokens(problem: Problem) -> int:
    """The longest sequence the engine is launched for: the workload's maximum when it states one
    (a range or isl_max/osl_max), else the model's configured maximum (max_position_embeddings),
    never the mean; the mean-only workload's length when the model states none."""
    w, m = problem.workload, problem.model
    stated = w.isl_max_tokens > w.isl_tokens or w.osl_max_tokens > w.osl_tokens
    longest = int(math.ceil(w.max_context_tokens))
    if stated or m.max_context_tokens is None:
        return longest
    return max(longest, m.max_context_tokens)


def settings(problem: Problem, pool: Pool) -> PoolSettings:
    ci = CostInputs.from_problem(problem)  # the token budget per rank and two-batch overlap the plan was costed with
    b = pool.B.get(Phase.DECODE) or pool.B.get(Phase.PREFILL) or 1.0
    spec = problem.speculative if problem.phase is not Phase.PREFILL else None
    return PoolSettings(
        role=pool.role, served_model=served_model(problem.model), context_tokens=context_tokens(problem),
        seqs_per_rank=max(1, int(math.ceil(b * pool.layout.pp))),
        memory_fraction=problem.requirements.memory_headroom, kv_fp8=problem.precision.kv_cache is DType.FP8,
        chunk_tokens=int(ci.token_budget),
        two_batch_overlap=bool(ci.two_batch_overlap),
        redundant_experts=problem.assumptions.redundant_experts, gpus_per_host=problem.gpu.host_gpus,
        nvlink_domain_gpus=problem.gpu.nvlink_domain_gpus,
        is_moe=problem.model.is_moe, speculative=spec, draft_served=draft_served(spec),
        adp_balance=problem.engine.adp_balance,
        recv_interval=problem.engine.recv_interval_iters)


@dataclass(frozen=True, kw_only=True, slots=True)
class Launch:
    """Files and commands for one pool: ``files`` maps a relative path to its text."""

    engine: ExportTarget
    role: PoolRole
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # An exporter that names its engine ("vllm") holds the ExportTarget member.
        object.__setattr__(self, "engine", ExportTarget(self.engine))


def nodes_of_instance(gpus_per_instance: int, gpus_per_host: int) -> int:
    """Hosts one instance spans (each runs its part of the launch)."""
    return max(1, math.ceil(gpus_per_instance / gpus_per_host))
