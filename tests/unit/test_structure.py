"""The shape of tasks/ (read from the code, no import):

- no module imports another that (through others) imports it back;
- a phase module (one step of the checklist) is imported by the entry scripts only, never by
  another module under tasks/: what two phases share lives a level down;
- nothing under tasks/ reads sys.argv: the entry script reads the command line into the run
  context;
- no module-level mutable state under tasks/: the run's state is the run context, passed in.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "tasks"
PHASES = {
    "preflight",
    "release",
    "backup",
    "migrate",
    "redis",
    "env_file",
    "verify",
    "loadtest",
    "monitor",
    "report",
    "rollback",
    "runbooks",
    "rotation",
}
MUTATORS = {"append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem"}
MUTATORS |= {"remove", "discard", "clear", "sort", "reverse"}


def _modules() -> dict[str, ast.Module]:
    """Every module under tasks/, by dotted name below tasks (commands.postgres)."""
    found = {}
    for path in TASKS.rglob("*.py"):
        name = ".".join(path.relative_to(TASKS).with_suffix("").parts)
        if name != "__init__":
            found[name.removesuffix(".__init__")] = ast.parse(path.read_text())
    return found


def _imports(tree: ast.Module) -> set[str]:
    """The tasks modules TREE imports, at any depth of its code."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "tasks":
                found |= {alias.name for alias in node.names}
            elif node.module == "tasks.commands":
                found |= {f"commands.{alias.name}" for alias in node.names}
            elif node.module.startswith("tasks."):
                found.add(node.module.removeprefix("tasks."))
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("tasks.") for a in node.names if a.name.startswith("tasks.")
            }
    return found


def _module_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _root(node: ast.AST) -> str | None:
    """The name an attribute or subscript chain starts from (`A` in `A.b[c].d`)."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _mutated(tree: ast.Module) -> set[str]:
    """Names whose object TREE's code changes: an item or attribute assigned or deleted, a
    mutating method called, or a `global` rebinding."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found |= set(node.names)
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for target in targets:
            if isinstance(target, ast.Attribute | ast.Subscript) and (name := _root(target)):
                found.add(name)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MUTATORS
            and (name := _root(node.func.value))
        ):
            found.add(name)
    return found


def _local_names(tree: ast.Module) -> set[str]:
    """Names bound inside functions (parameters and assignments): not module state."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = node.args
            found |= {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
            found |= {a.arg for a in (args.vararg, args.kwarg) if a}
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                    found.add(inner.id)
    return found


def test_no_import_circle_in_tasks():
    graph = {name: _imports(tree) for name, tree in _modules().items()}
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


def test_every_phase_is_a_module_of_tasks():
    assert PHASES <= set(_modules())


def test_no_module_of_tasks_imports_a_phase():
    found = [
        f"{name} imports {dep}"
        for name, tree in sorted(_modules().items())
        for dep in sorted(_imports(tree) & PHASES)
    ]
    assert found == []


def _run_as_a_command(tree: ast.Module) -> set[int]:
    """The lines of TREE's `if __name__ == "__main__":` blocks (`python -m tasks.secrets`)."""
    return {
        line
        for node in tree.body
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)
    }


def test_nothing_in_tasks_reads_the_command_line():
    """A phase reads its settings, never pyinfra's command line; a module's own command
    (`python -m tasks.secrets edit ENV`) reads its own."""
    found = [
        f"{name}:{node.lineno}"
        for name, tree in sorted(_modules().items())
        for node in ast.walk(tree)
        if getattr(node, "lineno", 0) not in _run_as_a_command(tree)
        and isinstance(node, ast.Attribute)
        and node.attr == "argv"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ]
    assert found == []


def test_no_module_of_tasks_keeps_state_of_its_own():
    modules = _modules()
    state = {name: _module_level_names(tree) for name, tree in modules.items()}
    found = []
    for name, tree in sorted(modules.items()):
        imported = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.removeprefix("tasks.") in state
            for alias in node.names
            if alias.name in state[node.module.removeprefix("tasks.")]
        }
        shared = (state[name] - _local_names(tree)) | imported
        found += [f"{name} changes {n}" for n in sorted(_mutated(tree) & shared)]
    assert found == []
