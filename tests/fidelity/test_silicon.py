"""The silicon CSV reader: every row becomes a case or a skip with its reason; nothing is guessed."""

import csv
from pathlib import Path

import pytest

from meshplan.errors import SpecError
from meshplan.fidelity.silicon import SkipReason, read_silicon
from meshplan.specs.engine import Engine

COLUMNS = ("id,silicon_data_source,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,"
           "moe_quant_mode,batch_size,tp_size,pp_size,attention_dp_size,moe_tp_size,moe_ep_size,prefill_batch_size,"
           "prefill_num_workers,prefill_tp_size,prefill_pp_size,prefill_attention_dp_size,prefill_moe_tp_size,"
           "prefill_moe_ep_size,decode_batch_size,decode_num_workers,decode_tp_size,decode_pp_size,"
           "decode_attention_dp_size,decode_moe_tp_size,decode_moe_ep_size,silicon_ttft_ms,silicon_tpot_ms").split(",")


def silicon_row(**kw):
    base = {c: "" for c in COLUMNS}
    base.update(id="r", silicon_data_source="x; silicon_concurrency=64; y", backend="trtllm", backend_version="1.2.0",
                model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp4", mode="agg", isl="1024",
                osl="1024", gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4", batch_size="64", tp_size="8", pp_size="1",
                moe_tp_size="1", moe_ep_size="8", silicon_ttft_ms="200", silicon_tpot_ms="20")
    base.update({k: str(v) for k, v in kw.items()})
    return base


def read_rows(tmp_path, rows):
    path = tmp_path / "runs.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return read_silicon(path)


def test_aggregated_row_with_empty_attention_dp(tmp_path):
    cases, skips = read_rows(tmp_path, [silicon_row()])
    c = cases[0]
    assert not skips
    assert c.engine is Engine.TRTLLM and c.engine_version == "1.2.0" and c.concurrency == 64
    # attention_dp_size empty -> 1; tp 8 folds onto moe_tp 1 x moe_ep 8.
    assert (c.layout.tp, c.layout.dp, c.layout.ep, c.layout.etp, c.layout.pp) == (8, 1, 8, 1, 1)
    assert c.gemm_format.value == "fp4" and c.moe_format.value == "fp4" and c.gpus == 8


def test_an_aggregated_run_of_several_batches_ran_on_that_many_workers(tmp_path):
    # batch_size is the batch per attention-dp rank (cases README): 448 clients at batch 14 on TP 2
    # are 448 / 14 = 32 workers (aiconfigurator's Qwen3-32B-NVFP4 runs on GB200); 64 clients at
    # batch 8 with attention dp 2 are 64 / (8 x 2) = 4 workers; one batch, an empty or a 0 batch
    # is one worker; 64 clients at batch 24 (64 / 24 = 2.67 workers) is inconsistent.
    src = "x; silicon_concurrency={}; y"
    cases, skips = read_rows(tmp_path, [
        silicon_row(id="q", model_path="nvidia/Qwen3-32B-NVFP4", system="gb200", tp_size=2, moe_tp_size="",
                    moe_ep_size="", batch_size=14, silicon_data_source=src.format(448)),
        silicon_row(id="dp", tp_size=4, attention_dp_size=2, batch_size=8),
        silicon_row(id="one", batch_size=64), silicon_row(id="empty", batch_size=""),
        silicon_row(id="zero", batch_size=0), silicon_row(id="odd", batch_size=24),
        silicon_row(id="negative", batch_size=-8), silicon_row(id="half", batch_size=8.5)])
    workers = {c.id: c.layout.instances for c in cases}
    assert workers == {"q": 32, "dp": 4, "one": 1, "empty": 1, "zero": 1}
    assert [(s.id, s.reason) for s in skips] == [(k, SkipReason.LAYOUT) for k in ("odd", "negative", "half")]
    assert "batch_size" in skips[0].detail and "not a whole number" in skips[0].detail
    assert all("a whole number >= 0" in s.detail for s in skips[1:])


