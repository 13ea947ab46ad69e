"""How big a DAG will be, counted from the layout alone, and how big a DAG meshplan will build or
draw. ``dag --expand`` draws every GPU and every layer as its own node, so the node count is about
layers x GPUs x operators per layer: 61 layers x 320 GPUs x ~9 operators = 183k nodes for
DeepSeek-V3 decode on 320 GPUs (bench/dag.py). Counting first lets the CLI refuse a picture, or the
build itself, before spending minutes or gigabytes on it.

``count_size`` mirrors build._Builder step by step (a compute/route step adds one node per unit and one
edge from each unit's tail; a transfer adds one node per group and one edge from each member); the
tests check it equals the built DAG's node and edge counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from meshplan.errors import SpecError
from meshplan.specs.model import LayerKind
from meshplan.strategy.layout import Axis, Layout

MAX_RENDER_NODES = 5_000
"""Largest DAG (nodes) drawn as SVG or PNG. Graphviz's dot layout (network-simplex ranking and
placement, iterated crossing minimisation) grows faster than the graph. Measured with `dot -Tsvg`
(Graphviz 2.43) on the 2-core development machine, shared (load 7-9), expanded decode DAGs as
to_dot writes them: DeepSeek-V3 dp=ep=2, 4, 8, 16, 32: 1,202 nodes 0.2 s, 2,286 0.5 s, 4,454
1.6 s, 8,790 7.4 s, 17,462 44 s (twice the nodes, 4.6-6x the time); Qwen3-30B-A3B dp=ep=16, 32:
6,274 nodes 2.7 s, 12,450 17 s. Near the limit, Kimi-K2 tp=2,dp=4,ep=8 (5,002 nodes) 2.2 s as
SVG and 4.3 s as PNG (7.7 and 11 MB). So up to 5,000 nodes a picture takes seconds; past it,
tens of seconds to minutes, for a drawing of more than 8 GPUs x 61 layers that nobody can read.
(Before to_dot asked for one global ranking, export._RANKING, the structure mattered more than
the size: 1,202 nodes took over 5 minutes.)
DOT and JSON are written at any size."""

MAX_BUILD_NODES = 1_000_000
"""Largest DAG (nodes) built at all. Measured on the development machine: DeepSeek-V3 decode
expanded over instances=5,tp=4,dp=80,ep=320 (917,382 nodes, 1,437,200 edges) built in 5.2 s and
wrote DOT and JSON in 18 s, at 2.5 GB peak memory, into 300 MB of DOT and 470 MB of JSON. Memory
and files grow linearly, so a million nodes is about the most a laptop holds comfortably and
more than any viewer opens; the collapsed view of the same plan has a few dozen nodes."""


class GroupAxis(StrEnum):
    """The GPUs one transfer node joins within a stage: a group of one layout axis (named as
    strategy.layout.Axis names it), or the whole stage (the attention-dp gather and scatter)."""

    TP = Axis.TP.value
    EP = Axis.EP.value
    ETP = Axis.ETP.value
    STAGE = "stage"


_GROUPS_PER_INSTANCE = {GroupAxis.TP: Axis.DP, GroupAxis.EP: Axis.ETP, GroupAxis.ETP: Axis.EP, GroupAxis.STAGE: None}
"""Groups of one axis among one stage's GPUs, as the degree of the complementary axis: tp groups
are told apart by their dp rank (tp x dp GPUs), ep groups by their etp rank (ep x etp GPUs), etp
groups by their ep rank; the whole stage is one group."""


@dataclass(frozen=True, slots=True)
class DagSize:
    nodes: int
    edges: int


def check_buildable(size: DagSize, what: str, expand: bool) -> None:
    """Refuse (SpecError) a DAG past MAX_BUILD_NODES before it is built; ``what`` names it."""
    if size.nodes > MAX_BUILD_NODES:
        raise SpecError("--expand" if expand else "strategy", what, (
            f"the DAG would have {size.nodes:,} nodes and {size.edges:,} edges (counted from the layout); "
            f"meshplan builds at most {MAX_BUILD_NODES:,} nodes "
            "(917k took 2.5 GB of memory and 770 MB of DOT and JSON)"
            + ("; leave out --expand for the collapsed view" if expand else "")))


def units_per_stage(lay: Layout, expand: bool) -> int:
    """Nodes per compute step in one pipeline stage: one per GPU of the stage over every instance
    (expanded), or one for all of them (collapsed)."""
    return lay.instances * lay.gpus_per_stage if expand else 1


def groups_per_stage(lay: Layout, axis: GroupAxis) -> int:
    """Communication groups of ``axis`` (tp, ep, etp or the whole stage) in one stage over every
    instance: the node count of one transfer in the expanded view (the collapsed view draws one
    node standing for them all)."""
    other = _GROUPS_PER_INSTANCE[axis]
    return lay.instances * (getattr(lay, other.value) if other else 1)


@dataclass
class _Tally:
    units: int
    nodes: int = 0
    edges: int = 0

    def step(self, times: int = 1, inputs: int = 1) -> None:
        """``times`` compute/route steps: a node per unit, ``inputs`` edges into each."""
        self.nodes += times * self.units
        self.edges += times * self.units * inputs

    def comm(self, groups: int, inputs: int = 1) -> None:
        """One transfer: a node per group, ``inputs`` edges from each member unit."""
        self.nodes += groups
        self.edges += self.units * inputs


def count_size(lay: Layout, runs: list[LayerKind], *, charged: frozenset[str], shared_experts: bool,
          expand: bool) -> DagSize:
    """Nodes and edges of build_dag's DAG. ``runs``: one entry per layer node (every layer when
    expanded, every run of same-kind layers in a stage when collapsed: build.layer_runs);
    ``charged``: the transfers the cost model charges (build.charged)."""
    t = _Tally(units=units_per_stage(lay, expand))
    g = {axis: groups_per_stage(lay, axis) if expand else 1 for axis in _GROUPS_PER_INSTANCE}
    tp = lay.tp > 1
    a2a, gather = "ep_dispatch" in charged, "attn_dp_gather" in charged
    t.nodes += 1                               # input
    t.step()                                   # embedding
    if tp:
        t.comm(g[GroupAxis.TP])                # embed_all_reduce
    t.step(times=lay.pp - 1)                   # pp_send_recv, one per GPU pair into each later stage
    for kind in runs:
        t.step(times=4)                        # attn_norm, qkv_proj, attn_core, o_proj
        if tp:
            t.comm(g[GroupAxis.TP])            # tp_all_reduce_attn
        if kind is not LayerKind.MOE:
            t.step(times=2)                    # ffn_norm, dense_ffn
        else:
            t.step(times=2)                    # ffn_norm, router (from the norm)
            if a2a:
                t.comm(g[GroupAxis.EP], inputs=2)  # ep_dispatch, + the gate's dashed edge
            if gather:
                t.comm(g[GroupAxis.STAGE], inputs=2)  # attn_dp_gather, + the gate's dashed edge
            t.step(inputs=1 if a2a or gather else 2)  # experts (the gate's edge when nothing moves)
            if "etp_reduce_scatter" in charged:
                t.comm(g[GroupAxis.ETP])
            if a2a:
                t.comm(g[GroupAxis.EP])        # ep_combine
            if gather:
                t.comm(g[GroupAxis.STAGE])     # attn_dp_scatter
            if shared_experts:
                t.step()                       # shared_experts
            t.step(inputs=2 if shared_experts else 1)  # moe_sum
        if tp:
            t.comm(g[GroupAxis.TP])            # tp_all_reduce_ffn / tp_all_reduce_moe
    t.step()                                   # lm_head
    if tp:
        t.comm(g[GroupAxis.TP])                # logits_gather
    # output, from each distinct tail: the logits_gather groups, or every lm_head unit.
    return DagSize(nodes=t.nodes + 1, edges=t.edges + (g[GroupAxis.TP] if tp else t.units))
