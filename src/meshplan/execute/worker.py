"""One process of a run, started the way torchrun starts workers (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT in the environment) plus MESHPLAN_RUN (a JSON spec file)."""

from __future__ import annotations

import json
import mmap
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from meshplan.cost.roofline import Collective, ring_factor
from meshplan.execute.comm import Comm
from meshplan.execute.fault import inject
from meshplan.execute.model import RefConfig
from meshplan.execute.runner import Runner
from meshplan.specs.model import LayerKind
from meshplan.strategy.layout import Layout
from meshplan.strategy.mesh import coords_of


def prompts(cfg: RefConfig, n: int, isl: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, cfg.vocab, (isl,), generator=g, device="cpu").to(torch.get_default_device())
            for _ in range(n)]


def my_requests(lay: Layout, rank: int, n: int) -> list[int]:
    """The request router: request i goes to slot i mod (instances x dp), slot = (instance, dp)."""
    c = coords_of(rank, lay)
    slots = lay.instances * lay.dp
    return [i for i in range(n) if i % slots == c.instance * lay.dp + c.dp]


def measure_link(comm: Comm, dtype: torch.dtype, repeats: int = 20) -> dict[str, float]:
    """Alpha-beta of this run's interconnect, measured by all-reduces over all ranks: the latency
    of a one-element all-reduce, and the bandwidth of a 4 MiB one after its latency is taken off
    (bytes each rank sends in a ring all-reduce: 2 (n-1)/n of the buffer, cost.roofline)."""
    world = dist.get_world_size()
    probe = torch.zeros(1, dtype=dtype)

    def all_reduce(x: torch.Tensor) -> None:
        comm.waiting(True)
        dist.all_reduce(x)
        comm.waiting(False)

    all_reduce(probe)
    t = time.perf_counter()
    for _ in range(repeats):
        all_reduce(probe)
    latency = (time.perf_counter() - t) / repeats
    if world == 1:
        return {"collective_latency_s": latency, "collective_bw_bytes_per_s": None}
    big = torch.zeros(4 * 2**20 // probe.element_size(), dtype=dtype)
    all_reduce(big)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        all_reduce(big)
        best = min(best, time.perf_counter() - t)
    sent = float(ring_factor(world, Collective.ALL_REDUCE)) * big.numel() * big.element_size()
    return {"collective_latency_s": latency, "collective_bw_bytes_per_s": sent / max(best - latency, 1e-9)}


class Phases:
    """This rank's reports to the launcher's watchdog (watchdog.py): the phase it is in, in
    status/rank<R> (replaced whole, so the launcher never reads half a name), and its byte of the
    flags file while it waits on its peers. An injected fault (fault.py) acts on entering a phase."""

    def __init__(self, spec: dict, rank: int, flags):
        self.path = Path(spec["status_dir"]) / f"rank{rank}"
        self.fault, self.rank, self.flags = spec.get("fault"), rank, flags

    def __call__(self, phase: str) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(phase)
        os.replace(tmp, self.path)
        inject(self.fault, self.rank, phase)

    def waiting(self, on: bool) -> None:
        """Not cleared when a wait ends in an error: a rank that dies waiting failed because of a
        peer, and the launcher blames the peer (watchdog._failure)."""
        if self.flags is not None:
            self.flags[self.rank] = 1 if on else 0


def _open_flags(spec: dict, world: int):
    if not spec.get("flags"):
        return None
    with open(spec["flags"], "r+b") as f:
        return mmap.mmap(f.fileno(), world)


def main() -> None:
    spec = json.loads(Path(os.environ["MESHPLAN_RUN"]).read_text())
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    inject(spec.get("fault"), rank, "start")  # still starting up: no report yet
    phase = Phases(spec, rank, _open_flags(spec, world))
    phase("init")
    backend = "nccl" if spec.get("cuda") else "gloo"
    if spec.get("cuda"):
        # One GPU per rank (LOCAL_RANK, as torchrun sets it); tensors are created there by default.
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
        torch.set_default_device(device)
    # The launcher's watchdog decides which rank hung; the process group's own timeout is set
    # beyond it (and beyond the start-up limit: the rendezvous waits for the slowest rank to
    # start), so NCCL's watchdog never aborts a waiting peer first.
    phase.waiting(True)  # on the peers, until the groups exist (rendezvous, then group set-up)
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(
        seconds=spec.get("startup_timeout_s", 0) + 2 * spec["timeout_s"] + 30))
    dtype = getattr(torch, spec["dtype"])
    lay = Layout(**spec["layout"])
    cfg = RefConfig(**{**spec["config"], "layers": tuple(LayerKind(k) for k in spec["config"]["layers"])})
    comm = Comm(lay, rank, phase.flags, cuda=bool(spec.get("cuda")))
    phase.waiting(False)
    runner = Runner(cfg, lay, comm, spec["seed"], dtype, progress=phase)
    phase("link")
    link = measure_link(comm, dtype)
    ids = my_requests(lay, rank, spec["requests"])
    all_prompts = prompts(cfg, spec["requests"], spec["isl"], spec["seed"])
    reqs = [(i, all_prompts[i], 0) for i in ids]
    generated: dict[int, list[int]] = {i: [] for i in ids}
    logits: dict[int, list[list[float]]] = {i: [] for i in ids}
    # Warm-up, as serving engines do before taking traffic: one prefill of the same prompts (the
    # first call of each op pays one-off allocation and dispatch set-up), then a clean cache and
    # clean byte counters.
    phase("warm-up")
    runner.forward(reqs, prefill=True)
    runner.cache.clear()
    comm.reset_counters()
    times = []
    first_collective = 0.0
    for step in range(spec["osl"]):
        phase(f"step {step}")
        t0 = time.perf_counter()
        nxt = runner.forward(reqs, prefill=step == 0)
        if comm.cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        if step == 0:
            first_collective = sum(comm.seconds.values())
        if nxt is None:  # a middle pipeline stage: follow the first stage's bookkeeping
            nxt = torch.zeros(len(reqs), dtype=torch.int64)
        if spec.get("keep_logits", True) and runner.last and runner.comm.c.tp == 0 and reqs:
            for n, (rid, _, _) in enumerate(reqs):
                logits[rid].append(runner.last_logits[n].tolist())
        reqs = [(rid, nxt[n:n + 1], pos + len(tok)) for n, (rid, tok, pos) in enumerate(reqs)]
        for n, (rid, _, _) in enumerate(reqs):
            generated[rid].append(int(nxt[n]))
    phase("done")
    c = coords_of(rank, lay)
    report = {"rank": rank, "coords": {f: getattr(c, f) for f in ("instance", "pp", "dp", "tp", "ep", "etp")},
              "requests": ids, "ttft_s": times[0] if times else None,
              "tpot_s": (sum(times[1:]) / (len(times) - 1)) if len(times) > 1 else None,
              "tokens": len(ids) * spec["osl"], "wall_s": sum(times), "bytes": dict(comm.bytes),
              "calls": dict(comm.calls), "collective_s": dict(comm.seconds),
              "first_collective_s": first_collective,
              "pipeline_wait_s": comm.pipeline_wait_s, **link,
              "generated": generated if (runner.first and comm.c.tp == 0) else {},
              "logits": logits if (runner.last and comm.c.tp == 0) else {}}
    gathered = [None] * world if rank == 0 else None
    phase.waiting(True)
    dist.gather_object(report, gathered, dst=0)
    phase.waiting(False)
    if rank == 0:
        Path(spec["result"]).write_text(json.dumps(gathered))
    dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except Exception as err:  # a peer failing surfaces here as a collective error
        print(f"rank {os.environ.get('RANK')}: {err.__class__.__name__}: {str(err)[:300]}", file=sys.stderr)
        sys.exit(1)
