"""DESIGN.md section 1: the seed system's mistakes, each a regression test."""

import numpy as np

from meshplan.cost.inputs import CostInputs
from meshplan.cost.layer import Par
from meshplan.cost.serving import decode_cost
from meshplan.io.problem_file import load_problem
from meshplan.plan.plan import plan_document
from meshplan.search.evaluate import evaluate_aggregated
from meshplan.search.search import search
from meshplan.strategy.layout import parse_strategy


def test_ep_does_not_multiply_the_gpu_count():
    problem = load_problem(None)
    c = evaluate_aggregated(problem, parse_strategy("dp=16,ep=16"))
    assert c.gpus_total == 16  # not 16 x 8 = 128: attention dp 16 is inside the instance


def test_attention_and_embeddings_are_replicated_across_ep():
    ci = CostInputs.from_problem(load_problem(None))
    mem = decode_cost(ci, Par.of(1, 16, 16, 1, 1), np.array([1.0])).memory
    # By hand, fp16 (2 bytes): attention 16 layers x (4 x 512 x 512 + 2 x 512 norms) = 16,793,600;
    # one expert per GPU per layer 16 x 3 x 512 x 1024 = 25,165,824; routers 16 x 512 x 16 = 131,072;
    # embedding and LM head 2 x 32,000 x 512 + final norm 512 = 32,768,512.
    params = 16_793_600 + 25_165_824 + 131_072 + 32_768_512
    assert float(mem.weights) == params * 2
    # The seed divided everything by EP: 0.45B x 2 / 16 = 56.5 MB; the truth is 2.7x that.
    assert float(mem.weights) > 2.5 * 452_346_368 * 2 / 16


def test_kv_cache_is_counted_and_the_requirement_is_not_a_capability():
    doc = plan_document(search(load_problem(None)))
    # vLLM (the default engine) admits requests on their current KV use: 128 sequences at the mean
    # occupancy 5,184 (the seed's mean ISL, (128 + 10,240) / 2) + 1,024/2 = 5,696 tokens, plus room for one longest (11,264 - 5,696 = 5,568),
    # x 32,768 bytes per token = 24,073,207,808 bytes on one GPU; the seed counted none.
    assert doc["gpus_total"] == 1
    assert doc["memory_per_gpu_bytes"]["kv_cache"] == (128 * 5696 + 5568) * 32768
    check = {c["requirement"]: c for c in doc["requirements_check"]}["min_output_tok_s_per_gpu"]
    assert not check["met"] and check["predicted"] < check["bound"]["value"] < check["target"]


def test_one_expert_per_gpu_is_not_a_law():
    doc = plan_document(search(load_problem(None)))
    assert doc["phases"]["decode"]["strategy"]["experts_per_gpu"] == 16
