"""Foreign notations <-> Layout, in one place (DESIGN.md section 3).

Facts (engine source read via public repositories, 2025-2026 snapshots):
- vLLM: ``-tp t -dp d`` gives attention tp = t and attention dp = d (each dp rank is an engine
  with its own KV cache). With ``--enable-expert-parallel`` ep = t*d and etp = 1; without it the
  experts are tensor-parallel over all t*d GPUs (ep = 1, etp = t*d) (vllm fused_moe/config.py,
  FusedMoEParallelConfig.make). ep > 1 with etp > 1 cannot be expressed.
- SGLang: ``--tp-size W`` counts every GPU of a stage. With ``--enable-dp-attention --dp-size d``
  attention tp = W/d and attention dp = d (d must divide W); MoE ep = ``--ep-size`` (default 1)
  and moe tp = W/ep (sglang distributed/parallel_state.py).
- TensorRT-LLM: ``tensor_parallel_size`` counts every GPU of a stage; ``moe_expert_parallel_size``
  x ``moe_tensor_parallel_size`` must equal it; ``enable_attention_dp`` makes attention tp = 1 and
  attention dp = tensor_parallel_size (tensorrt_llm mapping.py).
- Megatron-Core: tensor/pipeline/expert model parallel sizes map directly; expert tensor
  parallel defaults to tp; expert data parallel = world / (etp * ep * pp) (parallel_state.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshplan.errors import SpecError
from meshplan.specs.model import ModelSpec
from meshplan.specs.problem import SeedStrategy
from meshplan.strategy.layout import MAX_DEGREE, MAX_GPUS, Layout, instance_gpus, make_layout


def _degrees(**stated: tuple[str, int | None]) -> None:
    """Each stated degree (flag name, value) is a whole number from 1 to MAX_DEGREE; None is
    not stated. SpecError names the engine's own flag or key."""
    for flag, value in stated.values():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DEGREE:
            raise SpecError(flag, value, f"a degree is a whole number from 1 to {MAX_DEGREE:,}")


def to_vllm(lay: Layout) -> dict[str, Any]:
    """vLLM flags for one instance, or a ValueError with the reason it cannot be expressed."""
    if lay.ep > 1 and lay.etp > 1:
        raise ValueError(f"vLLM cannot express ep {lay.ep} with etp {lay.etp}: its MoE is either all-EP or all-TP")
    if lay.ep > 1 and lay.ep != lay.tp * lay.dp:
        raise ValueError(f"vLLM's expert parallel always spans tp*dp = {lay.tp * lay.dp} GPUs, not ep {lay.ep}")
    return {"tensor_parallel_size": lay.tp, "data_parallel_size": lay.dp, "pipeline_parallel_size": lay.pp,
            "enable_expert_parallel": lay.ep > 1}


def from_vllm(tp: int, dp: int = 1, pp: int = 1, enable_expert_parallel: bool = False, is_moe: bool = True) -> Layout:
    """A dense model has no expert axes (ep = etp = 1), and its data-parallel engines share
    nothing, so they are instances."""
    _degrees(tp=("--tensor-parallel-size", tp), dp=("--data-parallel-size", dp), pp=("--pipeline-parallel-size", pp))
    g = tp * dp
    field, value = "--tensor-parallel-size", f"-tp {tp} -dp {dp} -pp {pp}"
    if not is_moe:
        return make_layout(field, value, instances=dp, pp=pp, tp=tp)
    return make_layout(field, value, pp=pp, tp=tp, dp=dp, ep=g if enable_expert_parallel else 1,
                       etp=1 if enable_expert_parallel else g)


def to_sglang(lay: Layout) -> dict[str, Any]:
    g = lay.tp * lay.dp
    return {"tp_size": g, "dp_size": lay.dp, "enable_dp_attention": lay.dp > 1, "ep_size": lay.ep,
            "pp_size": lay.pp}


