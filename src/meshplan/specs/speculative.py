"""Speculative decoding: a cheap draft proposes tokens, the model verifies them in one pass.

Each decode iteration runs the draft K times (K draft tokens per sequence) and the target model
once over K + 1 positions per sequence; the longest prefix of drafts the target agrees with is kept,
plus the target's own next token (Leviathan et al., "Fast Inference from Transformers via
Speculative Decoding", arXiv:2211.17192, section 3). With a_i the chance that draft token i is
accepted given that tokens 1 .. i-1 were, the tokens one iteration yields per sequence are

    tau = 1 + a_1 + a_1 a_2 + ... + a_1 a_2 ... a_K

(1 + the mean accepted draft tokens, what SGLang and vLLM log as the "accept length").
Drafts: DeepSeek's multi-token-prediction module (one extra layer on the target's hidden state,
sharing its embedding and head; DeepSeek-V3 technical report, section 2.2), EAGLE (one decoder
layer on the target's features; EAGLE-3, arXiv:2503.01840), or a separate small model.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, ValidationInfo, field_validator, model_validator

from meshplan.errors import SpecError
from meshplan.specs.base import Spec
from meshplan.specs.model import ModelSpec

MAX_DRAFT_TOKENS = 16
"""Most draft tokens per iteration meshplan plans (engines run 1 to 8; EAGLE's trees up to 10 deep)."""


class SpecMethod(StrEnum):
    """Where the draft tokens come from."""

    MTP = "mtp"
    """The checkpoint's multi-token-prediction module (DeepSeek-V3/R1, GLM-5, Qwen3.5), reused for
    every draft token beyond the modules it ships."""
    EAGLE = "eagle"
    """An EAGLE head: one decoder layer of the target's shape over its hidden states."""
    DRAFT = "draft"
    """A separate, smaller model of the same vocabulary (draft_model)."""


class Speculative(Spec):
    """Speculative decoding as the deployment would run it."""

    method: SpecMethod
    draft_tokens: int = Field(ge=1, le=MAX_DRAFT_TOKENS)
    """K: tokens the draft proposes per sequence and iteration (vLLM num_speculative_tokens,
    SGLang speculative_num_steps, TensorRT-LLM num_nextn_predict_layers / max_draft_len)."""
    acceptance: tuple[float, ...] = ()
    """Per draft position, the chance the target accepts it given the earlier ones were (K
    values, or one value for every position). Engines report it per position (vLLM's
    spec_decode metrics) or as a mean (accepted_tokens)."""
    accepted_tokens: float | None = Field(default=None, ge=0)
    """Instead of acceptance: mean draft tokens accepted per iteration (0 to K); SGLang's and
    vLLM's logged accept length is 1 + this."""
    draft_model: ModelSpec | None = None
    """method draft: the draft model (a catalog name or config.json in the problem file)."""
    draft_checkpoint: str | None = Field(default=None, min_length=1, max_length=500)
    """method eagle: the EAGLE head the engines load (a Hugging Face id or a folder). Planning does
    not need it (the head's shape is the model's); the launch configs do."""

    @field_validator("draft_tokens", "acceptance", "accepted_tokens", mode="before")
    @classmethod
    def _no_truth_values(cls, value: object, info: ValidationInfo) -> object:
        # pydantic reads true as 1; a count or a probability is never true or false.
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, bool) for v in items):
            raise SpecError(f"speculative.{info.field_name}", value, "must be a number, not true or false")
        return value

    @model_validator(mode="after")
    def _check(self) -> "Speculative":
        if (not self.acceptance) == (self.accepted_tokens is None):
            raise SpecError("speculative.acceptance", list(self.acceptance) or None, "give the acceptance per draft "
                            "position or the mean accepted_tokens (one of the two): it sets the tokens per iteration")
        if self.acceptance and len(self.acceptance) not in (1, self.draft_tokens):
            raise SpecError("speculative.acceptance", list(self.acceptance), f"one value per draft position "
                            f"({self.draft_tokens}) or one value for all of them")
        for a in self.acceptance:
            if not 0.0 <= a <= 1.0:
                raise SpecError("speculative.acceptance", list(self.acceptance), "each is a probability from 0 to 1")
        if self.accepted_tokens is not None and self.accepted_tokens > self.draft_tokens:
            raise SpecError("speculative.accepted_tokens", self.accepted_tokens,
                            f"at most draft_tokens = {self.draft_tokens} (one iteration accepts no more than it drafts)")
        if self.draft_checkpoint is not None and self.method is not SpecMethod.EAGLE:
            raise SpecError("speculative.draft_checkpoint", self.draft_checkpoint, "names an EAGLE head; method "
                            f"{self.method.value} takes none")
        if (self.method is SpecMethod.DRAFT) != (self.draft_model is not None):
            raise SpecError("speculative.draft_model", self.draft_model and self.draft_model.name,
                            "method draft needs a draft_model, and only it takes one")
        return self

    @property
    def position_acceptance(self) -> tuple[float, ...]:
        """a_1 .. a_K (empty when the mean accepted tokens were given instead)."""
        if len(self.acceptance) == 1:
            return self.acceptance * self.draft_tokens
        return self.acceptance

    @property
    def rates(self) -> tuple[float, ...]:
        """a_1 .. a_K: as stated, or (mean accepted_tokens stated) the one rate a for every position
        with a + a^2 + ... + a^K equal to it (bisection; the sum grows with a). Hand check: K = 2,
        0.75 accepted: a + a^2 = 0.75 gives a = 0.5."""
        if self.acceptance:
            return self.position_acceptance
        target, lo, hi = self.accepted_tokens or 0.0, 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2.0
            if sum(mid ** i for i in range(1, self.draft_tokens + 1)) < target:
                lo = mid
            else:
                hi = mid
        return ((lo + hi) / 2.0,) * self.draft_tokens

    @property
    def tokens_per_step(self) -> float:
        """tau: tokens one iteration yields per sequence (module docstring). Hand check: K = 3,
        a = 0.8 each: 1 + 0.8 + 0.64 + 0.512 = 2.952."""
        if self.accepted_tokens is not None:
            return 1.0 + self.accepted_tokens
        tau, run = 1.0, 1.0
        for a in self.position_acceptance:
            run *= a
            tau += run
        return tau

    def describe(self) -> str:
        how = (f"acceptance {', '.join(f'{a:.2f}' for a in self.position_acceptance)}" if self.acceptance
               else f"{self.accepted_tokens:g} draft tokens accepted per iteration")
        draft = f" ({self.draft_model.name})" if self.draft_model is not None else ""
        return (f"{self.method.value}{draft}, {self.draft_tokens} draft tokens, {how}: "
                f"{self.tokens_per_step:.2f} tokens per iteration")
