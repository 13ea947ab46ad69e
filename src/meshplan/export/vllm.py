"""vLLM 0.11 launch commands.

Layout mapping (strategy.notation.to_vllm): -tp = attention tp, -dp = attention dp; with
--enable-expert-parallel ep = tp*dp, otherwise the experts are tensor-parallel over tp*dp.
Multi-node data parallel: every node runs `vllm serve` with --data-parallel-size-local (engines
on that node), --data-parallel-address/--data-parallel-rpc-port of the head node and, on the
other nodes, --data-parallel-start-rank and --headless (vLLM docs, data_parallel_deployment.md).
"""

from __future__ import annotations

import json

from meshplan.export.common import Inexpressible, Launch, PoolSettings, nodes_of_instance
from meshplan.export.speculative import vllm_flags
from meshplan.export.shell import Env, Join, command, export_env, require_env, script
from meshplan.plan.pools import Pool
from meshplan.specs.workload import PoolRole
from meshplan.strategy.notation import to_vllm

RPC_PORT = 13345
HTTP_PORT = 8000
RAY_PORT = 6379
HEAD = Env("HEAD_ADDR")
NEED_HEAD = require_env("HEAD_ADDR", "the address of node 0 of this instance")


def _a2a(s: PoolSettings, ep: int, multi_node: bool) -> str | None:
    """DeepEP kernels for expert parallel across nodes: high-throughput for prefill, low-latency
    (CUDA-graph friendly) for decode, as vLLM's expert-parallel deployment guide recommends."""
    if ep <= 1 or not multi_node:
        return None
    return "deepep_low_latency" if s.role is PoolRole.DECODE else "deepep_high_throughput"


def launch(pool: Pool, s: PoolSettings) -> Launch:
    lay = pool.layout
    try:
        flags = to_vllm(lay)
    except ValueError as err:
        raise Inexpressible(str(err)) from None
    engine_gpus = lay.tp * lay.pp
    if engine_gpus > s.gpus_per_host and lay.dp > 1:
        raise Inexpressible(f"each vLLM data-parallel engine (tp x pp = {engine_gpus} GPUs) must fit on one node of "
                            f"{s.gpus_per_host} for multi-node data parallel")
    nodes = nodes_of_instance(lay.gpus_per_instance, s.gpus_per_host)
    local = lay.dp if nodes == 1 else max(1, s.gpus_per_host // engine_gpus)
    base = [("vllm", "serve", s.served_model), ("--tensor-parallel-size", flags["tensor_parallel_size"]),
            ("--pipeline-parallel-size", flags["pipeline_parallel_size"]),
            ("--data-parallel-size", flags["data_parallel_size"])]
    if flags["enable_expert_parallel"]:
        base.append(("--enable-expert-parallel",))
    if s.redundant_experts:
        base.append(("--enable-eplb", "--num-redundant-experts", s.redundant_experts))
    base += [("--max-model-len", s.context_tokens), ("--max-num-seqs", s.seqs_per_rank),
             ("--gpu-memory-utilization", f"{s.memory_fraction:g}")]
    if s.kv_fp8:
        base.append(("--kv-cache-dtype", "fp8"))
    base += vllm_flags(s.speculative, s.draft_served)
    if s.role is not PoolRole.AGGREGATED:
        # P/D disaggregation through NIXL (vLLM docs, disagg_prefill); a proxy routes each request
        # to a prefill then a decode instance.
        base.append(("--kv-transfer-config", json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"})))
    a2a = _a2a(s, lay.ep, nodes > 1)
    out = Launch(engine="vllm", role=s.role)
    if nodes > 1 and lay.dp == 1:
        return _ray(out, base, lay, s, nodes, a2a)
    for inst in range(lay.instances):
        for node in range(nodes):
            args = list(base)
            if nodes > 1:
                args += [("--data-parallel-size-local", local), ("--data-parallel-address", HEAD),
                         ("--data-parallel-rpc-port", RPC_PORT)]
                if node > 0:
                    args += [("--data-parallel-start-rank", node * local), ("--headless",)]
            if node == 0:
                args.append(("--port", HTTP_PORT))
            env = [export_env("VLLM_ALL2ALL_BACKEND", a2a)] if a2a else []
            header = [f"vLLM 0.11, {s.role} pool, instance {inst} of {lay.instances}, node {node} of {nodes}",
                      f"layout {lay} ({lay.gpus_per_instance} GPUs per instance)",
                      "HEAD_ADDR: address of node 0 of this instance" if nodes > 1 else "one node"]
            lines = [NEED_HEAD] if nodes > 1 else []
            out.files[f"{s.role}-instance{inst}-node{node}.sh"] = script(lines + env + [command(args)], header)
    return out


def _ray(out: Launch, base: list[tuple], lay, s: PoolSettings, nodes: int, a2a: str | None) -> Launch:
    """One engine spanning nodes (pipeline stages on several nodes): a Ray cluster, and
    `vllm serve --distributed-executor-backend ray` on its head (vLLM multi-node serving docs)."""
    env = [export_env("VLLM_ALL2ALL_BACKEND", a2a)] if a2a else []
    for inst in range(lay.instances):
        for node in range(nodes):
            header = [f"vLLM 0.11, {s.role} pool, instance {inst} of {lay.instances}, node {node} of {nodes} (Ray)",
                      f"layout {lay} ({lay.gpus_per_instance} GPUs per instance)"]
            if node == 0:
                lines = env + [command([("ray", "start", "--head", "--port", RAY_PORT)]),
                               command(base + [("--distributed-executor-backend", "ray"), ("--port", HTTP_PORT)])]
            else:
                lines = [NEED_HEAD, *env,
                         command([("ray", "start", "--address", Join((HEAD, f":{RAY_PORT}")), "--block")])]
            out.files[f"{s.role}-instance{inst}-node{node}.sh"] = script(lines, header)
    return out
