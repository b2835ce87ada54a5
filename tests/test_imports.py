"""The package's import structure: only the entry point imports the command line module,
and modules import each other without circles at import time."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "smtpbench"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "smtpbench" or name.startswith("smtpbench.")}


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def test_only_the_entry_point_imports_the_command_line_module() -> None:
    importers = sorted(
        name
        for name, path in MODULES.items()
        if "smtpbench.cli" in _imports(path, top_level_only=False)
    )
    assert importers == ["smtpbench.__main__"]


def test_no_import_circles_at_import_time() -> None:
    # Imports inside functions (or under TYPE_CHECKING) run later or never: only the
    # module-level ones can make a circle that breaks an import.
    graph = {
        name: {dep for dep in _imports(path, top_level_only=True) if dep in MODULES}
        for name, path in MODULES.items()
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, " -> ".join([*visiting[visiting.index(name) :], name])
        visiting.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
