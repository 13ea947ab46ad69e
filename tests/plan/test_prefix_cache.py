"""A stated prefix hit rate: the plan says how much memory its operating point leaves the cache."""

from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.plan import plan_document
from meshplan.search.search import search


def _plan(workload, model="qwen3-30b-a3b"):
    return plan_document(search(problem_from_raw({
        "model": model, "gpu": "h100", "gpus": 8, "serving": "aggregated", "precision": {"weights": "bf16"},
        "workload": {"isl": 2000, "osl": 500, "prefix_hit_rate": 0.5, **workload}})))


def test_a_plan_at_the_memory_limit_leaves_the_cache_nothing_and_says_so():
    doc = _plan({}, "llama-3.1-70b")  # no target: the throughput objective fills the KV cache
    note = next(n["message"] for n in doc["notes"] if n["message"].startswith("prefix cache: the stated 50.0%"))
    mem = doc["memory_per_gpu_bytes"]
    # What is left is usable less everything held: below 5% of the KV cache here, so the note warns.
    assert (mem["usable"] - mem["total"]) < 0.05 * mem["kv_cache"]
    assert "would be evicted as they come" in note


def test_a_plan_below_the_limit_names_the_room_it_leaves():
    doc = _plan({"concurrency": 8})
    mem = doc["memory_per_gpu_bytes"]
    room = (mem["usable"] - mem["total"]) / 2**30
    note = next(n["message"] for n in doc["notes"] if n["message"].startswith("prefix cache: the stated 50.0%"))
    assert f"leaves {room:,.1f} GiB per GPU" in note and "evicted" not in note
    assert room > 1.0


def test_no_hit_rate_no_note():
    doc = plan_document(search(problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h100", "gpus": 8,
                                                 "workload": {"isl": 4000, "osl": 500}})))
    assert not any(n["message"].startswith("prefix cache: the stated") for n in doc["notes"])
