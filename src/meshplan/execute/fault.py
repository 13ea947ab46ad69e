"""Fault injection for runs: one rank dies, hangs or pauses at a named phase, so the launcher's
watchdog and its stop paths can be tested deterministically (no test waits on a machine being
fast or slow).

A fault comes from RunSpec.fault or, for a whole ``meshplan run``, from the MESHPLAN_FAULT
environment variable, e.g. ``rank=1,step=2,kind=hang`` or
``rank=1,phase=start,kind=sleep,seconds=20``. Phases are the ones a rank reports (worker.py):
``start`` (before its first report, while the process is still starting up), ``init``,
``weights of layer I``, ``link``, ``warm-up``, ``step N``, ``done``; ``step=N`` is short for
``phase=step N``."""

from __future__ import annotations

import os
import time

from meshplan.errors import SpecError

FAULT_ENV = "MESHPLAN_FAULT"
KINDS = ("die", "hang", "sleep")
"""die: exit with DIE_CODE at once; hang: block forever; sleep: pause ``seconds``, then go on."""
DIE_CODE = 17
_RULE = "must be rank=R,(step=N|phase=P),kind=die|hang|sleep[,seconds=S], e.g. rank=1,step=2,kind=hang"


def fault_from_env() -> dict | None:
    """The fault MESHPLAN_FAULT names, or None when it is unset or empty."""
    text = os.environ.get(FAULT_ENV, "").strip()
    return parse_fault(text) if text else None


def parse_fault(text: str) -> dict:
    """``rank=1,step=2,kind=hang`` -> {"rank": 1, "phase": "step 2", "kind": "hang", "seconds": 0.0}."""
    try:
        raw = dict(part.split("=", 1) for part in text.split(","))
    except ValueError:
        raise SpecError(FAULT_ENV, text, _RULE) from None
    return normal({k.strip(): v.strip() for k, v in raw.items()}, field=FAULT_ENV, shown=text)


def normal(fault: dict, *, field: str = "fault", shown: object = None) -> dict:
    """A fault in one form: rank, phase, kind, seconds (``step`` folded into ``phase``)."""
    try:
        phase = fault["phase"] if "phase" in fault else f"step {int(fault['step'])}"
        out = {"rank": int(fault["rank"]), "phase": str(phase), "kind": str(fault["kind"]),
               "seconds": float(fault.get("seconds", 0.0))}
    except (KeyError, TypeError, ValueError):
        out = None
    if (out is None or set(fault) - {"rank", "step", "phase", "kind", "seconds"} or out["kind"] not in KINDS
            or out["rank"] < 0 or ("step" in fault and "phase" in fault)):
        raise SpecError(field, fault if shown is None else shown, _RULE)
    return out


def inject(fault: dict | None, rank: int, phase: str) -> None:
    """Called by a worker as it enters each phase: act out the fault if it is this rank's."""
    if not fault or fault["rank"] != rank or fault["phase"] != phase:
        return
    if fault["kind"] == "die":
        os._exit(DIE_CODE)
    if fault["kind"] == "sleep":
        time.sleep(fault["seconds"])
        return
    while True:  # hang: block for good, until the launcher stops this process
        time.sleep(3600)
