"""Wall time of the full search: DeepSeek-V3 on H800, budget 1,024 GPUs, ISL 4000 / OSL 500,
all legal layouts, both phases, aggregated and disaggregated. Goal: under 1 s on 2 cores."""

import time

from meshplan.io.problem_file import problem_from_raw
from meshplan.search.search import search


def main() -> None:
    problem = problem_from_raw({"name": "bench", "model": "deepseek-v3", "gpu": "h800", "gpus": 1024,
                                "precision": {"weights": "fp8", "kv_cache": "bf16"},
                                "workload": {"isl": 4000, "osl": 500}})
    search(problem)  # warm caches (imports, stage tables)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        result = search(problem)
        times.append(time.perf_counter() - t0)
    print(f"layouts {result.num_layouts}, operating points {result.num_points}")
    print(f"full search wall time: best {min(times):.3f} s, median {sorted(times)[2]:.3f} s (5 runs)")
    print(f"best: {result.best.label}, {result.best.output_tok_s_per_gpu:,.0f} output tok/s per GPU")
    # The same search with speculative decoding (every layout searched with it and without it) and
    # with the prefill pool on other GPUs (each pool's layouts enumerated on its own GPU).
    for what, extra in (("with MTP speculative decoding (K = 3)",
                         {"speculative": {"method": "mtp", "draft_tokens": 3, "acceptance": [0.85, 0.63, 0.63]}}),
                        ("with the prefill pool on H100s", {"prefill_gpu": "h100"})):
        variant = problem_from_raw({"name": "bench", "model": "deepseek-v3", "gpu": "h800", "gpus": 1024,
                                    "precision": {"weights": "fp8", "kv_cache": "bf16"},
                                    "workload": {"isl": 4000, "osl": 500}, **extra})
        t0 = time.perf_counter()
        best = search(variant).best
        print(f"{what}: {time.perf_counter() - t0:.3f} s; best {best.label}, "
              f"{best.output_tok_s_per_gpu:,.0f} output tok/s per GPU")


if __name__ == "__main__":
    main()
