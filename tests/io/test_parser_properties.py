"""Property tests for every parser of user input: it parses, or it raises SpecError (one line).

The project's rule (meshplan.errors): any user input either parses or raises ``SpecError``
naming the field, the value and the rule, on one line. Any other exception (KeyError, TypeError,
a ValueError that is not a SpecError, pydantic's ValidationError, ZeroDivisionError,
OverflowError, RecursionError, MemoryError, a hang, ...) is a bug.

Each property starts from real, valid inputs (the shipped seed problems and plan, the Hugging Face
configs, engine command lines, silicon CSV rows, the seed-style DOT file), mutates them (values
replaced, keys dropped or added, numbers swapped for edge cases, text inserted, deleted or cut)
and accepts only success or SpecError. ``_accept`` wraps every call: anything else fails with the
exception, the file:line it came from, and the input.

Runs are derandomized (the same examples every run, no example database) and never depend on
wall-clock speed (``deadline=None``); a call that does not return within ``HANG_S`` seconds is
reported as a hang, and the address space is capped while the module runs so that an input asking
for a huge allocation fails with MemoryError instead of exhausting the machine.
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import itertools
import json
import os
import re
import signal
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from meshplan.cli.check_cmd import build_report
from meshplan.dag.lint import lint_dot
from meshplan.errors import SpecError
from meshplan.fidelity.silicon import read_case, read_silicon
from meshplan.io.catalog import CATALOG, load_model
from meshplan.io.checkpoint import checkpoint_precision
from meshplan.io.hf_config import hf_config_to_spec
from meshplan.io.problem_file import DEFAULT_PROBLEM, load_problem, problem_from_raw, read_raw
from meshplan.io.seed_markdown import read_seed_markdown
from meshplan.io.seed_plan import read_seed_plan
from meshplan.io.spec_build import build
from meshplan.plan.plan import candidate_document
from meshplan.plan.pools import pools_from_doc
from meshplan.search.evaluate import evaluate_aggregated, evaluate_disaggregated
from meshplan.specs.problem import SeedStrategy
from meshplan.strategy.layout import parse_strategy
from meshplan.strategy.notation import from_megatron, from_seed, from_sglang, from_trtllm, from_vllm

# ---------------------------------------------------------------------------------------------
# Settings: reproducible, no wall-clock deadline, modest example counts (the file runs in well
# under a minute on one busy core when every property passes).

HANG_S = int(os.environ.get("MESHPLAN_PROPERTY_HANG_S", "120"))  # a hang guard, not a speed test
"""Seconds one parser call may take before it counts as a hang: a guard against inputs that never
return (a loop over 2**63 layers), not a speed test; every call here normally takes well under
a second."""

MEMORY_HEADROOM = 4 << 30
"""Address space (bytes) this module may add to what the process already maps: an input that asks
for a huge allocation fails fast as MemoryError instead of exhausting the machine."""


def _settings(n: int) -> settings:
    # No explain phase: it re-runs every failure hundreds of times and adds nothing to the report.
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=False,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


def _mapped_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.fixture(scope="module", autouse=True)
def _memory_cap():
    try:
        import resource
    except ImportError:  # not on this platform: run uncapped
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _mapped_bytes() + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft == resource.RLIM_INFINITY or soft > cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("parser-properties")


_SERIAL = itertools.count()


def _fresh(workdir: Path, name: str) -> Path:
    """A new file path for each example (some loaders cache by path)."""
    d = workdir / f"ex{next(_SERIAL)}"
    d.mkdir()
    return d / name


# ---------------------------------------------------------------------------------------------
# The wrapper: success or SpecError; anything else fails with its origin and the input.


class Hang(BaseException):
    """A call that did not return within HANG_S seconds (BaseException: ``except Exception`` in
    the code under test cannot swallow it)."""


@contextmanager
def _hang_guard():
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def _alarm(signum, frame):
        raise Hang(f"no answer within {HANG_S} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _origin(err: BaseException) -> str:
    """The innermost meshplan frames (where the bug is, and its caller) and the innermost frame."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if "/meshplan/" in f.filename.replace("\\", "/") and "/tests/" not in f.filename]
    where = []
    if ours:
        def short(f):
            name = f.filename.replace("\\", "/")
            return (name.split("/src/")[-1] if "/src/" in name else name) + f":{f.lineno}"
        f = ours[-1]
        where.append(f"origin {short(f)} in {f.name}: {f.line}")
        if len(ours) > 1:
            where.append("called from " + " <- ".join(f"{short(g)} in {g.name}" for g in ours[-2:-4:-1]))
    if frames and (not ours or frames[-1] is not ours[-1]):
        f = frames[-1]
        where.append(f"raised at {f.filename}:{f.lineno} in {f.name}")
    return "; ".join(where) or "origin unknown"


def _shown(value: Any, limit: int = 1500) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _accept(what: str, fn: Callable, *args: Any, shown: Any = None, **kw: Any) -> tuple[bool, Any]:
    """Call ``fn``: (True, result) on success, (False, error) on SpecError; any other exception
    (or a hang, or a SpecError of more than one line) fails the property."""
    try:
        with _hang_guard():
            return True, fn(*args, **kw)
    except SpecError as err:
        if "\n" in str(err):
            raise AssertionError(f"{what}: SpecError of more than one line ({_origin(err)}): {str(err)!r}\n"
                                 f"input: {_shown(shown)}") from err
        return False, err
    except (Exception, Hang, RecursionError, MemoryError) as err:
        raise AssertionError(f"{what}: {type(err).__name__}: {str(err)[:300]}\n  {_origin(err)}\n"
                             f"  input: {_shown(shown)}") from err


