"""Engine launch commands -> layout and settings, through the one notation layer
(strategy.notation). Flag names as of vLLM 0.11, SGLang 0.5 and TensorRT-LLM 1.0 (their
argument parsers: vllm/engine/arg_utils.py, sglang/srt/server_args.py,
tensorrt_llm/llmapi/llm_args.py).

This module is the boundary where a command line or an LLM-API YAML is read: every value is
checked here, as the engine's own argument parser would, and a bad one is reported under the
flag or key the user wrote (``--gpu-memory-utilization``, ``max_batch_size``), with the value as
written. Nothing past this point sees an unchecked setting.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass

from meshplan.check.trtllm_yaml import MAX_WHOLE, read_trtllm_yaml
from meshplan.errors import SpecError
from meshplan.io.catalog import load_model
from meshplan.specs.dtypes import DType
from meshplan.specs.engine import Engine
from meshplan.strategy.layout import Layout
from meshplan.strategy.notation import from_sglang, from_trtllm, from_vllm

VLLM_KV_DTYPES: dict[str, DType | None] = {
    "auto": None, "bfloat16": DType.BF16, "float16": DType.FP16, "fp8": DType.FP8, "fp8_e4m3": DType.FP8,
    "fp8_e5m2": DType.FP8, "fp8_inc": DType.FP8, "fp8_ds_mla": DType.FP8, "int8": DType.FP8, "nvfp4": DType.FP4}
"""vLLM --kv-cache-dtype choices (vllm/config/cache.py CacheDType: 0.11 has auto, bfloat16, fp8,
fp8_e4m3, fp8_e5m2, fp8_inc, fp8_ds_mla; later releases add float16, int8 and nvfp4). 'auto' is the
checkpoint's format (None here); int8 is counted as one byte, like fp8."""

SGLANG_KV_DTYPES: dict[str, DType | None] = {
    "auto": None, "fp8_e5m2": DType.FP8, "fp8_e4m3": DType.FP8, "bf16": DType.BF16, "bfloat16": DType.BF16,
    "fp4_e2m1": DType.FP4}
"""SGLang --kv-cache-dtype choices (sglang/srt/server_args.py, 0.5). fp4_e2m1 (MXFP4, 4.25 bits)
is counted as meshplan's fp4 (4.5 bits, specs.dtypes)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineReading:
    """What a launch command says: the layout and the settings that decide memory and speed."""

    engine: Engine
    model: str | None = None
    layout: Layout | None = None
    """None when the engine refuses the command's degrees (see refusals)."""
    context_tokens: int | None = None
    """Longest sequence the engine admits (vLLM --max-model-len, SGLang --context-length,
    TensorRT-LLM max_seq_len); None: the command leaves it to the engine."""
    context_flag: str = ""
    """The flag or key that sets the context, as the engine spells it."""
    max_running_per_rank: int | None = None
    """The cap on running requests per attention-dp rank (vLLM --max-num-seqs, SGLang
    --max-running-requests over its DP-attention ranks, TensorRT-LLM max_batch_size); None: the
    engine's default (the engine profile's max_batch). A cap, not memory reserved up front."""
    running_flag: str = ""
    memory_fraction: float | None = None
    """Fraction of each GPU's memory the engine may use (vLLM --gpu-memory-utilization, SGLang
    --mem-fraction-static, TensorRT-LLM kv_cache_config.free_gpu_memory_fraction)."""
    memory_flag: str = ""
    kv_cache_dtype: DType | None = None
    """The KV-cache format the command asks for; None: the checkpoint's ('auto')."""
    engine_settings: tuple[tuple[str, object], ...] = ()
    """Engine profile fields the command sets that change step or queueing time (SGLang
    --scheduler-recv-interval, TensorRT-LLM attention_dp_config): the check costs them."""
    assumption_settings: tuple[tuple[str, object], ...] = ()
    """CostAssumptions fields the command sets (SGLang --ep-num-redundant-experts: redundant_experts,
    with eplb_residual 1.0 when nothing places them by load)."""
    notes: tuple[str, ...] = ()
    """How the reading took a flag whose effect depends on another."""
    refusals: tuple[str, ...] = ()
    """Flag combinations the engine itself rejects at start-up."""
    ignored: tuple[str, ...] = ()
    """Flags the check does not use (listed, never silently dropped)."""

    @property
    def concurrency(self) -> int | None:
        """The cap on running requests across the command's GPUs (None: the engine's default)."""
        if self.max_running_per_rank is None or self.layout is None:
            return None
        return self.max_running_per_rank * self.layout.dp * self.layout.instances


