"""Process groups of a layout and the collectives the executor uses, each counting the bytes it
moves with the cost model's own formulas (cost.roofline.ring_factor): one owner."""

from __future__ import annotations

import time
from collections import defaultdict

import torch
import torch.distributed as dist

from meshplan.cost.roofline import Collective, ring_factor
from meshplan.strategy.layout import Axis, Layout
from meshplan.strategy.mesh import coords_of, group


class Comm:
    """Groups for this rank (created on every rank in the same order, as torch requires)."""

    def __init__(self, lay: Layout, rank: int, flags=None, cuda: bool = False):
        self.lay, self.rank = lay, rank
        self.flags = flags
        """Byte per rank of the run's mapped flags file, 1 while waiting in a collective (read by
        the launcher's watchdog, watchdog.py)."""
        self.cuda = cuda
        """NCCL calls return before the work ends; on GPUs the queue is drained before and after
        each collective, so the watchdog's flag and the times mean the same as on the CPU."""
        self.c = coords_of(rank, lay)
        self.bytes: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        """Wall time inside each kind of collective (transfer and waiting for peers)."""
        self._since = 0.0
        self.pipeline_wait_s = 0.0
        self.tp_group = self._groups(Axis.TP)
        self.etp_group = self._groups(Axis.ETP)
        self.stage_group = self._groups(None)
        self.stage_ranks = self._stage_ranks(rank)

    def reset_counters(self) -> None:
        """Forget bytes, calls and times so far (after the warm-up)."""
        self.bytes.clear()
        self.calls.clear()
        self.seconds.clear()
        self.pipeline_wait_s = 0.0

    def _stage_ranks(self, r: int) -> list[int]:
        g = self.lay.gpus_per_stage
        first = r - (r % g)
        return list(range(first, first + g))

    def _groups(self, axis: Axis | None):
        """All groups of one axis (None: the whole stage), created in a fixed order; returns this
        rank's group (or None)."""
        seen, mine = set(), None
        for r in range(self.lay.gpus):
            ranks = self._stage_ranks(r) if axis is None else group(r, self.lay, axis)
            key = tuple(ranks)
            if key in seen or len(ranks) == 1:
                continue
            seen.add(key)
            handle = dist.new_group(list(ranks))
            if self.rank in ranks:
                mine = handle
        return mine

    def waiting(self, on: bool) -> None:
        if self.cuda:  # finish queued compute before the clock starts, and the transfer before it stops
            torch.cuda.synchronize()
        if self.flags is not None:
            self.flags[self.rank] = 1 if on else 0
        if on:
            self._since = time.perf_counter()

    def _count(self, kind: str, nbytes: float, timed: bool = True) -> None:
        self.bytes[kind] += nbytes
        self.calls[kind] += 1
        if timed:
            self.seconds[kind] += time.perf_counter() - self._since

    def tp_all_reduce(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        if self.lay.tp > 1:
            self.waiting(True)
            dist.all_reduce(x, group=self.tp_group)
            self.waiting(False)
            self._count(kind, float(ring_factor(self.lay.tp, Collective.ALL_REDUCE)) * x.numel() * x.element_size())
        return x

    def tp_all_gather_last(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the tp ranks' slices along the last dim (vocab-parallel logits)."""
        if self.lay.tp == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.lay.tp)]
        self.waiting(True)
        dist.all_gather(parts, x.contiguous(), group=self.tp_group)
        self.waiting(False)
        full = torch.cat(parts, dim=-1)
        self._count("logits_gather", float(ring_factor(self.lay.tp, Collective.ALL_GATHER)) * full.numel()
                    * full.element_size())
        return full

    def etp_reduce_scatter(self, x: torch.Tensor) -> torch.Tensor:
        """Sum the etp slices' partial expert outputs [R, D] and keep this slice's 1/etp of the
        columns [R, D/etp] (every slice of an ep rank holds the same rows in the same order)."""
        if self.lay.etp == 1:
            return x
        parts = [p.contiguous() for p in x.chunk(self.lay.etp, dim=1)]
        out = torch.empty_like(parts[0])
        self.waiting(True)
        dist.reduce_scatter(out, parts, group=self.etp_group)
        self.waiting(False)
        self._count("etp_reduce_scatter", float(ring_factor(self.lay.etp, Collective.REDUCE_SCATTER)) * x.numel()
                    * x.element_size())
        return out

    def all_to_all(self, rows: torch.Tensor, counts: list[int], kind: str, tail: tuple[str, int] | None = None
                   ) -> tuple[torch.Tensor, list[int]]:
        """Send counts[i] rows to the i-th rank of the stage; returns the rows received and how
        many came from each rank. Bytes counted: rows that leave this GPU; with ``tail`` = (kind,
        n), the last n columns of each row are counted under that kind instead."""
        g = self.lay.gpus_per_stage
        if g == 1:
            return rows, counts
        send = torch.tensor(counts, dtype=torch.int64)
        recv = torch.empty(g, dtype=torch.int64)
        self.waiting(True)
        dist.all_to_all_single(recv, send, group=self.stage_group)
        recv_counts = recv.tolist()
        width = rows.shape[1:]
        out = torch.empty((sum(recv_counts), *width), dtype=rows.dtype)
        dist.all_to_all_single(out, rows.contiguous(), output_split_sizes=recv_counts, input_split_sizes=counts,
                               group=self.stage_group)
        self.waiting(False)
        me = self.stage_ranks.index(self.rank)
        sent_rows = sum(counts) - counts[me]
        tail_cols = tail[1] if tail else 0
        self._count(kind, sent_rows * (rows.shape[1] - tail_cols) * rows.element_size())
        if tail:
            self._count(tail[0], sent_rows * tail_cols * rows.element_size(), timed=False)
        return out, recv_counts

    def send(self, x: torch.Tensor, dst: int, kind: str = "pp_send_recv") -> None:
        self.waiting(True)
        dist.send(x.contiguous(), dst)
        self.waiting(False)
        self._count(kind, x.numel() * x.element_size())

    def recv(self, shape, dtype, src: int) -> torch.Tensor:
        """Bytes are counted by the sender. The time here is mostly waiting for the previous
        stage to compute (the pipeline), so it is kept apart from the collectives' time."""
        x = torch.empty(shape, dtype=dtype)
        self.waiting(True)
        dist.recv(x, src)
        self.waiting(False)
        self.pipeline_wait_s += time.perf_counter() - self._since
        return x