def from_sglang(tp_size: int, dp_size: int = 1, enable_dp_attention: bool = False, ep_size: int = 1,
                pp_size: int = 1, is_moe: bool = True) -> Layout:
    _degrees(tp=("--tp-size", tp_size), dp=("--dp-size", dp_size), ep=("--ep-size", ep_size), pp=("--pp-size", pp_size))
    if enable_dp_attention:
        if tp_size % dp_size:
            raise SpecError("--dp-size", dp_size, f"must divide --tp-size {tp_size} (SGLang asserts it)")
        tp, dp = tp_size // dp_size, dp_size
    else:
        tp, dp = tp_size, 1
    if tp_size % ep_size:
        raise SpecError("--ep-size", ep_size, f"must divide --tp-size {tp_size}")
    if not is_moe:
        return make_layout("--tp-size", tp_size, instances=dp, pp=pp_size, tp=tp)
    return make_layout("--tp-size", tp_size, pp=pp_size, tp=tp, dp=dp, ep=ep_size, etp=tp_size // ep_size)


def to_trtllm(lay: Layout) -> dict[str, Any]:
    if lay.dp > 1 and lay.tp > 1:
        raise ValueError(f"TensorRT-LLM's attention dp is all-or-nothing: tp {lay.tp} with attention dp {lay.dp} "
                         "cannot be expressed")
    g = lay.tp * lay.dp
    return {"tensor_parallel_size": g, "pipeline_parallel_size": lay.pp, "enable_attention_dp": lay.dp > 1,
            "moe_expert_parallel_size": lay.ep, "moe_tensor_parallel_size": lay.etp}


def from_trtllm(tensor_parallel_size: int, pipeline_parallel_size: int = 1, enable_attention_dp: bool = False,
                moe_expert_parallel_size: int = 1, moe_tensor_parallel_size: int | None = None,
                is_moe: bool = True) -> Layout:
    _degrees(tp=("tensor_parallel_size", tensor_parallel_size), pp=("pipeline_parallel_size", pipeline_parallel_size),
             ep=("moe_expert_parallel_size", moe_expert_parallel_size),
             etp=("moe_tensor_parallel_size", moe_tensor_parallel_size))
    g = tensor_parallel_size
    if not is_moe:
        return make_layout("tensor_parallel_size", g, instances=g if enable_attention_dp else 1,
                           pp=pipeline_parallel_size, tp=1 if enable_attention_dp else g)
    if moe_tensor_parallel_size is None and g % moe_expert_parallel_size:
        raise SpecError("moe_expert_parallel_size", moe_expert_parallel_size,
                        f"must divide tensor_parallel_size {g} (TensorRT-LLM's Mapping: ep x moe tp = tp)")
    etp = moe_tensor_parallel_size or g // moe_expert_parallel_size
    return make_layout("tensor_parallel_size", g, pp=pipeline_parallel_size, tp=1 if enable_attention_dp else g,
                       dp=g if enable_attention_dp else 1, ep=moe_expert_parallel_size, etp=etp)


def to_megatron(lay: Layout) -> dict[str, Any]:
    return {"tensor_model_parallel_size": lay.tp, "pipeline_model_parallel_size": lay.pp,
            "expert_model_parallel_size": lay.ep, "expert_tensor_parallel_size": lay.etp,
            "data_parallel_size": lay.dp * lay.instances,
            "expert_data_parallel_size": lay.gpus // (lay.etp * lay.ep * lay.pp)}


def from_megatron(tensor_model_parallel_size: int, pipeline_model_parallel_size: int = 1,
                  expert_model_parallel_size: int = 1, expert_tensor_parallel_size: int | None = None,
                  world_size: int | None = None) -> Layout:
    """Megatron-Core degrees -> Layout. Its data parallel ranks inside the MoE fold are attention
    dp (dp = ep * etp / tp); the rest of the world is instances."""
    _degrees(tp=("tensor_model_parallel_size", tensor_model_parallel_size),
             pp=("pipeline_model_parallel_size", pipeline_model_parallel_size),
             ep=("expert_model_parallel_size", expert_model_parallel_size),
             etp=("expert_tensor_parallel_size", expert_tensor_parallel_size))
    if world_size is not None and (isinstance(world_size, bool) or not isinstance(world_size, int)
                                   or not 1 <= world_size <= MAX_GPUS):
        raise SpecError("world_size", world_size, f"a GPU count is a whole number from 1 to {MAX_GPUS:,}")
    tp, pp, ep = tensor_model_parallel_size, pipeline_model_parallel_size, expert_model_parallel_size
    etp = expert_tensor_parallel_size or tp  # Megatron defaults expert tensor parallel to tp
    if (ep * etp) % tp:
        raise SpecError("expert_model_parallel_size", ep, f"ep x etp = {ep * etp} must be a multiple of tp {tp}")
    dp = ep * etp // tp
    gpi = instance_gpus(tp, dp, pp)
    instances = (world_size // gpi) if world_size else 1
    if world_size and world_size % gpi:
        raise SpecError("world_size", world_size, f"must be a multiple of pp x tp x dp = {gpi}")
    return make_layout("tensor_model_parallel_size", tp, instances=instances, pp=pp, tp=tp, dp=dp, ep=ep, etp=etp)


def to_seed(lay: Layout) -> dict[str, int]:
    """The seed's DP/TP/PP/EP with DP meaning independent instances, and the GPU total."""
    return {"DP": lay.instances, "TP": lay.tp, "PP": lay.pp, "EP": lay.ep, "GPUs": lay.gpus}


@dataclass(frozen=True, kw_only=True, slots=True)
class SeedReading:
    """A consistent reading of a seed-notation layout, and what in the text disagrees."""

    layout: Layout
    consistent: bool
    findings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"layout": str(self.layout), "consistent": self.consistent, "findings": list(self.findings)}


def _seed_readings(tp: int, pp: int, dp: int, ep: int, moe: bool) -> list[tuple[str, Layout]]:
    """The ways the seed's numbers can be read, most literal first."""
    out = []
    stated = f"TP{tp} PP{pp} DP{dp} EP{ep}"
    if not moe:
        return [("DP as independent instances", make_layout("seed_strategy", stated, instances=dp, pp=pp, tp=tp))]
    if (tp * dp) % ep == 0:
        out.append(("DP as attention dp inside one instance (tp*dp = ep*etp)",
                    make_layout("seed_strategy", stated, pp=pp, tp=tp, dp=dp, ep=ep, etp=tp * dp // ep)))
    if ep % tp == 0:
        out.append((f"DP as {dp} independent instances, each with EP{ep} folded onto tp {tp} x attention dp {ep // tp}",
                    make_layout("seed_strategy", stated, instances=dp, pp=pp, tp=tp, dp=ep // tp, ep=ep, etp=1)))
    return out


def _seed_degrees(s: SeedStrategy | None) -> tuple[int, int, int, int]:
    """The seed's TP, PP, DP, EP (1 where not stated), each from 1 to MAX_DEGREE, and its GPU
    total from 1 to MAX_GPUS (a stated 0 is refused, never read as 1)."""
    if s is None:
        raise SpecError("seed_strategy", None, "the problem states no layout (DP, TP, PP and EP)")
    for name in ("tp", "pp", "dp", "ep", "sp"):
        value = getattr(s, name)
        if value is not None and not 1 <= value <= MAX_DEGREE:
            raise SpecError(f"seed_strategy.{name}", value, f"a degree is a whole number from 1 to {MAX_DEGREE:,}")
    if s.gpus is not None and not 1 <= s.gpus <= MAX_GPUS:
        raise SpecError("seed_strategy.gpus", s.gpus, f"a GPU count is a whole number from 1 to {MAX_GPUS:,}")
    return s.tp or 1, s.pp or 1, s.dp or 1, s.ep or 1


def from_seed(s: SeedStrategy | None, model: ModelSpec) -> SeedReading:
    """Read the seed's DP/TP/PP/EP (+ GPU total). The seed mixes attention data parallel inside
    an instance with replicas (DESIGN.md section 1), so both readings are tried: DP as attention
    dp (tp*dp must fold onto ep*etp) and DP as independent instances each holding EP folded onto
    tp x attention dp. The first reading whose GPU count matches the stated total wins; if none
    does, the attention dp that the stated total implies (GPUs / (tp*pp)) is tried, and the
    mismatch is reported either way."""
    tp, pp, dp, ep = _seed_degrees(s)
    readings = _seed_readings(tp, pp, dp, ep, model.is_moe)
    findings = []
    if s.gpus is not None and tp * pp * dp != s.gpus:
        findings.append(f"TP{tp} x PP{pp} x DP{dp} = {tp * pp * dp}, not the {s.gpus} GPUs stated")
    if s.gpus is not None:
        for how, lay in readings:
            if lay.gpus == s.gpus:
                if findings:
                    findings.append(f"consistent reading with {s.gpus} GPUs: {how}: {lay}")
                return SeedReading(layout=lay, consistent=not findings, findings=tuple(findings))
        if model.is_moe and s.gpus % (tp * pp) == 0 and (s.gpus // pp) % ep == 0:
            dp_fit = s.gpus // (tp * pp)
            lay = make_layout("seed_strategy.gpus", s.gpus, pp=pp, tp=tp, dp=dp_fit, ep=ep, etp=tp * dp_fit // ep)
            findings.append(f"consistent reading with {s.gpus} GPUs: attention dp {dp_fit} (not {dp}), "
                            f"tp {tp} x dp {dp_fit} = ep {ep} x etp {lay.etp}, pp {pp}: {lay}")
            return SeedReading(layout=lay, consistent=False, findings=tuple(findings))
        findings.append(f"no reading of the stated degrees gives {s.gpus} GPUs")
    if not readings:
        raise SpecError("seed_strategy", f"TP{tp} PP{pp} DP{dp} EP{ep}",
                        "no reading folds EP onto the attention GPUs (tp*dp divisible by ep, or ep by tp)")
    how, lay = readings[0]
    return SeedReading(layout=lay, consistent=not findings, findings=tuple(findings) + (f"read as {how}",))
