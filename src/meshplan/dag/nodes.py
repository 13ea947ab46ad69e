"""DAG nodes and edges. Plain slotted dataclasses: the expanded DAG of a large deployment has
hundreds of thousands of nodes, so nothing here validates or copies."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from meshplan.cost.roofline import OpCost, OpKind
from meshplan.errors import SpecError
from meshplan.specs.workload import Phase


class NodeKind(StrEnum):
    """The seed's drawing conventions: ellipse = communication, rectangle = computation,
    parallelogram = routing or aggregation."""

    COMPUTE = "compute"
    COMM = "comm"
    ROUTE = "route"

    @property
    def shape(self) -> str:
        return {NodeKind.COMPUTE: "rectangle", NodeKind.COMM: "ellipse", NodeKind.ROUTE: "parallelogram"}[self]

    @staticmethod
    def of(cost: OpCost) -> "NodeKind":
        """The kind an operator's own record states (its OpKind, and whether it routes tokens):
        the DAG never guesses it from the operator's name."""
        if cost.kind is OpKind.COMM:
            return NodeKind.COMM
        return NodeKind.ROUTE if cost.routes else NodeKind.COMPUTE


@dataclass(slots=True)
class Node:
    """One operator (or one transfer) on named GPUs.

    Figures are per GPU and per layer, as the cost model charges them; ``layers`` and
    ``groups`` say how many identical copies the node stands for (1 each in the expanded view),
    so totals are figure x layers x len(gpus) for compute and x groups x group size for comms."""

    id: str
    op: str
    kind: NodeKind
    gpus: tuple[int, ...]
    """GPU ids this node runs on (for a collapsed node: all the GPUs it stands for)."""
    layers: tuple[int, ...] = ()
    """Model layers this node stands for (empty for embedding, head, input, output)."""
    stage: int = 0
    in_shape: str = ""
    out_shape: str = ""
    flops: float = 0.0
    """FLOPs per GPU per layer."""
    hbm_bytes: float = 0.0
    """HBM bytes per GPU per layer."""
    comm_bytes: float = 0.0
    """Bytes each participating GPU sends, per layer (the cost model's figure)."""
    time_s: float = 0.0
    """Estimated time per layer (cost model)."""
    groups: int = 1
    """Identical communication groups this node stands for (collapsed view)."""
    detail: str = ""
    """Extra label text (experts hosted, group sizes)."""

    @property
    def num_layers(self) -> int:
        return max(1, len(self.layers))


@dataclass(slots=True)
class Edge:
    src: str
    dst: str
    dashed: bool = False
    """The gate's token selection (which experts), drawn dashed."""


@dataclass(slots=True)
class Dag:
    """The operator graph of one phase of one pool."""

    phase: Phase
    layout: str
    num_gpus: int
    expanded: bool
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def link(self, src: Node | str, dst: Node | str, dashed: bool = False) -> None:
        self.edges.append(Edge(src=src if isinstance(src, str) else src.id,
                               dst=dst if isinstance(dst, str) else dst.id, dashed=dashed))


def gpu_ranges(gpus: tuple[int, ...] | list[int]) -> str:
    """'0-3, 8-11' style list of GPU ids (never 'all GPUs')."""
    ids = sorted(set(gpus))
    if not ids:
        return ""
    parts, start, prev = [], ids[0], ids[0]
    for g in ids[1:]:
        if g == prev + 1:
            prev = g
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        start = prev = g
    parts.append(f"{start}-{prev}" if prev > start else str(start))
    return ", ".join(parts)


MAX_GPU_ID = 1_000_000
"""Largest GPU id a DAG label may name (a million GPUs: far beyond any cluster planned), so a
range such as '0-99999999999' in a file read by lint-dag cannot exhaust memory."""

_RANGE = re.compile(r"(\d{1,7})(?:-(\d{1,7}))?")


def parse_gpu_ranges(text: str) -> list[int]:
    """Inverse of gpu_ranges: '0-3, 8' -> [0, 1, 2, 3, 8]. A part that is not an id or a rising
    range of ids up to MAX_GPU_ID is refused (SpecError naming the label)."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        m = _RANGE.fullmatch(part)
        lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, -1)
        if not m or hi < lo or hi > MAX_GPU_ID or len(out) + hi - lo > MAX_GPU_ID:
            raise SpecError("GPU label", text, f"'{part}' is not a GPU id or a rising range of ids up to {MAX_GPU_ID:,}")
        out.extend(range(lo, hi + 1))
    return out
