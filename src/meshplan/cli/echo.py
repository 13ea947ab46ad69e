"""Everything the CLI prints goes through ``echo``: user-derived text (model, problem and file
names, notes quoting user values, a checked plan's own words) reaches the terminal without its
escape sequences and control characters (meshplan.printable)."""

from __future__ import annotations

import click

from meshplan.printable import printable


def echo(text: object = "", *, err: bool = False, one_line: bool = False) -> None:
    """click.echo of ``printable(text)``; ``one_line`` also turns newlines into spaces."""
    click.echo(printable(text, one_line=one_line), err=err)