# ---------------------------------------------------------------------------------------------
# Valid examples: the shipped catalog (always present) and /work/shared (when present).

CATALOG_DIR = Path(str(CATALOG))
SHARED = Path("/work/shared")
FIXTURES = Path(__file__).resolve().parents[1]


def _files(*dirs_and_globs: tuple[Path, str]) -> dict[str, str]:
    """name -> text, the first directory holding a name winning (shared copies dedupe)."""
    out: dict[str, str] = {}
    for d, pattern in dirs_and_globs:
        if d.is_dir():
            for p in sorted(d.glob(pattern)):
                out.setdefault(p.name, p.read_text(encoding="utf-8"))
    return out


PROBLEM_TEXTS = _files((CATALOG_DIR / "problems", "*.md"), (SHARED / "problems", "*.md"))
PROBLEM_YAMLS = _files((SHARED / "problems", "*.yaml"), (SHARED / "problems", "*.yml"),
                       (CATALOG_DIR / "problems", "*.yaml"), (FIXTURES / "check" / "fixtures", "*-h*.yaml"))
SEED_PROBLEMS = {n: t for n, t in PROBLEM_TEXTS.items() if "Environment Condition" in t}
SEED_PLAN = PROBLEM_TEXTS["seed-plan.md"]
DOT_TEXT = _files((CATALOG_DIR / "problems", "*.dot"), (SHARED / "problems", "*.dot"))["seed-style-dag.dot"]
CONFIGS = _files((CATALOG_DIR / "models", "*.config.json"), (SHARED / "models", "*.config.json"))
QUANTS = _files((CATALOG_DIR / "models", "*.hf_quant_config.json"), (SHARED / "models", "*.hf_quant_config.json"))

# The problem-file schema (io.problem_file's docstring), written out in full.
SCHEMA_EXAMPLE = {
    "name": "my-problem", "model": "deepseek-v3", "gpu": "h800", "gpus": 1024,
    "precision": {"weights": "fp8", "attention": "bf16", "experts": "fp8", "kv_cache": "bf16"},
    "workload": {"isl": 4000, "osl": 500, "concurrency": 1024},
    "requirements": {"ttft_s": 2.0, "tpot_s": 0.05, "min_output_tok_s_per_gpu": 1000},
    "phase": "both", "serving": "auto", "engine": "vllm", "strategy": "tp=8,dp=1,ep=8",
    "assumptions": {"gemm_efficiency": 0.7},
}
EXTRA_RAWS = [
    SCHEMA_EXAMPLE,
    {"name": "ranges", "model": {"base": "mixtral-8x7b", "top_k": 2}, "gpu": {"base": "h100", "memory_bytes": 80e9},
     "workload": {"isl": [100, 2000], "osl": [10, 500], "isl_max": 4000, "request_rate_per_s": 2.0},
     "engine": {"name": "sglang", "version": "0.5.9"}, "serving": "disaggregated",
     "prefill_strategy": "tp=4", "decode_strategy": "tp=8,ep=8", "calibration": "none"},
    {"name": "dense", "model": "llama-3.1-8b", "gpu": "h100-sxm", "precision": "fp8", "phase": "decode",
     "workload": {"isl": 1000, "osl": 200}, "seed_strategy": {"tp": 1, "dp": 2, "pp": 1, "ep": 1, "gpus": 2}},
]


def _md_raws() -> list[dict]:
    out = []
    for name in sorted(PROBLEM_TEXTS):
        p = CATALOG_DIR / "problems" / name
        if p.exists():
            out.append(read_raw(p))
    return out


RAWS = [yaml.safe_load(t) for t in PROBLEM_YAMLS.values()] + EXTRA_RAWS + _md_raws()
TOP_KEYS = ["name", "model", "gpu", "gpus", "precision", "engine", "workload", "requirements", "phase", "serving",
            "strategy", "prefill_strategy", "decode_strategy", "assumptions", "calibration", "seed_strategy", "notes",
            "isl", "osl", "isl_max", "osl_max", "concurrency", "weights", "kv_cache", "base", "version", "top_k",
            "tp", "dp", "ep", "pp", "gpus"]

# ---------------------------------------------------------------------------------------------
# Generic strategies: edge-case values, mutated trees, mutated text.

EDGE_INTS = [0, -1, 1, 2, 3, 7, 16, 10**6, 2**31, 2**63, 10**400]
EDGE_FLOATS = [0.0, -1.0, 0.5, 1e-300, 1e308, float("inf"), float("-inf"), float("nan")]
EDGE_STRS = ["", " ", "0", "-1", "1.5", "1e400", "nan", "inf", "x", "none", "auto", "both", "fp8", "bf16", "h100",
             "deepseek-v3", "llama-3.1-8b", "tp=8", "9" * 400, "9" * 4400, "²", "٣", "a\nb", "{", "/", ".",
             "x.json", "x\x00.json", "a" * 300 + ".json", "re:(", "vllm", "sglang", "trtllm"]
