"""Control characters in user-derived text: the one definition of what may not reach a terminal,
a report or a launch script as it is.

A model name, a problem name, a file path or a note that quotes a user value can carry ANSI escape
sequences (which recolour, move the cursor, retitle or clear a terminal), a carriage return (which
overwrites what the line said) or other C0/C1 controls. No name, id or path needs them, so they are
removed before text is shown (newline and tab kept); the explicit Unicode bidi overrides, which
reorder what a reader sees, go too.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"            # CSI: colours, cursor moves, erase (ECMA-48 5.4)
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window title, hyperlinks, clipboard
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"      # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"                   # any other ESC sequence (or a lone ESC)
    r"|\x9b[0-?]*[ -/]*[@-~]"              # 8-bit CSI
)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""C0 except tab and newline, DEL, C1, and the bidi embeddings, overrides and isolates."""


def has_control(text: str) -> bool:
    """Whether ``text`` holds any control character, newline and tab included (a name, an id or
    a path never needs one)."""
    return bool(_CONTROL.search(text) or "\n" in text or "\t" in text)


def printable(text: object, *, one_line: bool = False) -> str:
    """``text`` without escape sequences and control characters (newline and tab kept, or newline
    made a space with ``one_line``)."""
    out = _CONTROL.sub("", _ESCAPE.sub("", str(text)))
    return out.replace("\n", " ") if one_line else out


def clipped(text: object, width: int) -> str:
    """``text`` on one line, cut at a word so that it fits ``width`` characters with " ..." after
    it (never mid-word). Hand check: "aa bb cc" at width 7 -> "aa ..."."""
    words = " ".join(str(text).split())
    if len(words) <= width:
        return words
    return words[:width - 4].rsplit(" ", 1)[0] + " ..."
