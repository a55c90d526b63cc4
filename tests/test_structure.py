"""The package stays small enough to hold in one's head: no module over 600 lines, no function over 80."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "psft_edu"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# Known exceptions, to be split later: "module.py:function" (or "module.py" for a module) -> its size today.
# A listed item that grows fails; one that shrinks under the limit must leave this list.
KNOWN_LONG: dict[str, int] = {}


def _modules() -> list[Path]:
    return sorted(PACKAGE.glob("*.py"))


def _function_sizes(path: Path) -> dict[str, int]:
    """``"module.py:qualified.name" -> lines`` (decorators and docstring included) of every function in ``path``."""
    sizes: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    sizes[f"{path.name}:{name}"] = child.end_lineno - start + 1
                visit(child, name + ".")

    visit(ast.parse(path.read_text()), "")
    return sizes


def _offenders() -> dict[str, int]:
    found = {}
    for path in _modules():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            found[path.name] = lines
        found.update({name: size for name, size in _function_sizes(path).items() if size > MAX_FUNCTION_LINES})
    return found


def test_function_sizes_are_measured_with_their_decorators_and_nested_functions(tmp_path):
    source = "@property\ndef f():\n    def g():\n        return 1\n    return g\n"
    path = tmp_path / "m.py"
    path.write_text(source)
    assert _function_sizes(path) == {"m.py:f": 5, "m.py:f.g": 2}


def test_no_module_or_function_over_the_limits():
    offenders = _offenders()
    new = {name: size for name, size in offenders.items() if name not in KNOWN_LONG}
    grown = {name: size for name, size in offenders.items() if name in KNOWN_LONG and size > KNOWN_LONG[name]}
    fixed = sorted(name for name in KNOWN_LONG if name not in offenders)
    report = "\n".join(f"  {name}: {size} lines" for name, size in sorted({**new, **grown}.items()))
    assert not new and not grown, (
        f"over {MAX_MODULE_LINES} lines per module or {MAX_FUNCTION_LINES} per function:\n{report}"
    )
    assert not fixed, f"now within the limits, remove from KNOWN_LONG: {fixed}"