BIG_NUMBERS = [10**400, 2**63, -1, 0, 1e308, float("inf"), float("nan"), 0.5]
"""What a number field is set to by the ``number`` mutation: too big for a float, for an int64,
negative, zero, not finite, a fraction."""
BIG_NUMBER_TEXTS = ["9" * 4400, "9" * 400, "0", "-1", "1e400", "0.5", "99999999999999999999"]
"""What a number in a text becomes under the ``bignum`` mutation (4400 digits passes Python's
4300-digit limit of int(); 400 digits overflows a float)."""
NUMBER_TEXTS = ["0", "1", "-1", "2", "3", "5", "7", "1.5", "0.0", "1000000", "99999999999999999999", "9" * 400,
                "9" * 4400, "1e400", "nan", "inf", "", "٣", "²", "1,024", "0x10", "-0"]

scalars = st.one_of(
    st.sampled_from(EDGE_INTS), st.sampled_from(EDGE_STRS), st.sampled_from(EDGE_FLOATS), st.none(), st.booleans(),
    st.integers(), st.floats(), st.text(max_size=8))


def json_values(keys: list[str] = TOP_KEYS) -> st.SearchStrategy:
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), inner, max_size=3),
                        max_leaves=6)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _parent(obj: Any, path: tuple) -> Any:
    for k in path[:-1]:
        obj = obj[k]
    return obj


def _edge_for(value: Any) -> st.SearchStrategy:
    """An edge case of the same kind as ``value`` (numbers for numbers, strings for strings), or
    the same value in the wrong shape (a list, a pair with a non-number, a mapping)."""
    if isinstance(value, bool):
        return st.sampled_from([not value, 0, 1, "true", None, [value]])
    if isinstance(value, (int, float)):
        return st.sampled_from(EDGE_INTS + EDGE_FLOATS + [-value, str(value), f"{value}x", [value], [value, value],
                                                          [value, "x"], [None, value], [[value], value],
                                                          {"x": value}])
    if isinstance(value, str):
        return st.sampled_from(EDGE_STRS + [value * 2, value.upper(), value + "\n", [value], {value: value}, 0, True,
                                            None])
    return st.sampled_from([None, [], {}, "", 0, True, [None], [[]], [{}], {"x": None}])


@st.composite
def mutated_tree(draw, bases: list, keys: list[str] = TOP_KEYS, max_ops: int = 3, root: bool = False):
    """A deep copy of one base with up to ``max_ops`` mutations: a value replaced by an edge case
    of its kind or by any value, a key dropped, a key added, a value wrapped in a list or turned
    into its string."""
    obj = copy.deepcopy(draw(st.sampled_from(bases)))
    values = json_values(keys)
    for _ in range(draw(st.integers(0, max_ops))):
        paths = _paths(obj)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(("edge", "number", "replace", "delete", "add", "wrap", "stringify")))
        if op == "number":
            numeric = [p for p in paths if p and isinstance(_parent(obj, p)[p[-1]], (int, float))
                       and not isinstance(_parent(obj, p)[p[-1]], bool)]
            if numeric:
                path = draw(st.sampled_from(numeric))
                _parent(obj, path)[path[-1]] = draw(st.sampled_from(BIG_NUMBERS))
            continue
        if not path:
            if op == "replace" and root:
                obj = draw(values)
            elif op == "add" and isinstance(obj, dict):
                obj[draw(st.sampled_from(keys) | st.text(max_size=6))] = draw(values)
            continue
        parent, key = _parent(obj, path), path[-1]
        if op == "edge":
            parent[key] = draw(_edge_for(parent[key]))
        elif op == "replace":
            parent[key] = draw(values)
        elif op == "delete":
            del parent[key]
        elif op == "add":
            target = parent[key]
            if isinstance(target, dict):
                target[draw(st.sampled_from(keys) | st.text(max_size=6))] = draw(values)
            elif isinstance(target, list):
                target.append(draw(st.sampled_from(EDGE_STRS) | values))
            else:
                parent[key] = draw(values)
        elif op == "wrap":
            parent[key] = [parent[key]]
        else:
            parent[key] = str(parent[key])
    return obj


_NUM_RE = re.compile(r"\d+(?:\.\d+)?")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z_\-]*")
PUNCT = list("*:[](){}<>=,;-_\"'\\/#%.\n\t ") + ["**", "->", "--", "\x00", "é", "∞", "\r\n"]


@st.composite
def mutated_text(draw, bases: list[str], vocab: list[str] = (), max_ops: int = 4,
                 slot: re.Pattern | None = None, slot_fragments: list[str] = ()):
    """One base text with up to ``max_ops`` edits: a number swapped for an edge case, a word
    replaced, a line dropped, duplicated or swapped, text inserted or deleted, the text cut, and
    (with ``slot``) the first group of a ``slot`` match rewritten from ``slot_fragments``."""
    text = draw(st.sampled_from(bases))
    fragments = st.sampled_from(list(vocab) + PUNCT) if vocab else st.sampled_from(PUNCT)
    inserts = st.one_of(fragments, st.sampled_from(NUMBER_TEXTS), st.text(max_size=6))
    ops = ("number", "bignum", "word", "insert", "delete", "line_drop", "line_dup", "line_swap", "truncate")
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(ops + (("slot",) * 3 if slot is not None else ())))
        if op == "slot":
            found = list(slot.finditer(text))
            if found:
                m = draw(st.sampled_from(found))
                parts = draw(st.lists(st.sampled_from(list(slot_fragments)) | st.sampled_from(NUMBER_TEXTS),
                                      min_size=1, max_size=3))
                text = text[:m.start(1)] + "\\n".join(parts) + text[m.end(1):]
        elif op in ("number", "bignum"):
            found = list(_NUM_RE.finditer(text))
            if found:
                m = draw(st.sampled_from(found))
                rep = draw(st.sampled_from(BIG_NUMBER_TEXTS) if op == "bignum"
                           else st.sampled_from(NUMBER_TEXTS) | st.integers(0, 10**6).map(str))
                text = text[:m.start()] + rep + text[m.end():]
        elif op == "word":
            found = list(_WORD_RE.finditer(text))
            if found:
                m = draw(st.sampled_from(found))
                text = text[:m.start()] + draw(inserts) + text[m.end():]
        elif op == "insert":
            pos = draw(st.integers(0, len(text)))
            text = text[:pos] + draw(inserts) + text[pos:]
        elif op == "delete" and text:
            pos = draw(st.integers(0, len(text) - 1))
            text = text[:pos] + text[pos + draw(st.integers(1, 20)):]
        elif op.startswith("line"):
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            if op == "line_drop":
                del lines[i]
            elif op == "line_dup":
                lines.insert(i, lines[i])
            else:
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif op == "truncate":
            text = text[:draw(st.integers(0, len(text)))]
    return text


