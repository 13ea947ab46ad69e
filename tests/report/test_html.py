"""The HTML report (meshplan report, plan --html / --csv / --plot): self-contained, escaped, drawn
in a real browser (headless Chromium, skipped where it is missing)."""

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("plotly")

from meshplan.cli.report_cmd import VALIDATION, closeness  # noqa: E402
from meshplan.fidelity.validation import validate_silicon  # noqa: E402
from meshplan.io.problem_file import problem_from_raw  # noqa: E402

ROOT = Path(__file__).parents[2]
DEV = ROOT.parent / "shared" / "cases" / "silicon-dev.csv"
EVIL = "<script>alert(1)"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def run(*args):
    return subprocess.run([sys.executable, "-m", "meshplan.cli.main", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A report for a model whose name (from its config file's name) is a script tag, and a problem
    whose name is one too."""
    d = tmp_path_factory.mktemp("report")
    model = d / f"{EVIL}.json"
    shutil.copy(ROOT / "src/meshplan/catalog/models/meta-llama--Meta-Llama-3.1-8B.config.json", model)
    problem = d / "problem.yaml"
    problem.write_text(json.dumps({"name": "<script>alert(2)</script>", "model": str(model), "gpu": "h100",
                                   "workload": {"isl": 1000, "osl": 200, "concurrency": 16},
                                   "requirements": {"ttft_s": 1.0, "tpot_s": 0.05}}))
    out = d / "plan.html"
    r = run("report", str(problem), "--gpus", "2", "--html", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_page_is_self_contained_and_escapes_user_text(page):
    text = page.read_text()
    # Nothing is fetched: no script, stylesheet or image from elsewhere.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"?https?:", text)
    # The user's strings appear only escaped: as HTML text, or as \u003c inside the figures' JSON.
    assert EVIL not in text and "<script>alert(2)" not in text
    assert "&lt;script&gt;alert(1)" in text and "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    for div in ("summary", "requirements", "gpu-map", "pareto", "memory", "dag", "candidates", "assumptions"):
        assert f'id="{div}"' in text, div


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_page_draws_in_a_real_browser(page, tmp_path):
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=10000"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=300)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    html = dom.stdout
    for div in ("gpu-map", "pareto", "memory"):
        # Plotly draws into the div: its SVG root appears inside it once the script has run.
        start = html.index(f'id="{div}"')
        assert "main-svg" in html[start:start + 20_000], div
    assert "chosen plan" in html  # the chosen plan's trace, marked in the legend
    # The model's name shows as text, and no script element holding it was created.
    assert "&lt;script&gt;alert(1)" in html and EVIL not in html
    shot = tmp_path / "page.png"
    r = subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and shot.stat().st_size > 20_000


def test_plan_writes_html_csv_and_png(tmp_path):
    r = run("plan", "--model", "llama-3.1-8b", "--gpu", "h100", "--gpus", "4", "--isl", "1000", "--osl", "200",
            "--concurrency", "32", "--json", str(tmp_path / "p.json"), "--html", str(tmp_path / "p.html"),
            "--csv", str(tmp_path / "csv"), "--plot", str(tmp_path / "png"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "p.json").read_text())
    rows = list(csv.DictReader((tmp_path / "csv" / "candidates.csv").open()))
    assert rows[0]["label"] == doc["label"] and rows[0]["why"] == "chosen"
    assert len(rows) == 1 + len(doc["runner_ups"]) + len(doc["pruned"]["examples"])
    pareto = list(csv.DictReader((tmp_path / "csv" / "pareto.csv").open()))
    assert [p["label"] for p in pareto] == [p["label"] for p in doc["pareto"]]
    assert float(pareto[0]["output_tok_s_per_gpu"]) == pytest.approx(doc["pareto"][0]["output_tok_s_per_gpu"])
    for name in ("pareto.png", "memory.png"):
        assert (tmp_path / "png" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "chosen plan" in (tmp_path / "p.html").read_text()
    # The same plan JSON renders by meshplan report too.
    r = run("report", str(tmp_path / "p.json"), "--html", str(tmp_path / "again.html"))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args, field", [
    (["plan", "--html", "{d}"], "--html"),
    (["plan", "--csv", "{d}/f.txt"], "--csv"),
    (["plan", "--plot", "{d}/no/such/dir"], "--plot"),
    (["report", "--html", "{d}/missing/x.html"], "--html"),
    (["report", "{d}/p.json", "--html", "{d}/x.html", "--strategy", "tp=2"], "--strategy"),
])
def test_bad_report_targets_exit_2(tmp_path, args, field):
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "p.json").write_text(json.dumps({"schema": "meshplan.plan/1"}))
    r = run(*[a.format(d=tmp_path) for a in args])
    assert r.returncode == 2, r.stderr
    assert field in r.stderr and "Traceback" not in r.stderr


def test_closeness_reads_the_validation_summary():
    problem = problem_from_raw({"model": "deepseek-v3", "gpu": "b200", "workload": {"isl": 1000, "osl": 100}})
    rows = closeness(problem)
    assert rows and rows[0]["what"] == "model and GPU"
    parts = json.loads(VALIDATION.read_text())["summary"]["partitions"]
    first = rows[0]
    match = [p for p in parts if (p["backend"], p["gpu"], p["model"], p["mode"])
             == (first["backend"], first["gpu"], first["model"], first["mode"])]
    assert match and match[0]["ttft_median_abs"] == first["ttft_abs"]
    assert {r["what"] for r in rows} <= {"model and GPU", "model", "GPU"}


@pytest.mark.skipif(not DEV.is_file(), reason="needs ../shared/cases/silicon-dev.csv")
def test_bundled_validation_summary_matches_the_model():
    # The report's 'how close' table must be today's: the bundled summary equals a fresh validation
    # (regenerate: meshplan validate ../shared/cases/silicon-dev.csv --json F, keep schema,
    # calibration and summary; see cli/report_cmd.py VALIDATION).
    fresh = validate_silicon(DEV).to_json()["summary"]["partitions"]
    bundled = json.loads(VALIDATION.read_text())["summary"]["partitions"]
    assert len(fresh) == len(bundled)
    for a, b in zip(fresh, bundled):
        assert {k: a[k] for k in ("backend", "gpu", "model", "mode", "predicted")} == \
               {k: b[k] for k in ("backend", "gpu", "model", "mode", "predicted")}
        for k in ("ttft_median_abs", "tpot_median_abs"):
            assert (a[k] != a[k] and b[k] != b[k]) or a[k] == pytest.approx(b[k], abs=1e-9), (a, k)  # NaN: none predicted


def test_report_with_a_simulation_and_another_validation_file(tmp_path):
    # --sim draws the chosen plan's latency CDFs and timeline; --validation takes any meshplan
    # validate --json output (here: the bundled sample's, so only its partitions can match).
    v = tmp_path / "v.json"
    r = run("validate", str(ROOT / "tests/fidelity/fixtures/silicon-sample.csv"), "--json", str(v))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "sim.html"
    r = run("report", "--model", "llama-3.1-8b", "--gpu", "h100", "--gpus", "2", "--isl", "500", "--osl", "100",
            "--concurrency", "8", "--sim", "--validation", str(v), "--html", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert 'id="latency-cdf"' in text and 'id="timeline"' in text and 'id="iterations"' in text
    assert "requests (closed loop of" in text
    assert 'id="fidelity"' in text


def test_page_lists_the_engine_profile_with_what_each_fact_is(page):
    text = page.read_text()
    start = text.index('id="engine"')
    table = text[start:text.index("</table>", start)]
    # The engine's per-iteration token budget, by GPU memory tier, with the first sentence of its note.
    assert "token_budget" in table and "from 70 GiB: 8192" in table
    assert "Tokens one iteration may carry per attention-dp rank" in table


def test_plan_sim_html_lists_the_simulated_candidates(tmp_path):
    out = tmp_path / "p.html"
    r = run("plan", "--model", "llama-3.1-8b", "--gpu", "h100", "--gpus", "2", "--isl", "500", "--osl", "100",
            "--concurrency", "8", "--ttft", "1", "--tpot", "0.05", "--sim", "--json", str(tmp_path / "p.json"),
            "--html", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "p.json").read_text())
    text = out.read_text()
    start = text.index('id="simulated"')
    table = text[start:text.index("</table>", start)]
    # One row per simulated candidate, in the plan's order, with its goodput (against the targets)
    # as a share.
    assert table.count("<tr>") == 1 + len(doc["simulation"])
    first = doc["simulation"][0]
    assert first["label"] in table and f"{first['goodput']:.0%}" in table
