"""The shape of tasks/: no module imports another that (through others) imports it back."""

import ast
from pathlib import Path

TASKS = Path(__file__).resolve().parents[2] / "tasks"


def _imports(path: Path) -> set[str]:
    """The tasks modules PATH imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "tasks":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("tasks."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("tasks.")}
    return found


def test_no_import_circle_in_tasks():
    graph = {p.stem: _imports(p) for p in TASKS.glob("*.py") if p.stem != "__init__"}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        for dep in sorted(graph.get(module, ())):
            if dep in path:
                circles.append(" -> ".join(path[path.index(dep) :] + [dep]))
            elif dep in graph:
                visit(dep, path + [dep])

    for module in graph:
        visit(module, [module])
    assert circles == []