# ---------------------------------------------------------------------------------------------
# Problem files: problem_from_raw and the file loader (YAML, JSON, Markdown).


@_settings(400)
@given(raw=mutated_tree(RAWS, max_ops=3))
def test_problem_from_raw_parses_or_spec_error(raw):
    _accept("problem_from_raw", problem_from_raw, copy.deepcopy(raw), shown=raw)


PROBLEM_VOCAB = ["model:", "gpu:", "gpus:", "workload:", "isl:", "osl:", "precision:", "engine:", "strategy:",
                 "- ", "{", "}", "[", "]", "&a", "*a", "!!python/object", "!!binary", "? ", "|", ">", "---", "...",
                 "null", "~", "true", "0o7", ".inf", ".nan", "1_000", "<<: *a", "!!binary aGk=", "2001-12-14",
                 "!!set {a}", "!!float", "!!str", "a: &x [*x]", "\ufeff", "\t", "[" * 3000, "{a: " * 2000]


def _problem_texts() -> list[tuple[str, str]]:
    out = [(".yaml", t) for t in PROBLEM_YAMLS.values()]
    out += [(".yaml", yaml.safe_dump(r, sort_keys=False)) for r in EXTRA_RAWS]
    out += [(".json", json.dumps(r, indent=1)) for r in EXTRA_RAWS]
    return out


PROBLEM_FILES = _problem_texts()


@_settings(200)
@given(suffix_text=st.sampled_from(PROBLEM_FILES).flatmap(
    lambda st_: st.tuples(st.just(st_[0]), mutated_text([st_[1]], PROBLEM_VOCAB))))
def test_problem_file_loader_parses_or_spec_error(workdir, suffix_text):
    suffix, text = suffix_text
    path = _fresh(workdir, "problem" + suffix)
    path.write_text(text, encoding="utf-8")
    _accept("load_problem", load_problem, str(path), shown=(suffix, text))


# ---------------------------------------------------------------------------------------------
# Seed Markdown problems and seed Markdown plans.

SEED_VOCAB = ["* **Layers**: ", "* **GPUs**: ", "* **Top-K Gate**: ", "* **Tensor parallelism**: ",
              "* **Expert parallelism**: ", "* **Sequence In**: ", "* **Sequence Length**: ", "* **Weights**: ",
              "* **Single-card computing power**: ", "* **MFU utilization**: ", "* **Vocabulary size**: ",
              "* **GQA kv heads**: ", "* **Dimension of MHA**: ", "* **Token Dimension**: ", "* **Batch size**: ",
              "**", ": ", "TFlops", "PFlops", "TBps", "GB/s", "GiB", "GB", "%", "tokens/ms", "ms", "s", "B", "T",
              "experts", "[128, 10240]", "[0, 0]", "The number of heads is ", "the dimension of each heads is ",
              "## **Parallelism Strategy**", "# Strategy for each phase", "None", "n/a"]


@_settings(300)
@given(text=mutated_text(sorted(SEED_PROBLEMS.values()), SEED_VOCAB))
def test_seed_markdown_parses_or_spec_error(text):
    ok, raw = _accept("read_seed_markdown", read_seed_markdown, text, source="problem.md", shown=text)
    if ok:
        _accept("problem_from_raw(read_seed_markdown(...))", problem_from_raw, raw, shown=text)


PLAN_VOCAB = ["DP=", "TP=", "PP=", "EP=", "- **EP**: ", "- **DP**: ", "- **TP**: ", "- **PP**: ",
              "**Total GPUs**: ", "Total GPUs Required: ", " GPUs total", "# Plan", "## ", "Environment Condition"]


@functools.cache
def _seed_raw_once() -> dict:
    return read_raw(str(DEFAULT_PROBLEM))


def _seed_problem_raw() -> dict:
    """The bundled seed problem as a raw mapping (a fresh copy each time)."""
    return copy.deepcopy(_seed_raw_once())


@functools.cache
def _seed_model():
    return problem_from_raw(_seed_problem_raw()).model


@_settings(200)
@given(text=mutated_text([SEED_PLAN], PLAN_VOCAB))
def test_seed_plan_parses_or_spec_error(text):
    ok, raw = _accept("read_seed_plan", read_seed_plan, text, "seed-plan.md", _seed_problem_raw(), shown=text)
    if ok:
        _accept("problem_from_raw(read_seed_plan(...))", problem_from_raw, raw, shown=text)


