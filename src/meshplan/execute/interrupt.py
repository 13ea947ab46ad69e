"""SIGINT (Ctrl-C) and SIGTERM while a run's workers are up: the launcher records the signal
instead of dying where it stands, its watch loop sees it within one poll, stops every worker and
removes the run folder, and the caller gets RunInterrupted (the CLI exits 128 + the signal's
number, the shell convention: 130 for SIGINT, 143 for SIGTERM)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(BaseException):
    """A stop signal ended the run; by the time the caller sees this its workers are gone and
    its folder removed. A BaseException, as KeyboardInterrupt is, so ``except Exception`` on the
    way up does not swallow it."""

    def __init__(self, signum: int, workers: int, folder: str):
        self.signum = signum
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}: stopped {workers} worker process{'es' * (workers != 1)} "
                         f"and removed the run folder {folder}")


@contextmanager
def signals_recorded() -> Iterator[Callable[[], int | None]]:
    """Inside: SIGINT and SIGTERM are recorded, not acted on; yields a function that returns the
    first one received (or None). A signal the process ignores (SIG_IGN: a background job of a
    non-interactive shell ignores SIGINT) stays ignored. Handlers can only be set from the main
    thread; elsewhere the caller's own handling applies. A signal recorded but never acted on (it
    came after the run had finished) is delivered again on the way out, to the handlers restored."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    old = {}
    for s in STOP_SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            old[s] = signal.signal(s, lambda signum, _frame: got.append(signum))
    acted = False
    try:
        yield lambda: got[0] if got else None
    except RunInterrupted:
        acted = True
        raise
    finally:
        for s, handler in old.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if got and not acted:
            signal.raise_signal(got[0])
