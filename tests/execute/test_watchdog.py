"""The launcher's watchdog on a scripted run: fake processes, status files and flags written by
the test, and a fake clock that moves only when the watchdog sleeps. Nothing here depends on how
fast the machine is: start-up slower than the timeout is not a hang, a hung rank is named with
its phase at exactly the timeout, and a rank that dies outside a collective is blamed before a
peer that died waiting for it."""

import pytest

from meshplan.errors import SpecError
from meshplan.execute import watchdog
from meshplan.execute.fault import normal, parse_fault
from meshplan.execute.watchdog import RunFailed, watch

TIMEOUT, STARTUP = 5.0, 100.0


class Proc:
    def __init__(self):
        self.code = None

    def poll(self):
        return self.code


class Scripted:
    """A run of ``world`` ranks played from a script: {time: [(rank, phase, flag, exit code)]};
    a phase None leaves the rank's report as it is; flag 1 means waiting inside a collective."""

    def __init__(self, tmp_path, monkeypatch, world, script):
        self.dir, self.now, self.script = tmp_path, 0.0, dict(script)
        (tmp_path / "status").mkdir()
        self.procs, self.flags = [Proc() for _ in range(world)], bytearray(world)
        monkeypatch.setattr(watchdog.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(watchdog.time, "sleep", self.sleep)
        self.play()

    def play(self):
        for t in sorted(t for t in self.script if t <= self.now):
            for rank, phase, flag, code in self.script.pop(t):
                if phase is not None:
                    (self.dir / "status" / f"rank{rank}").write_text(phase)
                self.flags[rank], self.procs[rank].code = flag, code

    def sleep(self, dt):
        self.now += 1.0  # coarser than the real poll: the outcome does not depend on it
        self.play()

    def watch(self, interrupted=lambda: None):
        return watch(self.procs, self.dir, self.flags, timeout_s=TIMEOUT, startup_s=STARTUP, interrupted=interrupted)


def test_start_up_slower_than_the_timeout_is_not_a_hang(tmp_path, monkeypatch):
    # Rank 0 starts at once and waits in the rendezvous; rank 1 takes 50 s to start (importing
    # torch on a busy machine), ten times the timeout. Both then leave the wait and work on in
    # "init" for 2 s (rank 0 has been in that phase for 52 s, all but 2 of them waiting), and finish.
    script = {0: [(0, "init", 1, None)], 50: [(1, "init", 1, None)], 51: [(0, None, 0, None), (1, None, 0, None)],
              53: [(0, "weights of layer 0", 0, None), (1, "weights of layer 0", 0, None)],
              54: [(0, "step 0", 0, None), (1, "step 0", 0, None)],
              56: [(0, "done", 0, None), (1, "done", 0, None)], 57: [(0, None, 0, 0), (1, None, 0, 0)]}
    run = Scripted(tmp_path, monkeypatch, 2, script)
    assert run.watch() is None
    assert run.now == 57


def test_time_spent_waiting_on_peers_is_not_counted_against_a_phase(tmp_path, monkeypatch):
    # Rank 0 waits 30 s inside a collective for rank 1 (which works, reporting new phases), then
    # leaves the wait and stops outside it, in the same phase: it is named 5 s after it left.
    script = {0: [(0, "step 0", 1, None), (1, "step 0", 0, None)], 30: [(0, None, 0, None)]}
    script.update({4 * k: [(1, f"weights of layer {k}", 0, None)] for k in range(1, 20)})
    run = Scripted(tmp_path, monkeypatch, 2, script)
    with pytest.raises(RunFailed, match=r"^rank 0 made no progress for 5 s at step 0 \(hung\)$"):
        run.watch()
    assert run.now == 29 + TIMEOUT + 1  # last seen waiting at 29


def test_a_rank_that_never_starts_is_named_after_the_start_up_limit(tmp_path, monkeypatch):
    run = Scripted(tmp_path, monkeypatch, 3, {0: [(0, "init", 1, None), (2, "init", 1, None)]})
    with pytest.raises(RunFailed, match=r"^rank 1 did not start within 100 s \(hung at start-up\)$"):
        run.watch()
    assert run.now == STARTUP + 1


@pytest.mark.parametrize("phase", ["step 2", "warm-up", "weights of layer 3"])
def test_a_hung_rank_is_named_with_its_phase_when_its_timeout_runs_out(tmp_path, monkeypatch, phase):
    # Rank 1 starts late and then stops at ``phase`` outside any collective; ranks 0 and 2 wait for
    # it inside collectives (they have been still for longer, and are not to blame).
    script = {0: [(0, "init", 1, None), (2, "init", 1, None)], 30: [(1, "init", 1, None)],
              31: [(r, "link", 0, None) for r in range(3)], 32: [(0, phase, 1, None), (2, phase, 1, None)],
              34: [(1, phase, 0, None)]}
    run = Scripted(tmp_path, monkeypatch, 3, script)
    with pytest.raises(RunFailed, match=rf"^rank 1 made no progress for 5 s at {phase} \(hung\)$"):
        run.watch()
    assert run.now == 34 + TIMEOUT + 1


def test_a_rank_still_in_one_phase_but_waiting_on_a_peer_still_working_is_not_hung(tmp_path, monkeypatch):
    # Rank 1 computes for 4 s per step (under the timeout); rank 0 waits for it in a collective
    # for the whole 40 s. Nobody hangs.
    script = {0: [(0, "step 0", 1, None), (1, "step 0", 0, None)]}
    script.update({4 * k: [(1, f"step {k}", 0, None)] for k in range(1, 10)})
    script[40] = [(0, None, 0, 0), (1, None, 0, 0)]
    assert Scripted(tmp_path, monkeypatch, 2, script).watch() is None


def test_ranks_all_waiting_inside_collectives_are_a_deadlock(tmp_path, monkeypatch):
    script = {0: [(0, "step 3", 1, None), (1, "step 2", 1, None)]}
    with pytest.raises(RunFailed, match=r"^rank 1 made no progress for 5 s at step 2 \(hung\)$"):
        Scripted(tmp_path, monkeypatch, 2, script).watch()


def test_the_rank_that_died_outside_a_collective_is_blamed_not_its_waiting_peer(tmp_path, monkeypatch):
    # Seen dead at the same look: rank 0 failed inside a collective (flag still set) because rank 1
    # exited outside one.
    script = {0: [(0, "step 2", 1, None), (1, "step 2", 0, None)], 3: [(0, None, 1, 1), (1, None, 0, 17)]}
    run = Scripted(tmp_path, monkeypatch, 2, script)
    (tmp_path / "rank1.err").write_text("boom\nlast words\n")
    with pytest.raises(RunFailed, match=r"^rank 1 exited with code 17 at step 2: last words$"):
        run.watch()


def test_a_stop_signal_ends_the_watch_even_as_workers_die_of_it(tmp_path, monkeypatch):
    # Ctrl-C reaches the workers too: their exits then are the signal's doing, not failures.
    script = {0: [(0, "step 0", 0, None), (1, "step 0", 0, None)], 2: [(0, None, 0, -2)]}
    run = Scripted(tmp_path, monkeypatch, 2, script)
    assert run.watch(interrupted=lambda: 2 if run.now >= 2 else None) == 2


def test_faults_read_from_the_environment():
    assert parse_fault("rank=1,step=2,kind=hang") == {"rank": 1, "phase": "step 2", "kind": "hang", "seconds": 0.0}
    assert parse_fault("rank=0, phase=warm-up, kind=sleep, seconds=3")["seconds"] == 3.0
    assert normal({"rank": 1, "step": 2, "kind": "die"})["phase"] == "step 2"
    for bad in ("rank=1", "rank=1,step=2,kind=explode", "rank=-1,step=2,kind=die", "nonsense",
                "rank=1,step=2,phase=init,kind=die"):
        with pytest.raises(SpecError, match="MESHPLAN_FAULT"):
            parse_fault(bad)
