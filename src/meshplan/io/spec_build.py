"""Raw mappings into specs: one SpecError naming the field, the value and the rule on failure."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from meshplan.errors import SpecError, suggest


def validation_to_spec_error(err: ValidationError, prefix: str, known: list[str] | None = None) -> SpecError:
    """The first pydantic error as one line: field path, value (None when missing), rule; an
    unknown key gets the closest ``known`` keys as suggestions."""
    first = err.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, SpecError):  # a check across fields that names the field it blames
        return cause
    loc = ".".join(str(x) for x in (prefix, *first["loc"]) if x != "")
    rule = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        rule = "unknown key" + (suggest(str(first["loc"][-1]), known) if known and len(first["loc"]) == 1 else
                                " (a typo?)")
    value = None if first["type"] == "missing" else first.get("input")
    if not first["loc"] and isinstance(value, dict):
        # A check across fields: its rule names them; the value is the spec's name, not its dump.
        value = value.get("name", "{...}")
    return SpecError(loc, value, rule)


def build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """Validate ``data`` into spec class ``cls``; one SpecError naming the field on failure."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise validation_to_spec_error(err, prefix, list(getattr(cls, "model_fields", {}))) from None
