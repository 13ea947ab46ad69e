"""DAG -> DOT (Graphviz), JSON (node-link), and SVG/PNG rendered by Graphviz's ``dot``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from meshplan.dag.nodes import Dag, Node, NodeKind, gpu_ranges
from meshplan.errors import SpecError
from meshplan.io.user_file import output_folder
from meshplan.units import fmt_bytes, fmt_seconds


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
           "  labelloc=t; rankdir=TB; node [fontsize=10, fontname=Helvetica]; edge [arrowsize=0.6];"]
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


def write(dag: Dag, out_dir: Path, formats: list[str], stem: str) -> list[Path]:
    """Write the DAG in each format; returns the paths written."""
    output_folder(str(out_dir), "--out")
    dot_text = to_dot(dag)
    written = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        if fmt == "dot":
            path.write_text(dot_text)
        elif fmt == "json":
            path.write_text(json.dumps(to_json(dag)) + "\n")
        elif fmt in ("svg", "png"):
            render(dot_text, fmt, path)
        else:
            raise SpecError("--format", fmt, "must be dot, svg, png or json")
        written.append(path)
    return written
