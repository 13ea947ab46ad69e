"""SGLang 0.5 launch commands.

Layout mapping (strategy.notation.to_sglang): --tp-size counts every GPU of a stage (tp x
attention dp); --dp-size with --enable-dp-attention gives attention dp; --ep-size the expert
parallel degree (moe tp = tp-size / ep-size). Multi-node: --nnodes, --node-rank and
--dist-init-addr on every node. DeepEP all-to-all (--moe-a2a-backend deepep) requires ep-size =
tp-size. Disaggregation: --disaggregation-mode prefill|decode with a KV transfer backend, and the
sglang_router in front (SGLang PD-disaggregation docs).
"""

from __future__ import annotations

from meshplan.export.common import Launch, PoolSettings, nodes_of_instance
from meshplan.export.speculative import sglang_flags
from meshplan.export.shell import Env, Join, command, require_env, script
from meshplan.plan.pools import Pool
from meshplan.specs.workload import PoolRole
from meshplan.strategy.notation import to_sglang

DIST_PORT = 5000
HTTP_PORT = 30000


def launch(pool: Pool, s: PoolSettings) -> Launch:
    lay = pool.layout
    f = to_sglang(lay)
    nodes = nodes_of_instance(lay.gpus_per_instance, s.gpus_per_host)
    args = [("python", "-m", "sglang.launch_server"), ("--model-path", s.served_model), ("--tp-size", f["tp_size"])]
    if f["enable_dp_attention"]:
        args += [("--dp-size", f["dp_size"]), ("--enable-dp-attention",)]
    if lay.ep > 1:
        args.append(("--ep-size", lay.ep))
        if lay.ep == f["tp_size"]:
            mode = {PoolRole.PREFILL: "normal", PoolRole.DECODE: "low_latency"}.get(s.role, "auto")
            args += [("--moe-a2a-backend", "deepep"), ("--deepep-mode", mode)]
    if lay.pp > 1:
        args.append(("--pp-size", lay.pp))
    if s.redundant_experts:
        args.append(("--ep-num-redundant-experts", s.redundant_experts))
    args += [("--context-length", s.context_tokens), ("--max-running-requests", s.seqs_per_rank * lay.dp),
             ("--mem-fraction-static", f"{s.memory_fraction:g}"), ("--chunked-prefill-size", s.chunk_tokens)]
    if s.kv_fp8:
        args.append(("--kv-cache-dtype", "fp8_e4m3"))
    if s.recv_interval > 1:
        args.append(("--scheduler-recv-interval", s.recv_interval))
    args += sglang_flags(s.speculative, s.draft_served)
    if s.two_batch_overlap and lay.ep > 1:
        args.append(("--enable-two-batch-overlap",))
    if s.role is not PoolRole.AGGREGATED:
        args += [("--disaggregation-mode", s.role.value), ("--disaggregation-transfer-backend", "mooncake")]
    out = Launch(engine="sglang", role=s.role)
    for inst in range(lay.instances):
        for node in range(nodes):
            node_args = list(args)
            lines = []
            if nodes > 1:
                node_args += [("--nnodes", nodes), ("--node-rank", node),
                              ("--dist-init-addr", Join((Env("HEAD_ADDR"), f":{DIST_PORT}")))]
                lines.append(require_env("HEAD_ADDR", "the address of node 0 of this instance"))
            node_args += [("--host", "0.0.0.0"), ("--port", HTTP_PORT)]
            header = [f"SGLang 0.5, {s.role} pool, instance {inst} of {lay.instances}, node {node} of {nodes}",
                      f"layout {lay} ({lay.gpus_per_instance} GPUs per instance)"]
            out.files[f"{s.role}-instance{inst}-node{node}.sh"] = script(lines + [command(node_args)], header)
    return out


def router(prefill: Pool, decode: Pool) -> str:
    """The PD router in front of the prefill and decode instances."""
    lines = [("python", "-m", "sglang_router.launch_router", "--pd-disaggregation")]
    lines += [("--prefill", Join(("http://", Env(f"PREFILL_HEAD_{i}"), f":{HTTP_PORT}")))
              for i in range(prefill.layout.instances)]
    lines += [("--decode", Join(("http://", Env(f"DECODE_HEAD_{i}"), f":{HTTP_PORT}")))
              for i in range(decode.layout.instances)]
    lines += [("--host", "0.0.0.0"), ("--port", 8000)]
    return script([command(lines)], ["SGLang PD router: set PREFILL_HEAD_i / DECODE_HEAD_i to each instance's node 0"])
