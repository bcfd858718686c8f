"""The shape of the code: no import cycles between spotdet's modules, and tests that mirror the layout.

Imports inside functions count too: a cycle hidden behind a lazy import (``models/card`` importing
``models/store`` at call time while ``store`` imports ``card``) is still two modules that cannot be
understood one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "spotdet"
TESTS = Path(__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ["spotdet", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the spotdet modules it imports explicitly (``from pkg import mod`` counts as pkg.mod)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_spotdet_modules():
    graph = import_graph()
    assert "spotdet.models.store" in graph["spotdet.models.ref"]  # the graph sees real imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


#: the one sanctioned link between tools: ``optimize --auto`` measures its variants with bench's code
ALLOWED_TOOL_IMPORTS = {("optimize", "bench")}


def test_tools_do_not_import_each_other():
    """serve, jobs, optimize and bench sit side by side on the core; only optimize -> bench is allowed."""
    tools = ("serve", "jobs", "optimize", "bench")
    for name, deps in import_graph().items():
        own = name.split(".")[1] if name.count(".") else ""
        if own in tools:
            others = {d for d in deps if d.count(".") and d.split(".")[1] in tools and d.split(".")[1] != own
                      and (own, d.split(".")[1]) not in ALLOWED_TOOL_IMPORTS}
            assert not others, f"{name} imports {sorted(others)}"


def test_every_package_has_a_test_folder():
    """Tests mirror the layout: src/spotdet/<package>/ has tests/<package>/ with at least one test file."""
    for package in sorted(p for p in SRC.iterdir() if (p / "__init__.py").is_file()):
        folder = TESTS / package.name
        assert folder.is_dir() and any(folder.glob("test_*.py")), f"no tests/{package.name}/test_*.py"
