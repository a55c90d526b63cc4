"""A notebook starts in a runtime that does not have the course: its set-up cell installs it.

Like a fresh Colab machine: a virtual environment where ``psft_edu`` cannot be imported (it borrows
torch, transformers, Jupyter and pytest from the test environment, so nothing is downloaded), and a
folder holding only notebook 01 with the set-up cell stamped in. ``$PSFT_EDU_INSTALL_SOURCE`` points
the cell at a copy of this checkout; pip runs offline. nbval then runs the whole notebook in that
environment's kernel and compares the checked outputs, as ``make test-notebooks`` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from test_wheel import clean_env, fresh_venv, source_copy  # tests/ is on sys.path under pytest

from psft_edu import course

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = "01_lm_as_mdp.ipynb"


def test_setup_cell_installs_the_course_and_runs_notebook_01(tmp_path) -> None:
    src = source_copy(tmp_path / "src")
    python = fresh_venv(tmp_path / "venv")
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy2(REPO / "notebooks" / NOTEBOOK, run / NOTEBOOK)
    for name in course.NOTEBOOK_SUPPORT:
        shutil.copy2(REPO / "notebooks" / name, run / name)
    course.stamp_notebook(run / NOTEBOOK)
    # PIP_NO_BUILD_ISOLATION=0 turns build isolation off (pip's inverted flag): the build uses the borrowed setuptools.
    env = clean_env(PSFT_EDU_INSTALL_SOURCE=str(src), PSFT_EDU_PRESET="tiny", PIP_NO_BUILD_ISOLATION="0",
                    PYTEST_ADDOPTS="")
    probe = [str(python), "-c", "import importlib.util; print(importlib.util.find_spec('psft_edu'))"]
    assert subprocess.run(probe, capture_output=True, text=True, env=env, cwd=run).stdout.strip() == "None"

    command = [str(python), "-m", "pytest", "-q", "--nbval-lax", "-p", "no:randomly", "-p", "no:cacheprovider",
               "--rootdir", str(run), NOTEBOOK]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=run, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout, done.stdout[-2000:]

    where = subprocess.run(
        [str(python), "-c", "import psft_edu.paths as p; print(p.__file__); print(p.data_is_read_only())"],
        capture_output=True,
        text=True,
        env=env,
        cwd=run,
        check=True,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(tmp_path / "venv"), where  # installed by the cell, into the fresh environment
    assert where[1] == "True"


def _run_setup_cell() -> dict:
    namespace: dict = {}
    exec(compile(course.setup_cell_source(source="/nonexistent/source"), "setup-cell", "exec"), namespace)
    return namespace


def test_setup_cell_does_nothing_where_the_course_is_installed(monkeypatch) -> None:
    for name in ("COLAB_RELEASE_TAG", "KAGGLE_KERNEL_RUN_TYPE", "PSFT_EDU_PRESET"):
        monkeypatch.delenv(name, raising=False)
    namespace = _run_setup_cell()
    assert "source" not in namespace and not namespace["hosted"]  # psft_edu imports here: no install attempted
    assert "PSFT_EDU_PRESET" not in os.environ


def test_setup_cell_picks_the_preset_in_a_hosted_runtime(monkeypatch) -> None:
    import torch

    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")  # e.g. after a restart: installed, preset unset
    monkeypatch.delenv("PSFT_EDU_PRESET", raising=False)
    namespace = _run_setup_cell()
    assert "source" not in namespace
    assert os.environ["PSFT_EDU_PRESET"] == ("small" if torch.cuda.is_available() else "tiny")
    monkeypatch.setenv("PSFT_EDU_PRESET", "gpt2")  # an explicit choice wins
    _run_setup_cell()
    assert os.environ["PSFT_EDU_PRESET"] == "gpt2"


def test_stamp_is_idempotent_and_puts_the_cell_under_the_title(tmp_path) -> None:
    import nbformat

    target = tmp_path / NOTEBOOK
    shutil.copy2(REPO / "notebooks" / NOTEBOOK, target)
    original = nbformat.read(target, as_version=4)
    already = any(course.SETUP_TAG in c.metadata.get("tags", []) for c in original.cells)
    assert course.stamp_notebook(target) is not already
    first = target.read_bytes()
    assert course.stamp_notebook(target) is False and target.read_bytes() == first
    nb = nbformat.read(target, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert nb.cells[1].metadata["tags"] == [course.SETUP_TAG] and nb.cells[1].source == course.setup_cell_source()
    kept = [c.source for c in original.cells if course.SETUP_TAG not in c.metadata.get("tags", [])]
    assert [c.source for c in nb.cells if course.SETUP_TAG not in c.metadata.get("tags", [])] == kept
    # An outdated set-up cell is replaced, not duplicated.
    nb.cells[1].source = "# an older version of the set-up cell"
    nbformat.write(nb, target)
    assert course.stamp_notebook(target) is True
    stamped = nbformat.read(target, as_version=4)
    expected = nbformat.reads(first.decode("utf-8"), as_version=4)
    assert [(c.cell_type, c.source) for c in stamped.cells] == [(c.cell_type, c.source) for c in expected.cells]
    assert course.stamp_notebook(target) is False


def test_readme_opens_every_notebook_in_colab() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    repo = course.REPOSITORY_URL.removeprefix("https://github.com/")
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        link = f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{path.name}"
        assert link in readme, f"README: no 'Open in Colab' link for {path.name}"
    assert f'pip install "git+{course.REPOSITORY_URL}"' in readme
    assert "make student" in readme and "make book" in readme
