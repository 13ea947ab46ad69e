"""Lint a DAG written elsewhere (Graphviz DOT) against a layout: structure, GPU labels,
placement, transfers and missing operators. DOT is parsed with pydot (a real DOT grammar:
quoted ids, attributes, subgraphs)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

import networkx as nx
import pydot

from meshplan.dag.nodes import gpu_ranges, parse_gpu_ranges
from meshplan.errors import SpecError
from meshplan.specs.model import ModelSpec
from meshplan.strategy.layout import Layout
from meshplan.strategy.mesh import coords_of, expert_slots_per_rank


class LintRule(StrEnum):
    CYCLE = "cycle"
    NO_PREDECESSOR = "no_predecessor"
    NO_SUCCESSOR = "no_successor"
    NO_GPU = "no_gpu_label"
    VAGUE_GPU = "vague_gpu_label"
    UNKNOWN_GPU = "gpu_not_in_layout"
    PLACEMENT = "placement"
    CROSS_GPU_EDGE = "cross_gpu_edge_without_transfer"
    MISSING_OPERATOR = "missing_operator"


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    rule: LintRule
    nodes: tuple[str, ...]
    message: str

    def line(self) -> str:
        shown = ", ".join(self.nodes[:12]) + (f", ... ({len(self.nodes)} in all)" if len(self.nodes) > 12 else "")
        return f"[{self.rule.value}] {self.message}: {shown}"

    def to_dict(self) -> dict:
        return {"rule": self.rule.value, "nodes": list(self.nodes), "message": self.message}


@dataclass(kw_only=True, slots=True)
class _Node:
    id: str
    label: str
    shape: str
    gpus: list[int] | None = None
    vague: bool = False
    attrs: dict = field(default_factory=dict)

    @property
    def is_comm(self) -> bool:
        return self.shape == "ellipse" and not re.search(r"request|input|output", self.label, re.I)


_GPU_RE = re.compile(r"GPUs?[ \t]*[:=]?[ \t]*(\d[\d, \t\-]*)", re.I)
_ATTN_RE = re.compile(r"attn|attention|qkv|o_proj|mha|gqa|mla", re.I)
_SUBMODULE_RE = re.compile(r"qkv|q_proj|o_proj|out_proj|core|norm|softmax|score", re.I)
_EXPERT_RE = re.compile(r"expert", re.I)
_HEADS_RE = re.compile(r"\bheads\s*=\s*(\d+)", re.I)
_EXPERT_ID_RE = re.compile(r"experts?\s+(\d+)(?:\s*-\s*(\d+))?\b", re.I)
_PER_GPU_RE = re.compile(r"(\d+)\s+expert\(?s?\)?\s+per\s+GPU", re.I)


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] == '"':
        s = s[1:-1].replace('\\"', '"')
    return s


def _walk(graph, cluster_gpus: list[int] | None, nodes: dict[str, _Node], edges: list):
    label = _unquote(str(graph.get_label() or "")) if hasattr(graph, "get_label") else ""
    m = _GPU_RE.search(label)
    here = parse_gpu_ranges(m.group(1)) if m else cluster_gpus
    for n in graph.get_nodes():
        name = _unquote(n.get_name())
        if name in ("node", "edge", "graph"):
            continue
        attrs = {k: _unquote(str(v)) for k, v in n.get_attributes().items()}
        text = attrs.get("label", name).replace("\\n", "\n")
        node = _Node(id=name, label=text, shape=attrs.get("shape", "ellipse").lower(), attrs=attrs)
        gm = _GPU_RE.search(text)
        if gm:
            node.gpus = parse_gpu_ranges(gm.group(1))
        elif re.search(r"all\s+GPUs", text, re.I):
            node.vague = True
        elif here is not None:
            node.gpus = list(here)
        nodes[name] = node
    for e in graph.get_edges():
        style = _unquote(str(e.get_attributes().get("style", "")))
        edges.append((_unquote(str(e.get_source())), _unquote(str(e.get_destination())), style))
    for sub in graph.get_subgraphs():
        _walk(sub, here, nodes, edges)


def parse_dot(text: str, source: str) -> tuple[dict[str, _Node], list[tuple[str, str, str]]]:
    try:
        graphs = pydot.graph_from_dot_data(text)
    except Exception as err:  # pydot raises parser-specific exceptions
        raise SpecError(source, None, f"not valid DOT ({err.__class__.__name__})") from None
    if not graphs:
        raise SpecError(source, None, "not valid DOT (no graph found)")
    nodes: dict[str, _Node] = {}
    edges: list[tuple[str, str, str]] = []
    _walk(graphs[0], None, nodes, edges)
    for s, d, _ in edges:  # nodes that appear only in edges
        for name in (s, d):
            nodes.setdefault(name, _Node(id=name, label=name, shape="ellipse"))
    return nodes, edges


def lint_dot(text: str, source: str, model: ModelSpec, lay: Layout, offset: int = 0, *,
             redundant: int) -> list[Finding]:
    """Every defect and every disagreement with ``lay`` (GPU ids from ``offset``), with ``redundant``
    expert replicas per MoE layer (CostAssumptions.redundant_experts; required, so that no caller
    forgets it)."""
    nodes, edges = parse_dot(text, source)
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from((s, d) for s, d, _ in edges)
    found: list[Finding] = []
    found += _structure(g, nodes)
    found += _labels(nodes, lay, offset)
    found += _placement(nodes, model, lay, offset, redundant)
    found += _transfers(nodes, edges)
    found += _missing(nodes, model, lay)
    return _merge(found)


def _merge(found: list[Finding]) -> list[Finding]:
    """One line per (rule, message), listing every node it applies to."""
    merged: dict[tuple[LintRule, str], list[str]] = {}
    for f in found:
        merged.setdefault((f.rule, f.message), []).extend(f.nodes)
    return [Finding(rule=r, nodes=tuple(dict.fromkeys(ns)), message=m) for (r, m), ns in merged.items()]


def _structure(g: nx.DiGraph, nodes: dict[str, _Node]) -> list[Finding]:
    out = []
    cycles = []
    for comp in nx.strongly_connected_components(g):
        if len(comp) > 1 or any(g.has_edge(n, n) for n in comp):
            cycles.append(tuple(sorted(comp)))
    for c in cycles:
        out.append(Finding(rule=LintRule.CYCLE, nodes=c, message="cycle (a DAG has none)"))
    sources = [n for n in g if g.in_degree(n) == 0]
    sinks = [n for n in g if g.out_degree(n) == 0]
    start = next((n for n in sources if re.search(r"request|input", n + nodes[n].label, re.I)), sources[:1])
    end = next((n for n in sinks if re.search(r"output|result|response|token", n + nodes[n].label, re.I)), sinks[:1])
    start = start if isinstance(start, str) else (start[0] if start else None)
    end = end if isinstance(end, str) else (end[0] if end else None)
    extra_src = tuple(n for n in sources if n != start)
    extra_sink = tuple(n for n in sinks if n != end)
    if extra_src:
        out.append(Finding(rule=LintRule.NO_PREDECESSOR, nodes=extra_src,
                           message=f"nodes without a predecessor (only the input, {start}, may have none)"))
    if extra_sink:
        out.append(Finding(rule=LintRule.NO_SUCCESSOR, nodes=extra_sink,
                           message=f"nodes without a successor (only the output, {end}, may have none)"))
    return out


def _labels(nodes: dict[str, _Node], lay: Layout, offset: int) -> list[Finding]:
    out = []
    vague = tuple(n.id for n in nodes.values() if n.vague)
    missing = tuple(n.id for n in nodes.values() if n.gpus is None and not n.vague)
    if vague:
        out.append(Finding(rule=LintRule.VAGUE_GPU, nodes=vague, message="GPU label 'all GPUs': name the ids"))
    if missing:
        out.append(Finding(rule=LintRule.NO_GPU, nodes=missing, message="no GPU label"))
    lo, hi = offset, offset + lay.gpus - 1
    bad_nodes, bad_ids = [], set()
    for n in nodes.values():
        bad = [x for x in (n.gpus or []) if not lo <= x <= hi]
        if bad:
            bad_nodes.append(n.id)
            bad_ids.update(bad)
    if bad_nodes:
        out.append(Finding(rule=LintRule.UNKNOWN_GPU, nodes=tuple(bad_nodes), message=(
            f"GPU(s) {gpu_ranges(sorted(bad_ids))} not in the layout (GPUs {lo}-{hi})")))
    return out


def _placement(nodes: dict[str, _Node], model: ModelSpec, lay: Layout, offset: int, redundant: int) -> list[Finding]:
    out = []
    heads_per_gpu = model.num_heads // lay.tp
    lo, hi = offset, offset + lay.gpus - 1
    for n in nodes.values():
        text = n.id + " " + n.label
        if _ATTN_RE.search(text) and not n.is_comm:
            m = _HEADS_RE.search(n.label)
            if m and int(m.group(1)) != heads_per_gpu:
                implied = model.num_heads // max(int(m.group(1)), 1)
                out.append(Finding(rule=LintRule.PLACEMENT, nodes=(n.id,), message=(
                    f"attention with {m.group(1)} heads per GPU (tp {implied}) but the layout has tp {lay.tp} "
                    f"with attention dp {lay.dp}: each GPU holds {heads_per_gpu} of {model.num_heads} heads")))
        if re.search(r"all[-_ ]?reduce|tp[-_ ]all", text, re.I) and lay.tp == 1:
            out.append(Finding(rule=LintRule.PLACEMENT, nodes=(n.id,), message=(
                "tensor-parallel all-reduce, but the layout has tp 1 (attention is data parallel)")))
        if _EXPERT_RE.search(text) and not n.is_comm and n.gpus and model.is_moe:
            out += _expert_placement(n, model, lay, offset, redundant, lo, hi)
    return out


def _expert_placement(n: _Node, model, lay, offset, redundant, lo, hi) -> list[Finding]:
    per = expert_slots_per_rank(model.num_experts, redundant, lay.ep)
    m = _PER_GPU_RE.search(n.label)
    if m and int(m.group(1)) != per:
        return [Finding(rule=LintRule.PLACEMENT, nodes=(n.id,), message=(
            f"{m.group(1)} experts per GPU, but the layout puts {per} on each (ep {lay.ep})"))]
    m = _EXPERT_ID_RE.search(n.id.replace("_", " ") + " " + n.label.split("\n")[0])
    if not m or re.search(r"aggregat|combine|dispatch|shared|router|gate", n.label.split("\n")[0], re.I):
        return []
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else first
    wrong = []
    for gpu in n.gpus:
        if not lo <= gpu <= hi:
            continue
        rank = coords_of(gpu, lay, offset).ep
        hosted = range(rank * per, (rank + 1) * per)
        if first not in hosted or last not in hosted:
            wrong.append(gpu)
    if not wrong:
        return []
    expected = [gpu for gpu in range(lo, hi + 1) if coords_of(gpu, lay, offset).ep == first // per]
    return [Finding(rule=LintRule.PLACEMENT, nodes=(n.id,), message=(
        f"expert {first}{'-' + str(last) if last != first else ''} placed on GPU {gpu_ranges(wrong)}, but the "
        f"layout hosts it on GPU {gpu_ranges(expected)} (ep rank {first // per})"))]


def _transfers(nodes: dict[str, _Node], edges) -> list[Finding]:
    out = []
    for s, d, style in edges:
        a, b = nodes[s], nodes[d]
        if a.is_comm or b.is_comm or not a.gpus or not b.gpus:
            continue
        sa, sb = set(a.gpus), set(b.gpus)
        if not (sa <= sb or sb <= sa):
            out.append(Finding(rule=LintRule.CROSS_GPU_EDGE, nodes=(f"{s}->{d}",), message=(
                "edges between different GPUs with no communication node between them"
                + (" (dashed selection edges: the tokens still have to move)" if "dashed" in style else ""))))
    return out


def _missing(nodes: dict[str, _Node], model: ModelSpec, lay: Layout) -> list[Finding]:
    out = []
    attn = [n for n in nodes.values() if _ATTN_RE.search(n.id + " " + n.label.split("\n")[0]) and not n.is_comm]
    split = [n for n in attn if _SUBMODULE_RE.search(n.id + " " + n.label.split("\n")[0])]
    if attn and not split:
        out.append(Finding(rule=LintRule.MISSING_OPERATOR, nodes=tuple(n.id for n in attn), message=(
            "attention not split into submodules (norm, QKV projection, attention core, output projection)")))
    experts = [n for n in nodes.values() if _EXPERT_RE.search(n.label.split("\n")[0]) and not n.is_comm
               and not re.search(r"aggregat|shared", n.label.split("\n")[0], re.I)]
    # Only attention-dp ranks hold different tokens; with tp-only attention every GPU has them all
    # and the TP all-reduce combines the experts' outputs.
    if model.is_moe and experts and lay.dp > 1:
        comms = [n for n in nodes.values() if n.is_comm]
        if not any(re.search(r"dispatch|all.?to.?all|a2a|gather", n.id + n.label, re.I) for n in comms):
            out.append(Finding(rule=LintRule.MISSING_OPERATOR, nodes=tuple(n.id for n in experts[:4]), message=(
                "no dispatch: tokens must be sent to the GPUs of their experts by a communication node")))
        if not any(re.search(r"combine|all.?to.?all|a2a|scatter", n.id + n.label, re.I) for n in comms):
            out.append(Finding(rule=LintRule.MISSING_OPERATOR, nodes=tuple(n.id for n in experts[:4]), message=(
                "no combine: expert outputs must travel back to their tokens' GPUs by a communication node")))
    return out
