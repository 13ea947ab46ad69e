"""DAG -> DOT (Graphviz), JSON (node-link), and SVG/PNG rendered by Graphviz's ``dot``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from meshplan.dag.nodes import Dag, Node, NodeKind, gpu_ranges
from meshplan.dag.size import MAX_RENDER_NODES
from meshplan.errors import SpecError
from meshplan.io.user_file import output_folder
from meshplan.units import fmt_bytes, fmt_seconds


FORMATS = ("dot", "svg", "png", "json")
PICTURES = ("svg", "png")
"""The formats Graphviz draws: slow for large DAGs, so refused past size.MAX_RENDER_NODES."""

_RANKING = "newrank=true"
"""One global ranking, ignoring the per-GPU clusters. Without it Graphviz ranks each cluster on
its own, and a cluster that one long chain joins (every GPU of a MoE model with shared experts:
norm -> shared experts -> sum stays on the GPU) made dot's layout blow up: DeepSeek-V3 expanded
on 2 GPUs (dp=ep=2) took 54 s at 24 layers (462 nodes), over 150 s at 32 (622) and over 5 minutes
at its 61 (1,202); with it 0.1 s at 32 layers and 0.2 s at 61. It also keeps each layer's
experts between their dispatch and combine (without it dot pulled them up to the top of the
cluster)."""


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _layers(n: Node) -> str:
    if not n.layers:
        return ""
    a, b = n.layers[0], n.layers[-1]
    return f"layer {a}" if a == b else f"layers {a}-{b} (x{len(n.layers)} layers)"


def label(n: Node) -> str:
    """Node label: operator, layers, GPUs (always the ids), shapes, cost."""
    title = n.op + (f" {_layers(n)}" if n.layers else "")
    lines = [title, f"GPU{'s' if len(n.gpus) > 1 else ''}: {gpu_ranges(n.gpus)}"]
    if n.detail:
        lines.append(n.detail)
    if n.in_shape:
        lines.append(f"in: {n.in_shape}")
    if n.out_shape:
        lines.append(f"out: {n.out_shape}")
    cost = []
    if n.flops:
        cost.append(f"{n.flops / 1e9:,.2f} GFLOP")
    if n.hbm_bytes:
        cost.append(f"HBM {fmt_bytes(n.hbm_bytes)}")
    if n.comm_bytes:
        cost.append(f"sends {fmt_bytes(n.comm_bytes)}/GPU")
    if n.time_s:
        cost.append(fmt_seconds(n.time_s) + ("/layer" if n.layers else ""))
    if cost:
        lines.append(", ".join(cost))
    return "\n".join(lines)


def to_dot(dag: Dag) -> str:
    """Graphviz text. Compute and routing nodes sit in clusters, one per GPU (expanded) or per
    group of identical GPUs (collapsed), labelled with the ids; communication nodes sit between
    the clusters of the GPUs they join."""
    out = [f"digraph {_q(f'meshplan_{dag.phase}')} {{",
           f"  label={_q(f'{dag.phase}: {dag.layout} ({dag.num_gpus} GPU' + ('' if dag.num_gpus == 1 else 's') + ')')};",
           f"  labelloc=t; rankdir=TB; {_RANKING}; node [fontsize=10, fontname=Helvetica]; edge [arrowsize=0.6];"]
    clusters: dict[tuple[int, ...], list[Node]] = {}
    loose: list[Node] = []
    for n in dag.nodes:
        if n.kind is not NodeKind.COMM and n.op not in ("input", "output"):
            clusters.setdefault(n.gpus, []).append(n)
    for n in dag.nodes:
        # A transfer among the very GPUs of one cluster (collapsed view) is drawn inside it.
        if n.kind is NodeKind.COMM and n.gpus in clusters:
            clusters[n.gpus].append(n)
        elif n.kind is NodeKind.COMM or n.op in ("input", "output"):
            loose.append(n)
    for i, (gpus, members) in enumerate(clusters.items()):
        out.append(f"  subgraph cluster_{i} {{")
        out.append(f"    label={_q('GPU' + ('s ' if len(gpus) > 1 else ' ') + gpu_ranges(gpus))}; style=rounded; color=gray60;")
        out += [f"    {_node(n)}" for n in members]
        out.append("  }")
    out += [f"  {_node(n)}" for n in loose]
    for e in dag.edges:
        style = " [style=dashed]" if e.dashed else ""
        out.append(f"  {_q(e.src)} -> {_q(e.dst)}{style};")
    out.append("}")
    return "\n".join(out) + "\n"


def _node(n: Node) -> str:
    fill = {NodeKind.COMPUTE: "white", NodeKind.COMM: "lightyellow", NodeKind.ROUTE: "lightblue"}[n.kind]
    return f"{_q(n.id)} [shape={n.kind.shape}, style=filled, fillcolor={fill}, label={_q(label(n))}];"


def to_json(dag: Dag) -> dict[str, Any]:
    """Node-link JSON (the layout networkx.node_link_graph reads)."""
    return {
        "directed": True, "multigraph": False,
        "graph": {"phase": dag.phase, "layout": dag.layout, "num_gpus": dag.num_gpus, "expanded": dag.expanded},
        "nodes": [{"id": n.id, "op": n.op, "kind": n.kind.value, "shape": n.kind.shape, "gpus": list(n.gpus),
                   "layers": list(n.layers), "stage": n.stage, "groups": n.groups, "in_shape": n.in_shape,
                   "out_shape": n.out_shape, "flops": n.flops, "hbm_bytes": n.hbm_bytes, "comm_bytes": n.comm_bytes,
                   "time_s": n.time_s, "detail": n.detail} for n in dag.nodes],
        "links": [{"source": e.src, "target": e.dst, "dashed": e.dashed} for e in dag.edges],
    }


def render(dot_text: str, fmt: str, path: Path) -> None:
    """SVG or PNG through Graphviz's ``dot`` (installed by the README's set-up command)."""
    exe = shutil.which("dot")
    if exe is None:
        raise SpecError("--format", fmt, "needs Graphviz's `dot` program (apt-get install graphviz); "
                        "dot and json need nothing")
    result = subprocess.run([exe, f"-T{fmt}", "-o", str(path)], input=dot_text, text=True, capture_output=True)
    if result.returncode != 0:
        raise SpecError("--format", fmt, f"Graphviz failed: {result.stderr.strip()[:200]}")


def check_formats(formats: list[str]) -> None:
    """Refuse (SpecError) a format this module does not write, before anything is built."""
    for fmt in formats:
        if fmt not in FORMATS:
            raise SpecError("--format", fmt, f"must be {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")


def too_big_to_draw(num_nodes: int) -> bool:
    """Whether SVG and PNG of a DAG this size are refused (size.MAX_RENDER_NODES)."""
    return num_nodes > MAX_RENDER_NODES


def write(dag: Dag, out_dir: Path, formats: list[str], stem: str) -> list[Path]:
    """Write the DAG in each format; returns the paths written. SVG and PNG of a DAG past
    size.MAX_RENDER_NODES are refused (SpecError) before anything is written: callers that want
    the other formats anyway leave the pictures out (too_big_to_draw)."""
    check_formats(formats)
    if too_big_to_draw(len(dag.nodes)) and any(f in PICTURES for f in formats):
        raise SpecError("--format", ",".join(formats), f"the DAG has {len(dag.nodes):,} nodes; {picture_rule()}")
    output_folder(str(out_dir), "--out")
    dot_text = to_dot(dag)
    written = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        if fmt == "dot":
            path.write_text(dot_text)
        elif fmt == "json":
            path.write_text(json.dumps(to_json(dag)) + "\n")
        else:
            render(dot_text, fmt, path)
        written.append(path)
    return written


def picture_rule() -> str:
    """Why SVG/PNG of a large DAG are not drawn, for one error or note line."""
    return (f"svg and png are drawn up to {MAX_RENDER_NODES:,} nodes (Graphviz's layout "
            f"time grows faster than the DAG: 17,462 nodes took 44 s), dot and json at any size")
