"""Speculative decoding in the launch configs, as each engine names it.

- vLLM: ``--speculative-config`` JSON with method ``mtp`` (the checkpoint's MTP module), ``eagle3``
  or ``draft_model`` and num_speculative_tokens (vLLM docs, vllm/config/speculative.py
  SpeculativeMethod in v0.12).
- SGLang: ``--speculative-algorithm EAGLE`` for the checkpoint's MTP module (SGLang's DeepSeek
  docs) or an EAGLE head, ``STANDALONE`` for a draft model, with --speculative-num-steps K, top-k 1
  and K + 1 draft tokens (a chain, as meshplan costs it).
- TensorRT-LLM: ``speculative_config`` with decoding_type MTP (num_nextn_predict_layers K), Eagle
  (max_draft_len K) or DraftTarget (LLM-API MTPDecodingConfig, EagleDecodingConfig,
  DraftTargetDecodingConfig).
The draft's checkpoint is export.common.draft_served: the draft model's, or the EAGLE head the
problem names (speculative.draft_checkpoint).
"""

from __future__ import annotations

import json

from meshplan.specs.speculative import SpecMethod, Speculative


def vllm_flags(spec: Speculative | None, draft: str | None) -> list[tuple]:
    if spec is None:
        return []
    method = {SpecMethod.MTP: "mtp", SpecMethod.EAGLE: "eagle3", SpecMethod.DRAFT: "draft_model"}[spec.method]
    config = {"method": method, "num_speculative_tokens": spec.draft_tokens}
    if draft is not None:
        config["model"] = draft
    return [("--speculative-config", json.dumps(config))]


def sglang_flags(spec: Speculative | None, draft: str | None) -> list[tuple]:
    if spec is None:
        return []
    algo = {SpecMethod.MTP: "EAGLE", SpecMethod.EAGLE: "EAGLE3", SpecMethod.DRAFT: "STANDALONE"}[spec.method]
    out = [("--speculative-algorithm", algo), ("--speculative-num-steps", spec.draft_tokens),
           ("--speculative-eagle-topk", 1), ("--speculative-num-draft-tokens", spec.draft_tokens + 1)]
    if draft is not None:
        out.append(("--speculative-draft-model-path", draft))
    return out


def trtllm_config(spec: Speculative | None, draft: str | None) -> dict:
    if spec is None:
        return {}
    if spec.method is SpecMethod.MTP:
        return {"speculative_config": {"decoding_type": "MTP", "num_nextn_predict_layers": spec.draft_tokens}}
    kind = "Eagle" if spec.method is SpecMethod.EAGLE else "DraftTarget"
    return {"speculative_config": {"decoding_type": kind, "max_draft_len": spec.draft_tokens,
                                   "speculative_model_dir": draft}}
