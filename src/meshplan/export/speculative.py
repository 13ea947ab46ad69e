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
An EAGLE head's checkpoint is not in the plan: the scripts take it from $EAGLE_HEAD (TensorRT-LLM's
YAML holds the placeholder EAGLE_HEAD, which the export notes say to replace).
"""

from __future__ import annotations

import json

from meshplan.export.shell import Env, Join, require_env
from meshplan.specs.speculative import SpecMethod, Speculative

EAGLE_HEAD = Env("EAGLE_HEAD")
EAGLE_PLACEHOLDER = "EAGLE_HEAD"
"""What TensorRT-LLM's YAML holds where the EAGLE head's folder goes (YAML is not expanded by a
shell): the export notes say to replace it."""
NEED_EAGLE_HEAD = require_env("EAGLE_HEAD", "the EAGLE head checkpoint, a Hugging Face id or a folder")


def _draft(spec: Speculative, draft_served: str | None):
    """The draft's checkpoint as a script word: the draft model's, or $EAGLE_HEAD."""
    return EAGLE_HEAD if spec.method is SpecMethod.EAGLE else draft_served


def needs_eagle_head(spec: Speculative | None) -> list[str]:
    """Script lines that stop with a message when $EAGLE_HEAD is needed and unset."""
    return [NEED_EAGLE_HEAD] if spec is not None and spec.method is SpecMethod.EAGLE else []


def vllm_flags(spec: Speculative | None, draft_served: str | None) -> list[tuple]:
    if spec is None:
        return []
    method = {SpecMethod.MTP: "mtp", SpecMethod.EAGLE: "eagle3", SpecMethod.DRAFT: "draft_model"}[spec.method]
    head = f'{{"method": "{method}", "num_speculative_tokens": {spec.draft_tokens}'
    if spec.method is SpecMethod.MTP:
        return [("--speculative-config", head + "}")]
    if spec.method is SpecMethod.DRAFT:
        return [("--speculative-config", head + f', "model": {json.dumps(draft_served)}}}')]
    return [("--speculative-config", Join((head + ', "model": "', EAGLE_HEAD, '"}')))]


def sglang_flags(spec: Speculative | None, draft_served: str | None) -> list[tuple]:
    if spec is None:
        return []
    algo = {SpecMethod.MTP: "EAGLE", SpecMethod.EAGLE: "EAGLE3", SpecMethod.DRAFT: "STANDALONE"}[spec.method]
    out = [("--speculative-algorithm", algo), ("--speculative-num-steps", spec.draft_tokens),
           ("--speculative-eagle-topk", 1), ("--speculative-num-draft-tokens", spec.draft_tokens + 1)]
    if spec.method is not SpecMethod.MTP:
        out.append(("--speculative-draft-model-path", _draft(spec, draft_served)))
    return out


def trtllm_config(spec: Speculative | None, draft_served: str | None) -> dict:
    if spec is None:
        return {}
    if spec.method is SpecMethod.MTP:
        return {"speculative_config": {"decoding_type": "MTP", "num_nextn_predict_layers": spec.draft_tokens}}
    kind = "Eagle" if spec.method is SpecMethod.EAGLE else "DraftTarget"
    model = EAGLE_PLACEHOLDER if spec.method is SpecMethod.EAGLE else draft_served
    return {"speculative_config": {"decoding_type": kind, "max_draft_len": spec.draft_tokens,
                                   "speculative_model_dir": model}}
