"""DAG size and speed: DeepSeek-V3 decode on 320 GPUs (tp=4, dp=80, ep=320).

256 routed experts do not divide over 320 EP ranks, so, as in DeepSeek's own EP320 decode
deployment, 64 redundant expert replicas are configured (one expert per GPU). Prints the
expanded DAG's build time and node count and the collapsed DAG's render time (Graphviz dot -> SVG);
the goal is under 5 s each on the 2-core development machine."""

import tempfile
import time
from pathlib import Path

from meshplan.dag.build import build_dag
from meshplan.dag.export import to_dot, write
from meshplan.io.problem_file import problem_from_raw
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import parse_strategy


def main() -> None:
    problem = problem_from_raw({"name": "bench", "model": "deepseek-v3", "gpu": "h800", "precision": {"weights": "fp8"},
                                "workload": {"isl": 4000, "osl": 500}, "assumptions": {"redundant_experts": 64}})
    lay = parse_strategy("tp=4,dp=80,ep=320")
    t0 = time.perf_counter()
    dag = build_dag(problem, lay, Phase.DECODE, 64.0, expand=True)
    t1 = time.perf_counter()
    text = to_dot(dag)
    t2 = time.perf_counter()
    print(f"expanded: {len(dag.nodes):,} nodes, {len(dag.edges):,} edges; build {t1 - t0:.2f} s, "
          f"DOT text {len(text) / 1e6:.1f} MB in {t2 - t1:.2f} s")
    collapsed = build_dag(problem, lay, Phase.DECODE, 64.0)
    with tempfile.TemporaryDirectory() as tmp:
        t3 = time.perf_counter()
        write(collapsed, Path(tmp), ["svg"], Phase.DECODE)
        t4 = time.perf_counter()
    print(f"collapsed: {len(collapsed.nodes)} nodes; render to SVG {t4 - t3:.2f} s")


if __name__ == "__main__":
    main()
