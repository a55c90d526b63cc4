"""The package's shape: folders that are its layers, imports that only go down, modules small enough to hold in
one's head (no module over 600 lines, no function over 80) and no line over 120 characters.

The layers, from the bottom (``psft_edu/__init__.py`` tells the same story in words):

* ground floor, the top-level modules: ``objectives``, ``tasks``, ``data``, ``models``, ``presets``, ``config``,
  ``paths``, ``stats`` (and the package root);
* ``engine/`` (the loops and the run machinery) and, beside it, ``integrations`` (PSFT for TRL);
* ``experiments/``;
* ``course/`` (everything that exists for the notebooks);
* ``cli/`` and ``__main__`` (the command line).

A module may import its own layer and the layers below, never one above, deferred imports inside functions
included; and no chain of imports comes back to where it started.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "psft_edu"
TESTS = Path(__file__).resolve().parent
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MAX_LINE = 120

GROUND = {"", "objectives", "tasks", "data", "models", "presets", "config", "paths", "stats"}
# layer -> the layers it may import besides its own
ALLOWED: dict[str, set[str]] = {
    "ground": set(),
    "engine": {"ground"},
    "integrations": {"ground"},
    "experiments": {"ground", "engine"},
    "course": {"ground", "engine", "experiments"},
    "cli": {"ground", "engine", "experiments", "course"},
}

# Known exceptions, to be split later: "path.py:function" (or "path.py" for a module) -> its size today.
# A listed item that grows fails; one that shrinks under the limit must leave this list.
KNOWN_LONG: dict[str, int] = {}


def layer_of(module: str) -> str:
    """The layer of a module given as its dotted name inside the package ("" for the package root)."""
    head = module.split(".")[0]
    if module in GROUND:
        return "ground"
    if head in ("engine", "experiments", "course", "cli", "integrations"):
        return head
    if head == "__main__":
        return "cli"
    raise LookupError(f"psft_edu.{module}: in no layer; put it in a layer's folder, or add it to GROUND above")


def module_name(path: Path) -> str:
    """``psft_edu/engine/train.py`` -> ``engine.train``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_sources() -> dict[str, str]:
    return {module_name(path): path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))}


def _is_package(module: str, sources: dict[str, str]) -> bool:
    return any(name.startswith(module + ".") for name in sources) or module == ""