@_settings(80)
@given(text=mutated_text(sorted(SEED_PROBLEMS.values()) + [SEED_PLAN], SEED_VOCAB + PLAN_VOCAB))
def test_markdown_problem_file_loader_parses_or_spec_error(workdir, text):
    path = _fresh(workdir, "problem.md")
    path.write_text(text, encoding="utf-8")
    _accept("load_problem(.md)", load_problem, str(path), shown=text)


# ---------------------------------------------------------------------------------------------
# Hugging Face config.json, hf_quant_config.json and the checkpoint-format reader.

CONFIG_DICTS = {name: json.loads(t) for name, t in sorted(CONFIGS.items())}
QUANT_DICTS = {name: json.loads(t) for name, t in sorted(QUANTS.items())}
HF_KEYS = sorted({k for d in CONFIG_DICTS.values() for k in d}
                 | {k for d in CONFIG_DICTS.values() for k in (d.get("text_config") or {})}
                 | {"quantization_config", "quant_method", "modules_to_not_convert", "config_groups", "ignore",
                    "kv_cache_scheme", "num_bits", "weights", "type", "quantization", "quant_algo",
                    "kv_cache_quant_algo", "exclude_modules"})


def _pairs() -> list[tuple[str, dict, dict | None]]:
    out = []
    for name, cfg in CONFIG_DICTS.items():
        qname = name.replace(".config.json", ".hf_quant_config.json")
        out.append((name, cfg, QUANT_DICTS.get(qname)))
    return out


CONFIG_PAIRS = _pairs()


@_settings(250)
@given(data=st.sampled_from(CONFIG_PAIRS).flatmap(lambda p: st.tuples(
    st.just(p[0]), mutated_tree([p[1]], HF_KEYS, max_ops=3, root=True),
    mutated_tree([p[2]], HF_KEYS, max_ops=2, root=True) if p[2] is not None else st.none())))
def test_hf_config_and_checkpoint_formats_parse_or_spec_error(data):
    name, cfg, quant = data
    ok, spec = _accept("hf_config_to_spec", hf_config_to_spec, copy.deepcopy(cfg), name=name, source=name,
                       shown=cfg)
    if ok:
        _accept("checkpoint_precision", checkpoint_precision, spec, copy.deepcopy(cfg), copy.deepcopy(quant),
                shown={"config": cfg, "hf_quant_config": quant})


@_settings(120)
@given(data=st.sampled_from(CONFIG_PAIRS).flatmap(lambda p: st.tuples(
    st.just(p[0]), mutated_text([json.dumps(p[1], indent=1)], ["NaN", "Infinity", "-Infinity", "null", "{}", "[]",
                                                                 '"model_type": "llama"', "1e999", ",", '"',
                                                                 "[" * 3000]),
    st.just(json.dumps(p[2], indent=1)) if p[2] is not None else st.none())))
def test_config_json_file_loader_parses_or_spec_error(workdir, data):
    name, text, quant = data
    path = _fresh(workdir, name)
    path.write_text(text, encoding="utf-8")
    if quant is not None:
        path.with_name(name.replace(".config.json", ".hf_quant_config.json")).write_text(quant, encoding="utf-8")
    _accept("load_model(config.json path)", load_model, str(path), shown=text)


# ---------------------------------------------------------------------------------------------
# Strategy strings (strategy.layout.parse_strategy) and the foreign notations (strategy.notation).

VALID_STRATEGIES = ["tp=8,dp=1,ep=8", "instances=2,pp=1,tp=4,dp=8,ep=32,etp=1",
                    "instances=1,pp=4,tp=16,dp=2,ep=32,etp=1", "tp=1", "dp=16,ep=16", "pp=2, tp=4", "TP=8,EP=8",
                    "tp=4,dp=8,etp=2", "instances=3,tp=8"]
STRATEGY_VOCAB = ["instances", "pp", "tp", "dp", "ep", "etp", "sp", "=", ",", " ", "==", "=,", "+1", "-1", "0",
                  "²", "٣", "１", "9" * 4400]


@_settings(400)
@given(text=mutated_text(VALID_STRATEGIES + ["", ","], STRATEGY_VOCAB, max_ops=3)
       | st.text(alphabet="instancepdt=,0123456789 ²٣１-", max_size=30),
       is_moe=st.booleans())
def test_strategy_string_parses_or_spec_error(text, is_moe):
    _accept("parse_strategy", parse_strategy, text, is_moe=is_moe, shown=text)


degrees = st.integers(-2, 64)


@_settings(150)
@given(gpus=st.none() | st.integers(-2, 512), dp=st.none() | degrees, tp=st.none() | degrees,
       pp=st.none() | degrees, ep=st.none() | degrees, dense=st.booleans())
def test_seed_notation_reads_or_spec_error(gpus, dp, tp, pp, ep, dense):
    """from_seed reads a problem's seed_strategy (any integers a YAML problem file states)."""
    stated = dict(gpus=gpus, dp=dp, tp=tp, pp=pp, ep=ep)
    ok, seed = _accept("SeedStrategy", build, SeedStrategy, stated, "seed_strategy", shown=stated)
    if ok:
        model = load_model("llama-3.1-8b") if dense else _seed_model()
        _accept("from_seed", from_seed, seed, model, shown=(stated, model.name))


