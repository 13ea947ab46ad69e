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
    strategy = doc["phases"]["decode"]["strategy"]
    assert (strategy["tp"], strategy["pp"], strategy["dp"]) == (4, 1, 1)
    # Llama-3.1-70B's KV per token: 80 layers x 8 KV heads x 128 x 2 (K and V) x 2 bytes = 327,680 bytes,
    # 81,920 per GPU at tp 4. A request holds its 2,000-token prompt and half its 500 output tokens on
    # average: 2,250 tokens, 184,320,000 bytes per GPU. Each instance holds its share of the requests
    # at that mean plus room for one longest request (250 tokens more).
    assert doc["kv_cache_bytes_per_token"] == 327_680
    per_instance = doc["concurrency"] / strategy["instances"]
    assert mem["kv_cache"] == (per_instance * 2_250 + 250) * 81_920
    # At the memory limit the room left (usable less everything held) is under one more request's KV:
    # at most what rounding the request count down leaves.
    room = mem["usable"] - mem["total"]
    assert 0 <= room < 2_250 * 81_920
    assert "leaves 0.0 GiB per GPU" in note and "would be evicted as they come" in note


def test_a_plan_below_the_limit_names_the_room_it_leaves():
    doc = _plan({"concurrency": 8})
    mem = doc["memory_per_gpu_bytes"]
    assert doc["phases"]["decode"]["strategy"]["gpus_per_instance"] == 1
    # Qwen3-30B-A3B's KV per token: 48 layers x 4 KV heads x 128 x 2 (K and V) x 2 bytes = 98,304 bytes.
    # Eight requests at their mean 2,250 tokens (2,000 prompt + half of 500 output) plus room for one
    # longest request (250 tokens more): 18,250 tokens, 1,794,048,000 bytes; the rest of usable memory
    # past weights, activations and the reserve is the cache's room, and the note quotes it.
    assert mem["kv_cache"] == 18_250 * 98_304
    room = mem["usable"] - (mem["weights"] + 18_250 * 98_304 + mem["activations"] + mem["reserve"])
    note = next(n["message"] for n in doc["notes"] if n["message"].startswith("prefix cache: the stated 50.0%"))
    assert f"leaves {room / 2**30:,.1f} GiB per GPU" in note and "evicted" not in note
    # Above the note's warning threshold: 5% of the KV the requests hold.
    assert room >= 0.05 * mem["kv_cache"]


def test_no_hit_rate_no_note():
    doc = plan_document(search(problem_from_raw({"model": "qwen3-30b-a3b", "gpu": "h100", "gpus": 8,
                                                 "workload": {"isl": 4000, "osl": 500}})))
    assert not any(n["message"].startswith("prefix cache: the stated") for n in doc["notes"])