def test_disaggregated_rows_need_worker_counts(tmp_path):
    pools = dict(mode="disagg", tp_size="", moe_ep_size="", moe_tp_size="", prefill_tp_size="1",
                 prefill_attention_dp_size="4", prefill_moe_tp_size="1", prefill_moe_ep_size="4", decode_tp_size="1",
                 decode_attention_dp_size="8", decode_moe_tp_size="1", decode_moe_ep_size="8")
    cases, skips = read_rows(tmp_path, [silicon_row(id="a", prefill_num_workers=2, decode_num_workers=1, **pools),
                                        silicon_row(id="b", **pools)])
    assert [c.id for c in cases] == ["a"]
    assert cases[0].prefill.instances == 2 and cases[0].decode.dp == 8 and cases[0].gpus == 2 * 4 + 8
    assert skips[0].id == "b" and skips[0].reason is SkipReason.NO_WORKERS


def test_dense_models_ignore_the_moe_columns(tmp_path):
    cases, _ = read_rows(tmp_path, [silicon_row(model_path="meta-llama/Llama-3.1-70B", tp_size=4, moe_tp_size=0,
                                                moe_ep_size=0, gemm_quant_mode="fp8", moe_quant_mode="fp8")])
    assert (cases[0].layout.tp, cases[0].layout.ep, cases[0].layout.etp) == (4, 1, 1)
    assert cases[0].moe_format is None


@pytest.mark.parametrize("change, reason, named", [
    (dict(moe_tp_size=2, moe_ep_size=8), SkipReason.LAYOUT, "moe_tp_size x moe_ep_size"),
    (dict(attention_dp_size=0), SkipReason.LAYOUT, "attention_dp_size"),
    (dict(tp_size="eight"), SkipReason.LAYOUT, "tp_size"),
    (dict(tp_size=48, moe_tp_size=48, moe_ep_size=1), SkipReason.STRUCTURE, "128 query heads"),
    (dict(silicon_data_source="no count here"), SkipReason.NO_CONCURRENCY, "silicon_data_source"),
    (dict(silicon_tpot_ms="-1"), SkipReason.MEASUREMENT, "tpot"),
    (dict(model_path="someone/unknown-model"), SkipReason.UNKNOWN, "unknown-model"),
])
def test_rows_that_cannot_be_predicted_say_why(tmp_path, change, reason, named):
    cases, skips = read_rows(tmp_path, [silicon_row(**change)])
    assert not cases and skips[0].reason is reason and named in skips[0].detail
    assert skips[0].partition == ("trtllm", "b200_sxm", change.get("model_path", "deepseek-ai/DeepSeek-R1"), "agg")


def test_a_file_that_is_not_a_silicon_csv_is_refused(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(SpecError, match="missing columns"):
        read_silicon(bad)
    with pytest.raises(SpecError, match="no such file"):
        read_silicon(tmp_path / "none.csv")


def test_the_dev_set_has_every_model_and_gpu_in_the_catalog():
    dev = Path(__file__).resolve().parents[2].parent / "shared" / "cases" / "silicon-dev.csv"
    if not dev.exists():
        pytest.skip(f"{dev} is not beside the checkout")
    cases, skips = read_silicon(dev)
    # No row is lost to an unknown model, GPU or format; a quarter lack worker counts.
    assert not [s for s in skips if s.reason is SkipReason.UNKNOWN]
    # 1,186 disagg rows, of which 187 name prefill_num_workers and decode_num_workers (counted in
    # the CSV with csv.DictReader: mode == "disagg" and either worker column empty -> 999).
    assert sum(1 for s in skips if s.reason is SkipReason.NO_WORKERS) == 999
    assert len(cases) >= 2700


def test_short_rows_and_unknown_modes_are_skipped_with_their_reason(tmp_path):
    path = tmp_path / "runs.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerow(["short", "x; silicon_concurrency=4"])  # a row cut short: its other cells are missing
        w.writerow([silicon_row(id="m", mode="mixed")[c] for c in COLUMNS])
    cases, skips = read_silicon(path)
    assert not cases
    reasons = {s.id: (s.reason, s.detail) for s in skips}
    assert reasons["short"][0] is SkipReason.UNKNOWN  # no model_path
    assert reasons["m"] == (SkipReason.LAYOUT, "mode = 'mixed' (agg or disagg)")