@_settings(150)
@given(a=degrees, b=degrees, c=degrees, d=st.none() | degrees, flag=st.booleans(), moe=st.booleans())
def test_engine_notations_read_or_spec_error(a, b, c, d, flag, moe):
    """The readers of vLLM, SGLang, TensorRT-LLM and Megatron degrees, given any integers a
    command line or config could carry."""
    shown = dict(a=a, b=b, c=c, d=d, flag=flag, moe=moe)
    _accept("from_vllm", from_vllm, a, b, c, enable_expert_parallel=flag, is_moe=moe, shown=shown)
    _accept("from_sglang", from_sglang, a, b, flag, c, d or 1, is_moe=moe, shown=shown)
    _accept("from_trtllm", from_trtllm, a, c, flag, b, d, is_moe=moe, shown=shown)
    _accept("from_megatron", from_megatron, a, c, b, d, world_size=None if flag else 64, shown=shown)


# ---------------------------------------------------------------------------------------------
# Engine command lines and TensorRT-LLM YAML, as `meshplan check` reads them.

VLLM_COMMANDS = [
    "vllm serve deepseek-ai/DeepSeek-V3 -tp 8 -dp 2 --enable-expert-parallel --max-model-len 8192 --max-num-seqs 256",
    "vllm serve deepseek-ai/DeepSeek-R1 --tensor-parallel-size 8 --gpu-memory-utilization 0.9 --kv-cache-dtype fp8 "
    "--max-model-len 4096",
    "vllm serve --model meta-llama/Llama-3.1-8B -tp 1 --max-model-len=4096 --max-num-seqs=64",
    "vllm serve Qwen/Qwen3-30B-A3B -tp 2 -dp 2 -ep --max-model-len 8192",
]
SGLANG_COMMANDS = [
    "python -m sglang.launch_server --model-path deepseek-ai/DeepSeek-R1 --tp 8 --dp 8 --enable-dp-attention "
    "--ep-size 8 --context-length 8192 --max-running-requests 512 --mem-fraction-static 0.85",
    "python3 -m sglang.launch_server --model-path Qwen/Qwen3-235B-A22B-FP8 --tp-size 4 --moe-a2a-backend deepep "
    "--context-length 4096 --kv-cache-dtype fp8_e4m3",
    "python -m sglang.launch_server --model meta-llama/Llama-3.1-8B --tp-size 1 --context-length 2048",
]
ENGINE_VOCAB = ["-tp", "-dp", "-pp", "-ep", "--enable-expert-parallel", "--max-model-len", "--max-num-seqs",
                "--gpu-memory-utilization", "--kv-cache-dtype", "--tp-size", "--dp-size", "--ep-size", "--pp-size",
                "--enable-dp-attention", "--moe-a2a-backend", "--context-length", "--max-running-requests",
                "--mem-fraction-static", "--model", "--model-path", "--enable-deepep-moe", "deepep", "mooncake",
                "=", "'", '"', "\\", " ", " -- ", "serve", "fp8", "auto", "nvfp4"]
# The --gpu/--weights/--isl/--osl flags of check: mostly usable values, so that most commands get
# past the flags to the layout, the fit and the prediction; the edge cases are there too.
CHECK_GPUS = ["h200", "b200", "h100", "h800", None, "nope"]
CHECK_WEIGHTS = [None, "fp8", "bf16", "fp4", "zz"]
CHECK_LENGTHS = [1024.0, None, 128.0, 0.0, -1.0, 1e9, float("nan"), float("inf")]


@st.composite
def engine_command(draw, program: str, bases: list[str]):
    if draw(st.booleans()):
        return draw(mutated_text(bases, ENGINE_VOCAB))
    words = [program, draw(st.sampled_from(["deepseek-ai/DeepSeek-V3", "llama-3.1-8b", "x.json", "M", ""]))]
    for _ in range(draw(st.integers(0, 6))):
        flag = draw(st.sampled_from([w for w in ENGINE_VOCAB if w.startswith("-")]))
        value = draw(st.sampled_from(NUMBER_TEXTS) | st.sampled_from(["", "fp8", "deepep", "--"]) | st.none())
        words.append(flag if value is None else (f"{flag}={value}" if draw(st.booleans()) else f"{flag} {value}"))
    return " ".join(words)


def _check_report(**kw):
    args = dict(plan=None, problem_path=None, vllm=None, sglang=None, trtllm=None, gpu=None, weights=None, isl=None,
                osl=None, tolerance=0.25)
    args.update(kw)
    return build_report(**args)


def _mostly_first(options: list) -> st.SearchStrategy:
    return st.one_of(st.just(options[0]), st.just(options[0]), st.sampled_from(options))


check_flags = st.fixed_dictionaries(dict(gpu=_mostly_first(CHECK_GPUS), weights=st.sampled_from(CHECK_WEIGHTS),
                                         isl=_mostly_first(CHECK_LENGTHS), osl=_mostly_first(CHECK_LENGTHS)))


@_settings(150)
@given(cmd=engine_command("vllm serve", VLLM_COMMANDS), flags=check_flags)
def test_check_vllm_command_parses_or_spec_error(cmd, flags):
    _accept("check --vllm", _check_report, vllm=cmd, shown=(cmd, flags), **flags)


@_settings(150)
@given(cmd=engine_command("python -m sglang.launch_server --model-path", SGLANG_COMMANDS), flags=check_flags)
def test_check_sglang_command_parses_or_spec_error(cmd, flags):
    _accept("check --sglang", _check_report, sglang=cmd, shown=(cmd, flags), **flags)


