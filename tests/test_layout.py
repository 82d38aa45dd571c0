"""sdlib's shape: the ideas at the top level, the course's machinery in sub-packages beside them, no import
cycles (imports inside functions counted), and the top level small enough to read beside the lessons.

Layers, each importing only from those below it:
    sdlib.runtime      devices, seeds, checks at the door, several processes   (imports no other part of sdlib)
    sdlib.<module>     the ideas: schedules, models, losses, samplers, training (import sdlib.runtime)
    sdlib.classroom    checkers, quizzes, widgets, diagrams, the student tool   (import the ideas)
    sdlib.recipes      configs, recipes, the benchmark                          (import anything above)
"""
import ast
from pathlib import Path

import pytest
from helpers import ROOT

SDLIB = ROOT / "sdlib"
LAYERS = ["sdlib.runtime", "sdlib", "sdlib.classroom", "sdlib.recipes"]
TOP_LEVEL_LINES, MODULE_LINES, FUNCTION_LINES = 5000, 450, 50


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SDLIB.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The sdlib module that importing `name` runs last: `name` itself, or the module holding the object."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str) -> set[str]:
    """Every sdlib module that `name` imports, at the top or inside a function."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            if target == "sdlib" or target.startswith("sdlib."):
                resolved = _resolve(target)
                if resolved and resolved != name and resolved != "sdlib":
                    found.add(resolved)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def layer(name: str) -> int:
    for index in (3, 2, 0):
        prefix = LAYERS[index]
        if name == prefix or name.startswith(prefix + "."):
            return index
    return 1


def test_the_graph_sees_imports_inside_functions():
    # clip's PromptEncoder used to import sdlib.pretrained inside a method: such an edge must be seen
    assert "sdlib.runtime.validate" in GRAPH["sdlib.clip"]
    assert "sdlib.classroom.checks" in GRAPH["sdlib.classroom.checks.lesson03"]


def test_no_import_cycles():
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_each_layer_imports_only_from_the_layers_below():
    wrong = [f"{a} ({LAYERS[layer(a)]}) imports {b} ({LAYERS[layer(b)]})"
             for a, targets in GRAPH.items() for b in targets if layer(b) > layer(a)]
    assert not wrong, "\n".join(wrong)


def top_level_modules() -> dict[str, Path]:
    return {name: path for name, path in MODULES.items() if layer(name) == 1}


def test_the_top_level_reads_in_one_sitting():
    sizes = {name: len(path.read_text().splitlines()) for name, path in top_level_modules().items()}
    too_long = {name: n for name, n in sizes.items() if n > MODULE_LINES}
    assert not too_long, f"modules over {MODULE_LINES} lines: {too_long}"
    assert sum(sizes.values()) <= TOP_LEVEL_LINES, f"the top level has {sum(sizes.values())} lines"


@pytest.mark.parametrize("name", sorted(top_level_modules()))
def test_no_function_over_fifty_lines(name):
    tree = ast.parse(MODULES[name].read_text())
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > FUNCTION_LINES]
    assert not long, f"{name}: " + ", ".join(long)


def test_no_recipe_imports_another_recipe():
    # what recipes share lives in sdlib.recipes itself (ship, as_shipped) or in sdlib.recipes.configs
    shared = ("sdlib.recipes", "sdlib.recipes.configs")
    wrong = [f"{a} imports {b}" for a, targets in GRAPH.items() if a.startswith("sdlib.recipes.")
             and not a.startswith("sdlib.recipes.configs") for b in targets
             if b.startswith("sdlib.recipes.") and not b.startswith(shared[1]) and b not in shared]
    assert not wrong, "\n".join(wrong)