def imports_of(module: str, source: str, sources: dict[str, str]) -> set[str]:
    """Every package module ``module`` imports, at the top or inside a function, relative or absolute."""
    found: set[str] = set()
    package = module if _is_package(module, sources) else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        targets: list[tuple[str, list[str]]] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "psft_edu":
                target = node.module[len("psft_edu"):].lstrip(".")
            else:
                continue
            targets.append((target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            targets += [(alias.name[len("psft_edu"):].lstrip("."), []) for alias in node.names
                        if alias.name.split(".")[0] == "psft_edu"]
        for target, names in targets:
            # `from .engine import train` imports the module engine.train; `from .data import load_split` imports data
            submodules = [f"{target}.{n}".lstrip(".") for n in names if f"{target}.{n}".lstrip(".") in sources]
            found.update(submodules or [target])
    found.discard(module)
    return found


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    return {module: imports_of(module, source, sources) for module, source in sources.items()}


def upward_imports(sources: dict[str, str]) -> list[str]:
    """``"models -> experiments.build_base (ground imports experiments)"`` for every import that goes up a layer."""
    problems = []
    for module, targets in sorted(import_graph(sources).items()):
        here = layer_of(module)
        for target in sorted(targets):
            there = layer_of(target)
            if there != here and there not in ALLOWED[here]:
                problems.append(f"{module or 'psft_edu'} -> {target or 'psft_edu'} ({here} imports {there})")
    return problems


def import_cycles(sources: dict[str, str]) -> list[list[str]]:
    """Import loops (each once, as the modules along it)."""
    graph = import_graph(sources)
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


# ---------------------------------------------------------------- the layers


def test_every_module_sits_in_a_layer() -> None:
    for module in package_sources():
        layer_of(module)


def test_imports_only_go_down_the_layers() -> None:
    problems = upward_imports(package_sources())
    assert not problems, "imports that go up a layer:\n  " + "\n  ".join(problems)


def test_no_import_loop() -> None:
    cycles = import_cycles(package_sources())
    assert not cycles, "import loops:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    "module, line, expected",
    [
        ("models", "    from .experiments.build_base import ensure_base\n", "models -> experiments.build_base"),
        ("engine.train", "    import psft_edu.course.widgets\n", "engine.train -> course.widgets"),
        ("experiments.compare", "    from ..cli import flags\n", "experiments.compare -> cli.flags"),
        ("objectives", "    from .engine import runs\n", "objectives -> engine.runs"),
        ("integrations", "    from psft_edu.engine.train import Trainer\n", "integrations -> engine.train"),
    ],
)
def test_a_deliberate_upward_import_is_caught(module: str, line: str, expected: str) -> None:
    """The check sees an upward import even when it hides inside a function (a deferred import)."""
    sources = package_sources()
    sources[module] += f"\n\ndef _sneaky():\n{line}"
    problems = upward_imports(sources)
    assert any(problem.startswith(expected + " (") for problem in problems), problems


def test_a_deliberate_loop_is_caught() -> None:
    sources = package_sources()
    sources["engine.outputs"] += "\n\ndef _back():\n    from . import runs\n"
    assert any(set(cycle) == {"engine.outputs", "engine.runs"} for cycle in import_cycles(sources))


def test_a_new_top_level_module_must_declare_its_layer() -> None:
    with pytest.raises(LookupError, match="in no layer"):
        layer_of("helpers")


def test_each_notebook_has_its_own_exercise_module() -> None:
    notebooks = sorted(p.stem for p in (PACKAGE.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    modules = sorted(p.stem for p in (PACKAGE / "course" / "exercises").glob("n[0-9][0-9]_*.py"))
    assert [f"n{name}" for name in notebooks] == modules


# ---------------------------------------------------------------- sizes


def _function_sizes(path: Path, label: str) -> dict[str, int]:
    """``"label:qualified.name" -> lines`` (decorators and docstring included) of every function in ``path``."""
    sizes: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    sizes[f"{label}:{name}"] = child.end_lineno - start + 1
                visit(child, name + ".")

    visit(ast.parse(path.read_text()), "")
    return sizes


def _offenders() -> dict[str, int]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        label = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            found[label] = lines
        found.update({name: size for name, size in _function_sizes(path, label).items() if size > MAX_FUNCTION_LINES})
    return found


def test_function_sizes_are_measured_with_their_decorators_and_nested_functions(tmp_path) -> None:
    source = "@property\ndef f():\n    def g():\n        return 1\n    return g\n"
    path = tmp_path / "m.py"
    path.write_text(source)
    assert _function_sizes(path, "m.py") == {"m.py:f": 5, "m.py:f.g": 2}


def test_no_module_or_function_over_the_limits() -> None:
    offenders = _offenders()
    new = {name: size for name, size in offenders.items() if name not in KNOWN_LONG}
    grown = {name: size for name, size in offenders.items() if name in KNOWN_LONG and size > KNOWN_LONG[name]}
    fixed = sorted(name for name in KNOWN_LONG if name not in offenders)
    report = "\n".join(f"  {name}: {size} lines" for name, size in sorted({**new, **grown}.items()))
    assert not new and not grown, (
        f"over {MAX_MODULE_LINES} lines per module or {MAX_FUNCTION_LINES} per function:\n{report}"
    )
    assert not fixed, f"now within the limits, remove from KNOWN_LONG: {fixed}"


def test_no_line_over_120_characters() -> None:
    """Counted in characters, every line (ruff's E501 lets a line through when its overflow is one long word)."""
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {len(line)}"
        for folder in (PACKAGE, TESTS, PACKAGE.parent / "examples")
        for path in sorted(folder.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if len(line) > MAX_LINE
    ]
    assert not long, "lines over 120 characters:\n  " + "\n  ".join(long)