TRTLLM_CONFIGS = [
    {"model": "deepseek-ai/DeepSeek-R1", "tensor_parallel_size": 8, "moe_expert_parallel_size": 8,
     "enable_attention_dp": True, "max_batch_size": 128, "max_seq_len": 4096,
     "kv_cache_config": {"free_gpu_memory_fraction": 0.85, "dtype": "fp8"}},
    {"model": "deepseek-ai/DeepSeek-R1", "tensor_parallel_size": 8, "moe_expert_parallel_size": 4,
     "moe_tensor_parallel_size": 4, "enable_attention_dp": False, "max_batch_size": 64, "max_seq_len": 4096},
    {"tensor_parallel_size": 4, "pipeline_parallel_size": 2, "max_batch_size": 32, "max_seq_len": 8192},
]
TRTLLM_KEYS = sorted({k for c in TRTLLM_CONFIGS for k in c} | {"free_gpu_memory_fraction", "dtype",
                                                             "moe_tensor_parallel_size", "pipeline_parallel_size"})


@_settings(120)
@given(text=mutated_tree(TRTLLM_CONFIGS, TRTLLM_KEYS, root=True).map(lambda c: yaml.safe_dump(c, sort_keys=False))
       | mutated_text([yaml.safe_dump(c, sort_keys=False) for c in TRTLLM_CONFIGS], TRTLLM_KEYS + PROBLEM_VOCAB),
       model=st.sampled_from([None, "deepseek-r1", "llama-3.1-8b", "nope"]), flags=check_flags)
def test_check_trtllm_yaml_parses_or_spec_error(workdir, text, model, flags):
    path = _fresh(workdir, "extra_llm_api_options.yaml")
    path.write_text(text, encoding="utf-8")
    _accept("check --trtllm", _check_report, trtllm=str(path), model=model, shown=(text, model, flags), **flags)


# ---------------------------------------------------------------------------------------------
# Plans read by `meshplan check`: seed-format Markdown plans and problems that state a layout
# (check.document), and meshplan plan JSON/YAML (check.plan_doc), which dag/lint-dag also read.

STRATEGY_SECTION = ("\n## **Parallelism Strategy**\n\n* **GPUs **: 16\n* **Tensor parallelism**: 1\n"
                    "* **Pipeline parallelism**: 1\n* **Data parallelism**: 1\n* **Expert parallelism**: 16\n")
CHECK_MARKDOWN = [SEED_PLAN] + [t + STRATEGY_SECTION for n, t in sorted(SEED_PROBLEMS.items()) if "seed-10b" in n]


@_settings(40)
@given(text=mutated_text(CHECK_MARKDOWN, SEED_VOCAB + PLAN_VOCAB))
def test_check_plan_markdown_parses_or_spec_error(workdir, text):
    path = _fresh(workdir, "plan.md")
    path.write_text(text, encoding="utf-8")
    _accept("check PLAN.md", _check_report, plan=str(path), shown=text)


def _plan_docs() -> list[dict]:
    problem = problem_from_raw(_seed_problem_raw())
    agg = candidate_document(problem, evaluate_aggregated(problem, parse_strategy("dp=4,ep=4")))
    dis = candidate_document(problem, evaluate_disaggregated(problem, parse_strategy("dp=2,ep=2"),
                                                             parse_strategy("dp=4,ep=4")))
    with_strategy = dict(_seed_problem_raw(), strategy="dp=4,ep=4")
    return [json.loads(json.dumps(d, default=float)) for d in (agg, dis, with_strategy)]


PLAN_DOCS = _plan_docs()
PLAN_KEYS = sorted({k for d in PLAN_DOCS for p in _paths(d) for k in p if isinstance(k, str)})[:400]


@_settings(80)
@given(doc=mutated_tree(PLAN_DOCS, PLAN_KEYS, max_ops=2, root=True), suffix=st.sampled_from([".json", ".yaml"]))
def test_check_plan_json_parses_or_spec_error(workdir, doc, suffix):
    path = _fresh(workdir, "plan" + suffix)
    text = json.dumps(doc, default=str) if suffix == ".json" else yaml.safe_dump(doc)
    path.write_text(text, encoding="utf-8")
    _accept("check PLAN.json", _check_report, plan=str(path), shown=doc)


@_settings(150)
@given(doc=mutated_tree(PLAN_DOCS[:2], PLAN_KEYS, max_ops=2))
def test_plan_json_pools_parse_or_spec_error(doc):
    """The plan JSON reader of meshplan dag / lint-dag (plan.pools.pools_from_doc)."""
    _accept("pools_from_doc", pools_from_doc, copy.deepcopy(doc), shown=doc)


# ---------------------------------------------------------------------------------------------
# DOT files for lint-dag.


def _small_dot(text: str, lines: int) -> str:
    body = text.splitlines()[:lines]
    return "\n".join(body) + "\n}\n"


DOT_BASES = [_small_dot(DOT_TEXT, 30), _small_dot(DOT_TEXT, 60), DOT_TEXT]
DOT_VOCAB = ["->", "--", "{", "}", "[", "]", ";", '"', "subgraph cluster_x { label=\"GPUs 0-3\"; a; }",
             "label=", "shape=ellipse", "style=dashed", "GPU: ", "GPU: 0-", "GPU: 3-1", "GPU: 0-3-5", "GPU: ,",
             "GPU: 99999999999", "GPU: 0-99999999999", "all GPUs", "heads=0", "heads=", "Expert 3-1",
             "Expert 99999999999999999999", "2 experts per GPU", "0 experts per GPU", "All-Reduce", "dispatch",
             "combine", "node", "edge", "graph", "digraph", "strict", "\\n", "\\\"", "html=<<b>x</b>>", "<", ">"]
