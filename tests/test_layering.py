"""Data flows one way (DESIGN.md section 13): a layer imports only layers below it."""

import ast
from pathlib import Path

SRC = Path(__file__).parent.parent / "src" / "meshplan"
ORDER = ["units", "errors", "printable", "specs", "io", "strategy", "cost", "simulate", "search", "plan", "dag", "check", "export", "execute", "report", "fidelity", "cli"]


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.startswith("meshplan.") else module
    return ORDER.index(top) if top in ORDER else -1


def test_imports_go_down_only():
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        own = _layer(".".join(rel.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("meshplan."):
                if _layer(node.module) > own:
                    bad.append(f"{rel} imports {node.module}")
    assert not bad, bad


def test_torch_is_not_imported_by_the_core():
    # export/devicemesh.py only holds torch code as text for the user to run; execute/ is the
    # one package allowed to import torch.
    for path in SRC.rglob("*.py"):
        if path.name == "devicemesh.py" or path.parent.name == "execute":
            continue
        assert "import torch" not in path.read_text(), path
