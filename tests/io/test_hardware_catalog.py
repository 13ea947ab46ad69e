"""The GPU catalog: every GPU the issue names is there, and every figure carries a source."""

import re
from pathlib import Path

import pytest

from meshplan.io.catalog import CATALOG, gpu_keys, load_gpu

FILES = sorted(Path(str(CATALOG / "hardware")).glob("*.yaml"))


def test_required_gpus():
    assert {"h100-sxm", "h200", "h800", "h20", "b200", "gb200", "a100-80gb", "mi300x", "l40s", "seed-64gb"} <= set(gpu_keys())
    assert load_gpu("gb200").nvlink_domain_gpus == 72


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_figure_has_a_source_comment(path):
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*\w+:\s*[0-9.]+e?[0-9-]*\s*(#.*)?$", line):
            has_comment = "#" in line or (i > 0 and lines[i - 1].lstrip().startswith("#"))
            assert has_comment, f"{path.name}:{i + 1} has no source: {line.strip()}"
