"""Plan -> DAG, mechanically: the layout's rank map names the GPUs, the cost model gives every
node its FLOPs, bytes and time, so the DAG cannot disagree with the plan.

Two views of the same graph. Expanded: one node per GPU per layer, one communication node per
group (per tp group, per EP group, ...). Collapsed (default): symmetric GPUs of a pipeline stage
share one node ("GPUs 0-319") and consecutive layers of the same kind share one node ("x58
layers"); totals (FLOPs, bytes, node multiplicities) are the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.roofline import OpCost, OpKind
from meshplan.cost.serving import decode_cost, prefill_cost
from meshplan.dag.nodes import Dag, Node, NodeKind
from meshplan.dag.shapes import op_shapes
from meshplan.dag.size import DagSize, GroupAxis, check_buildable, count_size, groups_per_stage
from meshplan.specs.model import LayerKind
from meshplan.specs.problem import Problem
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import Layout
from meshplan.strategy.mesh import coords_of, expert_slots_per_rank, experts_of, slots_text, stage_layers

DAG_ONLY_KIND = NodeKind.ROUTE
"""Kind of the nodes the cost model has no operator for: the DAG's input and output and the MoE
block's sum of routed and shared experts (its cost is in the experts' EXPERT_COMBINE kernel)."""


def _f(x) -> float:
    return float(x.reshape(-1)[0]) if hasattr(x, "reshape") else float(x)


def phase_costs(problem: Problem, lay: Layout, phase: Phase, B: float) -> dict[str, OpCost]:
    """The cost model's operators for one pass of ``phase`` at B per attention-dp rank, by name
    (the one owner of every figure, and of the kind, a DAG node carries)."""
    ci = CostInputs.from_problem(problem)
    par = Par.of(lay.tp, lay.dp, lay.ep, lay.etp, lay.pp)
    pc = decode_cost(ci, par, B) if Phase(phase) is Phase.DECODE else prefill_cost(ci, par, B)
    fwd = pc.forward
    ops = {op.name: op for op in fwd.dense_layer + fwd.moe_layer + fwd.embed + fwd.head}
    ops[fwd.pp.name] = fwd.pp
    return ops


def charged(costs: dict[str, OpCost], op: str) -> bool:
    """Whether the cost model charges this transfer at all (only then does the DAG draw it)."""
    cost = costs.get(op)
    return cost is not None and _f(cost.comm_bytes) > 0


@dataclass
class _Builder:
    dag: Dag
    lay: Layout
    offset: int
    expand: bool
    costs: dict[str, OpCost]
    shapes: dict[str, tuple[str, str]]
    num_experts: int = 0
    redundant: int = 0
    nvlink_domain_gpus: int = 8
    """GPUs per node (NVLink domain), to say which transfers cross nodes."""
    tails: list[str] = field(default_factory=list)

    # -- units and groups -------------------------------------------------------------------
    def units(self, stage: int) -> list[tuple[int, ...]]:
        lay, g = self.lay, self.lay.gpus_per_stage
        bases = [self.offset + i * lay.gpus_per_instance + stage * g for i in range(lay.instances)]
        if self.expand:
            return [(b + j,) for b in bases for j in range(g)]
        return [tuple(b + j for b in bases for j in range(g))]

    def groups(self, units: list[tuple[int, ...]], axis: GroupAxis) -> list[tuple[list[int], int]]:
        """(member unit indices, number of real groups the node stands for) per group."""
        lay = self.lay
        if not self.expand:
            return [([0], groups_per_stage(lay, axis))]
        keys: dict[tuple, list[int]] = {}
        for i, (gpu,) in enumerate(units):
            c = coords_of(gpu, lay, self.offset)
            key = {GroupAxis.TP: (c.instance, c.pp, c.dp), GroupAxis.EP: (c.instance, c.pp, c.etp),
                   GroupAxis.ETP: (c.instance, c.pp, c.ep), GroupAxis.STAGE: (c.instance, c.pp)}[axis]
            keys.setdefault(key, []).append(i)
        return [(members, 1) for members in keys.values()]

    # -- nodes ------------------------------------------------------------------------------
    def node(self, op: str, gpus: tuple[int, ...], layers: tuple[int, ...], stage: int, groups: int = 1,
             detail: str = "", kind: NodeKind | None = None) -> Node:
        """A node for operator ``op``: its figures and kind from the cost model's record of it;
        ``kind`` only for the nodes the cost model has no record of (DAG_ONLY_KIND)."""
        cost = self.costs.get(op)
        if kind is None:
            if cost is None:
                raise ValueError(f"operator {op!r}: the cost model has no record of it and no kind was given")
            kind = NodeKind.of(cost)
        tag = f"L{layers[0]}" if layers else f"s{stage}"
        shape_in, shape_out = self.shapes.get(op, ("", ""))
        n = Node(id=f"{self.dag.phase[0]}_{op}_{tag}_g{gpus[0]}", op=op, kind=kind, gpus=gpus, layers=layers,
                 stage=stage, in_shape=shape_in, out_shape=shape_out, groups=groups, detail=detail)
        if cost is not None:
            n.flops, n.hbm_bytes = _f(cost.flops), _f(cost.mem_bytes)
            n.comm_bytes, n.time_s = _f(cost.comm_bytes), _f(cost.time_s)
        return self.dag.add(n)

    def step(self, op: str, units, layers, stage, detail: str = "", dashed_from: list[str] | None = None):
        """A compute/route node on every unit, after each unit's tail."""
        made = []
        for i, u in enumerate(units):
            n = self.node(op, u, layers, stage, detail=detail)
            self.dag.link(self.tails[i], n)
            if dashed_from is not None:
                self.dag.link(dashed_from[i], n, dashed=True)
            self.tails[i] = n.id
            made.append(n.id)
        return made

    def comm(self, op: str, axis: GroupAxis, units, layers, stage, extra_inputs: list[str] | None = None,
             dashed_from: list[str] | None = None) -> None:
        """One communication node per group, from the members' tails to the members."""
        for members, count in self.groups(units, axis):
            gpus = tuple(g for i in members for g in units[i])
            size = len(gpus) // count
            nodes = len({g // self.nvlink_domain_gpus for g in gpus[:size]})
            n = self.node(op, gpus, layers, stage, groups=count, detail=f"{axis} group of {size} GPUs"
                          + (f" on {nodes} nodes" if nodes > 1 else "") + (f", x{count} groups" if count > 1 else ""))
            for i in members:
                self.dag.link(self.tails[i], n)
                if extra_inputs is not None:
                    self.dag.link(extra_inputs[i], n)
                if dashed_from is not None:
                    self.dag.link(dashed_from[i], n, dashed=True)
            for i in members:
                self.tails[i] = n.id

    def active(self, op: str) -> bool:
        return charged(self.costs, op)

    # -- blocks -----------------------------------------------------------------------------
    def attention(self, units, layers, stage):
        for op in ("attn_norm", "qkv_proj", "attn_core", "o_proj"):
            self.step(op, units, layers, stage)
        if self.lay.tp > 1:
            self.comm("tp_all_reduce_attn", GroupAxis.TP, units, layers, stage)

    def dense(self, units, layers, stage):
        self.step("ffn_norm", units, layers, stage)
        self.step("dense_ffn", units, layers, stage)
        if self.lay.tp > 1:
            self.comm("tp_all_reduce_ffn", GroupAxis.TP, units, layers, stage)

    def moe(self, units, layers, stage, model):
        lay = self.lay
        normed = self.step("ffn_norm", units, layers, stage)
        gates = []
        for i, u in enumerate(units):
            g = self.node("router", u, layers, stage)
            self.dag.link(normed[i], g)
            gates.append(g.id)
        per = expert_slots_per_rank(model.num_experts, self.redundant, lay.ep)
        # Transfers as the cost model charges them (one owner): an all-to-all, or an all-gather and
        # reduce-scatter over the attention-dp ranks, or none when every GPU already holds the tokens.
        a2a, gather = self.active("ep_dispatch"), self.active("attn_dp_gather")
        if a2a:
            self.comm("ep_dispatch", GroupAxis.EP, units, layers, stage, dashed_from=gates)
        if gather:
            self.comm("attn_dp_gather", GroupAxis.STAGE, units, layers, stage, dashed_from=gates)
        if lay.ep > 1:
            experts = [self._experts_detail(u, per) for u in units]
            for i, u in enumerate(units):
                n = self.node("experts", u, layers, stage, detail=experts[i])
                self.dag.link(self.tails[i], n)
                if not (a2a or gather):
                    self.dag.link(gates[i], n, dashed=True)
                self.tails[i] = n.id
        else:
            self.step("experts", units, layers, stage, detail=f"all {model.num_experts} experts, 1/{lay.etp} of each",
                      dashed_from=None if (a2a or gather) else gates)
        if self.active("etp_reduce_scatter"):
            self.comm("etp_reduce_scatter", GroupAxis.ETP, units, layers, stage)
        if a2a:
            self.comm("ep_combine", GroupAxis.EP, units, layers, stage)
        if gather:
            self.comm("attn_dp_scatter", GroupAxis.STAGE, units, layers, stage)
        combined = list(self.tails)
        if model.num_shared_experts:
            self.tails = list(normed)
            self.step("shared_experts", units, layers, stage)
        for i, u in enumerate(units):
            n = self.node("moe_sum", u, layers, stage, kind=DAG_ONLY_KIND)
            self.dag.link(combined[i], n)
            if model.num_shared_experts:
                self.dag.link(self.tails[i], n)
            self.tails[i] = n.id
        if lay.tp > 1:
            self.comm("tp_all_reduce_moe", GroupAxis.TP, units, layers, stage)

    def _experts_detail(self, unit: tuple[int, ...], per: int) -> str:
        """Which routed experts a GPU hosts (strategy.mesh.experts_of's block placement); slots
        past the model's experts hold redundant replicas (CostAssumptions.redundant_experts)."""
        if len(unit) > 1:
            return f"{per} expert(s) per GPU, 1/{self.lay.etp} of each"
        hosted = experts_of(unit[0], self.lay, self.num_experts, redundant=self.redundant, offset=self.offset)
        return f"{slots_text(hosted, self.num_experts)}, 1/{self.lay.etp} of each"


def layer_runs(kinds: list[LayerKind], layers: range, expand: bool) -> list[tuple[LayerKind, tuple[int, ...]]]:
    """The layer nodes of one stage: every layer (expanded), or every run of same-kind layers."""
    if expand:
        return [(kinds[i], (i,)) for i in layers]
    out = []
    for kind, items in groupby(layers, key=lambda i: kinds[i]):
        out.append((kind, tuple(items)))
    return out


def dag_size(problem: Problem, lay: Layout, phase: Phase, B: float, *, expand: bool = False) -> DagSize:
    """Nodes and edges build_dag would make, counted from the layout without building anything
    (the cost model is asked only which transfers it charges)."""
    return _size(problem, lay, phase_costs(problem, lay, phase, B), expand)


def _size(problem: Problem, lay: Layout, costs: dict[str, OpCost], expand: bool) -> DagSize:
    kinds = list(problem.model.layer_kinds)
    runs = [kind for layers in stage_layers(problem.model.num_layers, lay.pp)
            for kind, _ in layer_runs(kinds, layers, expand)]
    moved = frozenset(name for name, cost in costs.items() if cost.kind is OpKind.COMM and charged(costs, name))
    return count_size(lay, runs, charged=moved, shared_experts=problem.model.num_shared_experts > 0, expand=expand)


def build_dag(problem: Problem, lay: Layout, phase: Phase, B: float, *, offset: int = 0,
              expand: bool = False) -> Dag:
    """The operator DAG of one pool (``lay``) in ``phase`` (prefill or decode) at B sequences
    per attention-dp rank; GPU ids start at ``offset``. A DAG past size.MAX_BUILD_NODES (counted
    first) is refused (SpecError) before anything is built."""
    model, phase = problem.model, Phase(phase)
    costs = phase_costs(problem, lay, phase, B)
    check_buildable(_size(problem, lay, costs, expand), f"{phase} {lay.short}", expand)
    ci = CostInputs.from_problem(problem)
    decode = phase is Phase.DECODE
    context = problem.workload.decode_context_tokens if decode else problem.workload.isl_tokens
    dag = Dag(phase=phase, layout=str(lay), num_gpus=lay.gpus, expanded=expand)
    b = _Builder(dag=dag, lay=lay, offset=offset, expand=expand, costs=costs,
                 shapes=op_shapes(ci, lay, B, decode, context), num_experts=model.num_experts,
                 redundant=problem.assumptions.redundant_experts, nvlink_domain_gpus=problem.gpu.nvlink_domain_gpus)
    all_gpus = tuple(range(offset, offset + lay.gpus))
    source = b.node("input", all_gpus, (), 0, detail="spreads requests over instances and attention-dp ranks",
                    kind=DAG_ONLY_KIND)
    kinds = list(model.layer_kinds)
    stages = stage_layers(model.num_layers, lay.pp)
    prev_units: list[tuple[int, ...]] = []
    for s, layers in enumerate(stages):
        units = b.units(s)
        if s == 0:
            b.tails = [source.id] * len(units)
            b.step("embedding", units, (), s)
            if lay.tp > 1:
                b.comm("embed_all_reduce", GroupAxis.TP, units, (), s)
        else:
            # Hidden states to the next stage: one transfer per GPU pair (same local rank).
            sends = []
            for i, (u_prev, u) in enumerate(zip(prev_units, units)):
                n = b.node("pp_send_recv", u_prev + u, (), s, groups=len(u) if not expand else 1,
                           detail=f"stage {s - 1} -> {s}")
                dag.link(b.tails[i], n)
                sends.append(n.id)
            b.tails = sends
        for kind, run in layer_runs(kinds, layers, expand):
            b.attention(units, run, s)
            if kind is LayerKind.MOE:
                b.moe(units, run, s, model)
            else:
                b.dense(units, run, s)
        prev_units = units
    last = len(stages) - 1
    b.step("lm_head", prev_units, (), last)
    if lay.tp > 1:
        b.comm("logits_gather", GroupAxis.TP, prev_units, (), last)
    sink = b.node("output", tuple(g for u in prev_units for g in u), (), last, detail="sampled tokens",
                  kind=DAG_ONLY_KIND)
    for t in set(b.tails):
        dag.link(t, sink)
    return dag
