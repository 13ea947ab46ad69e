"""Read a hardware profile (``meshplan calibrate --microbench --out FILE``) and put what it measured
in place of the catalog GPU's achievable fractions (problem key ``hardware_profile``, flag
``--hardware-profile``).

What a profile replaces, for the one format it was timed in (bf16, fp16 or fp32):
- ``gemm_efficiency``: the largest GEMM's FLOP/s over the GPU's dense peak in that format;
- ``hbm_efficiency``: the smallest-M GEMM's bytes/s (weights streamed) over the GPU's HBM bandwidth;
- ``moe_hbm_efficiency``: the expert GEMMs' bytes/s at the fewest tokens per expert over the HBM
  bandwidth (torch.bmm over equal loads: the weight-streaming case of a grouped GEMM); the catalog
  keeps one figure for every expert format, and so does the profile;
- ``intra_node_bw_bytes_per_s``, with two or more GPUs: the largest message's all-reduce bus
  bandwidth over the problem's comm_efficiency, so that the bandwidth the cost model uses
  (the link's times comm_efficiency) is the measured one.
Shares are capped at 1 (a rate above the datasheet's peak means the catalog figure is low, and the
note says so). Latencies stay the catalog's: NCCL's small-message times without CUDA graphs are not
what engines' custom all-reduce pays. Other formats keep the catalog's figures.
"""

from __future__ import annotations

from pathlib import Path

from meshplan.errors import SpecError, shown
from meshplan.io.spec_build import build
from meshplan.io.user_file import load_yaml, read_text
from meshplan.specs.hardware import GpuSpec
from meshplan.specs.hardware_profile import FORMAT_OF, SCHEMA, HardwareProfile


def load_hardware_profile(path: str) -> HardwareProfile:
    """The profile at ``path``; SpecError naming the problem on anything else."""
    if not Path(path).exists():
        raise SpecError("hardware_profile", path, "no such file (write one with meshplan calibrate --microbench --out FILE)")
    data = load_yaml(read_text(path, "hardware_profile"), "hardware_profile", path)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SpecError("hardware_profile", path, f"is not a hardware profile (schema: {SCHEMA}, as calibrate "
                        "--microbench writes)")
    try:
        return build(HardwareProfile, data, "profile")
    except SpecError as err:  # the file is what the user named; the rule says which entry broke
        raise SpecError("hardware_profile", path, f"{err.field} = {shown(err.value)}: {err.rule}") from None


def _share(rate: float, figure: float) -> tuple[float, bool]:
    """rate / figure capped at 1, and whether it was capped."""
    share = rate / figure
    return min(share, 1.0), share > 1.0


def measured_gpu(gpu: GpuSpec, profile: HardwareProfile, comm_efficiency: float, path: str) -> tuple[GpuSpec, str]:
    """``gpu`` with the profile's measured fractions in place of the catalog's, and a note saying
    what changed from what to what."""
    if profile.device_kind != "cuda":
        raise SpecError("hardware_profile", path, f"was timed on the {profile.device_kind} (calibrate --microbench "
                        "--device cpu only tries the method); a plan needs a GPU's profile")
    named = profile.catalog.get("gpu") if profile.catalog else None
    if named is not None and named != gpu.name:
        raise SpecError("hardware_profile", path, f"was measured as {named}; the problem's GPU is {gpu.name}")
    if gpu.mfu is not None or gpu.hbm_bw_utilization is not None:
        raise SpecError("hardware_profile", path, f"{gpu.name} states its own mfu / hbm_bw_utilization, which apply to "
                        "every format; a profile replaces a catalog GPU's per-format fractions")
    fmt = FORMAT_OF[profile.dtype]
    if fmt not in gpu.peak_flops:
        raise SpecError("hardware_profile", path, f"was timed in {profile.dtype}; {gpu.name} has no {fmt.value} peak "
                        "in the catalog to compare with")
    biggest = max(profile.gemm, key=lambda r: r.flops_per_s)
    smallest = min(profile.gemm, key=lambda r: r.m)
    fewest = min(profile.expert_gemm, key=lambda r: r.tokens_per_expert)
    gemm, gemm_capped = _share(biggest.flops_per_s, gpu.peak_flops[fmt])
    hbm, hbm_capped = _share(smallest.bytes_per_s, gpu.hbm_bw_bytes_per_s)
    moe, moe_capped = _share(fewest.bytes_per_s, gpu.hbm_bw_bytes_per_s)
    update: dict = {"gemm_efficiency": {**gpu.gemm_efficiency, fmt: gemm},
                    "hbm_efficiency": {**gpu.hbm_efficiency, fmt: hbm}, "moe_hbm_efficiency": moe}
    old_gemm = gpu.gemm_efficiency.get(fmt)
    old_hbm = gpu.hbm_efficiency.get(fmt)
    was = lambda x: "unset" if x is None else f"{x:.2f}"  # noqa: E731
    parts = [f"{fmt.value} GEMM efficiency {gemm:.2f} (catalog {was(old_gemm)}; M = {biggest.m})",
             f"{fmt.value} HBM efficiency {hbm:.2f} (catalog {was(old_hbm)}; M = {smallest.m})",
             f"expert weight streaming {moe:.2f} of HBM for every expert format (catalog {was(gpu.moe_hbm_efficiency)}, "
             f"also one figure; {fewest.tokens_per_expert} token(s) per expert)"]
    if profile.collectives:
        big = max(profile.collectives, key=lambda r: r.bytes)
        update["intra_node_bw_bytes_per_s"] = big.all_reduce_bus_bytes_per_s / comm_efficiency
        parts.append(f"NVLink {big.all_reduce_bus_bytes_per_s / 1e9:,.0f} GB/s all-reduce bus bandwidth among "
                     f"{big.devices} GPUs (catalog {gpu.intra_node_bw_bytes_per_s * comm_efficiency / 1e9:,.0f} GB/s "
                     f"= {gpu.intra_node_bw_bytes_per_s / 1e9:,.0f} x comm_efficiency {comm_efficiency:g})")
    capped = [name for name, c in (("GEMM", gemm_capped), ("HBM", hbm_capped), ("expert", moe_capped)) if c]
    data = gpu.model_dump() | update
    message = (f"hardware profile {path} ({profile.device}, torch {profile.torch}, {profile.dtype}): " + "; ".join(parts)
               + (f"; {', '.join(capped)} measured above the catalog's peak, capped at 1 (check the catalog figure)"
                  if capped else "") + "; other formats keep the catalog's figures")
    return build(GpuSpec, data, "hardware_profile"), message
