"""A simulation as a Chrome trace (Trace Event Format; opens in Perfetto and chrome://tracing).

One process per micro-batch group with its iterations (a run of identical decode iterations is
one slice, named with its count), and one process "requests" with each request's wait-and-prefill
span and decode span: a closed loop's on a track per client (its requests one after another),
open-loop arrivals spread over ``lanes`` tracks.
Times are microseconds (the format's unit).
"""

from __future__ import annotations

import numpy as np

from meshplan.simulate.loop import Result

US = 1e6
REQUEST_PID = 1_000_000


def trace_events(res: Result, lanes: int = 64) -> dict:
    """The trace document."""
    events: list[dict] = []
    groups = sorted({s.group for s in res.spans})
    for g in groups:
        role = res.roles[g] if g < len(res.roles) else "aggregated"
        events.append({"name": "process_name", "ph": "M", "pid": g, "args": {"name": f"{role} group {g}"}})
    for s in res.spans:
        kind = "prefill+decode" if s.prefill_tokens and s.decode_seqs else "prefill" if s.prefill_tokens else "decode"
        name = kind if s.count == 1 else f"{kind} x{s.count}"
        events.append({"name": name, "ph": "X", "pid": s.group, "tid": 0, "ts": s.start_s * US,
                       "dur": s.duration_s * s.count * US,
                       "args": {"decode_seqs": s.decode_seqs, "prefill_tokens": s.prefill_tokens,
                                "iterations": s.count, "iteration_ms": s.duration_s * 1e3}})
    r = res.requests
    events.append({"name": "process_name", "ph": "M", "pid": REQUEST_PID, "args": {"name": "requests"}})
    for i in range(r.isl.size):
        if not np.isfinite(r.finish_s[i]):
            continue
        tid = int(r.client[i]) if r.client[i] >= 0 else i % lanes
        args = {"request": i, "input_tokens": int(r.isl[i]), "output_tokens": int(r.osl[i]),
                "preemptions": int(r.preempted[i])}
        events.append({"name": f"request {i}: wait + prefill", "ph": "X", "pid": REQUEST_PID, "tid": tid,
                       "ts": r.send_s[i] * US, "dur": (r.first_s[i] - r.send_s[i]) * US, "args": args})
        events.append({"name": f"request {i}: decode", "ph": "X", "pid": REQUEST_PID, "tid": tid,
                       "ts": r.first_s[i] * US, "dur": (r.finish_s[i] - r.first_s[i]) * US, "args": args})
    return {"traceEvents": events, "displayTimeUnit": "ms"}
