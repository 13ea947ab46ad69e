"""meshplan calibrate --microbench: time the kernels the step model prices and write a hardware profile."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from meshplan.cli.echo import echo
from meshplan.errors import SpecError
from meshplan.io.catalog import load_gpu
from meshplan.report.tables import table
from meshplan.specs.hardware_profile import FORMAT_OF


def catalog_shares(summary: dict, gpu_name: str, dtype_name: str) -> dict:
    """The measured headline rates as shares of the catalog GPU's figures: GEMM FLOP/s of its dense
    peak in the format, small-M GEMM and decode-attention bytes/s of its HBM bandwidth, bus
    bandwidth of its per-GPU NVLink bandwidth (one direction)."""
    g = load_gpu(gpu_name)
    peak = g.peak_flops_for(FORMAT_OF[dtype_name])
    out = {"gpu": g.name, "gemm_of_peak": summary["gemm_flops_per_s"] / peak,
           "expert_gemm_of_peak": summary["expert_gemm_flops_per_s"] / peak,
           "gemm_small_m_of_hbm": summary["gemm_small_m_bytes_per_s"] / g.hbm_bw_bytes_per_s,
           "decode_attention_of_hbm": summary["decode_attention_bytes_per_s"] / g.hbm_bw_bytes_per_s}
    if "all_reduce_bus_bytes_per_s" in summary:
        out["all_reduce_of_link"] = summary["all_reduce_bus_bytes_per_s"] / g.intra_node_bw_bytes_per_s
        out["all_to_all_of_link"] = summary["all_to_all_bus_bytes_per_s"] / g.intra_node_bw_bytes_per_s
    return out


def run_microbench(out: str, device: str, dtype: str, gpu: str | None) -> None:
    if importlib.util.find_spec("torch") is None:
        raise SpecError("--microbench", None, "needs torch: pip install 'meshplan[run]' (torch==2.13.0 on CPU machines)")
    if dtype not in FORMAT_OF:
        raise SpecError("--dtype", dtype, f"one of {', '.join(FORMAT_OF)}")
    target = Path(out)
    if target.is_dir() or not target.parent.is_dir():
        raise SpecError("--out", out, "must be a file path in an existing folder")
    if gpu is not None:
        load_gpu(gpu)  # a bad name is refused before minutes of timing
    from meshplan.execute.microbench import cuda_available, measure  # needs torch (the optional run extra)
    if device == "cuda" and not cuda_available():
        raise SpecError("--device", device, "no CUDA device is visible to torch here (--device cpu tries the method "
                        "at small sizes)")
    echo(f"timing on {device} in {dtype} ...", err=True)
    doc = measure(device, dtype)
    if gpu is not None:
        doc["catalog"] = catalog_shares(doc["summary"], gpu, dtype)
    s = doc["summary"]
    rows = [["dense GEMM, largest rate", f"{s['gemm_flops_per_s'] / 1e12:,.2f} TFLOP/s"],
            [f"dense GEMM at M = {min(r['m'] for r in doc['gemm'])}", f"{s['gemm_small_m_bytes_per_s'] / 1e9:,.1f} GB/s"],
            ["expert GEMMs, largest rate", f"{s['expert_gemm_flops_per_s'] / 1e12:,.2f} TFLOP/s"],
            ["attention decode, K and V read", f"{s['decode_attention_bytes_per_s'] / 1e9:,.1f} GB/s"]]
    if "all_reduce_bus_bytes_per_s" in s:
        n = doc["devices"]
        rows += [[f"all-reduce bus bandwidth, {n} devices", f"{s['all_reduce_bus_bytes_per_s'] / 1e9:,.1f} GB/s"],
                 [f"all-to-all bus bandwidth, {n} devices", f"{s['all_to_all_bus_bytes_per_s'] / 1e9:,.1f} GB/s"]]
    echo(f"{doc['device']} ({doc['devices']} device(s), torch {doc['torch']}):")
    echo(table(["measured", "rate"], rows))
    if "catalog" in doc:
        c = doc["catalog"]
        echo(f"\nAgainst the catalog's {c['gpu']}: GEMM {c['gemm_of_peak']:.0%} of dense peak, expert GEMMs "
             f"{c['expert_gemm_of_peak']:.0%}; small-M GEMM {c['gemm_small_m_of_hbm']:.0%} and decode attention "
             f"{c['decode_attention_of_hbm']:.0%} of HBM bandwidth"
             + (f"; all-reduce {c['all_reduce_of_link']:.0%} of the NVLink figure" if "all_reduce_of_link" in c else ""))
    target.write_text("# meshplan hardware profile: kernels timed by meshplan calibrate --microbench "
                      "(execute/microbench.py).\n" + yaml.safe_dump(doc, sort_keys=False))
    echo(f"wrote {out}; plans cost with it through --hardware-profile {out}", err=True)