def _is_moe(model: str | None) -> bool:
    """Whether the named model has experts (catalog or config.json); unknown names count as MoE,
    the layout that keeps every axis (the unknown name is reported when the problem is built)."""
    if not model:
        return True
    try:
        return load_model(model).is_moe
    except SpecError:
        return True


_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)
_WHOLE = re.compile(r"[+-]?[0-9]+")
_HUMAN = re.compile(r"([0-9]+(?:\.[0-9]+)?)([kKmMgG])")


class Args:
    """A command line's words: positional words and (flag, value) pairs in order. A word that
    starts with '-' is a flag unless it is a number (``--max-num-seqs -5`` gives -5 to the flag,
    as argparse does); a switch never takes the next word."""

    def __init__(self, option: str, cmd: str, switches: frozenset[str]) -> None:
        self.option = option
        try:
            words = shlex.split(cmd)
        except ValueError as err:
            raise SpecError(option, cmd, f"cannot be split into words ({err}); a quote is not closed?") from None
        self.positional: list[str] = []
        self.pairs: list[tuple[str, str | None]] = []
        i = 0
        while i < len(words):
            w = words[i]
            if w.startswith("-") and len(w) > 1 and not _NUMBER.fullmatch(w):
                if "=" in w:
                    k, v = w.split("=", 1)
                    self.pairs.append((k, v))
                elif w not in switches and i + 1 < len(words) and (
                        not words[i + 1].startswith("-") or _NUMBER.fullmatch(words[i + 1])):
                    self.pairs.append((w, words[i + 1]))
                    i += 1
                else:
                    self.pairs.append((w, None))
            else:
                self.positional.append(w)
            i += 1

    def take(self, names: tuple[str, ...]) -> tuple[str, str | None] | None:
        """The last (flag, value) among ``names`` (argparse keeps the last), all of them removed."""
        found = [p for p in self.pairs if p[0] in names]
        self.pairs = [p for p in self.pairs if p[0] not in names]
        return found[-1] if found else None

    def _value(self, names: tuple[str, ...], kind: str) -> tuple[str, str] | None:
        got = self.take(names)
        if got is None:
            return None
        flag, value = got
        if value is None or value == "":
            raise SpecError(flag, value, f"needs a value ({kind})")
        return flag, value

    def text(self, *names: str) -> str | None:
        got = self._value(names, "a name")
        return None if got is None else got[1]

    def whole(self, *names: str, minimum: int = 1, human: bool = False) -> tuple[str, int] | None:
        """A whole number >= minimum; ``human`` also reads vLLM's 32k / 32K (1000 / 1024,
        vllm/utils human_readable_int)."""
        got = self._value(names, f"a whole number >= {minimum}")
        if got is None:
            return None
        flag, value = got
        number = None
        m = _HUMAN.fullmatch(value) if human and len(value) <= 20 else None
        if m:
            scale = {"k": 10**3, "m": 10**6, "g": 10**9, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)]
            if m.group(2).islower() or "." not in m.group(1):  # binary suffixes take whole numbers only
                number = int(float(m.group(1)) * scale)
        elif _WHOLE.fullmatch(value):
            number = int(value) if len(value) <= 20 else MAX_WHOLE + 1
        if number is None or not minimum <= number <= MAX_WHOLE:
            raise SpecError(flag, value, f"must be a whole number from {minimum} to {MAX_WHOLE:,}")
        return flag, number

    def fraction(self, *names: str) -> float | None:
        got = self._value(names, "a fraction in (0, 1]")
        if got is None:
            return None
        flag, value = got
        number = float(value) if _NUMBER.fullmatch(value) else math.nan
        if not 0 < number <= 1:
            raise SpecError(flag, value, "must be a fraction of the GPU's memory in (0, 1]")
        return number

    def switch(self, *names: str) -> bool:
        got = self.take(names)
        if got is not None and got[1] is not None:
            raise SpecError(got[0], got[1], "is a switch; it takes no value")
        return got is not None

    def choice(self, known: dict[str, DType | None], engine: str, *names: str) -> DType | None:
        got = self._value(names, "a format")
        if got is None:
            return None
        flag, value = got
        if value not in known:
            raise SpecError(flag, value, f"not a KV-cache format {engine} knows; use one of {', '.join(known)}")
        return known[value]

    def unused(self) -> tuple[str, ...]:
        return tuple(sorted({k for k, _ in self.pairs}))


_VLLM_SWITCHES = frozenset({"--enable-expert-parallel", "-ep", "--no-enable-expert-parallel", "--trust-remote-code",
                            "--enforce-eager", "--enable-prefix-caching", "--no-enable-prefix-caching",
                            "--enable-chunked-prefill", "--no-enable-chunked-prefill", "--disable-log-requests",
                            "--disable-log-stats", "--async-scheduling", "--enable-dbo", "--enable-eplb"})
