"""Data flows one way (DESIGN.md section 13): a package imports only the packages its row of
ALLOWED names, all below it in ORDER. Imports sit at module top, except the few that pull in an
optional extra (or scipy), and no module imports another's private name."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

SRC = Path(__file__).parent.parent / "src" / "meshplan"
ORDER = ["units", "errors", "printable", "specs", "io", "strategy", "cost", "simulate", "search", "plan", "dag", "check",
         "export", "execute", "report", "fidelity", "cli"]

ALLOWED = {
    "units": set(),
    "errors": set(),
    "printable": set(),
    "specs": {"errors"},
    "io": {"errors", "specs"},
    "strategy": {"errors", "specs"},
    "cost": {"specs", "strategy"},
    "simulate": {"errors", "specs", "cost"},
    "search": {"units", "errors", "specs", "strategy", "cost"},
    "plan": {"units", "errors", "specs", "io", "strategy", "cost", "simulate", "search"},
    "dag": {"units", "errors", "specs", "io", "strategy", "cost"},
    "check": {"units", "errors", "specs", "io", "strategy", "cost", "search", "plan"},
    "export": {"errors", "printable", "specs", "io", "strategy", "cost", "search", "plan"},
    "execute": {"errors", "specs", "strategy", "cost"},
    "report": {"units", "errors", "printable", "specs", "strategy", "simulate", "plan"},
    "fidelity": {"errors", "specs", "io", "strategy", "cost", "simulate", "search", "plan"},
    "cli": {"units", "errors", "printable", "specs", "io", "strategy", "cost", "simulate", "search", "plan", "dag",
            "check", "export", "execute", "report", "fidelity"},
}
"""The meshplan packages each package may import (besides itself)."""

LAZY = {"torch": "the run extra", "matplotlib": "the plot extra", "plotly": "the report extra",
        "scipy": "most of a second to import, for calibrate and validate only"}
"""Libraries imported inside the functions that use them, and why; a meshplan module that imports
one of them at its top is imported lazily too."""


def _modules() -> dict[str, ast.Module]:
    """Every module under src/meshplan by dotted name."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = ast.parse(path.read_text())
    return out


MODULES = _modules()


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _imports(tree: ast.AST, module: str):
    """(node, imported module) for every import in ``tree``; ``from meshplan.x import y`` names
    the module meshplan.x.y when y is one."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[:-node.level] + ([base] if base else []))
            yield node, base
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    yield node, f"{base}.{alias.name}"


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """The module's own statements, those under module-level if / try blocks included."""
    out, todo = [], list(tree.body)
    while todo:
        stmt = todo.pop()
        out.append(stmt)
        if isinstance(stmt, (ast.If, ast.Try)):
            todo += stmt.body + stmt.orelse + getattr(stmt, "finalbody", []) + [
                s for h in getattr(stmt, "handlers", []) for s in h.body]
    return out


def test_each_package_imports_only_its_allowed_packages():
    bad = []
    for module, tree in MODULES.items():
        own = _package(module)
        if own is None:
            continue
        for node, imported in _imports(tree, module):
            target = _package(imported) if imported.startswith("meshplan.") else None
            if target is not None and target != own and target not in ALLOWED.get(own, ()):
                bad.append(f"{module} (line {node.lineno}) imports {imported}: {own} may import "
                           f"{', '.join(sorted(ALLOWED.get(own, ()))) or 'no other package'}")
    assert not bad, "\n".join(bad)


def test_the_allowed_table_is_one_way():
    assert set(ALLOWED) == set(ORDER)
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert packages == set(ORDER), packages ^ set(ORDER)
    upward = [f"{p} may import {q}, above it" for p, allowed in ALLOWED.items() for q in allowed
              if ORDER.index(q) >= ORDER.index(p)]
    assert not upward, upward
    try:
        tuple(TopologicalSorter(ALLOWED).static_order())
    except CycleError as err:  # pragma: no cover
        raise AssertionError(f"the table has a cycle: {err.args[1]}") from None


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for module, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("meshplan") \
                    and node.module != module:
                bad += [f"{module} (line {node.lineno}) imports {alias.name} from {node.module}"
                        for alias in node.names if alias.name.startswith("_")]
    assert not bad, "\n".join(bad)


def _needs_lazy() -> set[str]:
    """The meshplan modules that import a LAZY library at their top, directly or through another
    meshplan module."""
    deps = {m: {imp for stmt in _top_level(tree) if isinstance(stmt, (ast.Import, ast.ImportFrom))
                for _, imp in _imports(stmt, m)} for m, tree in MODULES.items()}
    lazy = {m for m, imps in deps.items() if any(i.split(".")[0] in LAZY for i in imps)}
    while True:
        more = {m for m, imps in deps.items() if m not in lazy and imps & lazy}
        if not more:
            return lazy
        lazy |= more


def test_imports_sit_at_module_top():
    lazy = _needs_lazy()
    bad = []
    for module, tree in MODULES.items():
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node, imported in _imports(fn, module):
                if imported.split(".")[0] not in LAZY and imported not in lazy and imported != "meshplan":
                    bad.append(f"{module} (line {node.lineno}, in {fn.name}) imports {imported}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_torch_is_not_imported_by_the_core():
    # export/devicemesh.py only holds torch code as text for the user to run; execute/ is the
    # one package allowed to import torch.
    for path in SRC.rglob("*.py"):
        if path.name == "devicemesh.py" or path.parent.name == "execute":
            continue
        assert "import torch" not in path.read_text(), path
