"""Measured against predicted for `meshplan run`: the tiny seed model under one layout of each
strategy family on this machine, median over ranks of TTFT, TPOT and the decode step's time in
collectives, each beside the cost model's prediction from the device profile taken on the spot.
Prints measured / predicted; 1.0 means the cost model, fed this machine's profile, is right."""

import statistics
import sys

from meshplan.execute.launch import RunSpec, choose_devices, gpu_count, run
from meshplan.execute.model import config_from_spec
from meshplan.execute.profile import decode_collective_s, predict_run
from meshplan.io.problem_file import load_problem
from meshplan.report.tables import table
from meshplan.strategy.layout import parse_strategy

LAYOUTS = ["tp=1", "tp=2", "dp=2,ep=2", "tp=2,dp=2,ep=2,etp=2", "pp=2", "pp=2,dp=2,ep=2", "instances=2",
           "dp=4,ep=4"]
REQUESTS, ISL, OSL = 8, 16, 8


def main(layouts: list[str]) -> None:
    problem = load_problem(None)
    cfg = config_from_spec(problem.model)
    rows = []
    for text in layouts:
        lay = parse_strategy(text)
        devices = choose_devices(lay, "tiny", gpu_count())
        reports = run(RunSpec(layout=lay, config=cfg, requests=REQUESTS, isl=ISL, osl=OSL, cuda=devices.cuda))
        pr = predict_run(problem, cfg, lay, reports, ISL, OSL, "float32", devices.cuda)
        busy = [n for n, r in enumerate(reports) if r["requests"]]

        def median(values):
            return statistics.median(values[n] for n in busy)

        measured = [median([r["ttft_s"] for r in reports]), median([r["tpot_s"] for r in reports]),
                    median([decode_collective_s(r, OSL) for r in reports])]
        predicted = [median([p.ttft_s for p in pr.per_rank]), median([p.tpot_s for p in pr.per_rank]),
                     median([p.tpot_collective_s for p in pr.per_rank])]
        cells = []
        for m, p in zip(measured, predicted):
            cells += [f"{m * 1e3:.1f}", f"{p * 1e3:.1f}", f"{m / p:.2f}" if p > 0 else "-"]
        rows.append([text, lay.gpus, *cells])
        print(f"{text}: done", file=sys.stderr)
    print(f"seed model at tiny scale, {REQUESTS} requests, ISL {ISL}, OSL {OSL}; times in ms, median over "
          "ranks with requests")
    print(table(["layout", "processes", "TTFT", "pred", "ratio", "TPOT", "pred", "ratio", "collectives/step",
                 "pred", "ratio"], rows))


if __name__ == "__main__":
    main(sys.argv[1:] or LAYOUTS)
