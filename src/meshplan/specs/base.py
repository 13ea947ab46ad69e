"""The base of every spec: frozen, keyword-only, unknown keys rejected, field docstrings kept."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Spec(BaseModel):
    """Frozen and validated when built; a typo in a key is an error, never ignored, and a number
    must be finite (inf and NaN are refused in every field)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True,
                              validate_default=True, allow_inf_nan=False)
