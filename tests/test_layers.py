"""The folders are the architecture: imports point down only, and no module imports in a circle.

Layers, lowest first: ``lake`` < ``recorder`` < ``analytics`` < ``ticklake``. ``analytics``
may take the wire format (``recorder.wire``) but not capture internals. Every import counts,
including those inside functions and under ``TYPE_CHECKING``: a lazy import still ties two
modules together. ``bench`` never imports ``tests``; a test module imports no other test
module, only ``tests.kit``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lake", "recorder", "analytics", "ticklake")
ALLOWED = {
    "lake": ("lake",),
    "recorder": ("lake", "recorder"),
    "analytics": ("lake", "recorder.wire", "analytics"),
    "ticklake": ("lake", "recorder", "analytics", "ticklake"),
    "bench": ("lake", "recorder", "analytics", "ticklake", "bench"),
    "tests": ("lake", "recorder", "analytics", "ticklake", "bench", "tests.kit"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(top: str) -> dict[str, Path]:
    return {
        module_name(p): p
        for p in sorted((ROOT / top).rglob("*.py"))
        if not p.name.endswith("_pb2.py") and p.name != "conftest.py"
    }


def imported(path: Path, name: str) -> Iterator[str]:
    """Absolute names of the project's modules that ``path`` imports (``from x import y``
    yields ``x.y`` when that is a module, else ``x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}"
            yield base


def project_imports(path: Path, name: str, known: set[str]) -> set[str]:
    found = set()
    for target in imported(path, name):
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found: dict[str, Path] = {}
    for top in (*PACKAGES, "bench", "tests"):
        found |= modules(top)
    known = set(found)
    return {name: project_imports(path, name, known) for name, path in found.items()}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down(layer: str) -> None:
    wrong = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        if within(name, layer)
        for target in sorted(targets)
        if not any(within(target, allowed) for allowed in ALLOWED[layer])
    ]
    assert wrong == []


def test_no_module_imports_in_a_circle() -> None:
    edges = graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert [" -> ".join(c) for c in circles] == []


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    source = "def f():\n    from lake.utc import MINUTE_MS\n    from . import sibling\n"
    path = ROOT / "recorder" / "probe.py"  # never written: only its name is used
    tree = ast.parse(source)
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))
    (tmp_path / "probe.py").write_text(source)
    found = set(imported(tmp_path / "probe.py", module_name(path)))
    assert {"lake.utc.MINUTE_MS", "lake.utc", "recorder.sibling"} <= found
