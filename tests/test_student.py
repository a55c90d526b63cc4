"""The student edition (``make student``): solutions removed by cell tags, exercises kept, and it runs under nbval.

A learner's copy carries no way to the answers: no solution cells, no sentence pointing to a worked solution
"at the end", no saved output of an exercise or checker cell (a hint or a measured value can state the answer),
and none of the tests' set-up (``conftest.py``, ``nbval_sanitize.cfg``, the ``# NBVAL_CHECK_OUTPUT`` marker).

Without the markers, nbval (``--nbval-lax``) compares no output of a student copy: it only checks that every
code cell runs. A copy whose code is the original's, markers aside, therefore passes whenever the original
does, which ``make test-notebooks`` checks already. This test runs nbval (with the tests' set-up copied beside
the copies) on every student copy that lost a solution code cell, and always on one copy end to end, executed
once more to see its checkers say "not attempted".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from psft_edu.course import editions

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
ALWAYS_RUN = "02_sft_loss.ipynb"  # a short notebook with three exercise checkers


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _code(nb) -> list[str]:
    """What ``--nbval-lax`` reads of a notebook without markers: the code."""
    return [editions.without_check_marker(c.source) for c in nb.cells if c.cell_type == "code"]


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
    student = editions.student_notebook(nb)
    sources = [c.source for c in student.cells]
    assert sources[:3] == ["# Title", "x = 1", "answer = None  # your answer"]
    assert "answer = 42" not in sources and not any("Solution" in s and "details" in s for s in sources)
    assert not any("solution" in _tags(c) for c in student.cells)
    assert student.cells[-1].source == editions.STUDENT_NOTE
    assert student.metadata["psft_edu"] == {"edition": "student", "solutions_removed": 3}
    assert len(nb.cells) == 6  # the original is left alone


def test_student_notebook_drops_pointers_saved_hints_and_markers() -> None:
    v4 = nbformat.v4
    hint = v4.new_output("stream", name="stdout", text="Not attempted yet. Hint: r = exp(logp - old_logp).\n")
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("## Open challenge\n\nEstimate it by sampling. A\nworked solution is folded at the end of "
                             "the notebook.\n\nThen explain why."),
        v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(2 + 2)", outputs=[v4.new_output("stream", text="4\n")]),
        v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nmine = None\nexercises.check_loss_impl(mine);", outputs=[hint],
                         execution_count=7),
    ])
    student = editions.student_notebook(nb)
    assert student.cells[0].source == "## Open challenge\n\nEstimate it by sampling.\n\nThen explain why."
    assert student.cells[1].source == "print(2 + 2)" and student.cells[1].outputs == nb.cells[1].outputs
    assert student.cells[2].source == "mine = None\nexercises.check_loss_impl(mine);"
    assert student.cells[2].outputs == [] and student.cells[2].execution_count is None
    assert nb.cells[2].outputs == [hint]  # the original is left alone


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    written = editions.build_student(REPO / "notebooks", out)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    return out


def test_student_edition_removes_solutions_and_keeps_exercises(student: Path) -> None:
    for path in NOTEBOOKS:
        original = nbformat.read(path, as_version=4)
        copy = nbformat.read(student / path.name, as_version=4)
        assert not any(editions.is_solution(c) for c in copy.cells), f"{path.name}: a solution is left"
        removed = sum(editions.is_solution(c) for c in original.cells)
        assert removed >= 1, f"{path.name}: nothing to remove (no folded solutions, no cell tagged solution)"
        assert len(copy.cells) == len(original.cells) - removed + 1
        exercises = [editions.without_check_marker(c.source) for c in original.cells
                     if editions.EXERCISE_TAG in _tags(c)]
        kept = [c.source for c in copy.cells if editions.EXERCISE_TAG in _tags(c)]
        assert kept == exercises, f"{path.name}: exercise cells changed"
    assert (student / "results").is_dir()
    # Building again gives the same files.
    first = {p.name: p.read_bytes() for p in student.glob("*.ipynb")}
    editions.build_student(REPO / "notebooks", student)
    assert {p.name: p.read_bytes() for p in student.glob("*.ipynb")} == first


# Independent of editions.SOLUTION_POINTER: any sentence that sends the reader to a solution somewhere else.
POINTER = re.compile(r"[^.]*\bsolutions?\b[^.]*\b(?:at the end|below|folded|hidden|further down)\b[^.]*\.", re.I | re.S)


def test_student_edition_gives_no_answers_away_and_carries_no_test_setup(student: Path) -> None:
    assert POINTER.search("The task. A worked\nsolution is folded at the end of the notebook.")  # the check can fail
    originals_point = 0
    for path in NOTEBOOKS:
        original = nbformat.read(path, as_version=4)
        originals_point += sum(bool(POINTER.search(c.source)) for c in original.cells if c.cell_type == "markdown")
        copy = nbformat.read(student / path.name, as_version=4)
        for cell in copy.cells:
            if cell.cell_type == "markdown" and cell.source != editions.STUDENT_NOTE:
                found = POINTER.search(cell.source)
                assert not found, f"{path.name}: points to a removed solution: {found.group(0).strip()!r}"
            if cell.cell_type == "code":
                assert editions.CHECK_MARKER not in cell.source, f"{path.name}: the tests' marker is left"
                if editions.is_checker(cell):
                    assert not cell.outputs, f"{path.name}: a saved hint or answer: {cell.source[:60]!r}"
        checkers = [c for c in copy.cells if c.cell_type == "code" and "check_" in c.source]
        assert checkers and all(editions.is_checker(c) for c in checkers), f"{path.name}: a checker not recognised"
    assert originals_point >= 8  # the full notebooks do point to their solutions
    for name in editions.NOTEBOOK_SUPPORT:
        assert not (student / name).exists(), f"{name}: test set-up copied to learners"


def test_student_edition_runs_under_nbval(student: Path, tmp_path: Path) -> None:
    run = [ALWAYS_RUN]
    for path in NOTEBOOKS:
        original, copy = nbformat.read(path, as_version=4), nbformat.read(student / path.name, as_version=4)
        if _code(copy) != _code(original) and path.name not in run:
            run.append(path.name)
    where = tmp_path / "student"  # the tests' set-up beside a copy, never in the learners' folder
    shutil.copytree(student, where)
    for name in editions.NOTEBOOK_SUPPORT:
        shutil.copy2(REPO / "notebooks" / name, where / name)
    env = {
        **os.environ,
        "PSFT_EDU_PRESET": "tiny",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTEST_ADDOPTS": "",
    }
    command = [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:randomly", "-p", "no:cacheprovider",
               "--rootdir", str(where), *run]
    done = subprocess.run(command, cwd=where, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
    # Run once more to read what the checkers print: unanswered, every one says so.
    executed = tmp_path / "executed.ipynb"
    env.pop("MPLBACKEND", None)
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", str(where / ALWAYS_RUN),
               "--output", str(executed)]
    done = subprocess.run(command, cwd=where, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    nb = nbformat.read(executed, as_version=4)
    checkers = [c for c in nb.cells if c.cell_type == "code" and "exercises.check_" in c.source]
    assert checkers, f"{ALWAYS_RUN}: no exercise checkers"
    for cell in checkers:
        assert "Not attempted" in repr(cell.outputs), f"{ALWAYS_RUN}: a checker that is not 'not attempted'"
