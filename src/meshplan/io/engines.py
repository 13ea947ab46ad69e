"""Engine profiles: ``catalog/engines/<engine>.yaml`` resolved for one release."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import yaml

from meshplan.errors import SpecError, suggest
from meshplan.io.catalog import CATALOG
from meshplan.specs.engine import Engine, EngineProfile

_NUMBERS = re.compile(r"^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def version_key(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a release string ("0.5.8.post1" -> (0, 5, 8), "1.2.0rc6" ->
    (1, 2, 0)); None for a string that does not start with a number ("nightly-dev")."""
    m = _NUMBERS.match(str(text))
    if not m:
        return None
    return tuple(int(g) if g else 0 for g in m.groups())  # type: ignore[return-value]


@cache
def _profile_file(engine: Engine) -> dict[str, Any]:
    return yaml.safe_load((CATALOG / "engines" / f"{engine.value}.yaml").read_text())


def engine_names() -> list[str]:
    return [e.value for e in Engine]


@cache
def load_engine(name: str, version: str | None = None) -> EngineProfile:
    """The profile of engine ``name`` at ``version``: the first ``versions`` entry always, then
    every later entry whose ``since`` is at or below the release, in order. No version (or one that
    is not a number, such as a nightly build) gives the newest facts; a release older than the first
    entry gets the first entry's facts."""
    key = str(name).strip().lower().replace("-", "").replace("_", "").replace("tensorrtllm", "trtllm")
    try:
        engine = Engine(key)
    except ValueError:
        raise SpecError("engine", name, "unknown engine; use trtllm, sglang or vllm"
                        + suggest(str(name), engine_names())) from None
    data = _profile_file(engine)
    wanted = version_key(version) if version else None
    facts: dict[str, Any] = {}
    for i, entry in enumerate(data["versions"]):
        since = version_key(str(entry["since"]))
        if i == 0 or wanted is None or since <= wanted:
            facts.update(entry["facts"])
    return EngineProfile(engine=engine, version=str(version or ""), display_name=data["display_name"], **facts)
