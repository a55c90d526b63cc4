"""The student edition (``make student``): solutions removed by cell tags, exercises kept, and it runs under nbval.

nbval's verdict on a notebook depends only on its code cells (their sources and saved outputs). A student
copy whose code cells are exactly the original's therefore passes or fails with the original, which
``make test-notebooks`` runs already; this test runs nbval on every student copy whose code differs
from its original (a removed ``solution`` code cell), and always on one copy end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from psft_edu import course

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
ALWAYS_RUN = "02_sft_loss.ipynb"  # a short notebook with three exercise checkers


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _code(nb) -> list[tuple[str, str]]:
    return [(c.source, repr(c.get("outputs", []))) for c in nb.cells if c.cell_type == "code"]


def test_student_notebook_follows_the_tags() -> None:
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("# Title"),
        v4.new_code_cell("x = 1"),
        v4.new_code_cell("answer = None  # your answer", metadata={"tags": ["exercise"]}),
        v4.new_code_cell("answer = 42", metadata={"tags": ["solution"]}),
        v4.new_markdown_cell("**Solution.** It is 42.", metadata={"tags": ["solution"]}),
        v4.new_markdown_cell("<details><summary>Solutions</summary>\n\nall of them\n</details>"),
    ])
    student = course.student_notebook(nb)
    sources = [c.source for c in student.cells]
    assert sources[:3] == ["# Title", "x = 1", "answer = None  # your answer"]
    assert "answer = 42" not in sources and not any("Solution" in s and "details" in s for s in sources)
    assert not any("solution" in _tags(c) for c in student.cells)
    assert student.cells[-1].source == course.STUDENT_NOTE
    assert student.metadata["psft_edu"] == {"edition": "student", "solutions_removed": 3}
    assert len(nb.cells) == 6  # the original is left alone


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    written = course.build_student(REPO / "notebooks", out)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    return out


def test_student_edition_removes_solutions_and_keeps_exercises(student: Path) -> None:
    for path in NOTEBOOKS:
        original = nbformat.read(path, as_version=4)
        copy = nbformat.read(student / path.name, as_version=4)
        assert not any(course.is_solution(c) for c in copy.cells), f"{path.name}: a solution is left"
        removed = sum(course.is_solution(c) for c in original.cells)
        assert removed >= 1, f"{path.name}: nothing to remove (no folded solutions, no cell tagged solution)"
        assert len(copy.cells) == len(original.cells) - removed + 1
        exercises = [c.source for c in original.cells if course.EXERCISE_TAG in _tags(c)]
        kept = [c.source for c in copy.cells if course.EXERCISE_TAG in _tags(c)]
        assert kept == exercises, f"{path.name}: exercise cells changed"
    assert (student / "results").is_dir() and (student / "conftest.py").exists()
    # Building again gives the same files.
    first = {p.name: p.read_bytes() for p in student.glob("*.ipynb")}
    course.build_student(REPO / "notebooks", student)
    assert {p.name: p.read_bytes() for p in student.glob("*.ipynb")} == first


def test_student_edition_runs_under_nbval(student: Path) -> None:
    run = [ALWAYS_RUN]
    for path in NOTEBOOKS:
        original, copy = nbformat.read(path, as_version=4), nbformat.read(student / path.name, as_version=4)
        if _code(copy) != _code(original) and path.name not in run:
            run.append(path.name)
    env = {
        **os.environ,
        "PSFT_EDU_PRESET": "tiny",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTEST_ADDOPTS": "",
    }
    command = [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:randomly", "-p", "no:cacheprovider",
               "--rootdir", str(student), *run]
    done = subprocess.run(command, cwd=student, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
    # nbval compared the checker cells with their saved outputs, which say "not attempted": so did the run.
    for name in run:
        nb = nbformat.read(student / name, as_version=4)
        checkers = [c for c in nb.cells if c.cell_type == "code" and "exercises.check_" in c.source]
        assert checkers, f"{name}: no exercise checkers"
        for cell in checkers:
            assert cell.source.startswith("# NBVAL_CHECK_OUTPUT"), f"{name}: a checker cell nbval does not compare"
            assert "Not attempted" in repr(cell.get("outputs", [])), f"{name}: a checker that is not 'not attempted'"
