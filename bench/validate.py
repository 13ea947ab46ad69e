"""Wall time of validating the cost model on the dev set (shared/cases/silicon-dev.csv, 3,786
runs: read, group, predict every run's TTFT and TPOT) and the medians it gives. Goal: a few
seconds on 2 cores, so a change to the step model can be judged on every run at once."""

import sys
import time
from pathlib import Path

from meshplan.fidelity.validation import validate_silicon

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "cases" / "silicon-dev.csv"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not path.is_file():
        sys.exit(f"no measurement file at {path}; pass its path")
    validate_silicon(path)  # warm caches (imports, catalog)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        v = validate_silicon(path)
        times.append(time.perf_counter() - t0)
    total = v.total()
    print(f"{path.name}: {len(v.rows):,} runs predicted, {len(v.skips):,} skipped")
    print(f"validation wall time: best {min(times):.2f} s, median {sorted(times)[1]:.2f} s (3 runs)")
    print(f"median |error|: TTFT {total.ttft_abs:.1%}, TPOT {total.tpot_abs:.1%} (profile {v.calibration or 'none'})")


if __name__ == "__main__":
    main()