_SGLANG_SWITCHES = frozenset({"--enable-dp-attention", "--enable-deepep-moe", "--trust-remote-code",
                              "--disable-radix-cache", "--enable-torch-compile", "--disable-cuda-graph",
                              "--enable-mixed-chunk", "--enable-two-batch-overlap", "--enable-dp-lm-head",
                              "--enable-eplb"})


def _sglang_redundant(a: Args) -> tuple[tuple[tuple[str, object], ...], tuple[str, ...]]:
    """SGLang --ep-num-redundant-experts N: N more expert slots per MoE layer over the EP ranks
    (server_args.py ep_num_redundant_experts), which cost memory and must divide with the experts
    over ep. They balance the load only when placed by it: --enable-eplb rebalances from the
    recorded distribution, --init-expert-location starts from a given one; without either the
    replicas are placed in a fixed order and the popularity imbalance stays whole (eplb_residual 1)."""
    got = a.whole("--ep-num-redundant-experts", minimum=0)
    # Both flags are read (so neither is listed as unused) before either decides.
    eplb = a.switch("--enable-eplb")
    location = a.text("--init-expert-location")
    placed = eplb or location is not None
    if got is None or got[1] == 0:
        return (), ()
    if placed:
        return (("redundant_experts", got[1]),), ()
    return ((("redundant_experts", got[1]), ("eplb_residual", 1.0)),
            (f"--ep-num-redundant-experts {got[1]} without --enable-eplb or --init-expert-location: the replicas cost "
             "memory but are not placed by load, so the expert imbalance is costed whole",))


def parse_vllm(cmd: str) -> EngineReading:
    """``vllm serve MODEL -tp T -dp D [--enable-expert-parallel] ...``: attention tp = T,
    attention dp = D; with expert parallel ep = T*D, else the experts are tensor-parallel over
    all T*D GPUs. --max-num-seqs is per data-parallel engine."""
    a = Args("--vllm", cmd, _VLLM_SWITCHES)
    model = a.text("--model")
    if model is None and "serve" in a.positional:
        rest = a.positional[a.positional.index("serve") + 1:]
        model = rest[0] if rest else None
    tp = a.whole("-tp", "--tensor-parallel-size")
    dp = a.whole("-dp", "--data-parallel-size")
    pp = a.whole("-pp", "--pipeline-parallel-size")
    ep = a.switch("--enable-expert-parallel", "-ep")
    degree = lambda got: 1 if got is None else got[1]  # noqa: E731
    layout = from_vllm(degree(tp), degree(dp), degree(pp), enable_expert_parallel=ep, is_moe=_is_moe(model))
    context = a.whole("--max-model-len", human=True)
    seqs = a.whole("--max-num-seqs")
    return EngineReading(
        engine=Engine.VLLM, model=model, layout=layout, context_tokens=None if context is None else context[1],
        context_flag="--max-model-len", max_running_per_rank=None if seqs is None else seqs[1],
        running_flag="--max-num-seqs",
        # vLLM's default gpu_memory_utilization is 0.9 (vllm/config/cache.py CacheConfig).
        memory_fraction=a.fraction("--gpu-memory-utilization") or 0.9, memory_flag="--gpu-memory-utilization",
        kv_cache_dtype=a.choice(VLLM_KV_DTYPES, "vLLM", "--kv-cache-dtype"), ignored=a.unused())


