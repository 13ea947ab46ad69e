"""SIGINT (Ctrl-C) and SIGTERM stop a `meshplan run`: its workers end, its run folder goes, and it
exits 128 + the signal's number with one line. The run is held still by a rank that blocks for
good at its first step (MESHPLAN_FAULT), so the signal always lands while the workers are up,
however slow the machine; the test waits on their status files, never on a fixed sleep."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from meshplan.execute.interrupt import RunInterrupted, signals_recorded  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")

GUARD_S = 600
"""Only a guard against waiting forever when something is broken; no test passes by being fast."""


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc/<pid>/stat."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            pids.append(int(d.name))
    return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait_until_hung(tmp: Path, launcher: subprocess.Popen) -> Path:
    """The run folder, once rank 1 has reached its first step (both workers are up: rank 0 waits
    for rank 1 in a collective)."""
    deadline = time.monotonic() + GUARD_S
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.communicate()
        for run_dir in tmp.glob("meshplan-run-*"):
            try:
                if (run_dir / "status" / "rank1").read_text() == "step 0":
                    return run_dir
            except OSError:
                pass
        time.sleep(0.1)
    raise AssertionError("the run's workers never reached step 0")


def _sigint_default():
    # A background job of a non-interactive shell starts with SIGINT ignored, and run() leaves an
    # ignored signal ignored: give the launcher the terminal default, as an interactive shell does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("name, whole_group", [("SIGINT", True), ("SIGTERM", False)])
def test_a_stop_signal_ends_the_workers_and_removes_the_run_folder(tmp_path, name, whole_group):
    sig = getattr(signal, name)
    env = dict(os.environ, TMPDIR=str(tmp_path), MESHPLAN_FAULT="rank=1,step=0,kind=hang")
    cmd = [sys.executable, "-m", "meshplan.cli.main", "run", "--strategy", "dp=2,ep=2", "--requests", "2",
           "--run-isl", "4", "--run-osl", "2", "--timeout", "3600"]
    launcher = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=_sigint_default)
    try:
        run_dir = _wait_until_hung(tmp_path, launcher)
        workers = [p for p in _group(launcher.pid) if "meshplan.execute.worker" in _cmdline(p)]
        assert len(workers) == 2, workers
        if whole_group:  # Ctrl-C in a terminal: the launcher and its workers all get SIGINT
            os.killpg(launcher.pid, sig)
        else:  # kill: the launcher alone
            os.kill(launcher.pid, sig)
        _, err = launcher.communicate(timeout=GUARD_S)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    assert launcher.returncode == 128 + sig, err
    assert err.strip().splitlines()[-1] == (f"meshplan run: interrupted by {name}: stopped 2 worker processes "
                                            f"and removed the run folder {run_dir}"), err
    assert "Traceback" not in err
    assert _group(launcher.pid) == []
    assert not run_dir.exists() and not list(tmp_path.glob("meshplan-run-*"))


def test_signals_are_recorded_inside_and_handled_as_before_outside():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted) as stopped:
        with signals_recorded() as interrupted:
            assert interrupted() is None
            os.kill(os.getpid(), signal.SIGTERM)
            while interrupted() is None:  # recorded at this thread's next bytecode
                pass
            raise RunInterrupted(interrupted(), 2, "/tmp/x")  # acted on: not delivered again
    assert stopped.value.exit_code == 143
    assert str(stopped.value) == "interrupted by SIGTERM: stopped 2 worker processes and removed the run folder /tmp/x"
    assert signal.getsignal(signal.SIGTERM) is before
    # A signal recorded after the run finished is delivered again, to the handler restored.
    seen = []
    old = signal.signal(signal.SIGINT, lambda s, _f: seen.append(s))
    try:
        with signals_recorded():
            os.kill(os.getpid(), signal.SIGINT)
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, old)