LINT_LAYOUTS = ["dp=16,ep=16", "tp=4,dp=4,ep=16", "pp=2,dp=8,ep=8", "tp=1"]


DOT_LABEL = re.compile(r'label="((?:[^"\\]|\\.)*)"')
DOT_LABEL_FRAGMENTS = ["GPU: 0", "GPU: 0-3", "GPU: 0-", "GPU: -3", "GPU: 3-1", "GPU: 0-3-5", "GPU: ,", "GPU: 0,,1",
                       "GPUs 4-19", "GPU: 99999999999", "GPU: 0-99999999999", "GPU: all GPUs", "all GPUs",
                       "Attention", "Attention shard 0 L1", "heads=4", "heads=0", "heads=99999999999999999999",
                       "Expert 3 L1", "Expert 3-1", "Expert 15-0", "Expert 99999999999999999999",
                       "2 experts per GPU", "0 experts per GPU", "All-Reduce", "dispatch", "combine", "Router",
                       "Request", "Output", "qkv", "norm"]


@_settings(60)
@given(text=mutated_text(DOT_BASES, DOT_VOCAB, slot=DOT_LABEL, slot_fragments=DOT_LABEL_FRAGMENTS),
       layout=st.sampled_from(LINT_LAYOUTS), offset=st.sampled_from([0, 4]), redundant=st.sampled_from([0, 16]))
def test_lint_dag_dot_parses_or_spec_error(text, layout, offset, redundant):
    model = _seed_model()
    _accept("lint_dot", lint_dot, text, "dag.dot", model, parse_strategy(layout), offset, redundant=redundant,
            shown=(text, layout, offset, redundant))


# ---------------------------------------------------------------------------------------------
# Silicon CSV rows (fidelity.silicon.read_case) and files (read_silicon).


def _silicon_rows() -> tuple[list[str], list[dict]]:
    sources = [FIXTURES / "fidelity" / "fixtures" / "silicon-sample.csv", SHARED / "cases" / "silicon-dev.csv"]
    header: list[str] = []
    rows: list[dict] = []
    seen: set[tuple] = set()
    for src in sources:
        if not src.is_file():
            continue
        with src.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = header or list(reader.fieldnames or [])
            for row in reader:
                key = (row.get("backend"), row.get("mode"), row.get("model_path"), row.get("system"),
                       bool(row.get("prefill_num_workers")))
                if key not in seen:  # one row per kind of run keeps the bases few and varied
                    seen.add(key)
                    rows.append(row)
    return header, rows[:40]


SILICON_HEADER, SILICON_ROWS = _silicon_rows()
cell_values = st.one_of(st.sampled_from(NUMBER_TEXTS), st.sampled_from(EDGE_STRS), st.none(), st.text(max_size=8),
                        st.sampled_from(["agg", "disagg", "trtllm", "sglang", "vllm", "nvfp4", "fp8", "fp8_block",
                                         "h100_sxm", "b200_sxm", "silicon_concurrency=0",
                                         "silicon_concurrency=" + "9" * 4400, "deepseek-ai/DeepSeek-R1",
                                         "meta-llama/Llama-3.1-8B", "Qwen/Qwen3-30B-A3B"]))


@st.composite
def silicon_row(draw):
    row = dict(draw(st.sampled_from(SILICON_ROWS)))
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(sorted(row, key=str)))
        op = draw(st.sampled_from(("set", "drop", "edit", "concurrency")))
        if op == "concurrency":
            source = row.get("silicon_data_source") or ""
            row["silicon_data_source"] = re.sub(r"silicon_concurrency=\d+", "silicon_concurrency="
                                                + draw(st.sampled_from(BIG_NUMBER_TEXTS)), source)
        elif op == "set":
            row[key] = draw(cell_values)
        elif op == "drop":
            del row[key]
        elif row.get(key) is not None:
            row[key] = draw(mutated_text([row[key]], max_ops=2))
    return row


@pytest.mark.skipif(not SILICON_ROWS, reason="no silicon CSV example found")
@_settings(300)
@given(row=silicon_row())
def test_silicon_row_reads_or_spec_error(row):
    _accept("read_case", read_case, dict(row), shown=row)


def _csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=SILICON_HEADER, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()


@pytest.mark.skipif(not SILICON_ROWS, reason="no silicon CSV example found")
@_settings(60)
@given(text=mutated_text([_csv_text(SILICON_ROWS[:4]), _csv_text(SILICON_ROWS[4:8] or SILICON_ROWS[:1])],
                         [",", '"', "\n", "\r", "\x00", "silicon_concurrency=", "agg", "disagg"]))
def test_silicon_csv_file_reads_or_spec_error(workdir, text):
    path = _fresh(workdir, "cases.csv")
    path.write_text(text, encoding="utf-8")
    _accept("read_silicon", read_silicon, str(path), shown=text)


# ---------------------------------------------------------------------------------------------
# The valid examples themselves parse (so a mutation's failure is the mutation's).


def test_the_valid_examples_parse(workdir):
    for raw in RAWS:
        problem_from_raw(copy.deepcopy(raw))
    for name, cfg, _ in CONFIG_PAIRS:
        hf_config_to_spec(copy.deepcopy(cfg), name=name)
    for s in VALID_STRATEGIES:
        parse_strategy(s)
    for cmd in VLLM_COMMANDS:
        _check_report(vllm=cmd, gpu="h200", isl=1024.0, osl=1024.0)
    for cmd in SGLANG_COMMANDS:
        _check_report(sglang=cmd, gpu="h200")
