"""Hand-computed cases for the cost formulas."""

import math

from meshplan.cost.imbalance import (active_expert_fraction, busiest_rank_load, distinct_remote_ranks, max_load_factor,
                                    popularity_skew)
from meshplan.cost.inputs import CostInputs
from meshplan.cost.roofline import Collective, compute_op, ring_factor, smooth_max
from meshplan.io.problem_file import load_problem
from meshplan.plan.plan import decode_kv_bound


def test_smooth_roofline_bends_at_the_ridge_plus_kernel_floors():
    # 1e12 FLOP at 1e15 FLOP/s = 1 ms; 2e9 bytes at 1e12 B/s = 2 ms; n = 4:
    # (1^4 + 2^4)^(1/4) = 17^0.25 = 2.030543 ms, plus 2 kernels x 5 us.
    op = compute_op("x", 1e12, 2e9, 1e15, 1e12, 5e-6, kernels=2, sharpness=4.0)
    assert math.isclose(float(op.time_s), 17 ** 0.25 * 1e-3 + 10e-6)
    # Far from the ridge it is the slower side: 1e9 FLOP (1 us) against 2 ms -> 2 ms + 1e-9 relative.
    far = compute_op("y", 1e9, 2e9, 1e15, 1e12, 0.0, kernels=1, sharpness=4.0)
    assert math.isclose(float(far.time_s), 2e-3, rel_tol=1e-9)
    assert float(smooth_max(3.0, 4.0, 2.0)) == 5.0


def test_popularity_skew_hand_value():
    # cv 1.67, ep 32, 256 experts: 1 + 1.67 x sqrt(2 ln 32 x 32 / 256) = 1 + 1.67 x 0.93081 = 2.5545.
    assert math.isclose(float(popularity_skew(32, 256, 1.67)), 1 + 1.67 * math.sqrt(2 * math.log(32) * 32 / 256))
    assert float(popularity_skew(1, 256, 1.67)) == 1.0
    # Independent excesses add in quadrature: statistical 0 (a huge batch) and popularity 0.5 -> 1.5.
    assert math.isclose(float(busiest_rank_load(1e18, 8, 2 * math.log(8) * 8 / 0.25, 1.0)), 1.5, rel_tol=1e-6)


def test_ring_factors():
    # all-reduce over 8: 2*7/8 = 1.75; all-gather over 4: 3/4.
    assert float(ring_factor(8, Collective.ALL_REDUCE)) == 1.75
    assert float(ring_factor(4, Collective.ALL_GATHER)) == 0.75


def test_max_load_factor_hand_value():
    # 1 + sqrt(2 * 8 * ln 8 / 4096) = 1 + sqrt(0.0081225) = 1.090125
    assert math.isclose(float(max_load_factor(4096, 8)), 1 + math.sqrt(2 * 8 * math.log(8) / 4096))
    assert float(max_load_factor(100, 1)) == 1.0


def test_active_experts_and_remote_ranks():
    # One token, top-8 of 256: 1 - (1 - 8/256)^1 = 8/256.
    assert math.isclose(float(active_expert_fraction(1, 256, 8)), 8 / 256)
    # ep 8, top-8: (8-1) * (1 - (7/8)^8) = 7 * 0.656391 = 4.594737
    assert math.isclose(float(distinct_remote_ranks(8, 8)), 7 * (1 - (7 / 8) ** 8))
    assert float(distinct_remote_ranks(1, 8)) == 0.0


def test_decode_kv_bound_on_seed():
    # Seed card: 1.8 TB/s * 0.8 = 1.44e12 B/s; mean context 5184 + 1024/2 = 5696 tokens;
    # 32,768 B/token -> 1.44e12 / (5696 * 32768) = 7,715.1 tokens/s per GPU.
    assert math.isclose(decode_kv_bound(CostInputs.from_problem(load_problem(None))), 1.44e12 / (5696 * 32768))
