"""Errors for bad user input. One message names the field, the value and the rule."""

from __future__ import annotations

import difflib


class SpecError(ValueError):
    """Bad user input: a field whose value breaks a rule.

    The CLI prints ``str(error)`` on one line and exits with code 2; it never shows a traceback.
    """

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field = str(field)
        self.value = value
        self.rule = rule
        super().__init__(f"{field} = {shown(value)}: {rule}")


MAX_SHOWN = 120
"""Longest value repr an error line quotes: a whole model or an 8 MB string is never the message."""


def shown(value: object) -> str:
    """``value`` as an error line quotes it: its repr, cut to MAX_SHOWN characters."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text):,} characters)"


def suggest(name: str, known: list[str], limit: int = 3) -> str:
    """A 'did you mean' tail for an unknown name, using difflib's ratio (close spellings first)."""
    name = str(name)
    close = difflib.get_close_matches(name.lower(), known, n=limit, cutoff=0.4)
    if not close:
        close = [k for k in known if name.lower()[:3] in k][:limit]
    return f"; did you mean {', '.join(close)}?" if close else ""


def finite_number(value: object) -> bool:
    """Whether ``value`` is a number a float can hold (an int or float, not a bool, not inf or NaN,
    an int below 10**308): compared without conversion, so 10**400 is refused here rather than
    raising OverflowError in math.isfinite or float() inside a reader."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):
        return abs(value) < 10**308
    return value == value and abs(value) != float("inf")
