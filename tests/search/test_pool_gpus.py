"""Disaggregated serving on two kinds of GPU: each pool searched and costed on its own."""

import math

import numpy as np

import pytest

from meshplan.cost.inputs import CostInputs
from meshplan.cost.kv_transfer import kv_link_bw, kv_transfer_s
from meshplan.cost.layer import Par
from meshplan.errors import SpecError
from meshplan.export.export import export
from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.plan import plan_document
from meshplan.plan.pools import Pool
from meshplan.plan.simulated import run_at_operating_point
from meshplan.search.evaluate import evaluate_disaggregated
from meshplan.search.search import search
from meshplan.strategy.layout import Layout


def _problem(**extra):
    raw = {"model": "llama-3.1-70b", "gpu": "h200", "prefill_gpu": "h100", "gpus": 16, "calibration": "none",
           "workload": {"isl": 4000, "osl": 500}, "requirements": {"ttft_s": 2.0, "tpot_s": 0.05}}
    raw.update(extra)
    return problem_from_raw(raw)


def test_kv_moves_at_the_slower_nic():
    p = _problem(prefill_gpu="a100-80gb")
    ci_d, ci_p = CostInputs.from_problem(p), CostInputs.from_problem(p.for_pool("prefill"))
    # A100's 200 Gb/s NIC (25 GB/s) against H200's 400 Gb/s, at the 0.8 link efficiency: 20 GB/s.
    assert math.isclose(kv_link_bw(ci_p, ci_d), 25e9 * 0.8) and math.isclose(kv_link_bw(ci_d, ci_p), 25e9 * 0.8)
    # Llama-3.1-70B, BF16 KV: 327,680 bytes per token x 4,000 tokens = 1,310,720,000 bytes over the
    # 2 NICs of a tp2 prefill instance at 25 GB/s each: 26.2144 ms, plus the link latency.
    t = kv_transfer_s(ci_p, Par.of(2, 1, 1, 1, 1), nic_bw=25e9)
    assert math.isclose(float(t), 1_310_720_000 / (25e9 * 2) + ci_p.inter_node_latency_s)


def test_each_pool_is_searched_on_its_gpu():
    result = search(_problem())
    best = result.best
    assert best.mode.value == "disaggregated"
    doc = plan_document(result)
    assert doc["gpu"]["name"] == "h200" and doc["gpu"]["prefill"] == "h100-sxm"
    pre, dec = doc["phases"]["prefill"], doc["phases"]["decode"]
    assert pre["gpu"] == "h100-sxm" and dec["gpu"] == "h200"
    # Each phase's memory is its own GPU's: 80 GB H100, 141 GB H200 (catalog).
    assert pre["memory_per_gpu_bytes"]["capacity"] == CostInputs.from_problem(_problem().for_pool("prefill")).memory_bytes
    assert dec["memory_per_gpu_bytes"]["capacity"] > pre["memory_per_gpu_bytes"]["capacity"]
    assert doc["problem_spec"]["prefill_gpu"]["name"] == "h100-sxm"


def test_two_kinds_of_gpu_need_disaggregated_serving():
    with pytest.raises(SpecError) as err:
        _problem(serving="aggregated")
    assert err.value.field == "prefill_gpu"
    with pytest.raises(SpecError) as err:
        _problem(strategy="tp8")
    assert err.value.field == "strategy"
    with pytest.raises(SpecError) as err:
        _problem(decode_gpu="b200")
    assert err.value.field == "decode_gpu"
    assert _problem(prefill_gpu="h200").prefill_gpu is None  # the same GPU: one kind


def test_export_places_each_pool_on_its_own_nodes():
    # GB200 NVL72 prefill (4 GPUs per compute-tray host, 72 per NVLink domain) and H200 decode (8 per
    # host): a 16-GPU instance is 16 / 4 = 4 hosts on GB200 and 16 / 8 = 2 on H200.
    p = _problem(prefill_gpu="gb200", workload={"isl": [3000, 4000], "osl": [400, 500]})
    lay = Layout(tp=1, dp=16, ep=1)
    pools = [Pool(phases=("prefill",), layout=lay, B={"prefill": 1.0}, offset=0),
             Pool(phases=("decode",), layout=lay, B={"decode": 8.0}, offset=16)]
    res = export(p, pools, "sglang")
    assert "--nnodes 4" in res.files["prefill-instance0-node0.sh"] and "prefill-instance0-node3.sh" in res.files
    assert "prefill-instance0-node4.sh" not in res.files
    assert "--nnodes 2" in res.files["decode-instance0-node1.sh"]


@pytest.mark.parametrize("slow_side", ["prefill", "decode"])
def test_kv_moves_over_the_slower_nic_in_the_closed_form_and_the_simulator(slow_side):
    # One request at a time, so that TTFT is prefill + transfer with no queue. One pool's GPU is an
    # H200 with a 5 GB/s NIC, the other a plain H200; neither instance leaves its node (tp2 prefill,
    # tp4 decode), so only the transfer sees the slow NIC, whichever side it is on.
    workload = {"isl": 4000, "osl": 20, "concurrency": 1}
    slow_gpu = {"base": "h200", "inter_node_bw_bytes_per_s": 5e9}
    same = _problem(prefill_gpu=None, workload=workload)
    slow = (_problem(prefill_gpu=slow_gpu, gpu="h200", workload=workload) if slow_side == "prefill"
            else _problem(prefill_gpu="h200", gpu=slow_gpu, workload=workload))
    assert slow.pools_differ
    pre, dec = Layout(tp=2), Layout(tp=4)
    closed, simulated = {}, {}
    for name, p in (("same", same), ("slow", slow)):
        c = evaluate_disaggregated(p, pre, dec)
        closed[name] = c.ttft_s
        res = run_at_operating_point(p, c)[0]
        assert np.all(np.isfinite(res.requests.finish_s))  # served through both pools
        simulated[name] = float(np.mean(res.requests.first_s - res.requests.send_s))
    ci = CostInputs.from_problem(same)
    par = Par.of(2, 1, 1, 1, 1)
    slow_nic = 5e9 * ci.inter_node_bytes_per_s / 50e9  # the same link efficiency on the 5 GB/s NIC
    extra = float(kv_transfer_s(ci, par, slow_nic) - kv_transfer_s(ci, par))
    # 1,310,720,000 bytes over 2 NICs at 5 GB/s x link efficiency instead of 50 GB/s: about 0.15 s more.
    assert extra > 0.1
    assert math.isclose(closed["slow"] - closed["same"], extra, rel_tol=1e-6)
    assert math.isclose(simulated["slow"] - simulated["same"], extra, rel_tol=1e-6)
