"""Start one process per rank the way torchrun does, watch them, and collect the results.

A rank that exits with an error, or that makes no progress for ``timeout_s``, ends the run with a
message naming the rank and the step it was at; the other ranks are stopped. Layouts the model
cannot take are refused before any process starts, with the reason strategy.rules gives."""

from __future__ import annotations

import json
import os
from multiprocessing import shared_memory
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from meshplan.errors import SpecError
from meshplan.execute.model import RefConfig
from meshplan.execute.runner import rank_weight_bytes
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout
from meshplan.strategy.rules import check_layout


class RunFailed(RuntimeError):
    """A rank died or hung; the message names it and its step."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunSpec:
    layout: Layout
    config: RefConfig
    requests: int
    isl: int
    osl: int
    seed: int = 0
    dtype: str = "float32"
    timeout_s: float = 60.0
    fault: dict | None = None
    cuda: bool = False
    keep_logits: bool = True
    """Return every step's logits (the tests compare them; at full scale they are large)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Devices:
    """Where a run's ranks go: one GPU each with NCCL, or CPU processes with gloo."""

    cuda: bool
    note: str | None = None
    """Why a machine with GPUs runs on its CPU instead (too few GPUs for one per rank)."""

    @property
    def backend(self) -> str:
        return "nccl" if self.cuda else "gloo"


def gpu_count() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def choose_devices(lay: Layout, scale: str, gpus: int) -> Devices:
    """NCCL with one GPU per rank (LOCAL_RANK) when the machine has a GPU for every rank; gloo
    CPU processes otherwise, which only the tiny model can use."""
    if gpus >= lay.gpus:
        return Devices(cuda=True)
    if scale == "full":
        have = f"this machine has {gpus}" if gpus else "this machine has none"
        raise SpecError("--scale", scale, f"the full-size model runs one rank per GPU: {lay} needs {lay.gpus} "
                        f"GPUs and {have}; use --scale tiny to run it on CPU processes")
    note = (f"{lay.gpus} ranks and {gpus} GPU{'s' * (gpus != 1)} here: running CPU processes with gloo"
            if gpus else None)
    return Devices(cuda=False, note=note)


def gpu_memory_bytes() -> float:
    """Memory of GPU 0 (the ranks' GPUs are taken to be alike)."""
    import torch
    return float(torch.cuda.get_device_properties(0).total_memory)


def itemsize(dtype: str) -> int:
    import torch
    return getattr(torch, dtype).itemsize


WEIGHT_SHARE = 0.85
"""Weights may fill this fraction of a GPU's memory; the rest is for the KV cache, activations,
NCCL buffers and the CUDA context (vLLM's default gpu_memory_utilization is 0.9 for everything
the engine allocates, and the context and NCCL take part of what is left)."""


def oversized(cfg: RefConfig, lay: Layout, itemsize: int, gpu_memory_bytes: float) -> str | None:
    """Why the fullest rank's weights do not fit its GPU, or None."""
    need, rank = max((rank_weight_bytes(cfg, lay, r, itemsize), r) for r in range(lay.gpus))
    if need <= WEIGHT_SHARE * gpu_memory_bytes:
        return None
    return (f"rank {rank} would hold {need / 2**30:,.1f} GiB of weights and its GPU has "
            f"{gpu_memory_bytes / 2**30:,.1f} GiB ({WEIGHT_SHARE:.0%} of it for weights)")


