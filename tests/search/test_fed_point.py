"""A decode pool fed fewer requests than its best point completes runs at the batch the feed keeps
in flight (Little's law), found among batch sizes finer than the search grid's doublings."""

import numpy as np
import pytest

from meshplan.cost.inputs import CostInputs
from meshplan.cost.serving import decode_cost
from meshplan.io.problem_file import problem_from_raw
from meshplan.search.best_point import best_per_row
from meshplan.search.evaluate import evaluate_disaggregated
from meshplan.search.grid import B_GRID, capacity_grid, layout_par
from meshplan.search.pairs import FED_GRID, FED_STEPS, fed_column, fed_table
from meshplan.search.table import PointTable
from meshplan.specs.workload import Requirements
from meshplan.strategy.layout import parse_strategy
from meshplan.strategy.space import one_layout


def _decode_rows(ci, layouts):
    la = one_layout(*layouts[0])
    for lay in layouts[1:]:
        one = one_layout(*lay)
        la = type(la)(**{f: np.concatenate([getattr(la, f), getattr(one, f)]) for f in ("tp", "dp", "pp", "ep", "etp")})
    par = layout_par(la)
    return PointTable.decode(ci, la, decode_cost(ci, par, capacity_grid(ci, par, len(la))), None)


def _ci():
    return CostInputs.from_problem(problem_from_raw({"model": "llama-3.1-8b", "gpu": "h100", "serving": "disaggregated",
                                                     "workload": {"isl": 2000, "osl": 100}}))


def test_the_fed_grid_steps_a_sixteenth_of_a_doubling_over_the_search_grid():
    # 2^0 .. 2^12 in steps of 2^(1/16): 12 x 16 + 1 = 193 batch sizes, the search grid's among them
    # exactly (a batch a hair above 512 would miss a CUDA-graph limit of 512 and run eager).
    assert len(FED_GRID) == 193 and FED_GRID[0] == 1.0 and FED_GRID[-1] == 4096.0
    assert np.allclose(FED_GRID[1:] / FED_GRID[:-1], 2 ** (1 / FED_STEPS))
    assert all((FED_GRID == b).any() for b in B_GRID)


def test_at_a_cuda_graph_limit_the_fine_table_costs_what_the_search_table_does():
    # vLLM on an H200 captures graphs up to 512 sequences: the fine table's 512 is the grid's 512,
    # graphed, with the same rate and TPOT.
    ci = CostInputs.from_problem(problem_from_raw({"model": "llama-3.1-8b", "gpu": "h200", "engine": "vllm",
                                                   "serving": "disaggregated", "workload": {"isl": 500, "osl": 100}}))
    table = _decode_rows(ci, [(1, 1, 1, 1, 1)])
    fine = fed_table(ci, table, [0])
    a, b = int(np.nonzero(table.B[0] == 512)[0][0]), int(np.nonzero(fine.B[0] == 512)[0][0])
    assert float(fine.inst_req_s[0, b]) == pytest.approx(float(table.inst_req_s[0, a]), rel=1e-12)
    assert float(fine.tpot[0, b]) == pytest.approx(float(table.tpot[0, a]), rel=1e-12)


def test_evaluating_pools_at_a_stated_concurrency_keeps_its_batch():
    # A stated concurrency fixes the decode batch (64 requests on one decode GPU), however few
    # requests the prefill pool completes: the fed point is for plans that choose their batch.
    problem = problem_from_raw({"model": "llama-3.1-8b", "gpu": "h100", "gpus": 2, "serving": "disaggregated",
                                "workload": {"isl": 2000, "osl": 100, "concurrency": 64}})
    c = evaluate_disaggregated(problem, parse_strategy("tp=1"), parse_strategy("tp=1"))
    assert c.decode_B == pytest.approx(64.0) and c.concurrency == pytest.approx(64.0)


def test_a_fed_decode_pool_runs_between_the_grid_points_at_the_rate_it_is_fed():
    ci = _ci()
    table = _decode_rows(ci, [(2, 1, 1, 1, 1), (1, 1, 1, 1, 1)])  # rows: tp2, tp1
    B, rates = table.B[1], table.inst_req_s[1]
    lo, hi = int(np.nonzero(B == 32)[0][0]), int(np.nonzero(B == 64)[0][0])
    fed = float(np.sqrt(rates[lo] * rates[hi]))  # strictly between the two grid points' rates
    assert rates[lo] < fed < rates[hi]
    # The search grid alone runs the tp1 pool at 32, its point below the feed.
    assert table.B[1, fed_column(table, 1, best_per_row(table, Requirements())[1], fed)] == 32
    fine = fed_table(ci, table, [1])
    col = fed_column(fine, 0, best_per_row(fine, Requirements())[1], fed)
    b, r = float(fine.B[0, col]), float(fine.inst_req_s[0, col])
    # The fed point lies beyond it, completes no more requests than it is fed, and the next batch
    # size up (a factor 2^(1/16)) completes more: credited within 4.4% of its feed in batch.
    assert 32 < b < 64 and r <= fed
    assert float(fine.inst_req_s[0, col + 1]) > fed and fine.B[0, col + 1] == pytest.approx(b * 2 ** (1 / FED_STEPS))
    # The same step model at the grid's batch: the fine table holds the coarse table's figure there.
    at32 = int(np.argmin(np.abs(fine.B[0] - 32)))
    assert float(fine.inst_req_s[0, at32]) == pytest.approx(float(rates[lo]), rel=1e-12)
    assert fine.la.tp[0] == 1  # the row asked for


def test_a_feed_below_every_point_gives_no_fed_point():
    ci = _ci()
    fine = fed_table(ci, _decode_rows(ci, [(1, 1, 1, 1, 1)]), [0])
    assert fed_column(fine, 0, best_per_row(fine, Requirements())[1], float(fine.inst_req_s[0].min()) * 0.5) is None
