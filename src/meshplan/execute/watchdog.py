"""The launcher's watch over a run's ranks: which rank failed or hung, and in which phase.

Each rank reports its phase in status/rank<R> (worker.py: init, weights of layer I, link, warm-up,
step N, done) and sets its byte of the flags file while it waits on its peers (rendezvous, group
set-up and every collective, comm.Comm.waiting). A rank's no-progress clock starts at its first
report, once its process is up and has imported torch: start-up under load can take longer than
the timeout, and has its own, longer limit. The clock restarts at each new phase and whenever the
rank is seen waiting on its peers, so only time spent working in one phase counts: a rank that
waited a minute in the rendezvous for a slow peer is not hung the moment it leaves it.

Hung: a started rank that has worked in one phase, outside any collective, for ``timeout_s``.
Its peers inside collectives are only waiting for it. When every rank has started and all have
sat in their phases that long, each waiting inside a collective (a deadlock), the one furthest
behind is named."""

from __future__ import annotations

import time
from pathlib import Path

POLL_S = 0.05
"""Seconds between looks at the ranks (exit codes, phases, flags, stop signals)."""


class RunFailed(RuntimeError):
    """A rank died or hung; the message names it and its phase."""


def read_status(status_dir: Path, rank: int) -> str | None:
    """The phase ``rank`` last reported, or None before its first report (written atomically)."""
    try:
        return (status_dir / f"rank{rank}").read_text()
    except OSError:
        return None


def watch(procs, run_dir: Path, flags, *, timeout_s: float, startup_s: float, interrupted) -> int | None:
    """Wait for the ranks. Returns None when every rank has exited 0, or the number of the stop
    signal ``interrupted()`` reports; raises RunFailed naming the rank that failed or hung.
    ``flags[r]`` is 1 while rank r waits on its peers."""
    status_dir = run_dir / "status"
    launched = time.monotonic()
    phase: dict[int, str] = {}
    moved: dict[int, float] = {}
    """Per started rank: the phase last read, and when it was first read."""
    working: dict[int, float] = {}
    """Per started rank: since when it has been in its phase and not seen waiting on its peers."""
    while True:
        codes = [p.poll() for p in procs]
        # After the poll: a Ctrl-C reaches the workers too, and their deaths are its, not failures.
        signum = interrupted()
        if signum is not None:
            return signum
        if all(c == 0 for c in codes):
            return None
        if any(c not in (None, 0) for c in codes):
            raise RunFailed(_failure(codes, run_dir, flags))
        now = time.monotonic()
        for r in range(len(procs)):
            s = read_status(status_dir, r)
            if s is not None and s != phase.get(r):
                phase[r], moved[r], working[r] = s, now, now
            elif s is not None and flags[r]:
                working[r] = now
        alive = [r for r, c in enumerate(codes) if c is None]
        late = [r for r in alive if r not in phase]
        if late and now - launched > startup_s:
            raise RunFailed(f"{_ranks(late)} did not start within {startup_s:g} s (hung at start-up)")
        stuck = _stuck(alive, bool(late), phase, moved, working, flags, now - timeout_s)
        if stuck is not None:
            raise RunFailed(f"rank {stuck} made no progress for {timeout_s:g} s at {phase[stuck]} (hung)")
        time.sleep(POLL_S)


def _stuck(alive: list[int], any_late: bool, phase: dict[int, str], moved: dict[int, float],
           working: dict[int, float], flags, still_since: float) -> int | None:
    """The hung rank (see the module docstring), or None."""
    outside = [r for r in alive if r in working and working[r] < still_since and flags[r] == 0]
    if not outside and (any_late or not all(flags[r] == 1 and moved[r] < still_since for r in alive)):
        return None
    return min(outside or alive, key=lambda r: (_step_no(phase[r]), r))


def _failure(codes: list[int | None], run_dir: Path, flags) -> str:
    failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
    # A rank that died outside any collective is the cause; a peer that died inside one (its flag
    # is still set) failed waiting for it. Both can be seen dead at the same look on a busy machine.
    r = min([r for r in failed if flags[r] == 0] or failed)
    err = _last_error(run_dir, r)
    return (f"rank {r} exited with code {codes[r]} at {read_status(run_dir / 'status', r) or 'not started'}"
            + (f": {err}" if err else ""))


def _ranks(ranks: list[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks))}"


def _last_error(run_dir: Path, rank: int) -> str | None:
    try:
        lines = (run_dir / f"rank{rank}.err").read_text().strip().splitlines()
    except OSError:
        return None
    return lines[-1] if lines else None


def _step_no(status: str) -> int:
    parts = status.split()
    return int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else -1


def stop(procs) -> None:
    """Kill every rank still running and reap them all."""
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()