def refuse_oversized(cfg: RefConfig, lay: Layout, itemsize: int, gpu_memory_bytes: float) -> None:
    """Refuse, before any process starts, a run whose fullest rank's weights do not fit its GPU."""
    why = oversized(cfg, lay, itemsize, gpu_memory_bytes)
    if why:
        raise SpecError("strategy", str(lay), f"{why}; use more GPUs or --scale tiny")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refuse_illegal(problem: Problem, lay: Layout, cfg: RefConfig) -> None:
    bad = check_layout(problem.model, problem.gpu, lay.tp, lay.dp, lay.pp, lay.ep, lay.etp)
    bad = [v for v in bad if v.rule.value not in ("tp_inside_node", "etp_inside_node")]  # one machine here
    if bad:
        raise SpecError("strategy", str(lay), "; ".join(f"[{v.rule.value}] {v.message}" for v in bad))
    for name, size, deg in (("FFN", cfg.ffn, lay.tp), ("expert FFN", cfg.expert_ffn, lay.etp),
                            ("hidden (etp combine blocks)", cfg.hidden, lay.etp),
                            ("vocabulary", cfg.vocab, lay.tp)):
        if size and size % deg:
            raise SpecError("strategy", str(lay), f"the {name} width {size} of the reference model does not split "
                            f"over {deg}")


def run(spec: RunSpec) -> list[dict]:
    """Run all ranks; returns each rank's report (rank order)."""
    world = spec.layout.gpus
    with tempfile.TemporaryDirectory(prefix="meshplan-run-") as tmp:
        d = Path(tmp)
        (d / "status").mkdir()
        doc = asdict(spec)
        doc.update(layout=spec.layout.model_dump(), status_dir=str(d / "status"), result=str(d / "result.json"))
        (d / "spec.json").write_text(json.dumps(doc))
        port = _free_port()
        # One byte per rank: 1 while the rank waits inside a collective. A rank that stops making
        # progress outside any collective is the one that hung; its peers are only waiting for it.
        flags = shared_memory.SharedMemory(create=True, size=world)
        flags.buf[:world] = bytes(world)
        doc["flags"] = flags.name
        (d / "spec.json").write_text(json.dumps(doc))
        procs = []
        for rank in range(world):
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), MESHPLAN_RUN=str(d / "spec.json"),
                       OMP_NUM_THREADS="1")
            # Output goes to files, not pipes: a chatty rank (NCCL_DEBUG=INFO) must never block
            # on a full pipe and look hung.
            with open(d / f"rank{rank}.out", "w") as out, open(d / f"rank{rank}.err", "w") as err:
                procs.append(subprocess.Popen([sys.executable, "-m", "meshplan.execute.worker"], env=env,
                                              stdout=out, stderr=err))
        try:
            _watch(procs, d, spec.timeout_s, flags)
        finally:
            flags.close()
            flags.unlink()
        return json.loads((d / "result.json").read_text())


def _status(status_dir: Path, rank: int) -> str:
    try:
        return (status_dir / f"rank{rank}").read_text()
    except OSError:
        return "not started"


def _last_error(run_dir: Path, rank: int) -> str | None:
    try:
        lines = (run_dir / f"rank{rank}.err").read_text().strip().splitlines()
    except OSError:
        return None
    return lines[-1] if lines else None


def _watch(procs, run_dir: Path, timeout_s: float, flags) -> None:
    status_dir = run_dir / "status"
    last_change = time.monotonic()
    seen = {}
    while True:
        codes = [p.poll() for p in procs]
        if all(c == 0 for c in codes):
            return
        failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            # The first rank seen failing is the cause; its peers fail later, when their
            # collectives time out waiting for it.
            r = min(failed)
            err = _last_error(run_dir, r)
            _stop(procs)
            raise RunFailed(f"rank {r} exited with code {codes[r]} at {_status(status_dir, r)}"
                            + (f": {err}" if err else ""))
        now = {r: _status(status_dir, r) for r in range(len(procs))}
        if now != seen:
            seen, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > timeout_s:
            alive = [r for r in range(len(procs)) if codes[r] is None]
            outside = [r for r in alive if flags.buf[r] == 0]
            stuck = min(outside or alive, key=lambda r: (_step_no(now[r]), r))
            _stop(procs)
            raise RunFailed(f"rank {stuck} made no progress for {timeout_s:g} s at {now[stuck]} (hung)")
        time.sleep(0.05)


def _step_no(status: str) -> int:
    parts = status.split()
    return int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else -1


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()
