"""The pipeline note says why stages pay off in the MoE layers, with the numbers the step model
used: each layout's expert slice width and rate, and its busiest expert rank's share of tokens."""

from types import SimpleNamespace

from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.pipeline import expert_contrast
from meshplan.search.evaluate import evaluate_aggregated
from meshplan.strategy.layout import parse_strategy


def _problem(model="deepseek-v3"):
    # Sourced defaults only (no profile), with the slice half-width stated: h = 512.
    return problem_from_raw({"model": model, "gpu": "h200", "gpus": 16, "precision": {"weights": "fp8"},
                             "workload": {"isl": 2000, "osl": 500}, "calibration": None,
                             "assumptions": {"expert_slice_half_width": 512}})


def _contrast(problem, staged, flat):
    a, b = (evaluate_aggregated(problem, parse_strategy(s, is_moe=problem.model.num_experts > 0)) for s in (staged, flat))
    return expert_contrast(SimpleNamespace(problem=problem), a, b)


def test_an_aggregated_plan_contrasts_its_one_layout():
    # DeepSeek-V3 experts are 2,048 wide. Staged, ep 4: whole experts at 2048 / (2048 + 512) = 80%
    # of the grouped-GEMM rate, the busiest of 4 ranks of 256 experts (popularity CV 1.67, the
    # default) at 1 + 1.67 sqrt(2 ln 4 x 4 / 256) = 1 + 1.67 x 0.20814 = 1.35 times the mean.
    # Without stages, etp 8: slices of 2048 / 8 = 256 at 256 / 768 = 33%, on one expert rank.
    text = _contrast(_problem(), "pp2 tp4 ep4", "tp8 etp8")
    assert text == ("; MoE layers with stages: whole experts (2,048 wide, 80% of the grouped-GEMM rate), the busiest "
                    "of 4 expert ranks at 1.35x the mean tokens (expert popularity CV 1.67); without: experts split "
                    "etp 8 (256 wide, 33% of the grouped-GEMM rate) on one expert rank")


def test_nothing_to_contrast_says_nothing():
    # Experts laid out alike (etp 4 both ways), and a dense model: no MoE clause.
    assert _contrast(_problem(), "pp2 tp4 etp4", "tp4 etp4") == ""
    assert _contrast(_problem("llama-3.1-70b"), "pp2 tp4", "tp8") == ""
