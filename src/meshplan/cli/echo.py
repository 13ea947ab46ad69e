"""Everything the CLI prints goes through ``echo``: user-derived text (model, problem and file
names, notes quoting user values, a checked plan's own words) reaches the terminal without its
escape sequences and control characters (meshplan.printable). A JSON document goes to its file, or
through ``echo`` to stdout (write_json)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from meshplan.printable import printable


def echo(text: object = "", *, err: bool = False, one_line: bool = False) -> None:
    """click.echo of ``printable(text)``; ``one_line`` also turns newlines into spaces."""
    click.echo(printable(text, one_line=one_line), err=err)


def write_json(doc: dict, json_path: str) -> bool:
    """``doc`` as JSON to the file, or to stdout for '-' (True then: nothing else may print)."""
    text = json.dumps(doc, indent=2)
    if json_path == "-":
        echo(text)
        return True
    Path(json_path).write_text(text + "\n", encoding="utf-8")
    return False
