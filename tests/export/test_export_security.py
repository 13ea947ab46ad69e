"""Exported launch scripts run nothing a model name or path carries: every value is one quoted word
(export.shell), and what no name or path needs (control characters, newlines) is refused.

The scripts are executed with bash in a temporary folder whose PATH starts with stubs of the engine
binaries (vllm, python, trtllm-serve, mpirun, ray); each stub records its argv and does nothing.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meshplan.errors import SpecError
from meshplan.export.common import served_model
from meshplan.export.devicemesh import snippet
from meshplan.export.export import ExportResult, export, write
from meshplan.io.catalog import CATALOG, model_index, load_model
from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.pools import Pool
from meshplan.strategy.layout import Layout

HOSTILE = ["x$(touch PWNED)", "a;touch PWNED", "`touch PWNED`", "b && touch PWNED #", "c' \"$(touch PWNED)\"",
           "d|touch PWNED", "$HOME ${IFS}*", "-e"]
STUBS = ("vllm", "python", "python3", "trtllm-serve", "trtllm-llmapi-launch", "mpirun", "ray")
ENV = {"HEAD_ADDR": "10.0.0.1", "NODE_0": "10.0.0.1", "NODE_1": "10.0.0.2", "PREFILL_HEAD_0": "10.0.0.3",
       "DECODE_HEAD_0": "10.0.0.4"}


def _config_in(folder: Path) -> Path:
    """A copy of a catalog config.json (Llama 3.1 8B) inside ``folder``."""
    folder.mkdir(parents=True)
    path = folder / "config.json"
    shutil.copy(CATALOG / "models" / model_index()["llama-3.1-8b"]["file"], path)
    return path


def _problem(model: str):
    return problem_from_raw({"model": model, "gpu": "h100-sxm", "workload": {"isl": 100, "osl": 100}})


def _stubs(bin_dir: Path, log: Path) -> None:
    """Executables that append their argv (NUL-separated, one record per line) to ``log``."""
    bin_dir.mkdir()
    for name in STUBS:
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\nprintf '%s\\0' {name} \"$@\" >> '{log}'\nprintf '\\n' >> '{log}'\n")
        stub.chmod(0o755)


def _run_all(files: dict[str, str], tmp: Path) -> list[list[str]]:
    """Run every exported .sh with bash (cwd: a fresh folder); the argv of every stub call."""
    out, run, log = tmp / "launch", tmp / "run", tmp / "argv.log"
    run.mkdir(parents=True)
    _stubs(tmp / "bin", log)
    paths = [p for p in write(ExportResult(engine="any", files=files), out) if p.suffix == ".sh"]
    env = {"PATH": f"{tmp / 'bin'}:/usr/bin:/bin", "HOME": str(tmp), **ENV}
    for path in paths:
        r = subprocess.run(["bash", str(path)], cwd=run, env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (path.name, r.stderr)
    text = log.read_text() if log.exists() else ""
    return [rec.rstrip("\0").split("\0") for rec in text.split("\n") if rec]


POOLS = {
    "one node": [Pool(phases=("prefill", "decode"), layout=Layout(tp=1), B={"decode": 8.0}, offset=0)],
    # two nodes per instance: HEAD_ADDR / NODE_k words, Ray for vLLM, mpirun for TensorRT-LLM
    "two nodes": [Pool(phases=("prefill", "decode"), layout=Layout(tp=8, pp=2), B={"decode": 8.0}, offset=0)],
    # disaggregated: SGLang's router, per-pool scripts
    "disaggregated": [Pool(phases=("prefill",), layout=Layout(tp=1), B={"prefill": 2.0}, offset=0),
                      Pool(phases=("decode",), layout=Layout(tp=2), B={"decode": 8.0}, offset=1)],
}


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_a_hostile_model_folder_runs_nothing_and_is_one_argument(tmp_path, engine, name):
    folder = tmp_path / "models" / name
    problem = _problem(str(_config_in(folder)))
    for case, pools in POOLS.items():
        res = export(problem, pools, engine)
        assert not res.substitutions, (case, res.substitutions)
        calls = _run_all(res.files, tmp_path / case)
        assert not list(tmp_path.rglob("PWNED")), (engine, case)
        served = [c for c in calls if {"serve", "sglang.launch_server", "trtllm-serve"} & set(c[:8])]
        assert served, (engine, case, calls)
        for argv in served:
            assert str(folder) in argv, (engine, case, argv)  # the whole folder, one literal word
        # Variables the operator sets are expanded, and only those.
        if case == "two nodes":
            words = " ".join(a for c in calls for a in c if a != str(folder))
            assert "10.0.0.1" in words and "${" not in words


def test_the_served_model_is_the_checkpoint_or_the_config_folder(tmp_path):
    assert served_model(load_model("deepseek-v3")) == "deepseek-ai/DeepSeek-V3"
    assert served_model(load_model("nvidia/DeepSeek-R1-NVFP4")) == "nvidia/DeepSeek-R1-NVFP4"
    path = _config_in(tmp_path / "-rf")
    assert served_model(load_model(str(path))) == str(path.parent)
    rel = load_model(str(path)).model_copy(update={"checkpoint": "-rf/config.json"})
    assert served_model(rel) == "./-rf"  # never read as a flag


@pytest.mark.parametrize("update, field", [
    ({"checkpoint": "", "name": "x;touch PWNED"}, "model.name"),
    ({"checkpoint": "", "name": "my model"}, "model.name"),
    ({"checkpoint": "org/model`id`"}, "model"),
    ({"checkpoint": "org/model\nid"}, "model"),
    ({"checkpoint": "-org/model"}, "model"),
    ({"checkpoint": "/models/x\n$(touch PWNED)/config.json"}, "model"),
    ({"checkpoint": "/models/x\x1b[2J/config.json"}, "model"),
])
def test_names_no_engine_could_load_are_refused(update, field):
    m = load_model("llama-3.1-8b").model_copy(update=update)
    with pytest.raises(SpecError) as err:
        served_model(m)
    assert err.value.field == field


@pytest.mark.parametrize("bad", ["x\n$(touch PWNED)", "y\rz", "t\tab", "e\x1b[31m"])
def test_export_refuses_a_folder_with_a_control_character_on_one_line(tmp_path, bad):
    path = _config_in(tmp_path / bad)
    r = subprocess.run([sys.executable, "-m", "meshplan.cli.main", "export", "--model", str(path), "--gpu", "h100",
                        "--isl", "100", "--osl", "100", "--engine", "vllm", "--strategy", "tp=1",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: model = ")
    assert "\x1b" not in r.stderr and "\r" not in r.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.rglob("PWNED"))


def test_devicemesh_holds_values_only_as_literals():
    lay = Layout(instances=2, pp=2, tp=2, dp=2, ep=4, etp=1)
    tree = ast.parse(snippet(lay))
    consts = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
              if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
    assert consts["LAYOUT"] == str(lay) and consts["WORLD"] == 16
    assert consts["SHAPE"] == {"instance": 2, "pp": 2, "dp": 2, "tp": 2}
