"""Flags shared by plan and evaluate: they replace a problem file or override its fields."""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from meshplan.cli.echo import echo
from meshplan.errors import SpecError, finite_number
from meshplan.io.catalog import load_gpu
from meshplan.io.problem_file import load_problem, merge, problem_from_raw, read_raw
from meshplan.specs.problem import Problem


ENGINE_HELP = ("Serving engine the predictions are for: trtllm, sglang or vllm (default vllm); its profile "
               "(token budget, batch limits, CUDA graphs, scheduler) is in catalog/engines/.")


def problem_options(fn: Callable | None = None, *, engine_flag: bool = True) -> Callable:
    """Decorate a command with the problem flags (listed in --help). ``engine_flag=False`` for a
    command whose own --engine flag names the engine (export)."""
    if fn is None:
        return functools.partial(problem_options, engine_flag=engine_flag)
    engine_opts = [click.option("--engine", help=ENGINE_HELP)] if engine_flag else []
    engine_opts.append(click.option("--engine-version", help="Engine release (e.g. 0.5.9, 1.2.0); default the "
                                    "newest the profile knows."))
    opts = [
        click.argument("problem", required=False, type=click.Path(dir_okay=False)),
        click.option("--model", help="Catalog name (deepseek-v3, llama-3.1-70b, ...) or a config.json path."),
        click.option("--gpu", help="Catalog GPU (h100-sxm, h800, b200, ...); common spellings like H100 resolve."),
        click.option("--prefill-gpu", help="Disaggregated serving on two kinds of GPU: the prefill pool's "
                     "(catalog name); --gpu (or --decode-gpu) is then the decode pool's."),
        click.option("--decode-gpu", help="The decode pool's GPU (the same as --gpu)."),
        click.option("--gpus", type=int, help="plan: GPU budget. evaluate: the exact GPU count."),
        click.option("--weights", help="Weight format: fp32, bf16, fp16, fp8, fp4."),
        click.option("--attention-weights", help="Attention weight format, if it differs from --weights."),
        click.option("--expert-weights", help="Expert weight format, if it differs from --weights."),
        click.option("--kv-cache", help="KV cache format: bf16, fp16, fp8, fp4."),
        click.option("--isl", type=float, help="Mean input length in tokens."),
        click.option("--osl", type=float, help="Mean output length in tokens."),
        click.option("--concurrency", type=int, help="Requests in flight across the whole deployment."),
        click.option("--phase", type=click.Choice(["prefill", "decode", "both"]), help="What to plan (default both)."),
        click.option("--serving", type=click.Choice(["auto", "aggregated", "disaggregated"]),
                     help="Full serving: compare shared instances and separate pools (auto, default), or plan one."),
        click.option("--ttft", type=float, help="TTFT target in seconds."),
        click.option("--tpot", type=float, help="TPOT target in seconds."),
        click.option("--ttft-p99", "ttft_p99", type=float, help="99th-percentile TTFT target in seconds (plan checks "
                     "it by simulating the best candidates)."),
        click.option("--tpot-p99", "tpot_p99", type=float, help="99th-percentile TPOT target in seconds (likewise)."),
        click.option("--min-tok-s-per-gpu", type=float, help="Required output tokens/s per GPU."),
        click.option("--min-tok-s", type=float, help="Required output tokens/s of the whole deployment "
                     "(sizes the GPU count; the target of --objective min-gpus)."),
        click.option("--request-rate", type=float, help="Arrivals per second across the deployment (adds "
                     "queueing to TTFT and sizes the instances)."),
        click.option("--prefix-hit-rate", type=float, help="Share of each prompt's tokens found in the engine's "
                     "prefix cache (0 to below 1; default 0): prefill computes only the rest."),
        click.option("--spec", type=click.Choice(["mtp", "eagle", "draft"]), help="Speculative decoding: the "
                     "model's MTP module, an EAGLE head, or a --draft-model; the search tries each decode pool with "
                     "it and without it."),
        click.option("--spec-tokens", type=int, help="Draft tokens per iteration (K, 1 to 16)."),
        click.option("--acceptance", help="Chance each draft position is accepted given the earlier ones were: K "
                     "comma-separated values or one for all (e.g. 0.85,0.63,0.63)."),
        click.option("--accepted-tokens", type=float, help="Instead of --acceptance: mean draft tokens accepted per "
                     "iteration (SGLang's and vLLM's logged accept length minus 1)."),
        click.option("--draft-model", help="--spec draft: the draft model (catalog name or config.json path)."),
        click.option("--draft-checkpoint", help="--spec eagle: the EAGLE head the engines load (Hugging Face id or "
                     "folder); export needs it."),
        click.option("--top-k", type=int, help="Override the model's top-k (e.g. when the problem omits it)."),
        click.option("--redundant-experts", type=int, help="Redundant expert replicas (EPLB): ep must divide experts + "
                     "this (DeepSeek-V3 on EP72 runs with 32)."),
        *engine_opts,
        click.option("--calibration", "--profile", "calibration", help="Calibration profile of fitted step-model "
                     "factors: a bundled name, a YAML path (meshplan calibrate --out), or none for the sourced "
                     "defaults (default silicon-dev)."),
        click.option("--hardware-profile", help="Kernels timed on your GPUs (meshplan calibrate --microbench --out "
                     "FILE): their GEMM, HBM and NVLink rates replace the catalog GPU's fractions in that format."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


FLAG_OF_FIELD = {
    "gpus": "--gpus", "workload.isl": "--isl", "workload.osl": "--osl", "workload.concurrency": "--concurrency",
    "workload.request_rate_per_s": "--request-rate", "workload.prefix_hit_rate": "--prefix-hit-rate",
    "requirements.ttft_s": "--ttft", "requirements.tpot_s": "--tpot",
    "requirements.ttft_p99_s": "--ttft-p99", "requirements.tpot_p99_s": "--tpot-p99",
    "requirements.min_output_tok_s_per_gpu": "--min-tok-s-per-gpu", "requirements.min_output_tok_s": "--min-tok-s",
    "model.top_k": "--top-k", "assumptions.redundant_experts": "--redundant-experts", "phase": "--phase", "serving": "--serving", "calibration": "--calibration",
    "hardware_profile": "--hardware-profile", "prefill_gpu": "--prefill-gpu", "speculative.method": "--spec", "speculative.draft_tokens": "--spec-tokens",
    "speculative.acceptance": "--acceptance", "speculative.accepted_tokens": "--accepted-tokens",
    "speculative.draft_model": "--draft-model", "speculative.draft_checkpoint": "--draft-checkpoint",
    "precision.weights": "--weights", "precision.attention": "--attention-weights",
    "precision.experts": "--expert-weights", "precision.kv_cache": "--kv-cache",
}
"""Problem fields the flags set: an error about one of them names the flag the user typed."""


def overrides_from(kw: dict[str, Any], gpus_is_budget: bool) -> dict[str, Any]:
    def positive(name: str, value):
        if value is not None and not (finite_number(value) and value > 0):
            raise SpecError(f"--{name}", value, "must be a positive, finite number")
        return value

    for name in ("gpus", "isl", "osl", "concurrency", "ttft", "tpot", "ttft_p99", "tpot_p99", "min_tok_s_per_gpu", "min_tok_s",
                 "request_rate", "top_k"):
        positive(name.replace("_", "-"), kw.get(name))
    gpu = kw.get("gpu")
    if kw.get("decode_gpu") is not None:
        try:
            decode = load_gpu(kw["decode_gpu"])
        except SpecError as err:
            raise SpecError("--decode-gpu", kw["decode_gpu"], err.rule) from None
        if gpu is not None and load_gpu(gpu) != decode:
            raise SpecError("--decode-gpu", kw["decode_gpu"], f"--gpu names {gpu!r}: the decode pool's GPU is one of "
                            "the two; give either")
        gpu = kw["decode_gpu"]
    model: Any = kw.get("model")
    if kw.get("top_k") is not None:
        model = {"base": model, "top_k": kw["top_k"]} if model else {"top_k": kw["top_k"]}
    return {
        "model": model, "gpu": gpu, "prefill_gpu": kw.get("prefill_gpu"), "gpus": kw.get("gpus") if gpus_is_budget else None,
        "precision": {"weights": kw.get("weights"), "attention": kw.get("attention_weights"),
                      "experts": kw.get("expert_weights"), "kv_cache": kw.get("kv_cache")},
        "workload": {"isl": kw.get("isl"), "osl": kw.get("osl"), "concurrency": kw.get("concurrency"),
                     "request_rate_per_s": kw.get("request_rate"), "prefix_hit_rate": kw.get("prefix_hit_rate")},
        "phase": kw.get("phase"), "serving": kw.get("serving"),
        "engine": _engine_override(kw), "calibration": kw.get("calibration"),
        "hardware_profile": kw.get("hardware_profile"),
        "assumptions": {"redundant_experts": kw.get("redundant_experts")}, "speculative": _speculative(kw),
        "requirements": {"ttft_s": kw.get("ttft"), "tpot_s": kw.get("tpot"),
                         "ttft_p99_s": kw.get("ttft_p99"), "tpot_p99_s": kw.get("tpot_p99"),
                         "min_output_tok_s_per_gpu": kw.get("min_tok_s_per_gpu"),
                         "min_output_tok_s": kw.get("min_tok_s")},
    }


SPEC_FLAGS = ("spec", "spec_tokens", "acceptance", "accepted_tokens", "draft_model", "draft_checkpoint")


def _speculative(kw: dict[str, Any]) -> dict[str, Any] | None:
    """The speculative-decoding flags as the problem file's ``speculative`` mapping (None: none given)."""
    if all(kw.get(k) is None for k in SPEC_FLAGS):
        return None
    acceptance = kw.get("acceptance")
    if acceptance is not None:
        try:
            acceptance = [float(a) for a in str(acceptance).split(",")]
        except ValueError:
            raise SpecError("--acceptance", kw["acceptance"], "must be numbers from 0 to 1, comma-separated") from None
        if not all(finite_number(a) for a in acceptance):
            raise SpecError("--acceptance", kw["acceptance"], "must be numbers from 0 to 1, comma-separated")
    return {"method": kw.get("spec"), "draft_tokens": kw.get("spec_tokens"), "acceptance": acceptance,
            "accepted_tokens": kw.get("accepted_tokens"), "draft_model": kw.get("draft_model"),
            "draft_checkpoint": kw.get("draft_checkpoint")}


def refuse_problem_flags(kw: dict[str, Any]) -> None:
    """With a plan JSON as PROBLEM: any problem flag given would be ignored, so it is refused."""
    for name, value in kw.items():
        if name != "problem" and value not in (None, False, ()):
            raise SpecError("--" + name.replace("_", "-"), value, "a plan JSON keeps the problem it was planned for; "
                            "give the problem file (or flags alone) to change it")


def _engine_override(kw: dict[str, Any]) -> Any:
    name, version = kw.get("engine"), kw.get("engine_version")
    if name is None and version is None:
        return None
    if name is None:
        raise SpecError("--engine-version", version, "a version needs --engine trtllm|sglang|vllm")
    return {"name": name, "version": version} if version is not None else name


def load(kw: dict[str, Any], gpus_is_budget: bool = True) -> Problem:
    """The problem file (or the bundled seed problem, or flags alone when --model is given)."""
    overrides = overrides_from(kw, gpus_is_budget)
    path = kw.get("problem")
    try:
        if path is None and kw.get("model"):
            raw = {"name": "flags"}
            if isinstance(overrides["model"], dict) and overrides["model"].get("base") is None:
                overrides["model"].pop("base", None)
            return problem_from_raw(merge(raw, overrides))
        if path is None:
            return load_problem(None, overrides)
        return problem_from_raw(merge(read_raw(path), overrides))
    except SpecError as err:
        raise _as_flag(err, kw) from None


def _as_flag(err: SpecError, kw: dict[str, Any]) -> SpecError:
    """The error naming the flag the user typed, when a flag set the field it is about."""
    for field, flag in FLAG_OF_FIELD.items():
        given = kw.get(flag[2:].replace("-", "_"))
        if (err.field == field or err.field.startswith(field + ".")) and given is not None:
            return SpecError(flag, given, err.rule)
    return err


def wrap_errors(fn: Callable) -> Callable:
    """User errors become one line on stderr and exit code 2, never a traceback. The field and the
    rule can quote user input (an unknown YAML key, a file name), so the line is made printable."""
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SpecError as err:
            echo(f"error: {err}", err=True, one_line=True)
            raise SystemExit(2) from None
    return inner
