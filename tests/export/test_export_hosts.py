"""Launch configs count nodes in hosts: a GB200/GB300 compute tray runs 4 GPUs under one OS, so an
instance of 8 GPUs there is launched on 2 hosts, while the NVLink domain (72) stays the cost
model's node (gpu catalog gpus_per_host, GpuSpec.host_gpus)."""

import pytest

from meshplan.export.export import export
from meshplan.io.catalog import load_gpu
from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.pools import Pool
from meshplan.specs.workload import Phase
from meshplan.strategy.layout import Layout


def _export(gpu: str, engine: str, lay: Layout):
    problem = problem_from_raw({"model": "deepseek-v3", "gpu": gpu, "precision": {"weights": "fp8", "kv_cache": "fp8"},
                                "workload": {"isl": 2000, "osl": 500}})
    pool = Pool(phases=(Phase.DECODE,), layout=lay, B={Phase.DECODE: 8.0}, offset=0)
    return export(problem, [pool], engine)


def test_hosts_are_the_trays_not_the_nvlink_domain():
    assert load_gpu("gb200").host_gpus == 4 and load_gpu("gb200").nvlink_domain_gpus == 72
    assert load_gpu("gb300").host_gpus == 4
    assert load_gpu("h200").host_gpus == 8  # an HGX server: its NVLink domain


@pytest.mark.parametrize("engine", ["sglang", "vllm"])
def test_an_eight_gpu_instance_on_gb200_is_launched_on_two_hosts(engine):
    # dp 8 x tp 1 with ep 8: 8 GPUs / 4 per tray = 2 hosts, one script per host; on H200, one host.
    lay = Layout(tp=1, dp=8, ep=8)
    gb = _export("gb200", engine, lay).files
    assert any("node1" in name for name in gb) and not any("node2" in name for name in gb)
    h = _export("h200", engine, lay).files
    assert not any("node1" in name for name in h)


def test_trtllm_lists_four_slots_per_gb200_host():
    # mpirun -H host:slots: 4 GPUs per GB200 tray, two hosts for 8 GPUs.
    res = _export("gb200", "trtllm", Layout(tp=8, ep=8))
    script = next(text for name, text in res.files.items() if name.endswith(".sh"))
    assert ":4" in script and "NODE_1" in script and "NODE_2" not in script
