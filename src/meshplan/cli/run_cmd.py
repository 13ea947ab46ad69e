"""meshplan run: the plan executed on torch.distributed (CPU processes with gloo here)."""

from __future__ import annotations

import importlib.util

from meshplan.cli.echo import echo
from meshplan.errors import SpecError
from meshplan.execute.interrupt import RunInterrupted
from meshplan.report.tables import table
from meshplan.strategy.layout import Layout
from meshplan.units import plural


def need_torch():
    """Refuse, in one line naming the extra, when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        raise SpecError("meshplan run", None, "needs torch: pip install 'meshplan[run]' "
                        "(torch==2.13.0 on CPU machines)") from None


def fit_instances(lay: Layout, max_processes: int) -> tuple[Layout, str | None]:
    """The layout with as many whole instances as ``max_processes`` allows (instances are
    independent copies, so running fewer checks the same thing), and a note when it cut any."""
    per = lay.gpus_per_instance
    if per > max_processes:
        raise SpecError("--max-processes", max_processes, f"one instance of {lay} needs {per} processes; "
                        f"raise --max-processes to at least {per} (each CPU process holds its own torch, "
                        "about 0.25 GB)")
    if lay.gpus <= max_processes:
        return lay, None
    keep = max_processes // per
    return lay.with_instances(keep), (f"running {keep} of the plan's {lay.instances} instances ({keep * per} "
                                      f"processes, --max-processes {max_processes}); instances are independent")


def execute(problem, lay: Layout, *, scale: str, requests: int, isl: int, osl: int, dtype: str, seed: int,
            timeout_s: float, title: str, max_processes: int = 32) -> dict:
    """Run ``lay`` and a single-process reference; print tokens, per-rank times beside the cost
    model's predictions, and bytes per collective. Returns a summary."""
    # These need torch (the optional run extra): imported when a run starts.
    from meshplan.execute.launch import (RunFailed, RunSpec, choose_devices, gpu_count, gpu_memory_bytes,
                                         itemsize, oversized, refuse_illegal, refuse_oversized, run)
    from meshplan.execute.model import config_from_spec
    from meshplan.execute.profile import cpu_cores, decode_collective_s, predict_run

    spec_note = None
    if problem.speculative is not None:  # the executor decodes one token per step
        spec_note = ("speculative decoding is not executed: the run decodes one token per step, and its "
                     "predictions are plain decoding's")
        problem = problem.model_copy(update={"speculative": None})
    cfg = config_from_spec(problem.model, scale)
    refuse_illegal(problem, lay, cfg)
    lay, cut = fit_instances(lay, max_processes)
    devices = choose_devices(lay, scale, gpu_count())
    if devices.cuda:
        refuse_oversized(cfg, lay, itemsize(dtype), gpu_memory_bytes())
    echo(f"\n== {title}: {lay} ({plural(lay.gpus, 'process', 'processes')}, {devices.backend}, {scale} model, {dtype})")
    for note in (spec_note, cut, devices.note):
        if note:
            echo(f"note: {note}")
    # The single-process reference the tokens are compared with: the whole model on one device.
    no_reference = (oversized(cfg, Layout(), itemsize(dtype), gpu_memory_bytes())
                    if devices.cuda and lay.gpus > 1 else None)
    try:
        reports = run(RunSpec(layout=lay, config=cfg, requests=requests, isl=isl, osl=osl, seed=seed, dtype=dtype,
                              timeout_s=timeout_s, cuda=devices.cuda, keep_logits=False))
        reference = reports if lay.gpus == 1 or no_reference else run(
            RunSpec(layout=Layout(), config=cfg, requests=requests, isl=isl, osl=osl, seed=seed, dtype=dtype,
                    timeout_s=timeout_s, cuda=devices.cuda, keep_logits=False))
    except RunFailed as err:
        raise SpecError("run", str(lay), str(err)) from None
    except RunInterrupted as stopped:  # Ctrl-C or SIGTERM: workers and run folder already gone
        echo(f"meshplan run: {stopped}", err=True, one_line=True)
        raise SystemExit(stopped.exit_code) from None
    gen = {k: v for r in reports for k, v in r["generated"].items()}
    ref = {k: v for r in reference for k, v in r["generated"].items()}
    for rid in sorted(gen, key=int):
        echo(f"request {rid}: {gen[rid]}")
    same = gen == ref
    if no_reference:
        echo(f"generated tokens not compared: the single-process reference does not fit one GPU "
                   f"({no_reference.replace('rank 0 would hold', 'it would hold')})")
    else:
        echo(f"generated tokens equal a single-process run: {'yes' if same else 'NO'}")
    pr = predict_run(problem, cfg, lay, reports, isl, osl, dtype, devices.cuda)
    rows = []
    fmt = lambda x: "-" if x is None else f"{x * 1e3:.1f} ms"  # noqa: E731
    for n, r in enumerate(reports):
        c = r["coords"]
        pred = pr.per_rank[n] if pr else None
        rows.append([r["rank"], f"i{c['instance']} pp{c['pp']} dp{c['dp']} tp{c['tp']} ep{c['ep']} etp{c['etp']}",
                     len(r["requests"]), fmt(r["ttft_s"]), fmt(pred and pred.ttft_s), fmt(r["tpot_s"]),
                     fmt(pred and pred.tpot_s), fmt(decode_collective_s(r, osl)),
                     fmt(pred and pred.tpot_collective_s),
                     f"{r['tokens'] / r['wall_s']:,.0f}" if r["wall_s"] else "-",
                     ", ".join(f"{k} {v / 1e3:,.1f} KB" for k, v in sorted(r["bytes"].items())) or "-"])
    echo(table(["rank", "coordinates", "requests", "TTFT", "predicted", "TPOT", "predicted",
                      "of it in collectives", "predicted", "tok/s", "bytes sent per collective"], rows))
    where = "GPU, one per rank" if devices.cuda else f"one thread per process, {plural(lay.gpus, 'process', 'processes')} on {plural(cpu_cores(), 'core')}"
    if pr is None:
        echo(f"no predictions ({where}): they need --dtype float32 (the cost model has no fp64)")
    else:
        p = pr.profile
        link = (f"{pr.link_latency_s * 1e6:,.0f} us"
                + (f" and {pr.link_bw_bytes_per_s / 1e9:,.2f} GB/s" if pr.link_bw_bytes_per_s else ""))
        echo(f"predicted with the device profile ({where}): {p.flops / 1e9:,.1f} GFLOP/s and "
                   f"{p.bw_bytes_per_s / 1e9:,.1f} GB/s per process (measured), "
                   f"{p.op_overhead_s * 1e6:,.1f} us per operator (calibrated on one request's decode), "
                   f"link {link} (measured in this run)"
                   + (f", CPU share per process {pr.share:.2f} (cores / processes)" if pr.share < 1 else ""))
    return {"layout": str(lay), "tokens_match": None if no_reference else same}
