"""The package's architecture, checked from its source with `ast`: the import graph has no cycles (module-level
and function-local imports alike), `modeling` and `processing` stand alone below everything else, `arguments` and
`sources` import no job, only `cli` imports `cli`, and modules and functions stay small enough to read (see
docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "moleblend_hf"
#: generated copies of the package's own modules, shipped as remote code inside a checkpoint
SKIPPED = (PACKAGE / "publishing" / "shipped",)
#: the layers that stand alone: each imports only itself (plus third-party code)
STANDALONE = ("moleblend_hf.modeling", "moleblend_hf.processing")
#: the jobs and the command line, which the layers below them never import
JOBS = ("moleblend_hf.training", "moleblend_hf.inference", "moleblend_hf.publishing", "moleblend_hf.cli")
#: layers below the jobs: what the jobs read (sources) and how they are configured (arguments)
BELOW_JOBS = ("moleblend_hf.arguments", "moleblend_hf.sources")
MAX_MODULE_LINES = 500
#: the model file is one transformers-style modeling file, kept whole like the library's own
LONG_MODULES = {"moleblend_hf.modeling.modeling_moleblend"}
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if any(path.is_relative_to(skipped) for skipped in SKIPPED):
            continue
        parts = ["moleblend_hf", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imported(module: str, path: Path) -> set[str]:
    """The package's modules that `module` imports anywhere in its body (relative imports resolved; `from X
    import name` counts X.name when that is a module, else X)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [
                f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target for alias in node.names
            ]
        else:
            continue
        for name in names:
            # `import a.b.c` runs a.b.c; the deepest of the package's modules named counts
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {module: _imported(module, path) for module, path in MODULES.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return path[path.index(child) :] + [child]
            if child not in state and (cycle := visit(child)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walk_sees_the_package():
    assert len(MODULES) > 40 and "moleblend_hf.modeling.modeling_moleblend" in MODULES
    assert "moleblend_hf.modeling" in GRAPH["moleblend_hf.training.pretrain"]


def test_the_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("layer", STANDALONE)
def test_modeling_and_processing_import_only_themselves(layer):
    outside = {
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if not (target == layer or target.startswith(layer + "."))
    }
    assert not outside, sorted(outside)


def _in(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


@pytest.mark.parametrize("layer", BELOW_JOBS)
def test_arguments_and_sources_import_no_job(layer):
    upward = {
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _in(module, layer)
        for target in targets
        if any(_in(target, job) for job in JOBS)
    }
    assert not upward, sorted(upward)


def test_only_the_command_line_imports_the_command_line():
    callers = {
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if not _in(module, "moleblend_hf.cli")
        for target in targets
        if _in(target, "moleblend_hf.cli")
    }
    assert not callers, sorted(callers)


def test_modules_are_short():
    long = {
        module: lines
        for module, path in MODULES.items()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES and module not in LONG_MODULES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_functions_are_short():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if (lines := node.end_lineno - first + 1) > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name} ({path.name}:{node.lineno}): {lines} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)
