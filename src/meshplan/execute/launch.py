"""Start one process per rank the way torchrun does, watch them, and collect the results.

A rank that exits with an error, or that makes no progress for ``timeout_s`` once it has started,
ends the run with a message naming the rank and the phase it was in (watchdog.py); SIGINT and
SIGTERM end it too (interrupt.py). Either way the other ranks are stopped and the run folder
removed. Layouts the model cannot take are refused before any process starts, with the reason
strategy.rules gives."""

from __future__ import annotations

import json
import mmap
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from meshplan.errors import SpecError
from meshplan.execute.fault import fault_from_env, normal
from meshplan.execute.interrupt import RunInterrupted, signals_recorded
from meshplan.execute.model import RefConfig
from meshplan.execute.runner import rank_weight_bytes
from meshplan.execute.watchdog import RunFailed, stop, watch  # noqa: F401 (RunFailed: callers import it here)
from meshplan.specs.problem import Problem
from meshplan.strategy.layout import Layout
from meshplan.strategy.rules import Rule, layout_violations


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
    """A started rank that stays in one phase this long outside any collective has hung (watchdog.py)."""
    startup_timeout_s: float = 600.0
    """Seconds a rank may take to start (its process up, torch imported) before it counts as hung:
    under load, or with 8 ranks on 2 cores, importing torch alone can take longer than timeout_s."""
    fault: dict | None = None
    """Fault injection for tests (fault.py); None reads MESHPLAN_FAULT."""
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
    return float(torch.cuda.get_device_properties(0).total_memory)


def itemsize(dtype: str) -> int:
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
    if problem.assumptions.redundant_experts:
        raise SpecError("assumptions.redundant_experts", problem.assumptions.redundant_experts,
                        "the executor places each routed expert once (no EPLB replicas); run the plan with 0")
    bad = layout_violations(problem, lay)
    bad = [v for v in bad if v.rule not in (Rule.TP_INSIDE_NODE, Rule.ETP_INSIDE_NODE)]  # one machine here
    if bad:
        raise SpecError("strategy", str(lay), "; ".join(f"[{v.rule.value}] {v.message}" for v in bad))
    for name, size, deg in (("FFN", cfg.ffn, lay.tp), ("expert FFN", cfg.expert_ffn, lay.etp),
                            ("hidden (etp combine blocks)", cfg.hidden, lay.etp),
                            ("vocabulary", cfg.vocab, lay.tp)):
        if size and size % deg:
            raise SpecError("strategy", str(lay), f"the {name} width {size} of the reference model does not split "
                            f"over {deg}")


def run(spec: RunSpec) -> list[dict]:
    """Run all ranks; returns each rank's report (rank order). Raises RunFailed when a rank dies
    or hangs and RunInterrupted on SIGINT or SIGTERM; either way every worker is stopped and the
    run folder removed first."""
    world = spec.layout.gpus
    fault = normal(spec.fault) if spec.fault is not None else fault_from_env()
    with signals_recorded() as interrupted, tempfile.TemporaryDirectory(prefix="meshplan-run-") as tmp:
        d = Path(tmp)
        (d / "status").mkdir()
        doc = asdict(spec)
        # One byte per rank, 1 while the rank waits on its peers (watchdog.py). A plain file
        # mapped by every process: it goes with the folder, and no resource-tracker process
        # outlives the run as multiprocessing's shared memory would leave.
        (d / "flags").write_bytes(bytes(world))
        doc.update(layout=spec.layout.model_dump(), status_dir=str(d / "status"), result=str(d / "result.json"),
                   flags=str(d / "flags"), fault=fault)
        (d / "spec.json").write_text(json.dumps(doc))
        port = _free_port()
        procs: list[subprocess.Popen] = []
        with open(d / "flags", "r+b") as f, mmap.mmap(f.fileno(), world) as flags:
            try:
                for rank in range(world):
                    if interrupted() is not None:
                        break
                    procs.append(_start(rank, world, port, d))
                signum = watch(procs, d, flags, timeout_s=spec.timeout_s, startup_s=spec.startup_timeout_s,
                               interrupted=interrupted)
            finally:
                stop(procs)
        if signum is not None:
            raise RunInterrupted(signum, len(procs), tmp)
        return json.loads((d / "result.json").read_text())


def _start(rank: int, world: int, port: int, d: Path) -> subprocess.Popen:
    env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), MESHPLAN_RUN=str(d / "spec.json"),
               OMP_NUM_THREADS="1")
    # Output goes to files, not pipes: a chatty rank (NCCL_DEBUG=INFO) must never block on a
    # full pipe and look hung.
    with open(d / f"rank{rank}.out", "w") as out, open(d / f"rank{rank}.err", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "meshplan.execute.worker"], env=env, stdout=out, stderr=err)
