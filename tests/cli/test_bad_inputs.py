"""Bad user input, every reader and every command: exit code 2 and ONE line on stderr,
``error: FIELD = VALUE: RULE`` (meshplan.errors.SpecError through cli.problem_flags.wrap_errors),
never a traceback, never silently accepted.

One table. Each row is a command line (``{d}`` is the row's own temporary folder) and the files
the row writes into that folder first; the line must name the field (any of ``field``,
case-insensitive) and the value as the user wrote it (any of ``value``, as written; None where
there is no short value to show).

Guards, so that a row the program accepts cannot hurt the machine or launch anything:
* ``meshplan run`` never starts workers: ``execute`` is replaced by a stub that ends the row
  as "accepted" when reached (argument validation only).
* ``meshplan calibrate`` never fits: ``fit``/``cross_validate`` are stubs that do the same.
* every row runs under a wall-clock limit (SIGALRM) and an address-space cap (RLIMIT_AS), so a
  bad input that makes the program loop or allocate without bound (1e9 layers, alias bombs)
  fails the row instead of the machine.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import re
import signal
import traceback
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner

import meshplan.cli.calibrate_cmd as calibrate_cmd
import meshplan.cli.main as cli_main
from meshplan.cli.main import main
from meshplan.io.catalog import CATALOG

# ---------------------------------------------------------------------------------------------
# The table's vocabulary
# ---------------------------------------------------------------------------------------------

DIR = object()
"""File content: make a directory at this name."""
UNREADABLE = object()
"""File content: a file that exists and cannot be read (chmod 000; as root, where permissions do
not stop reads, a link to /proc/self/mem, whose read fails with EIO)."""


@dataclasses.dataclass(frozen=True)
class Bad:
    id: str
    argv: tuple[str, ...]
    field: tuple[str, ...]
    value: tuple[str, ...] | None
    files: dict[str, Any]
    max_len: int | None = None


def bad(id: str, argv: list[str], field: str | tuple[str, ...], value: str | tuple[str, ...] | None = None,
        files: dict[str, Any] | None = None, max_len: int | None = None) -> Bad:
    as_tuple = lambda x: (x,) if isinstance(x, str) else tuple(x)  # noqa: E731
    return Bad(id=id, argv=tuple(argv), field=as_tuple(field), value=None if value is None else as_tuple(value),
               files=dict(files or {}), max_len=max_len)


# Problem files (YAML / JSON): every key given once, as a YAML fragment; DROP leaves a key out.
DROP = object()
_BASE_PROBLEM = {"model": "qwen3-30b-a3b", "gpu": "h100-sxm", "gpus": "8", "workload": "{isl: 1024, osl: 256}"}


def yaml_problem(raw: str = "", **keys: Any) -> str:
    """A small valid problem (qwen3-30b-a3b on 8 H100s) with ``keys`` replaced (YAML fragments) and
    ``raw`` lines appended; no key appears twice unless ``raw`` repeats one on purpose."""
    parts = dict(_BASE_PROBLEM)
    parts.update(keys)
    return "".join(f"{k}: {v}\n" for k, v in parts.items() if v is not DROP) + raw


_BASE_JSON = {"model": '"qwen3-30b-a3b"', "gpu": '"h100-sxm"', "gpus": "8", "workload": '{"isl": 1024, "osl": 256}'}


def json_problem(**keys: Any) -> str:
    """The same problem as JSON text; values are JSON fragments (NaN and Infinity as Python's json
    module writes and reads them)."""
    parts = dict(_BASE_JSON)
    parts.update(keys)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in parts.items() if v is not DROP) + "}\n"


# Seed-format Markdown problems: the bundled seed problem with bullets replaced or added.
SEED_MD = (CATALOG / "problems" / "seed-10b-moe.md").read_text()


def seed_md(replace: dict[str, str] | None = None, add: str = "") -> str:
    """The seed problem with the value of each ``* **Key**:`` bullet in ``replace`` swapped, and
    ``add`` (more sections) appended."""
    text = SEED_MD
    for key, value in (replace or {}).items():
        pattern = re.compile(r"^(\s*[*-]\s*\*\*" + re.escape(key) + r"\*\*\s*:\s*).*$", re.M)
        assert pattern.search(text), key
        text = pattern.sub(lambda m: m.group(1) + value, text, count=1)
    return text + add


def parallelism(**degrees: str) -> str:
    names = {"gpus": "GPUs ", "tp": "Tensor parallelism", "pp": "Pipeline parallelism", "dp": "Data parallelism",
             "ep": "Expert parallelism", "sp": "Sequence parallelism"}
    return "\n---\n\n## **Parallelism Strategy**\n\n" + "".join(
        f"* **{names[k]}**: {v}\n" for k, v in degrees.items())


# Hugging Face config.json files: a catalog config with fields set or dropped.
def hf_config(base: str = "meta-llama--Meta-Llama-3.1-8B", drop: tuple[str, ...] = (), **fields: Any) -> str:
    cfg = json.loads((CATALOG / "models" / f"{base}.config.json").read_text())
    for k in drop:
        cfg.pop(k)
    cfg.update(fields)
    return json.dumps(cfg, indent=1)


def hf_raw(**fields: str) -> str:
    """The Llama-3.1-8B config with some values as raw JSON text (NaN, 1e9, a string)."""
    cfg = json.loads((CATALOG / "models" / "meta-llama--Meta-Llama-3.1-8B.config.json").read_text())
    body = {k: json.dumps(v) for k, v in cfg.items() if k not in fields} | fields
    return "{" + ", ".join(f'"{k}": {v}' for k, v in body.items()) + "}\n"


# Silicon CSV files (shared/cases/silicon-dev.csv format).
CSV_COLUMNS = ("id,silicon_data_source,backend,backend_version,model_path,system,precision,mode,isl,osl,"
               "gemm_quant_mode,moe_quant_mode,batch_size,tp_size,pp_size,attention_dp_size,moe_tp_size,moe_ep_size,"
               "prefill_batch_size,prefill_num_workers,prefill_tp_size,prefill_pp_size,prefill_attention_dp_size,"
               "prefill_moe_tp_size,prefill_moe_ep_size,decode_batch_size,decode_num_workers,decode_tp_size,"
               "decode_pp_size,decode_attention_dp_size,decode_moe_tp_size,decode_moe_ep_size,silicon_ttft_ms,"
               "silicon_tpot_ms").split(",")
_GOOD_ROW = dict.fromkeys(CSV_COLUMNS, "") | {
    "id": "r1", "silicon_data_source": "db; silicon_concurrency=64", "backend": "vllm", "backend_version": "0.11.0",
    "model_path": "Qwen/Qwen3-30B-A3B", "system": "h100_sxm", "precision": "bf16", "mode": "agg", "isl": "1024",
    "osl": "1024", "gemm_quant_mode": "bf16", "moe_quant_mode": "bf16", "batch_size": "64", "tp_size": "2",
    "pp_size": "1", "attention_dp_size": "1", "moe_tp_size": "2", "moe_ep_size": "1", "silicon_ttft_ms": "150.0",
    "silicon_tpot_ms": "20.0"}


def silicon_csv(*rows: dict[str, str], columns: list[str] | None = None) -> str:
    cols = columns or CSV_COLUMNS
    lines = [",".join(cols)]
    for over in rows:
        row = _GOOD_ROW | over
        lines.append(",".join(row.get(c, "") for c in cols))
    return "\n".join(lines) + "\n"


# Meshplan plan JSON: the plan of the small problem above (made once per session), edited.
def plan_json(edit: Callable[[dict], Any]) -> Callable[[dict], str]:
    def make(doc: dict) -> str:
        d = copy.deepcopy(doc)
        edit(d)
        return json.dumps(d)
    return make


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        *head, last = path.split(".")
        for k in head:
            d = d[k]
        d[last] = value
    return edit


def _del(path: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        *head, last = path.split(".")
        for k in head:
            d = d[k]
        del d[last]
    return edit


def alias_bomb(levels: int = 6, width: int = 10) -> str:
    """A 'billion laughs' YAML value, bounded: width**levels leaves (10**6), a few hundred bytes."""
    items = [f"&l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        items.append(f"&l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "[" + ", ".join(items) + "]"


BINARY = bytes(range(256)) * 4
UTF16_PROBLEM = yaml_problem().encode("utf-16")
FLAGS = ["--model", "qwen3-30b-a3b", "--gpu", "h100-sxm", "--gpus", "8", "--isl", "1024", "--osl", "256"]


def flags(**over: str | None) -> list[str]:
    """FLAGS with some values replaced or added (``top_k="4"`` -> ``--top-k 4``), or dropped (None)."""
    out = list(FLAGS)
    for name, value in over.items():
        opt = "--" + name.replace("_", "-")
        if opt in out:
            at = out.index(opt)
            if value is None:
                del out[at:at + 2]
            else:
                out[at + 1] = value
        elif value is not None:
            out += [opt, value]
    return out


P = "{d}/p.yaml"
VLLM_CHECK = ["check", "--gpu", "h100-sxm", "--isl", "1024", "--osl", "256", "--vllm"]
SGLANG_CHECK = ["check", "--gpu", "h100-sxm", "--isl", "1024", "--osl", "256", "--sglang"]
SGL = "python -m sglang.launch_server --model-path Qwen/Qwen3-30B-A3B "
TRTLLM_CHECK = ["check", "--gpu", "h100-sxm", "--isl", "1024", "--osl", "256", "--model", "qwen3-30b-a3b",
                "--trtllm", "{d}/t.yaml"]
TRT_OK = "tensor_parallel_size: 2\nmoe_expert_parallel_size: 2\nmax_batch_size: 32\n"
HF = ["--model", "{d}/cfg.json", "--gpu", "h100-sxm", "--gpus", "8", "--isl", "1024", "--osl", "256"]
DOT_OK = 'digraph g {\n  Request [label="Request\\nGPU: 0"];\n  Out [label="Output\\nGPU: 0"];\n  Request -> Out;\n}\n'
LINT = ["--strategy", "ep=16"]
RUN = ["--strategy", "tp=1"]
CAL_OUT = ["--out", "{d}/profile.yaml"]
SAMPLE_CSV = str(Path(__file__).parents[1] / "fidelity" / "fixtures" / "silicon-sample.csv")

# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

ROWS = [
    # ---- problem YAML: types -------------------------------------------------------------------
    bad("plan-yaml-workload-int", ["plan", P], "workload", "5", {"p.yaml": yaml_problem(workload="5")}),
    bad("plan-yaml-workload-list", ["plan", P], "workload", "1024", {"p.yaml": yaml_problem(workload="[1024, 256]")}),
    bad("plan-yaml-phase-mapping", ["plan", P], "phase", "{}", {"p.yaml": yaml_problem(phase="{}")}),
    bad("plan-yaml-phase-unknown", ["plan", P], "phase", "warmup", {"p.yaml": yaml_problem(phase="warmup")}),
    bad("plan-yaml-serving-int", ["plan", P], "serving", "2", {"p.yaml": yaml_problem(serving="2")}),
    bad("plan-yaml-model-null", ["plan", P], "model", None, {"p.yaml": yaml_problem(model="null")}),
    bad("plan-yaml-model-int", ["plan", P], "model", "5", {"p.yaml": yaml_problem(model="5")}),
    bad("plan-yaml-model-list", ["plan", P], "model", "qwen3-30b-a3b",
        {"p.yaml": yaml_problem(model="[qwen3-30b-a3b]")}),
    bad("plan-yaml-gpu-mapping-no-base", ["plan", P], "gpu", None,
        {"p.yaml": yaml_problem(gpu="{memory_bytes: 80e9}")}),
    bad("plan-yaml-gpus-zero", ["plan", P], "gpus", "0", {"p.yaml": yaml_problem(gpus="0")}),
    bad("plan-yaml-gpus-fraction", ["plan", P], "gpus", "1.5", {"p.yaml": yaml_problem(gpus="1.5")}),
    bad("plan-yaml-gpus-word", ["plan", P], "gpus", "eight", {"p.yaml": yaml_problem(gpus="eight")}),
    bad("plan-yaml-precision-int", ["plan", P], "precision", "5", {"p.yaml": yaml_problem(precision="5")}),
    bad("plan-yaml-precision-unknown-format", ["plan", P], "precision.weights", "fp7",
        {"p.yaml": yaml_problem(precision="{weights: fp7}")}),
    bad("plan-yaml-engine-int", ["plan", P], "engine", "5", {"p.yaml": yaml_problem(engine="5")}),
    bad("plan-yaml-engine-unknown", ["plan", P], "engine", "tgi", {"p.yaml": yaml_problem(engine="tgi")}),
    bad("plan-yaml-requirements-int", ["plan", P], "requirements", "5", {"p.yaml": yaml_problem(requirements="5")}),
    bad("plan-yaml-assumptions-list", ["plan", P], "assumptions", "1", {"p.yaml": yaml_problem(assumptions="[1]")}),
    bad("plan-yaml-calibration-int", ["plan", P], "calibration", "5", {"p.yaml": yaml_problem(calibration="5")}),
    bad("plan-yaml-notes-int", ["plan", P], "notes", "5", {"p.yaml": yaml_problem(notes="5")}),
    bad("plan-yaml-speculative-int", ["plan", P], "speculative", "5", {"p.yaml": yaml_problem(speculative="5")}),
    bad("plan-yaml-speculative-no-acceptance", ["plan", P], "speculative.acceptance", None,
        {"p.yaml": yaml_problem(speculative="{method: eagle, draft_tokens: 3}")}),
    bad("plan-yaml-speculative-method", ["plan", P], "speculative.method", "medusa",
        {"p.yaml": yaml_problem(speculative="{method: medusa, draft_tokens: 3, acceptance: 0.7}")}),
    bad("plan-yaml-speculative-mtp-missing", ["plan", P], "speculative.method", "mtp",
        {"p.yaml": yaml_problem(speculative="{method: mtp, draft_tokens: 3, acceptance: 0.7}")}),
    bad("plan-spec-tokens-zero", ["plan", "--model", "llama-3.1-8b", "--gpu", "h100", "--isl", "100", "--osl", "10",
                                  "--spec", "eagle", "--spec-tokens", "0", "--acceptance", "0.7"], "--spec-tokens", "0"),
    bad("plan-acceptance-word", ["plan", "--model", "llama-3.1-8b", "--gpu", "h100", "--isl", "100", "--osl", "10",
                                 "--spec", "eagle", "--spec-tokens", "2", "--acceptance", "0.7,high"], "--acceptance",
        "0.7,high"),
    bad("plan-acceptance-above-one", ["plan", "--model", "llama-3.1-8b", "--gpu", "h100", "--isl", "100", "--osl", "10",
                                      "--spec", "eagle", "--spec-tokens", "2", "--acceptance", "1.5"], "--acceptance",
        "1.5"),
    bad("plan-accepted-tokens-above-k", ["plan", "--model", "llama-3.1-8b", "--gpu", "h100", "--isl", "100", "--osl",
                                         "10", "--spec", "eagle", "--spec-tokens", "2", "--accepted-tokens", "3"],
        "--accepted-tokens", "3"),
    bad("plan-prefill-gpu-unknown", ["plan", "--model", "llama-3.1-70b", "--gpu", "h200", "--isl", "100", "--osl", "10",
                                     "--prefill-gpu", "h900"], "--prefill-gpu", "h900"),
    bad("plan-prefill-gpu-aggregated", ["plan", "--model", "llama-3.1-70b", "--gpu", "h200", "--isl", "100", "--osl",
                                        "10", "--prefill-gpu", "h100", "--serving", "aggregated"], "--prefill-gpu",
        "h100"),
    bad("plan-decode-gpu-against-gpu", ["plan", "--model", "llama-3.1-70b", "--gpu", "h200", "--isl", "100", "--osl",
                                        "10", "--decode-gpu", "b200"], "--decode-gpu", "b200"),
    bad("evaluate-one-layout-two-gpus", ["evaluate", "--model", "llama-3.1-70b", "--gpu", "h200", "--isl", "100",
                                         "--osl", "10", "--prefill-gpu", "h100", "--strategy", "tp4"], "--strategy",
        "tp4"),
    bad("plan-yaml-prefill-gpu-strategy", ["evaluate", P], "strategy", "tp8",
        {"p.yaml": yaml_problem(prefill_gpu="h200", strategy="tp8")}),
    bad("plan-draft-checkpoint-on-mtp", ["plan", "--model", "deepseek-r1", "--gpu", "b200", "--isl", "100", "--osl",
                                         "10", "--spec", "mtp", "--spec-tokens", "2", "--acceptance", "0.7",
                                         "--draft-checkpoint", "some/head"], "--draft-checkpoint", "some/head"),
    bad("plan-spec-on-prefill", ["plan", "--model", "llama-3.1-8b", "--gpu", "h100", "--isl", "100", "--osl", "10",
                                 "--phase", "prefill", "--spec", "eagle", "--spec-tokens", "2", "--acceptance", "0.7"],
        "--spec", "eagle"),
    bad("plan-yaml-speculative-bool", ["plan", P], "speculative.draft_tokens", "True",
        {"p.yaml": yaml_problem(speculative="{method: eagle, draft_tokens: true, acceptance: 0.7}")}),
    bad("plan-decode-gpu-unknown", ["plan", "--model", "llama-3.1-70b", "--isl", "100", "--osl", "10",
                                    "--decode-gpu", "h900"], "--decode-gpu", "h900"),
    bad("plan-draft-model-unknown", ["plan", "--model", "llama-3.1-70b", "--gpu", "h100", "--isl", "100", "--osl", "10",
                                     "--spec", "draft", "--spec-tokens", "2", "--acceptance", "0.7", "--draft-model",
                                     "tiny-llama"], "--draft-model", "tiny-llama"),
    bad("plan-yaml-notes-text", ["plan", P], "notes", "remember", {"p.yaml": yaml_problem(notes="remember")}),
    bad("evaluate-yaml-strategy-int", ["evaluate", P], "strategy", "8", {"p.yaml": yaml_problem(strategy="8")}),
    bad("plan-yaml-seed-strategy-text", ["plan", P], "seed_strategy", "tp4",
        {"p.yaml": yaml_problem(seed_strategy="tp4")}),
    bad("plan-yaml-name-mapping", ["plan", P], "name", None, {"p.yaml": yaml_problem(name="{a: 1}")}),
    # ---- problem YAML: keys --------------------------------------------------------------------
    bad("plan-yaml-null-key", ["plan", P], ("null", "none", "~"), None, {"p.yaml": yaml_problem(raw="~: 5\n")}),
    bad("plan-yaml-integer-key", ["plan", P], "8", None, {"p.yaml": yaml_problem(raw="8: h100\n")}),
    bad("plan-yaml-unknown-key", ["plan", P], "gpu_count", "16", {"p.yaml": yaml_problem(raw="gpu_count: 16\n")}),
    bad("plan-yaml-duplicate-key", ["plan", P], "gpu", None, {"p.yaml": yaml_problem(raw="gpu: h800\n")}),
    bad("plan-yaml-workload-null-key", ["plan", P], ("null", "none", "~"), None,
        {"p.yaml": yaml_problem(workload="{isl: 1024, osl: 256, ~: 4}")}),
    bad("plan-yaml-workload-unknown-key", ["plan", P], "workload.batch", "4",
        {"p.yaml": yaml_problem(workload="{isl: 1024, osl: 256, batch: 4}")}),
    bad("plan-yaml-workload-duplicate-key", ["plan", P], "isl", None,
        {"p.yaml": yaml_problem(workload="{isl: 1024, osl: 256, isl: 2048}")}),
    bad("plan-yaml-precision-null-key", ["plan", P], ("null", "none", "~"), None,
        {"p.yaml": yaml_problem(precision="{~: fp8}")}),
    bad("plan-yaml-precision-integer-key", ["plan", P], "8", None, {"p.yaml": yaml_problem(precision="{8: fp8}")}),
    bad("plan-yaml-engine-integer-key", ["plan", P], "3", None, {"p.yaml": yaml_problem(engine="{name: vllm, 3: x}")}),
    bad("plan-yaml-alias-bomb", ["plan", P], ("name", "problem", "alias"), None,
        {"p.yaml": yaml_problem(name=alias_bomb())}, max_len=2000),
    bad("plan-yaml-alias-bomb-in-notes", ["plan", P], ("notes", "problem", "alias"), None,
        {"p.yaml": yaml_problem(notes=alias_bomb(levels=5))}, max_len=2000),
    # ---- problem YAML: numbers -----------------------------------------------------------------
    bad("plan-yaml-isl-inf", ["plan", P], "isl", (".inf", "inf"),
        {"p.yaml": yaml_problem(workload="{isl: .inf, osl: 256}")}),
    bad("plan-yaml-osl-nan", ["plan", P], "osl", (".nan", "nan"),
        {"p.yaml": yaml_problem(workload="{isl: 1024, osl: .nan}")}),
    bad("plan-yaml-isl-negative", ["plan", P], "isl", "-5", {"p.yaml": yaml_problem(workload="{isl: -5, osl: 256}")}),
    bad("plan-yaml-osl-zero", ["plan", P], "osl", "0", {"p.yaml": yaml_problem(workload="{isl: 1024, osl: 0}")}),
    bad("plan-yaml-isl-huge", ["plan", P], "isl", ("99999999999999999999", "1e+20"),
        {"p.yaml": yaml_problem(workload="{isl: 99999999999999999999, osl: 256}")}),
    bad("plan-yaml-isl-range-words", ["plan", P], "isl", "a",
        {"p.yaml": yaml_problem(workload="{isl: [a, b], osl: 256}")}),
    bad("plan-yaml-isl-range-inf", ["plan", P], "isl", (".inf", "inf"),
        {"p.yaml": yaml_problem(workload="{isl: [128, .inf], osl: 256}")}),
    bad("plan-yaml-isl-max-word", ["plan", P], "isl_max", "long",
        {"p.yaml": yaml_problem(workload="{isl: 1024, osl: 256, isl_max: long}")}),
    bad("plan-yaml-isl-max-negative", ["plan", P], "isl_max", "-5",
        {"p.yaml": yaml_problem(workload="{isl: 1024, osl: 256, isl_max: -5}")}),
    bad("plan-yaml-concurrency-negative", ["plan", P], "concurrency", "-1",
        {"p.yaml": yaml_problem(workload="{isl: 1024, osl: 256, concurrency: -1}")}),
    bad("plan-yaml-concurrency-fraction", ["plan", P], "concurrency", "2.5",
        {"p.yaml": yaml_problem(workload="{isl: 1024, osl: 256, concurrency: 2.5}")}),
    bad("plan-yaml-request-rate-inf", ["plan", P], "request_rate", (".inf", "inf"),
        {"p.yaml": yaml_problem(workload="{isl: 1024, osl: 256, request_rate_per_s: .inf}")}),
    bad("plan-yaml-ttft-nan", ["plan", P], "ttft", (".nan", "nan"),
        {"p.yaml": yaml_problem(requirements="{ttft_s: .nan}")}),
    bad("plan-yaml-min-tok-s-per-gpu-inf", ["plan", P], "min_output_tok_s_per_gpu", (".inf", "inf"),
        {"p.yaml": yaml_problem(requirements="{min_output_tok_s_per_gpu: .inf}")}),
    bad("plan-yaml-headroom-above-1", ["plan", P], "memory_headroom", "1.5",
        {"p.yaml": yaml_problem(requirements="{memory_headroom: 1.5}")}),
    bad("plan-yaml-model-layers-fraction", ["plan", P], "num_layers", "1.7",
        {"p.yaml": yaml_problem(model="{base: qwen3-30b-a3b, num_layers: 1.7}")}),
    bad("plan-yaml-model-heads-zero", ["plan", P], "num_heads", "0",
        {"p.yaml": yaml_problem(model="{base: qwen3-30b-a3b, num_heads: 0}")}),
    bad("plan-yaml-model-layers-huge", ["plan", P], "num_layers", ("99999999999999999999", "1e+20"),
        {"p.yaml": yaml_problem(model="{base: qwen3-30b-a3b, num_layers: 99999999999999999999}")}),
    bad("plan-yaml-model-top-k-zero", ["plan", P], "top_k", "0",
        {"p.yaml": yaml_problem(model="{base: qwen3-30b-a3b, top_k: 0}")}),
    bad("plan-yaml-model-hidden-inf", ["plan", P], "hidden_size", (".inf", "inf"),
        {"p.yaml": yaml_problem(model="{base: qwen3-30b-a3b, hidden_size: .inf}")}),
    bad("plan-yaml-gpu-memory-inf", ["plan", P], "memory_bytes", (".inf", "inf"),
        {"p.yaml": yaml_problem(gpu="{base: h100-sxm, memory_bytes: .inf}")}),
    bad("plan-yaml-gpu-bandwidth-negative", ["plan", P], "hbm_bw_bytes_per_s", "-1",
        {"p.yaml": yaml_problem(gpu="{base: h100-sxm, hbm_bw_bytes_per_s: -1}")}),
    bad("plan-yaml-engine-max-batch-negative", ["plan", P], "max_batch", "-1",
        {"p.yaml": yaml_problem(engine="{name: vllm, max_batch: -1}")}),
    bad("plan-yaml-assumption-nan", ["plan", P], "gemm_efficiency", (".nan", "nan"),
        {"p.yaml": yaml_problem(assumptions="{gemm_efficiency: .nan}")}),
    bad("plan-yaml-serving-disagg-with-prefill", ["plan", P], ("serving", "phase"), None,
        {"p.yaml": yaml_problem(phase="prefill", serving="disaggregated")}),
    # ---- problem files: the file itself --------------------------------------------------------
    bad("plan-yaml-empty", ["plan", P], "problem", "p.yaml", {"p.yaml": ""}),
    bad("plan-yaml-scalar", ["plan", P], "problem", "p.yaml", {"p.yaml": "hello\n"}),
    bad("plan-yaml-syntax", ["plan", P], "problem", "p.yaml", {"p.yaml": "model: [qwen3\n"}),
    bad("plan-yaml-binary", ["plan", P], "problem", "p.yaml", {"p.yaml": BINARY}),
    bad("plan-yaml-utf16", ["plan", P], "problem", "p.yaml", {"p.yaml": UTF16_PROBLEM}),
    bad("plan-yaml-directory", ["plan", "{d}/dir.yaml"], "problem", "dir.yaml", {"dir.yaml": DIR}),
    bad("plan-yaml-missing", ["plan", "{d}/nothere.yaml"], "problem", "nothere.yaml"),
    bad("plan-yaml-missing-folder", ["plan", "{d}/nofolder/p.yaml"], "problem", "nofolder"),
    bad("plan-yaml-unreadable", ["plan", P], "problem", "p.yaml", {"p.yaml": UNREADABLE}),
    bad("evaluate-yaml-binary", ["evaluate", "{d}/p.yml", *RUN], "problem", "p.yml", {"p.yml": BINARY}),
    bad("plan-json-list", ["plan", "{d}/p.json"], "problem", "p.json", {"p.json": "[1, 2]\n"}),
    bad("plan-json-syntax", ["plan", "{d}/p.json"], "problem", "p.json", {"p.json": '{"model": }\n'}),
    bad("plan-json-isl-nan", ["plan", "{d}/p.json"], "isl", ("NaN", "nan"),
        {"p.json": json_problem(workload='{"isl": NaN, "osl": 256}')}),
    bad("plan-json-osl-infinity", ["plan", "{d}/p.json"], "osl", ("Infinity", "inf"),
        {"p.json": json_problem(workload='{"isl": 1024, "osl": Infinity}')}),
    bad("plan-json-isl-1e400", ["plan", "{d}/p.json"], "isl", ("1e400", "inf"),
        {"p.json": json_problem(workload='{"isl": 1e400, "osl": 256}')}),
    bad("plan-json-duplicate-key", ["plan", "{d}/p.json"], "gpu", None,
        {"p.json": json_problem(gpu='"h100-sxm", "gpu": "h800"')}),
    bad("plan-json-binary", ["plan", "{d}/p.json"], "problem", "p.json", {"p.json": BINARY}),
    bad("plan-json-utf16", ["plan", "{d}/p.json"], "problem", "p.json", {"p.json": json_problem().encode("utf-16")}),
    bad("plan-json-workload-null", ["plan", "{d}/p.json"], "workload", None, {"p.json": json_problem(workload="null")}),
    # ---- seed-format Markdown problems ---------------------------------------------------------
    bad("evaluate-md-tensor-parallelism-zero", ["evaluate", "{d}/s.md"], "tensor parallelism", "0",
        {"s.md": seed_md(add=parallelism(gpus="16", tp="0", pp="1", dp="1", ep="16"))}),
    bad("plan-md-tensor-parallelism-zero", ["plan", "{d}/s.md"], "tensor parallelism", "0",
        {"s.md": seed_md(add=parallelism(gpus="16", tp="0", pp="1", dp="1", ep="16"))}),
    bad("check-md-tensor-parallelism-zero", ["check", "{d}/s.md"], "tensor parallelism", "0",
        {"s.md": seed_md(add=parallelism(gpus="16", tp="0", pp="1", dp="1", ep="16"))}),
    bad("evaluate-md-expert-parallelism-negative", ["evaluate", "{d}/s.md"], "expert parallelism", "-4",
        {"s.md": seed_md(add=parallelism(gpus="16", tp="1", pp="1", dp="4", ep="-4"))}),
    bad("evaluate-md-pipeline-parallelism-words", ["evaluate", "{d}/s.md"], "pipeline parallelism", "some",
        {"s.md": seed_md(add=parallelism(gpus="16", tp="1", pp="some", dp="1", ep="16"))}),
    bad("plan-md-layers-no-number", ["plan", "{d}/s.md"], "layers", "sixteen",
        {"s.md": seed_md({"Layers": "sixteen layers, each with 16 experts."})}),
    bad("plan-md-layers-fraction", ["plan", "{d}/s.md"], "layers", "1.7",
        {"s.md": seed_md({"Layers": "1.7-layer, Each layer includes Multi-head attention + Mixture of experts, "
                                    "Each layer has 16 experts."})}),
    bad("plan-md-heads-zero", ["plan", "{d}/s.md"], "heads", "0",
        {"s.md": seed_md({"Dimension of MHA": "The number of heads is 0 and the dimension of each heads is 32"})}),
    bad("plan-md-heads-huge", ["plan", "{d}/s.md"], "heads", ("99999999999999999999", "1e+20"),
        {"s.md": seed_md({"Dimension of MHA": "The number of heads is 99999999999999999999 and the dimension of "
                                              "each heads is 32"})}),
    bad("plan-md-token-dimension-no-number", ["plan", "{d}/s.md"], "token dimension", "wide",
        {"s.md": seed_md({"Token Dimension": "wide"})}),
    bad("plan-md-computing-power-no-number", ["plan", "{d}/s.md"], ("computing power", "s.md:4"), "fast",
        {"s.md": seed_md({"Single-card computing power": "fast."})}),
    bad("plan-md-memory-unit-unknown", ["plan", "{d}/s.md"], ("video memory", "s.md:8"), "64furlongs",
        {"s.md": seed_md({"Single-card video memory capacity": "64furlongs."})}),
    bad("plan-md-mfu-above-100", ["plan", "{d}/s.md"], "mfu", ("150", "1.5"),
        {"s.md": seed_md({"MFU utilization": "150%."})}),
    bad("plan-md-top-k-zero", ["plan", "{d}/s.md"], ("top-k", "top_k", "top k"), "0",
        {"s.md": seed_md(add="\n* **Top-K Gate**: 0\n")}),
    bad("plan-md-top-k-words", ["plan", "{d}/s.md"], ("top-k", "top_k", "top k"), "two",
        {"s.md": seed_md(add="\n* **Top-K Gate**: two\n")}),
    bad("plan-md-sequence-out-zero", ["plan", "{d}/s.md"], ("sequence out", "osl"), "0",
        {"s.md": seed_md(add="\n* **Sequence Out**: 0\n")}),
    bad("plan-md-batch-size-zero", ["plan", "{d}/s.md"], ("batch size", "concurrency"), "0",
        {"s.md": seed_md({"Batch size": "Each batch consists of 0 sequences."})}),
    bad("plan-md-gpus-zero", ["plan", "{d}/s.md"], "gpus", "0", {"s.md": seed_md({"GPUs": "0"})}),
    bad("plan-md-duplicate-bullet", ["plan", "{d}/s.md"], "layers", None,
        {"s.md": seed_md(add="\n* **Layers**: 32-layer, Each layer has 16 experts.\n")}),
    bad("plan-md-unknown-bullet", ["plan", "{d}/s.md"], "rack power", None,
        {"s.md": seed_md(add="\n* **Rack power**: 40kW\n")}),
    bad("plan-md-no-bullets", ["plan", "{d}/s.md"], ("problem", "s.md"), None,
        {"s.md": "# My problem\n\nServe a 10B MoE model on 64 GB cards, please.\n"}),
    bad("plan-md-utf16", ["plan", "{d}/s.md"], "problem", "s.md", {"s.md": SEED_MD.encode("utf-16")}),
    bad("plan-md-binary", ["plan", "{d}/s.md"], "problem", "s.md", {"s.md": BINARY}),
    # ---- Hugging Face config.json with --model PATH --------------------------------------------
    bad("plan-hf-list", ["plan", *HF], ("model", "config.json"), "cfg.json",
        {"cfg.json": json.dumps([json.loads(hf_config())])}),
    bad("plan-hf-hidden-size-string", ["plan", *HF], "hidden_size", "big", {"cfg.json": hf_config(hidden_size="big")}),
    bad("plan-hf-hidden-size-null", ["plan", *HF], "hidden_size", None, {"cfg.json": hf_config(hidden_size=None)}),
    bad("plan-hf-hidden-size-nan", ["plan", *HF], "hidden_size", ("NaN", "nan"),
        {"cfg.json": hf_raw(hidden_size="NaN")}),
    bad("plan-hf-missing-layers", ["plan", *HF], "num_hidden_layers", None,
        {"cfg.json": hf_config(drop=("num_hidden_layers",))}),
    bad("plan-hf-layers-1e9", ["plan", *HF], "num_hidden_layers", ("1e9", "1e+09", "1000000000"),
        {"cfg.json": hf_raw(num_hidden_layers="1e9")}),
    bad("plan-hf-layers-fraction", ["plan", *HF], "num_hidden_layers", "1.7",
        {"cfg.json": hf_config(num_hidden_layers=1.7)}),
    bad("plan-hf-layers-true", ["plan", *HF], "num_hidden_layers", "true",
        {"cfg.json": hf_raw(num_hidden_layers="true")}),
    bad("plan-hf-heads-zero", ["plan", *HF], "num_attention_heads", "0",
        {"cfg.json": hf_config(num_attention_heads=0)}),
    bad("plan-hf-kv-heads-not-divisor", ["plan", *HF], ("num_key_value_heads", "num_kv_heads"), "3",
        {"cfg.json": hf_config(num_key_value_heads=3)}),
    bad("plan-hf-vocab-negative", ["plan", *HF], "vocab_size", "-5", {"cfg.json": hf_config(vocab_size=-5)}),
    bad("plan-hf-intermediate-negative", ["plan", *HF], "intermediate_size", "-1",
        {"cfg.json": hf_config(intermediate_size=-1)}),
    bad("plan-hf-model-type-unknown", ["plan", *HF], "model_type", "bert", {"cfg.json": hf_config(model_type="bert")}),
    bad("plan-hf-moe-top-k-zero", ["plan", *HF], ("num_experts_per_tok", "top_k"), "0",
        {"cfg.json": hf_config("mistralai--Mixtral-8x7B-v0.1", num_experts_per_tok=0)}),
    bad("plan-hf-moe-experts-string", ["plan", *HF], "num_local_experts", "eight",
        {"cfg.json": hf_config("mistralai--Mixtral-8x7B-v0.1", num_local_experts="eight")}),
    bad("plan-hf-empty-file", ["plan", *HF], "model", "cfg.json", {"cfg.json": ""}),
    bad("plan-hf-binary", ["plan", *HF], "model", "cfg.json", {"cfg.json": BINARY}),
    bad("plan-hf-utf16", ["plan", *HF], "model", "cfg.json", {"cfg.json": hf_config().encode("utf-16")}),
    bad("plan-hf-directory", ["plan", *HF], "model", "cfg.json", {"cfg.json": DIR}),
    bad("plan-hf-missing-folder", ["plan", *flags(model="{d}/nofolder/config.json")], "model", "nofolder"),
    bad("plan-hf-unreadable", ["plan", *HF], "model", "cfg.json", {"cfg.json": UNREADABLE}),
    bad("evaluate-hf-hidden-size-string", ["evaluate", *HF, *RUN], "hidden_size", "big",
        {"cfg.json": hf_config(hidden_size="big")}),
    bad("plan-yaml-model-path-hf-list", ["plan", P], ("model", "config.json"), "cfg.json",
        {"p.yaml": yaml_problem(model="{d}/cfg.json"), "cfg.json": "[]\n"}),
    # ---- numeric and contradictory flags -------------------------------------------------------
    bad("plan-flag-isl-inf", ["plan", *flags(isl="inf")], "isl", "inf"),
    bad("plan-flag-isl-nan", ["plan", *flags(isl="nan")], "isl", "nan"),
    bad("plan-flag-isl-word", ["plan", *flags(isl="long")], "--isl", "long"),
    bad("plan-flag-osl-negative", ["plan", *flags(osl="-1")], "osl", "-1"),
    bad("plan-flag-gpus-zero", ["plan", *flags(gpus="0")], "gpus", "0"),
    bad("plan-flag-concurrency-negative", ["plan", *flags(concurrency="-1")], "concurrency", "-1"),
    bad("plan-flag-min-tok-s-per-gpu-inf", ["plan", *flags(min_tok_s_per_gpu="inf")], "min-tok-s-per-gpu", "inf"),
    bad("plan-flag-ttft-nan", ["plan", *flags(ttft="nan")], "ttft", "nan"),
    bad("plan-flag-tpot-inf", ["plan", *flags(tpot="inf")], "tpot", "inf"),
    bad("plan-flag-request-rate-inf", ["plan", *flags(request_rate="inf")], "request", "inf"),
    bad("plan-flag-top-k-zero", ["plan", *flags(top_k="0")], "top-k", "0"),
    bad("plan-flag-top-k-on-dense", ["plan", *flags(model="llama-3.1-8b", top_k="4")], "top-k", "4"),
    bad("plan-flag-top-k-above-experts", ["plan", *flags(top_k="500")], "top", "500"),
    bad("plan-flag-serving-with-prefill", ["plan", *flags(serving="disaggregated", phase="prefill")],
        ("--serving", "--phase"), None),
    bad("plan-flag-ttft-with-decode", ["plan", *flags(ttft="1", phase="decode")], ("--ttft", "--phase"), None),
    bad("plan-flag-tpot-with-prefill", ["plan", *flags(tpot="0.05", phase="prefill")], ("--tpot", "--phase"), None),
    bad("plan-flag-phase-unknown", ["plan", *flags(phase="sideways")], "--phase", "sideways"),
    bad("plan-flag-weights-unknown", ["plan", *flags(weights="fp7")], "weights", "fp7"),
    bad("plan-flag-kv-cache-unknown", ["plan", *flags(kv_cache="int3")], "kv", "int3"),
    bad("plan-flag-engine-unknown", ["plan", *flags(engine="tgi")], "engine", "tgi"),
    bad("plan-flag-engine-version-alone", ["plan", *flags(engine_version="0.5.9")], "--engine", "0.5.9"),
    bad("plan-flag-gpu-unknown", ["plan", *flags(gpu="h999")], "gpu", "h999"),
    bad("plan-flag-model-empty", ["plan", *flags(model="")], "model", "''"),
    bad("plan-flag-calibration-missing", ["plan", *flags(calibration="{d}/nothere.yaml")],
        "calibration", "nothere.yaml"),
    bad("plan-flag-calibration-binary", ["plan", *flags(calibration="{d}/c.yaml")], "calibration", "c.yaml",
        {"c.yaml": BINARY}),
    bad("plan-flag-calibration-list", ["plan", *flags(calibration="{d}/c.yaml")], "calibration", "c.yaml",
        {"c.yaml": "[1, 2]\n"}),
    bad("plan-flag-objective-min-gpus-without-target", ["plan", *flags(objective="min-gpus")], "objective", "min-gpus"),
    bad("evaluate-flag-gpus-zero", ["evaluate", *flags(gpus="0"), *RUN], "gpus", "0"),
    bad("evaluate-flag-isl-inf", ["evaluate", *flags(isl="inf"), *RUN], "isl", "inf"),
    bad("evaluate-flag-prefill-without-decode", ["evaluate", *flags(), "--prefill", "tp=1"], "--decode", None),
    # ---- output paths --------------------------------------------------------------------------
    bad("plan-json-out-missing-folder", ["plan", *flags(), "--json", "{d}/nofolder/plan.json"], "--json", "nofolder"),
    bad("plan-json-out-directory", ["plan", *flags(), "--json", "{d}/outdir"], "--json", "outdir", {"outdir": DIR}),
    bad("plan-markdown-out-missing-folder", ["plan", *flags(), "--markdown", "{d}/nofolder/plan.md"], "--markdown",
        "nofolder"),
    bad("evaluate-json-out-directory", ["evaluate", *flags(), *RUN, "--json", "{d}/outdir"], "--json", "outdir",
        {"outdir": DIR}),
    bad("evaluate-markdown-out-missing-folder", ["evaluate", *flags(), *RUN, "--markdown", "{d}/nofolder/e.md"],
        "--markdown", "nofolder"),
    bad("dag-out-is-a-file", ["dag", *flags(), *RUN, "--format", "dot", "--out", "{d}/taken"], "--out", "taken",
        {"taken": "not a folder\n"}),
    bad("export-out-is-a-file", ["export", *flags(), *RUN, "--engine", "vllm", "--out", "{d}/taken"], "--out", "taken",
        {"taken": "not a folder\n"}),
    bad("validate-json-out-missing-folder", ["validate", "{d}/c.csv", "--json", "{d}/nofolder/v.json"], "--json",
        "nofolder", {"c.csv": silicon_csv({})}),
    # ---- strategy strings ----------------------------------------------------------------------
    bad("evaluate-strategy-tp-zero", ["evaluate", *flags(), "--strategy", "tp=0"], "strategy", "tp=0"),
    bad("evaluate-strategy-unknown-axis", ["evaluate", *flags(), "--strategy", "xp=2"], "strategy", "xp=2"),
    bad("evaluate-strategy-not-key-value", ["evaluate", *flags(), "--strategy", "tp four"], "strategy", "tp four"),
    bad("evaluate-strategy-axis-twice", ["evaluate", *flags(), "--strategy", "tp=2,tp=4"], "strategy", "tp=2,tp=4"),
    bad("evaluate-strategy-fraction", ["evaluate", *flags(), "--strategy", "tp=1.5"], "strategy", "1.5"),
    bad("evaluate-strategy-superscript-digit", ["evaluate", *flags(), "--strategy", "tp=\u00b2"], "strategy", "\u00b2"),
    bad("evaluate-strategy-huge", ["evaluate", *flags(gpus=None), "--strategy", "dp=99999999999999999999"], "strategy",
        "99999999999999999999"),
    bad("evaluate-strategy-experts-not-divisible", ["evaluate", *flags(), "--strategy", "ep=3"], "strategy", "ep=3"),
    bad("evaluate-strategy-with-prefill", ["evaluate", *flags(), "--strategy", "tp=1", "--prefill", "tp=1",
                                           "--decode", "tp=1"], "--strategy", "tp=1"),
    bad("evaluate-decode-strategy-zero", ["evaluate", *flags(), "--prefill", "tp=1", "--decode", "tp=0"], "decode",
        "tp=0"),
    bad("evaluate-yaml-strategy-zero", ["evaluate", P], "strategy", "pp=0", {"p.yaml": yaml_problem(strategy="pp=0")}),
    bad("dag-strategy-zero", ["dag", *flags(), "--strategy", "tp=0", "--format", "dot", "--out", "{d}/o"], "strategy",
        "tp=0"),
    bad("export-strategy-word", ["export", *flags(), "--strategy", "tp=abc", "--engine", "vllm", "--out", "{d}/o"],
        "strategy", "abc"),
    bad("run-strategy-zero", ["run", *flags(isl="16", osl="8"), "--strategy", "pp=0"], "strategy", "pp=0"),
    bad("lint-dag-strategy-negative", ["lint-dag", "{d}/g.dot", "--strategy", "tp=-1"], "strategy", "-1",
        {"g.dot": DOT_OK}),
    # ---- dag and export ------------------------------------------------------------------------
    bad("dag-format-unknown", ["dag", *flags(), *RUN, "--format", "pdf", "--out", "{d}/o"], "--format", "pdf"),
    bad("dag-format-empty", ["dag", *flags(), *RUN, "--format", ",", "--out", "{d}/o"], "--format", None),
    bad("dag-phase-not-planned", ["dag", *flags(phase="decode"), *RUN, "--dag-phase", "prefill", "--format", "dot",
                                  "--out", "{d}/o"], "--dag-phase", "prefill"),
    bad("dag-problem-binary", ["dag", "{d}/p.yaml", *RUN, "--format", "dot", "--out", "{d}/o"], "problem", "p.yaml",
        {"p.yaml": BINARY}),
    bad("export-engine-unknown", ["export", *flags(), *RUN, "--engine", "tgi", "--out", "{d}/o"], "--engine", "tgi"),
    bad("export-problem-utf16", ["export", "{d}/p.yaml", *RUN, "--engine", "vllm", "--out", "{d}/o"], "problem",
        "p.yaml", {"p.yaml": UTF16_PROBLEM}),
    # ---- plan JSON files (dag, export, run, lint-dag --plan, check) ----------------------------
    bad("dag-planjson-problem-spec-empty", ["dag", "{d}/plan.json", "--format", "dot", "--out", "{d}/o"],
        "problem_spec", None, {"plan.json": plan_json(_set("problem_spec", {}))}),
    bad("dag-planjson-phases-empty", ["dag", "{d}/plan.json", "--format", "dot", "--out", "{d}/o"], "phases", None,
        {"plan.json": plan_json(_set("phases", {}))}),
    bad("dag-planjson-phases-missing", ["dag", "{d}/plan.json", "--format", "dot", "--out", "{d}/o"], "phases", None,
        {"plan.json": plan_json(_del("phases"))}),
    bad("dag-planjson-batch-word", ["dag", "{d}/plan.json", "--format", "dot", "--out", "{d}/o"],
        "batch_per_attention_dp_rank", "many",
        {"plan.json": plan_json(_set("phases.decode.batch_per_attention_dp_rank", "many"))}),
    # Problem flags beside a plan JSON would be ignored: refused, naming the flag.
    bad("dag-planjson-with-isl", ["dag", "{d}/plan.json", "--isl", "999", "--out", "{d}/o"], "--isl", "999",
        {"plan.json": plan_json(lambda d: None)}),
    bad("export-planjson-with-gpus", ["export", "{d}/plan.json", "--engine", "vllm", "--gpus", "9", "--out", "{d}/o"],
        "--gpus", "9", {"plan.json": plan_json(lambda d: None)}),
    bad("simulate-planjson-with-concurrency", ["simulate", "{d}/plan.json", "--concurrency", "8"], "--concurrency", "8",
        {"plan.json": plan_json(lambda d: None)}),
    bad("report-planjson-with-ttft", ["report", "{d}/plan.json", "--html", "{d}/r.html", "--ttft", "1"], "--ttft", "1",
        {"plan.json": plan_json(lambda d: None)}),
    bad("export-planjson-mode-unknown", ["export", "{d}/plan.json", "--engine", "vllm", "--out", "{d}/o"], "mode",
        "sideways", {"plan.json": plan_json(_set("mode", "sideways"))}),
    bad("export-planjson-isl-negative", ["export", "{d}/plan.json", "--engine", "vllm", "--out", "{d}/o"], "isl", "-1",
        {"plan.json": plan_json(_set("problem_spec.workload.isl_tokens", -1))}),
    bad("run-planjson-strategy-zero", ["run", "{d}/plan.json"], "strategy", "tp=0",
        {"plan.json": plan_json(_set("phases.decode.strategy.string", "tp=0"))}),
    bad("run-planjson-problem-spec-list", ["run", "{d}/plan.json"], "problem_spec", None,
        {"plan.json": plan_json(_set("problem_spec", [1, 2]))}),
    bad("lint-dag-planjson-phases-missing", ["lint-dag", "{d}/g.dot", "--plan", "{d}/plan.json"], "phases", None,
        {"g.dot": DOT_OK, "plan.json": plan_json(_del("phases"))}),
    bad("check-planjson-gpus-total-word", ["check", "{d}/plan.json"], "gpus_total", "many",
        {"plan.json": plan_json(_set("gpus_total", "many"))}),
    bad("check-planjson-ttft-word", ["check", "{d}/plan.json"], "ttft_s", "fast",
        {"plan.json": plan_json(_set("ttft_s", "fast"))}),
    bad("check-planjson-problem-spec-bad", ["check", "{d}/plan.json"], "problem_spec", None,
        {"plan.json": plan_json(_set("problem_spec.workload", 5))}),
    bad("check-planjson-strategy-missing", ["check", "{d}/plan.json"], "strategy", None,
        {"plan.json": plan_json(_del("phases.decode.strategy"))}),
    bad("check-planjson-memory-word", ["check", "{d}/plan.json"], "memory_per_gpu", "lots",
        {"plan.json": plan_json(_set("memory_per_gpu_bytes.total", "lots"))}),
    bad("check-plan-yaml-list", ["check", "{d}/x.yaml"], ("PLAN", "x.yaml"), "x.yaml", {"x.yaml": "- 1\n- 2\n"}),
    # ---- check: plans in Markdown, the file itself ---------------------------------------------
    bad("check-md-plan-tp-zero", ["check", "{d}/plan.md"], "tp", "0",
        {"plan.md": "# Deployment Plan\n\n**Parallel Configuration: DP=1, PP=1, TP=0, EP=16**\n"}),
    bad("check-md-plan-no-layout", ["check", "{d}/plan.md"], ("PLAN", "plan.md"), None,
        {"plan.md": "# Deployment Plan\n\nUse all the GPUs.\n"}),
    bad("check-md-binary", ["check", "{d}/plan.md"], "PLAN", "plan.md", {"plan.md": BINARY}),
    bad("check-md-utf16", ["check", "{d}/plan.md"], "PLAN", "plan.md",
        {"plan.md": "# Deployment Plan\n\nDP=1, PP=1, TP=1, EP=16\n".encode("utf-16")}),
    bad("check-plan-directory", ["check", "{d}/plans"], "PLAN", "plans", {"plans": DIR}),
    bad("check-plan-unreadable", ["check", "{d}/plan.md"], "PLAN", "plan.md", {"plan.md": UNREADABLE}),
    bad("check-problem-missing", ["check", "{d}/plan.md", "--problem", "{d}/nothere.md"], "problem", "nothere.md",
        {"plan.md": "# Deployment Plan\n\nDP=1, PP=1, TP=1, EP=16\n"}),
    bad("check-tolerance-nan", ["check", "{d}/plan.md", "--tolerance", "nan"], "--tolerance", "nan",
        {"plan.md": "# Deployment Plan\n\nDP=1, PP=1, TP=1, EP=16\n"}),
    bad("check-tolerance-negative", ["check", "{d}/plan.md", "--tolerance", "-1"], "--tolerance", "-1",
        {"plan.md": "# Deployment Plan\n\nDP=1, PP=1, TP=1, EP=16\n"}),
    bad("check-nothing-to-check", ["check"], "PLAN", None),
    # ---- check: engine command lines -----------------------------------------------------------
    bad("check-vllm-max-num-seqs-negative", [*VLLM_CHECK, "vllm serve Qwen/Qwen3-30B-A3B -tp 2 --max-num-seqs -5"],
        "--max-num-seqs", "-5"),
    bad("check-vllm-kv-cache-dtype-unknown", [*VLLM_CHECK, "vllm serve Qwen/Qwen3-30B-A3B -tp 2 --kv-cache-dtype fp3"],
        "--kv-cache-dtype", "fp3"),
    bad("check-vllm-tp-word", [*VLLM_CHECK, "vllm serve Qwen/Qwen3-30B-A3B -tp two"], "-tp", "two"),
    bad("check-vllm-tp-zero", [*VLLM_CHECK, "vllm serve Qwen/Qwen3-30B-A3B -tp 0"], "-tp", "0"),
    bad("check-vllm-memory-utilization-above-1",
        [*VLLM_CHECK, "vllm serve Qwen/Qwen3-30B-A3B --gpu-memory-utilization 1.5"], "--gpu-memory-utilization", "1.5"),
    bad("check-vllm-memory-utilization-word",
        [*VLLM_CHECK, "vllm serve Qwen/Qwen3-30B-A3B --gpu-memory-utilization most"], "--gpu-memory-utilization",
        "most"),
    bad("check-vllm-max-model-len-zero", [*VLLM_CHECK, "vllm serve Qwen/Qwen3-30B-A3B --max-model-len 0"],
        "--max-model-len", "0"),
    bad("check-vllm-unbalanced-quote", [*VLLM_CHECK, "vllm serve 'Qwen/Qwen3-30B-A3B -tp 2"], "--vllm", None),
    bad("check-vllm-no-model", [*VLLM_CHECK, "vllm serve -tp 2"], "model", None),
    bad("check-vllm-no-gpu", ["check", "--isl", "1024", "--osl", "256", "--vllm", "vllm serve Qwen/Qwen3-30B-A3B"],
        "--gpu", None),
    bad("check-vllm-unknown-model", [*VLLM_CHECK, "vllm serve acme/NotAModel-7B"], "model", "acme/NotAModel-7B"),
    bad("check-vllm-isl-inf", ["check", "--gpu", "h100-sxm", "--isl", "inf", "--osl", "256", "--vllm",
                               "vllm serve Qwen/Qwen3-30B-A3B"], "--isl", "inf"),
    bad("check-vllm-and-plan", [*VLLM_CHECK, "vllm serve Qwen/Qwen3-30B-A3B", "{d}/plan.md"], "PLAN", None,
        {"plan.md": "# Deployment Plan\n\nDP=1, PP=1, TP=1, EP=16\n"}),
    bad("check-sglang-ep-zero", [*SGLANG_CHECK, SGL + "--tp 2 --ep-size 0"], "--ep-size", "0"),
    bad("check-sglang-tp-zero", [*SGLANG_CHECK, SGL + "--tp 0"], "--tp", "0"),
    bad("check-sglang-mem-fraction-word", [*SGLANG_CHECK, SGL + "--tp 2 --mem-fraction-static half"],
        "--mem-fraction-static", "half"),
    bad("check-sglang-max-running-negative", [*SGLANG_CHECK, SGL + "--tp 2 --max-running-requests -3"],
        "--max-running-requests", "-3"),
    bad("check-sglang-kv-cache-dtype-unknown", [*SGLANG_CHECK, SGL + "--tp 2 --kv-cache-dtype int2"],
        "--kv-cache-dtype", "int2"),
    bad("check-trtllm-tp-word", TRTLLM_CHECK, "tensor_parallel_size", "eight",
        {"t.yaml": "tensor_parallel_size: eight\n"}),
    bad("check-trtllm-list", TRTLLM_CHECK, "--trtllm", "t.yaml", {"t.yaml": "- tensor_parallel_size: 2\n"}),
    bad("check-trtllm-moe-ep-zero", TRTLLM_CHECK, "moe_expert_parallel_size", "0",
        {"t.yaml": "tensor_parallel_size: 2\nmoe_expert_parallel_size: 0\n"}),
    bad("check-trtllm-pp-fraction", TRTLLM_CHECK, "pipeline_parallel_size", "1.5",
        {"t.yaml": TRT_OK + "pipeline_parallel_size: 1.5\n"}),
    bad("check-trtllm-max-batch-negative", TRTLLM_CHECK, "max_batch_size", "-4",
        {"t.yaml": "tensor_parallel_size: 2\nmoe_expert_parallel_size: 2\nmax_batch_size: -4\n"}),
    bad("check-trtllm-kv-config-int", TRTLLM_CHECK, "kv_cache_config", "5",
        {"t.yaml": TRT_OK + "kv_cache_config: 5\n"}),
    bad("check-trtllm-kv-dtype-unknown", TRTLLM_CHECK, "dtype", "fp3",
        {"t.yaml": TRT_OK + "kv_cache_config: {dtype: fp3}\n"}),
    bad("check-trtllm-memory-fraction-word", TRTLLM_CHECK, "free_gpu_memory_fraction", "most",
        {"t.yaml": TRT_OK + "kv_cache_config: {free_gpu_memory_fraction: most}\n"}),
    bad("check-trtllm-binary", TRTLLM_CHECK, "--trtllm", "t.yaml", {"t.yaml": BINARY}),
    bad("check-trtllm-missing", TRTLLM_CHECK, "--trtllm", "t.yaml"),
    bad("check-trtllm-directory", TRTLLM_CHECK, "--trtllm", "t.yaml", {"t.yaml": DIR}),
    # ---- lint-dag: DOT files and plans ---------------------------------------------------------
    bad("lint-dag-dot-syntax", ["lint-dag", "{d}/g.dot", *LINT], "dot", "g.dot", {"g.dot": "digraph g { a -> ;\n"}),
    bad("lint-dag-dot-empty", ["lint-dag", "{d}/g.dot", *LINT], "dot", "g.dot", {"g.dot": ""}),
    bad("lint-dag-dot-binary", ["lint-dag", "{d}/g.dot", *LINT], "dot", "g.dot", {"g.dot": BINARY}),
    bad("lint-dag-dot-utf16", ["lint-dag", "{d}/g.dot", *LINT], "dot", "g.dot", {"g.dot": DOT_OK.encode("utf-16")}),
    bad("lint-dag-dot-directory", ["lint-dag", "{d}/g.dot", *LINT], "dot", "g.dot", {"g.dot": DIR}),
    bad("lint-dag-dot-missing", ["lint-dag", "{d}/nothere.dot", *LINT], "dot", "nothere.dot"),
    bad("lint-dag-dot-unreadable", ["lint-dag", "{d}/g.dot", *LINT], "dot", "g.dot", {"g.dot": UNREADABLE}),
    bad("lint-dag-no-strategy", ["lint-dag", "{d}/g.dot"], "--strategy", None, {"g.dot": DOT_OK}),
    bad("lint-dag-plan-md-not-a-plan", ["lint-dag", "{d}/g.dot", "--plan", "{d}/problem.md"], "--plan", "problem.md",
        {"g.dot": DOT_OK, "problem.md": SEED_MD}),
    bad("lint-dag-plan-json-missing", ["lint-dag", "{d}/g.dot", "--plan", "{d}/nothere.json"], "--plan", "nothere.json",
        {"g.dot": DOT_OK}),
    bad("lint-dag-plan-txt", ["lint-dag", "{d}/g.dot", "--plan", "{d}/plan.txt"], "--plan", "plan.txt",
        {"g.dot": DOT_OK, "plan.txt": "tp=1\n"}),
    bad("lint-dag-plan-json-not-json", ["lint-dag", "{d}/g.dot", "--plan", "{d}/plan.json"], "--plan", "plan.json",
        {"g.dot": DOT_OK, "plan.json": "{not json\n"}),
    bad("lint-dag-problem-missing", ["lint-dag", "{d}/g.dot", "--problem", "{d}/nothere.yaml", *LINT], "problem",
        "nothere.yaml", {"g.dot": DOT_OK}),
    bad("lint-dag-problem-binary", ["lint-dag", "{d}/g.dot", "--problem", P, *LINT], "problem", "p.yaml",
        {"g.dot": DOT_OK, "p.yaml": BINARY}),
    # ---- validate: silicon CSV and published-cases YAML ----------------------------------------
    bad("validate-csv-missing-columns", ["validate", "{d}/c.csv"], "cases", "c.csv",
        {"c.csv": "id,backend\nr1,vllm\n"}),
    bad("validate-csv-empty", ["validate", "{d}/c.csv"], "cases", "c.csv", {"c.csv": ""}),
    bad("validate-csv-header-only", ["validate", "{d}/c.csv"], "cases", "c.csv",
        {"c.csv": ",".join(CSV_COLUMNS) + "\n"}),
    bad("validate-csv-duplicate-column", ["validate", "{d}/c.csv"], "isl", None,
        {"c.csv": silicon_csv({}, columns=CSV_COLUMNS + ["isl"])}),
    bad("validate-csv-binary", ["validate", "{d}/c.csv"], "cases", "c.csv", {"c.csv": BINARY}),
    bad("validate-csv-utf16", ["validate", "{d}/c.csv"], "cases", "c.csv", {"c.csv": silicon_csv({}).encode("utf-16")}),
    bad("validate-csv-directory", ["validate", "{d}/c.csv"], "cases", "c.csv", {"c.csv": DIR}),
    bad("validate-csv-missing", ["validate", "{d}/nothere.csv"], "cases", "nothere.csv"),
    bad("validate-csv-unreadable", ["validate", "{d}/c.csv"], "cases", "c.csv", {"c.csv": UNREADABLE}),
    bad("validate-cases-yaml-list", ["validate", "{d}/cases.yaml"], "cases", "cases.yaml",
        {"cases.yaml": "- 1\n- 2\n"}),
    bad("validate-cases-yaml-cases-int", ["validate", "{d}/cases.yaml"], "cases", "5", {"cases.yaml": "cases: 5\n"}),
    bad("validate-cases-yaml-binary", ["validate", "{d}/cases.yaml"], "cases", "cases.yaml", {"cases.yaml": BINARY}),
    bad("validate-cases-yaml-case-without-id", ["validate", "{d}/cases.yaml"], "id", None,
        {"cases.yaml": "cases:\n  - model: mixtral-8x7b\n    gpu: h100-sxm\n"}),
    bad("validate-calibration-missing", ["validate", "{d}/c.csv", "--calibration", "{d}/nothere.yaml"], "calibration",
        "nothere.yaml", {"c.csv": silicon_csv({})}),
    # ---- calibrate: bad CSV files (fail before any fit) ----------------------------------------
    bad("calibrate-csv-missing", ["calibrate", "{d}/nothere.csv", *CAL_OUT], "cases", "nothere.csv"),
    bad("calibrate-csv-missing-folder", ["calibrate", "{d}/nofolder/c.csv", *CAL_OUT], "cases", "nofolder"),
    bad("calibrate-csv-empty", ["calibrate", "{d}/c.csv", *CAL_OUT], "cases", "c.csv", {"c.csv": ""}),
    bad("calibrate-csv-header-only", ["calibrate", "{d}/c.csv", *CAL_OUT], "cases", "c.csv",
        {"c.csv": ",".join(CSV_COLUMNS) + "\n"}),
    bad("calibrate-csv-missing-columns", ["calibrate", "{d}/c.csv", *CAL_OUT], "cases", "c.csv",
        {"c.csv": "id,backend,model_path\nr1,vllm,Qwen/Qwen3-30B-A3B\n"}),
    bad("calibrate-csv-no-predictable-row", ["calibrate", "{d}/c.csv", *CAL_OUT], "cases", "c.csv",
        {"c.csv": silicon_csv({"model_path": "acme/NotAModel-7B"}, {"id": "r2", "silicon_ttft_ms": "-3"})}),
    bad("calibrate-csv-binary", ["calibrate", "{d}/c.csv", *CAL_OUT], "cases", "c.csv", {"c.csv": BINARY}),
    bad("calibrate-csv-utf16", ["calibrate", "{d}/c.csv", *CAL_OUT], "cases", "c.csv",
        {"c.csv": silicon_csv({}).encode("utf-16")}),
    bad("calibrate-csv-nul-bytes", ["calibrate", "{d}/c.csv", *CAL_OUT], "cases", "c.csv",
        {"c.csv": silicon_csv({}).replace("vllm", "vl\0lm")}),
    bad("calibrate-csv-directory", ["calibrate", "{d}/c.csv", *CAL_OUT], "cases", "c.csv", {"c.csv": DIR}),
    bad("calibrate-csv-unreadable", ["calibrate", "{d}/c.csv", *CAL_OUT], "cases", "c.csv", {"c.csv": UNREADABLE}),
    bad("calibrate-csv-yaml-instead", ["calibrate", "{d}/cases.yaml", *CAL_OUT], "cases", "cases.yaml",
        {"cases.yaml": "cases: []\n"}),
    # ---- calibrate --sim-fit: the benchmark factors only, each fitted one way --------------------
    bad("calibrate-sim-fit-step-factor", ["calibrate", SAMPLE_CSV, *CAL_OUT, "--sim-fit", "kernel_floor_scale"],
        "--sim-fit", "kernel_floor_scale"),
    bad("calibrate-sim-fit-unknown", ["calibrate", SAMPLE_CSV, *CAL_OUT, "--sim-fit", "requests"], "--sim-fit",
        "requests"),
    bad("calibrate-sim-fit-empty", ["calibrate", SAMPLE_CSV, *CAL_OUT, "--sim-fit", ""], "--sim-fit"),
    bad("calibrate-sim-fit-twice", ["calibrate", SAMPLE_CSV, *CAL_OUT, "--sim-fit", "client_overhead_s,client_overhead_s"],
        "--sim-fit", "client_overhead_s,client_overhead_s"),
    bad("calibrate-sim-fit-also-fitted", ["calibrate", SAMPLE_CSV, *CAL_OUT, "--fit", "client_overhead_s", "--sim-fit",
                                          "client_overhead_s"], "--fit", "client_overhead_s"),
    bad("calibrate-sim-fit-folds", ["calibrate", SAMPLE_CSV, *CAL_OUT, "--sim-fit", "client_overhead_s", "--folds", "5"],
        "--folds", "5"),
    bad("calibrate-sim-fit-by", ["calibrate", SAMPLE_CSV, *CAL_OUT, "--sim-fit", "client_overhead_s", "--by", "gpu"],
        "--by", "gpu"),
    bad("calibrate-sim-fit-microbench", ["calibrate", "--microbench", *CAL_OUT, "--sim-fit", "client_overhead_s"],
        "--sim-fit", "given"),
    # ---- run: argument validation only (workers never start) -----------------------------------
    bad("run-requests-zero", ["run", *flags(isl="16", osl="8"), *RUN, "--requests", "0"], "--requests", "0"),
    bad("run-requests-huge", ["run", *flags(isl="16", osl="8"), *RUN, "--requests", "99999999999999999999"],
        "--requests", "99999999999999999999"),
    bad("run-timeout-nan", ["run", *flags(isl="16", osl="8"), *RUN, "--timeout", "nan"], "--timeout", "nan"),
    bad("run-timeout-negative", ["run", *flags(isl="16", osl="8"), *RUN, "--timeout", "-1"], "--timeout", "-1"),
    bad("run-run-isl-zero", ["run", *flags(isl="16", osl="8"), *RUN, "--run-isl", "0"], "--run-isl", "0"),
    bad("run-max-processes-zero", ["run", *flags(isl="16", osl="8"), *RUN, "--max-processes", "0"],
        "--max-processes", "0"),
    bad("run-seed-huge", ["run", *flags(isl="16", osl="8"), *RUN, "--seed", "99999999999999999999"], "--seed",
        "99999999999999999999"),
    bad("run-dtype-unknown", ["run", *flags(isl="16", osl="8"), *RUN, "--dtype", "float16"], "--dtype", "float16"),
    bad("run-scale-unknown", ["run", *flags(isl="16", osl="8"), *RUN, "--scale", "huge"], "--scale", "huge"),
    bad("run-problem-missing", ["run", "{d}/nothere.yaml", *RUN], "problem", "nothere.yaml"),
    bad("run-problem-utf16", ["run", P, *RUN], "problem", "p.yaml", {"p.yaml": UTF16_PROBLEM}),
    bad("run-gpus-zero", ["run", *flags(gpus="0", isl="16", osl="8"), *RUN], "gpus", "0"),
    # ---- simulate ------------------------------------------------------------------------------
    bad("plan-ttft-p99-negative", ["plan", *flags(concurrency="4"), "--ttft-p99", "-1"], "--ttft-p99", "-1"),
    bad("plan-tpot-p99-nan", ["plan", *flags(concurrency="4"), "--tpot-p99", "nan"], "--tpot-p99", "nan"),
    bad("simulate-requests-zero", ["simulate", *flags(concurrency="4"), *RUN, "--requests", "0"], "--requests", "0"),
    bad("simulate-requests-huge", ["simulate", *flags(concurrency="4"), *RUN, "--requests", "99999999"],
        "--requests", "99999999"),
    bad("simulate-no-arrivals", ["simulate", *flags(concurrency=None), *RUN], "--concurrency", None),
    bad("simulate-seed-negative", ["simulate", *flags(concurrency="4"), *RUN, "--seed", "-1"], "--seed", "-1"),
    bad("simulate-length-cv-nan", ["simulate", *flags(concurrency="4"), *RUN, "--lengths", "lognormal",
                                   "--length-cv", "nan"], "--length-cv", "nan"),
    bad("simulate-prefill-phase", ["simulate", *flags(concurrency="4"), *RUN, "--phase", "prefill"], "phase",
        "prefill"),
    bad("simulate-trace-missing", ["simulate", *flags(), *RUN, "--trace", "{d}/t.csv"], "--trace", "t.csv"),
    bad("simulate-trace-no-header", ["simulate", *flags(), *RUN, "--trace", "{d}/t.csv"], "--trace",
        None, {"t.csv": "0,100,10\n1,100,10\n"}),
    bad("simulate-trace-negative-time", ["simulate", *flags(), *RUN, "--trace", "{d}/t.csv"], "arrival_s", "-1",
        {"t.csv": "arrival_s,input_tokens,output_tokens\n-1,100,10\n"}),
    bad("simulate-trace-fraction-tokens", ["simulate", *flags(), *RUN, "--trace", "{d}/t.jsonl"], "input_tokens",
        "1.5", {"t.jsonl": '{"arrival_s": 0, "input_tokens": 1.5, "output_tokens": 3}\n'}),
    bad("simulate-trace-bad-json", ["simulate", *flags(), *RUN, "--trace", "{d}/t.jsonl"], "line 1", None,
        {"t.jsonl": '{"arrival_s": 0,\n'}),
    bad("simulate-trace-extra-column", ["simulate", *flags(), *RUN, "--trace", "{d}/t.csv"], "--trace", "user",
        {"t.csv": "arrival_s,input_tokens,output_tokens,user\n0,100,10,a\n"}),
    bad("simulate-trace-long-row", ["simulate", *flags(), *RUN, "--trace", "{d}/t.csv"], "request 2", None,
        {"t.csv": "arrival_s,input_tokens,output_tokens\n0,100,10\n1,100,10,7\n"}),
    bad("simulate-trace-short-row", ["simulate", *flags(), *RUN, "--trace", "{d}/t.csv"], "request 1", None,
        {"t.csv": "arrival_s,input_tokens,output_tokens\n0,100\n"}),
    bad("simulate-trace-extra-key", ["simulate", *flags(), *RUN, "--trace", "{d}/t.jsonl"], "request 1", "id",
        {"t.jsonl": '{"arrival_s": 0, "input_tokens": 10, "output_tokens": 3, "id": 7}\n'}),
    bad("simulate-trace-json-array", ["simulate", *flags(), *RUN, "--trace", "{d}/t.jsonl"], "line 1", None,
        {"t.jsonl": '[0, 10, 3]\n'}),
    bad("simulate-trace-prompt-too-long", ["simulate", *flags(), *RUN, "--trace", "{d}/t.csv"], "--trace",
        "1000000000", {"t.csv": "arrival_s,input_tokens,output_tokens\n0,1000000000,10\n"}),
    bad("simulate-plot-suffix", ["simulate", *flags(concurrency="4"), *RUN, "--plot", "{d}/p.gif"], "--plot",
        "p.gif"),
    bad("simulate-trace-out-folder", ["simulate", *flags(concurrency="4"), *RUN, "--trace-out", "{d}"],
        "--trace-out", None),
    # ---- models, gpus, the group ---------------------------------------------------------------
    bad("models-extra-argument", ["models", "deepseek-v3"], "argument", "deepseek-v3"),
    bad("models-unknown-option", ["models", "--yaml"], "--yaml", None),
    bad("gpus-extra-argument", ["gpus", "h100"], "argument", "h100"),
    bad("gpus-unknown-option", ["gpus", "--all"], "--all", None),
    bad("main-unknown-command", ["planz"], "command", "planz"),
]

# ---------------------------------------------------------------------------------------------
# Running one row
# ---------------------------------------------------------------------------------------------


class Reached(BaseException):
    """A stubbed step (workers, fitting) was reached: the bad input was accepted."""


class RowTimeout(BaseException):
    """The row ran past its wall-clock limit."""


ROW_SECONDS = 120  # a guard against hangs (1e9 layers, alias bombs), not a speed test: generous on a busy machine
EXTRA_ADDRESS_SPACE = 3 << 30


def _vm_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def guarded(seconds: int = ROW_SECONDS):
    """A wall-clock limit and an address-space cap around one row."""
    def on_alarm(signum, frame):
        raise RowTimeout(f"still running after {seconds} s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    restore = None
    try:
        import resource  # here, not at the top: Unix only (ImportError below: run uncapped)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        vm = _vm_bytes()
        if vm is not None:
            cap = vm + EXTRA_ADDRESS_SPACE
            if hard != resource.RLIM_INFINITY:
                cap = min(cap, hard)
            if soft == resource.RLIM_INFINITY or cap < soft:
                resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
                restore = (resource, soft, hard)
    except (ImportError, ValueError, OSError):
        restore = None
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if restore is not None:
            res, soft, hard = restore
            res.setrlimit(res.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="session")
def plan_doc(tmp_path_factory) -> dict:
    """A real plan JSON of the small aggregated problem, the base the plan-JSON rows edit."""
    d = tmp_path_factory.mktemp("plan_doc")
    (d / "p.yaml").write_text(yaml_problem(serving="aggregated"))
    result = CliRunner().invoke(main, ["plan", str(d / "p.yaml"), "--json", str(d / "plan.json")])
    assert result.exit_code == 0, result.output
    return json.loads((d / "plan.json").read_text())


@pytest.fixture(autouse=True)
def no_workers_no_fits(monkeypatch):
    """run never starts processes (and does not need torch installed); calibrate never fits: reaching either
    means the input was accepted."""
    def reached(what):
        def stub(*args, **kwargs):
            raise Reached(what)
        return stub

    # The stubs sit where the commands look the names up (their modules' imports).
    monkeypatch.setattr(cli_main, "need_torch", lambda: None)  # argument checks must not depend on torch
    monkeypatch.setattr(cli_main, "execute", reached("run: the workers would start (execute)"))
    monkeypatch.setattr(calibrate_cmd, "fit", reached("calibrate: the fit would start"))
    monkeypatch.setattr(calibrate_cmd, "cross_validate", reached("calibrate: cross-validation would start"))
    monkeypatch.setattr(calibrate_cmd, "fit_by_simulation", reached("calibrate: the fit by simulation would start"))


def _make_files(row: Bad, d: Path, request) -> None:
    for name, content in row.files.items():
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is DIR:
            path.mkdir()
            continue
        if content is UNREADABLE:
            if os.geteuid() == 0:
                if not Path("/proc/self/mem").exists():
                    pytest.skip("running as root without /proc/self/mem: no unreadable file can be made")
                path.symlink_to("/proc/self/mem")
            else:
                path.write_text(yaml_problem())
                path.chmod(0)
            continue
        if callable(content):
            content = content(request.getfixturevalue("plan_doc"))
        if isinstance(content, str):
            path.write_text(content.replace("{d}", str(d)), encoding="utf-8")
        else:
            path.write_bytes(content)


def _last_frames(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    if not frames:
        return "?"
    last = frames[-1]
    ours = [f for f in frames if "/meshplan/" in f.filename.replace("\\", "/")]
    where = f"{_short(last.filename)}:{last.lineno}"
    if ours and ours[-1] is not last:
        where = f"{_short(ours[-1].filename)}:{ours[-1].lineno} (then {where})"
    elif ours:
        where = f"{_short(last.filename)}:{last.lineno}"
    return where


def _short(filename: str) -> str:
    f = filename.replace("\\", "/")
    if "/src/meshplan/" in f or "/site-packages/meshplan/" in f:
        return "src/meshplan/" + f.rsplit("/meshplan/", 1)[1]
    return "/".join(f.split("/")[-2:])


def _one_line(text: str, limit: int = 300) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Bad, tmp_path, monkeypatch, request):
    d = tmp_path
    monkeypatch.chdir(d)
    _make_files(row, d, request)
    argv = [a.replace("{d}", str(d)) for a in row.argv]
    runner = CliRunner()
    try:
        with guarded():
            result = runner.invoke(main, argv, catch_exceptions=True)
    except Reached as r:
        pytest.fail(f"[{row.id}] ACCEPTED: {r}", pytrace=False)
    except RowTimeout as t:
        pytest.fail(f"[{row.id}] TIMEOUT: {t}, at {_last_frames(t)}", pytrace=False)

    stdout, stderr = result.stdout, result.stderr
    exc = result.exception
    request.node.user_properties += [("exit_code", result.exit_code), ("stderr", stderr[-600:]),
                                     ("exception", "" if exc is None else type(exc).__name__)]
    if exc is not None and not isinstance(exc, SystemExit):
        pytest.fail(f"[{row.id}] TRACEBACK {type(exc).__name__} at {_last_frames(exc)}: "
                    f"{_one_line(str(exc), 200)} | stderr: {_one_line(stderr, 200)}", pytrace=False)
    if "Traceback" in stdout + stderr:
        pytest.fail(f"[{row.id}] TRACEBACK TEXT in output: {_one_line(stdout + stderr)}", pytrace=False)
    if result.exit_code == 0:
        pytest.fail(f"[{row.id}] ACCEPTED: exit 0 | stdout: {_one_line(stdout, 160)} "
                    f"| stderr: {_one_line(stderr, 160)}", pytrace=False)
    if result.exit_code != 2:
        pytest.fail(f"[{row.id}] EXIT {result.exit_code} (want 2) | stdout: {_one_line(stdout, 160)} "
                    f"| stderr: {_one_line(stderr, 200)}", pytrace=False)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if len(lines) != 1:
        pytest.fail(f"[{row.id}] MULTILINE stderr ({len(lines)} lines): {_one_line(stderr)}", pytrace=False)
    line = lines[0]
    if not line.startswith("error: "):
        pytest.fail(f"[{row.id}] FORM: not 'error: ...': {_one_line(line)}", pytrace=False)
    if row.max_len is not None and len(line) > row.max_len:
        pytest.fail(f"[{row.id}] LONG line of {len(line):,} chars: {_one_line(line, 200)}", pytrace=False)
    if not any(f.lower() in line.lower() for f in row.field):
        pytest.fail(f"[{row.id}] FIELD: none of {list(row.field)} in: {_one_line(line)}", pytrace=False)
    if row.value is not None and not any(v in line for v in row.value):
        pytest.fail(f"[{row.id}] VALUE: none of {list(row.value)} in: {_one_line(line)}", pytrace=False)

