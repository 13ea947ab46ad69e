"""Files a user names: the one boundary where a path becomes text, YAML, JSON or an output target.

Every reader of a user's file goes through ``read_text`` and every parser of user YAML or JSON
through ``load_yaml`` / ``load_json``, so that a file that is missing, a folder, unreadable, not
UTF-8 (a UTF-16 export, a binary file) or too large ends in one ``SpecError`` naming the flag or
key that named it, never a traceback. YAML is read without aliases (a problem, a plan or an engine
config never needs them, and a few hundred bytes of nested aliases expand into gigabytes) and a
mapping may not state a key twice (YAML and JSON parsers would silently keep the last).
``output_target`` checks where a command will write before it does the work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from meshplan.errors import SpecError

MAX_INPUT_BYTES = 64 * 1024 * 1024
"""Largest input file read (64 MiB): the largest real inputs (a silicon CSV of a few thousand runs,
a DOT file of an expanded 320-GPU DAG) are a few MiB."""


def read_text(path: str | Path, field: str) -> str:
    """The UTF-8 text of the file at ``path`` (named by ``field`` in errors)."""
    p = Path(str(path))
    shown = str(path)
    try:
        if not p.exists():
            raise SpecError(field, shown, "no such file")
        if p.is_dir():
            raise SpecError(field, shown, "is a folder; give a file")
        if p.stat().st_size > MAX_INPUT_BYTES:
            raise SpecError(field, shown, f"is larger than {MAX_INPUT_BYTES // 2**20} MiB; not an input meshplan reads")
        data = p.read_bytes()
    except SpecError:
        raise
    except PermissionError:
        raise SpecError(field, shown, "cannot be read (permission denied)") from None
    except OSError as err:
        raise SpecError(field, shown, f"cannot be read ({err.strerror or err.__class__.__name__})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(field, shown, "is UTF-16 text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpecError(field, shown, f"is not UTF-8 text (byte {err.start}); a binary file?") from None


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and with duplicate keys refused."""


class _Refusal(Exception):
    def __init__(self, rule: str, line: int | None) -> None:
        super().__init__(rule)
        self.rule, self.line = rule, line


def _compose_node(self: _StrictLoader, parent, index):
    if self.check_event(yaml.AliasEvent):
        event = self.peek_event()
        raise _Refusal(f"uses a YAML alias (*{event.anchor}); write the value out", event.start_mark.line + 1)
    return yaml.SafeLoader.compose_node(self, parent, index)


def _construct_mapping(self: _StrictLoader, node, deep=False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = self.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise _Refusal("has a mapping key that is not a plain value", key_node.start_mark.line + 1) from None
        line = key_node.start_mark.line + 1
        if key in seen:
            raise _Refusal(f"states the key {key!r} twice (lines {seen[key]} and {line})", None)
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(self, node, deep)


_StrictLoader.compose_node = _compose_node  # type: ignore[method-assign]
_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, field: str, name: str) -> Any:
    """YAML text of the file ``name`` (named by ``field`` in errors), strictly."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refusal as err:
        raise SpecError(field, name, err.rule + (f" (line {err.line})" if err.line else "")) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(field, name, f"not valid YAML{where}") from None
    except RecursionError:
        raise SpecError(field, name, "nests too deeply to be read") from None
    except ValueError as err:  # Python's 4,300-digit limit on int(), met inside the parser
        raise SpecError(field, name, f"holds a number too long to read ({err})") from None


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refusal(f"states the key {key!r} twice", None)
        out[key] = value
    return out


def load_json(text: str, field: str, name: str) -> Any:
    """JSON text of the file ``name``, strictly: no repeated keys. (NaN and Infinity are read as
    numbers so that the field they stand in is named when it refuses them.)"""
    try:
        return json.loads(text, object_pairs_hook=_pairs)
    except _Refusal as err:
        raise SpecError(field, name, err.rule) from None
    except json.JSONDecodeError as err:
        raise SpecError(field, name, f"not valid JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise SpecError(field, name, "nests too deeply to be read") from None
    except ValueError as err:  # Python's 4,300-digit limit on int()
        raise SpecError(field, name, f"holds a number too long to read ({err})") from None


def output_target(path: str, field: str) -> None:
    """Refuse, before any work, a file target that is a folder or whose folder does not exist
    ('-' is standard output)."""
    if path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise SpecError(field, path, "is a folder; give a file path")
    if not target.parent.is_dir():
        raise SpecError(field, path, "its folder does not exist")


def output_folder(path: str, field: str) -> Path:
    """A folder to write into: created if missing (with its parents), refused if it is a file."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise SpecError(field, path, "is a file; give a folder to write into")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SpecError(field, path, f"cannot be created ({err.strerror or err.__class__.__name__})") from None
    return target
