"""meshplan run: the plan executed on torch.distributed (CPU processes with gloo here)."""

from __future__ import annotations

import click

from meshplan.errors import SpecError
from meshplan.report.tables import table
from meshplan.strategy.layout import Layout


def _need_torch():
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        raise SpecError("meshplan run", None, "needs torch: pip install 'meshplan[run]' "
                        "(torch==2.13.0 on CPU machines)") from None


def execute(problem, lay: Layout, *, scale: str, requests: int, isl: int, osl: int, dtype: str, seed: int,
            timeout_s: float, title: str) -> dict:
    """Run ``lay`` and a single-process reference; print tokens, per-rank times beside the cost
    model's predictions, and bytes per collective. Returns a summary."""
    from meshplan.execute.launch import RunFailed, RunSpec, cuda_available, refuse_illegal, run
    from meshplan.execute.model import config_from_spec
    from meshplan.execute.profile import measure, predict, tiny_problem

    cfg = config_from_spec(problem.model, scale)
    cuda = cuda_available()
    if scale == "full" and not cuda:
        raise SpecError("--scale", scale, "full-size models need GPUs; use --scale tiny on CPU")
    refuse_illegal(problem, lay, cfg)
    click.echo(f"\n== {title}: {lay} ({lay.gpus} processes, {'NCCL' if cuda else 'gloo'}, {scale} model, {dtype})")
    spec = RunSpec(layout=lay, config=cfg, requests=requests, isl=isl, osl=osl, seed=seed, dtype=dtype,
                   timeout_s=timeout_s, cuda=cuda)
    try:
        reports = run(spec)
        reference = run(RunSpec(layout=Layout(), config=cfg, requests=requests, isl=isl, osl=osl, seed=seed,
                                dtype=dtype, timeout_s=timeout_s, cuda=cuda)) if lay.gpus > 1 else reports
    except RunFailed as err:
        raise SpecError("run", str(lay), str(err)) from None
    gen = {k: v for r in reports for k, v in r["generated"].items()}
    ref = {k: v for r in reference for k, v in r["generated"].items()}
    for rid in sorted(gen, key=int):
        click.echo(f"request {rid}: {gen[rid]}")
    same = gen == ref
    click.echo(f"generated tokens equal a single-process run: {'yes' if same else 'NO'}")
    profile = measure(dtype)
    import os
    import statistics
    latency = statistics.median(r["collective_latency_s"] for r in reports)
    tiny = tiny_problem(problem, cfg, profile, isl, osl, latency) if dtype == "float32" else None
    rows = []
    for r in reports:
        c = r["coords"]
        pred = predict(tiny, lay, len(r["requests"])) if tiny is not None else (None, None)
        fmt = lambda x: "-" if x is None else f"{x * 1e3:.1f} ms"  # noqa: E731
        rows.append([r["rank"], f"i{c['instance']} pp{c['pp']} dp{c['dp']} tp{c['tp']} ep{c['ep']} etp{c['etp']}",
                     len(r["requests"]), fmt(r["ttft_s"]), fmt(pred[0]), fmt(r["tpot_s"]), fmt(pred[1]),
                     f"{r['tokens'] / r['wall_s']:,.0f}" if r["wall_s"] else "-",
                     ", ".join(f"{k} {v / 1e3:,.1f} KB" for k, v in sorted(r["bytes"].items())) or "-"])
    click.echo(table(["rank", "coordinates", "requests", "TTFT", "predicted", "TPOT", "predicted", "tok/s",
                      "bytes sent per collective"], rows))
    click.echo(f"device profile (one thread per process, {lay.gpus} processes on {os.cpu_count()} cores): "
               f"{profile.flops / 1e9:.1f} GFLOP/s, {profile.bw_bytes_per_s / 1e9:.1f} GB/s, "
               f"{profile.op_overhead_s * 1e6:.1f} us per op, {latency * 1e6:,.0f} us per collective (measured)"
               + ("" if tiny else "; predictions need --dtype float32 (the cost model has no fp64)"))
    return {"layout": str(lay), "tokens_match": same}
