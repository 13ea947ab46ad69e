"""meshplan models / gpus: the catalogs, as tables or JSON."""

from __future__ import annotations

import json

import click

from meshplan.cli.echo import echo
from meshplan.io.catalog import checkpoints, gpu_keys, load_gpu, load_model, model_keys
from meshplan.report.tables import table
from meshplan.specs.params import count_params


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The catalog as JSON (every field, parameter counts, checkpoints).")
def models(as_json) -> None:
    """The model catalog, and every checkpoint's number formats (attention/experts/other weights, KV
    cache) as its quantization config states them; a checkpoint id works as a --model name."""
    if as_json:
        out = []
        for key in model_keys():
            m, p = load_model(key), count_params(load_model(key))
            out.append(m.model_dump(mode="json") | {"params_total": p.total, "params_active": p.active,
                       "checkpoints": {c: prec.model_dump(mode="json") for c, prec in checkpoints(key).items()}})
        echo(json.dumps(out, indent=2))
        return
    rows, formats = [], []
    for key in model_keys():
        m = load_model(key)
        p = count_params(m)
        attention = m.attention.value + (f" + {m.num_linear_attention_layers} linear" if m.num_linear_attention_layers
                                         else "") + (" sparse" if m.index_topk else "")
        rows.append([key, attention, m.num_layers, m.hidden_size, f"{m.num_heads}/{m.num_kv_heads}",
                     f"{m.num_experts} top-{m.top_k}" if m.is_moe else "dense",
                     f"{p.total / 1e9:,.1f}B", f"{p.active / 1e9:,.1f}B", m.mtp_modules or "-"])
        for ckpt, prec in checkpoints(key).items():
            out = f" (o_proj {prec.attention_out.value})" if prec.attention_out else ""
            formats.append([key, ckpt, prec.attention_dtype.value + out, prec.experts_dtype.value if m.is_moe else "-",
                            prec.weights.value, prec.kv_cache.value])
    echo(table(["name", "attention", "layers", "hidden", "heads/kv", "experts", "params", "active", "MTP"], rows))
    echo("MTP: multi-token-prediction modules the checkpoint ships (--spec mtp drafts with them)")
    echo("")
    echo(table(["name", "checkpoint", "attention", "experts", "other weights", "KV cache"], formats))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The catalog as JSON (every figure of every GPU).")
def gpus(as_json) -> None:
    """The GPU catalog."""
    if as_json:
        echo(json.dumps([load_gpu(k).model_dump(mode="json") for k in gpu_keys()], indent=2))
        return
    rows = []
    for key in gpu_keys():
        g = load_gpu(key)
        peaks = " ".join(f"{d.value}:{v / 1e12:,.0f}" for d, v in sorted(g.peak_flops.items(), key=lambda x: -x[1]))
        rows.append([key, f"{g.memory_bytes / 1e9:.0f} GB", f"{g.hbm_bw_bytes_per_s / 1e12:.2f} TB/s", peaks,
                     g.nvlink_domain_gpus, f"{g.intra_node_bw_bytes_per_s / 1e9:.0f}/{g.inter_node_bw_bytes_per_s / 1e9:.0f} GB/s"])
    echo(table(["name", "memory", "HBM", "dense TFLOP/s", "node GPUs", "intra/inter per GPU"], rows))