def parse_sglang(cmd: str) -> EngineReading:
    """``python -m sglang.launch_server --model-path M --tp-size W [--dp-size D
    --enable-dp-attention] [--ep-size E]``: W counts every GPU of a stage; with DP attention,
    attention tp = W/D (SGLang asserts W % D == 0); moe tp = W/E. --max-running-requests is
    shared by the DP-attention ranks (each gets its // dp_size, sglang/srt/managers/tp_worker.py)
    and applies to each replica of a plain --dp-size."""
    a = Args("--sglang", cmd, _SGLANG_SWITCHES)
    model = a.text("--model-path", "--model")
    tp = a.whole("--tp-size", "--tp", "--tensor-parallel-size")
    dp = a.whole("--dp-size", "--dp", "--data-parallel-size")
    pp = a.whole("--pp-size", "--pp", "--pipeline-parallel-size")
    ep = a.whole("--ep-size", "--ep", "--expert-parallel-size")
    dp_attention = a.switch("--enable-dp-attention")
    a2a = a.text("--moe-a2a-backend")
    deepep = a.switch("--enable-deepep-moe") or a2a in ("deepep", "mooncake")
    tp_v, dp_v, pp_v = (1 if g is None else g[1] for g in (tp, dp, pp))
    ep_v = tp_v if deepep else (1 if ep is None else ep[1])  # DeepEP/Mooncake all-to-all force ep_size = tp_size
    refusals, ignored = [], []
    if dp_attention and tp_v % dp_v:
        refusals.append(f"--dp-size {dp_v} does not divide --tp-size {tp_v}: SGLang asserts tp_size % dp_size == 0 "
                        "with --enable-dp-attention")
    if tp_v % ep_v:
        refusals.append(f"--ep-size {ep_v} does not divide --tp-size {tp_v}: the MoE tensor-parallel size tp/ep "
                        "must be whole")
    if dp_v > 1 and not dp_attention:
        ignored.append(f"--dp-size {dp_v} without --enable-dp-attention starts {dp_v} independent replicas")
    running = a.whole("--max-running-requests")
    per_rank = None if running is None else running[1] // (dp_v if dp_attention else 1)
    if per_rank == 0:
        refusals.append(f"--max-running-requests {running[1]} over {dp_v} DP-attention ranks leaves each rank 0 "
                        "running requests (SGLang gives each rank max_running_requests // dp_size)")
    layout = None
    if not refusals:
        lay = from_sglang(tp_v, dp_v, dp_attention, ep_v, pp_v, is_moe=_is_moe(model))
        layout = lay if dp_attention or dp_v == 1 else lay.with_instances(dp_v)
    context = a.whole("--context-length")
    recv = a.whole("--scheduler-recv-interval")
    assumptions, notes = _sglang_redundant(a)
    return EngineReading(
        assumption_settings=assumptions, notes=notes,
        engine=Engine.SGLANG, model=model, layout=layout, context_tokens=None if context is None else context[1],
        engine_settings=(("recv_interval_iters", recv[1]),) if recv is not None and recv[1] > 1 else (),
        context_flag="--context-length", max_running_per_rank=per_rank, running_flag="--max-running-requests",
        memory_fraction=a.fraction("--mem-fraction-static") or 0.88, memory_flag="--mem-fraction-static",
        kv_cache_dtype=a.choice(SGLANG_KV_DTYPES, "SGLang", "--kv-cache-dtype"), refusals=tuple(refusals),
        ignored=tuple(ignored) + tuple(k for k in a.unused() if k != "-m"))  # -m sglang.launch_server: the program


def parse_trtllm(path: str, model: str | None = None) -> EngineReading:
    """A TensorRT-LLM LLM-API YAML (trtllm-serve --extra_llm_api_options): moe_expert x
    moe_tensor parallel must equal tensor_parallel_size (either one left out is derived from the
    other, tensorrt_llm/mapping.py); enable_attention_dp makes attention tp 1 and attention
    dp = tensor_parallel_size. max_batch_size is per rank (per attention-dp rank)."""
    cfg = read_trtllm_yaml(path)
    name = cfg.model or model  # trtllm-serve takes the model as its positional argument
    tp, mep, mtp = cfg.tensor_parallel_size, cfg.moe_expert_parallel_size, cfg.moe_tensor_parallel_size
    if mep is None:
        mep = 1 if mtp is None else max(tp // mtp, 1)
    if mtp is None:
        mtp = max(tp // mep, 1)
    refusals, layout = [], None
    if mep * mtp != tp:
        refusals.append(f"moe_expert_parallel_size {mep} x moe_tensor_parallel_size {mtp} = {mep * mtp} != "
                        f"tensor_parallel_size {tp}: TensorRT-LLM's Mapping rejects it")
    else:
        layout = from_trtllm(tp, cfg.pipeline_parallel_size, cfg.enable_attention_dp, mep, mtp, is_moe=_is_moe(name))
    return EngineReading(
        engine=Engine.TRTLLM, model=name, layout=layout, context_tokens=cfg.max_seq_len, context_flag="max_seq_len",
        max_running_per_rank=cfg.max_batch_size, running_flag="max_batch_size",
        memory_fraction=cfg.free_gpu_memory_fraction, memory_flag="kv_cache_config.free_gpu_memory_fraction",
        kv_cache_dtype=cfg.kv_cache_dtype, refusals=tuple(refusals), ignored=cfg.ignored,
        engine_settings=(() if cfg.adp_balance is None else
                         (("attention_dp_balance", True), ("adp_balance_timeout_iters", cfg.adp_balance[0]),
                          ("adp_balance_batching_wait_iters", cfg.adp_balance[1]))))
