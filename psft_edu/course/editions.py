"""Taking the course elsewhere: the launch cells of the notebooks, the student edition and a copy of the course.

Command line (from the repository root)::

    python -m psft_edu.course stamp                         # write the launch cells into every notebook
    python -m psft_edu.course stamp --repo https://github.com/<owner>/<name>   # ... pointing at a fork
    python -m psft_edu.course student notebooks/ student/   # student copies: solutions removed
    python -m psft_edu.course book notebooks/ _build/book   # static HTML site (needs the ``book`` extra)
    python -m psft_edu notebooks DIR [--student]           # the course's notebooks, from an installed package

Every notebook carries two *launch cells* right under its title, both written from the course's home
(``psft_edu/course/home.json``, see :mod:`psft_edu.course.home`): a markdown cell tagged ``colab-link`` with the
notebook's Open-in-Colab link, and the set-up cell tagged ``colab-setup``. In a hosted runtime (Colab,
Kaggle) the set-up cell installs the course with the extras that notebook imports (09: ``trl``) when
anything is missing, and picks the preset from the hardware. Where the course is installed it does
nothing; where only an extra is missing it stops with the command that installs it.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path
from typing import Any

from .home import Home, load_home, repoint

INSTALL_ENV = "PSFT_EDU_INSTALL_SOURCE"
SETUP_TAG = "colab-setup"
LINK_TAG = "colab-link"
LAUNCH_TAGS = (LINK_TAG, SETUP_TAG)
SETUP_CELL_ID = "colab-setup"
LINK_CELL_ID = "colab-link"
SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
FOLDED_SOLUTIONS = "<details><summary>solution"  # lower-cased start of a folded solutions cell
STUDENT_NOTE = (
    "## Solutions\n\nThis is the student edition: the worked solutions are not included. Ask your instructor, or "
    "compare with the full notebook in the course repository after the session."
)
NOTEBOOK_SUPPORT = ("conftest.py", "nbval_sanitize.cfg")  # what nbval needs beside the notebooks (never copied)
#: The modules of each optional dependency group (pyproject.toml) that a notebook may import.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {"trl": ("trl", "datasets", "peft", "accelerate")}
#: A sentence that sends the reader to a worked solution at the end of the notebook (gone in the student edition).
SOLUTION_POINTER = re.compile(
    r"[ \t]*\bA\s+worked\s+solution\s+is\s+(?:folded\s+)?at\s+the\s+end(?:\s+of\s+the\s+notebook)?\.", re.IGNORECASE
)
_CHECKER_CALL = re.compile(r"\bexercises\.check_\w+\(")


# ----------------------------------------------------------------------------------------- launch cells

def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def imported_modules(nb: Any) -> set[str]:
    """Top-level names of the modules the notebook's code cells import (launch cells and magics left out)."""
    names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code" or any(tag in _tags(cell) for tag in LAUNCH_TAGS):
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def extras_needed(nb: Any) -> list[str]:
    """The optional dependency groups whose modules the notebook imports, e.g. ``["trl"]`` for notebook 09."""
    used = imported_modules(nb)
    return [extra for extra, modules in EXTRA_MODULES.items() if used & set(modules)]


def setup_cell_source(extras: list[str] | tuple[str, ...] = (), source: str | None = None) -> str:
    """The code of the set-up cell of a notebook that needs ``extras``, installing from ``source`` (default:
    the home's install source). It runs before ``psft_edu`` can be imported, so it stands alone."""
    source = source if source is not None else load_home().install_source
    needs = ["psft_edu", *(m for extra in extras for m in EXTRA_MODULES[extra])]
    package = f"psft-edu[{','.join(extras)}]" if extras else "psft-edu"
    what = f"the course and its {', '.join(extras)} extra" if extras else "the course"
    stop = (
        'if missing and not hosted and "psft_edu" not in missing:  # installed here, without the extra\n'
        '    raise ModuleNotFoundError(f"this notebook needs {\', \'.join(missing)}: run `make setup` in a clone, "\n'
        '                              f"or pip install \'{requirement}\'")\n'
        if extras else ""
    )
    return f'''# Set-up for hosted runtimes (Colab, Kaggle): install {package} if anything it brings is missing, and
# there pick the preset from the hardware (`small` with a GPU, else `tiny`) unless $PSFT_EDU_PRESET is set.
# Where the course is installed (a clone after `make setup`, a workshop machine) this cell does nothing.
# ${INSTALL_ENV} installs from elsewhere: a git URL, a folder or a wheel.
# Written by `python -m psft_edu.course stamp` from psft_edu/course/home.json: change that file, not this cell.
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

NEEDS = {json.dumps(needs)}  # {what}
colab = "google.colab" in sys.modules or bool(os.environ.get("COLAB_RELEASE_TAG"))
hosted = colab or bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE"))
missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
source = os.environ.get("{INSTALL_ENV}", "{source}")
if Path(source).exists():  # a folder or a wheel on this machine
    source = Path(source).resolve().as_uri()
requirement = f"{package} @ {{source}}"
{stop}if missing:
    print(f"installing {{requirement}} ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", requirement], check=True)
    importlib.invalidate_caches()
    hosted = True
if hosted and not os.environ.get("PSFT_EDU_PRESET"):
    import torch

    os.environ["PSFT_EDU_PRESET"] = "small" if torch.cuda.is_available() else "tiny"
    print("preset:", os.environ["PSFT_EDU_PRESET"])'''


def link_cell_source(notebook: str, home: Home | None = None) -> str:
    """The markdown of the Open-in-Colab cell of ``notebook`` (a file name)."""
    home = home or load_home()
    return (
        f"[Open in Colab]({home.colab_url(notebook)}) · [the course repository]({home.repository})\n\n"
        "In Colab or Kaggle the next cell installs the course; on a machine where it is installed, it does nothing."
    )


def _new_cell(nbformat_module: Any, kind: str, source: str, cell_id: str, tag: str) -> Any:
    make = nbformat_module.v4.new_code_cell if kind == "code" else nbformat_module.v4.new_markdown_cell
    cell = make(source)
    cell.id = cell_id
    cell.metadata["tags"] = [tag]
    return cell


def stamp_notebook(path: str | Path, home: Home | None = None) -> bool:
    """Write the two launch cells of one notebook from ``home`` (default: ``psft_edu/course/home.json``).

    Idempotent: returns whether the file changed. The cells go right after the title (the first cell, when it is
    markdown): the Open-in-Colab link, then the set-up cell. A cell already there is updated in place (its
    execution count and outputs are kept, so an executed notebook stays executed); duplicates are removed.
    """
    import nbformat

    home = home or load_home()
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    wanted = {
        LINK_TAG: ("markdown", link_cell_source(path.name, home), LINK_CELL_ID),
        SETUP_TAG: ("code", setup_cell_source(extras_needed(nb), home.install_source), SETUP_CELL_ID),
    }
    kept: dict[str, Any] = {}
    for cell in nb.cells:
        for tag in LAUNCH_TAGS:
            if tag in _tags(cell) and tag not in kept and cell.cell_type == wanted[tag][0]:
                kept[tag] = cell
    cells = [c for c in nb.cells if not any(tag in _tags(c) for tag in LAUNCH_TAGS)]
    at = 1 if cells and cells[0].cell_type == "markdown" else 0
    launch = []
    for tag in LAUNCH_TAGS:
        kind, source, cell_id = wanted[tag]
        cell = kept.get(tag) or _new_cell(nbformat, kind, source, cell_id, tag)
        cell.source = source
        launch.append(cell)
    nb.cells = cells[:at] + launch + cells[at:]
    after = nbformat.writes(nb)
    if after == before:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(after + "\n", encoding="utf-8")
    tmp.replace(path)
    return True


def notebooks_in(folder: str | Path) -> list[Path]:
    """The course notebooks of a folder (or the one notebook named), sorted."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    found = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if not found:
        raise FileNotFoundError(f"{folder}: no notebooks here")
    return found


def repoint_texts(paths: list[Path], old: Home, new: Home) -> list[Path]:
    """Rewrite the addresses of ``old`` into those of ``new`` in text files (README, docs); the changed files."""
    changed = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        updated = repoint(text, old, new)
        if updated != text:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(updated, encoding="utf-8")
            tmp.replace(path)
            changed.append(path)
    return changed


# ----------------------------------------------------------------------------------------- student edition

def is_solution(cell: Any) -> bool:
    """A worked solution: tagged ``solution``, or a markdown cell of folded solutions
    (``<details><summary>Solution``).
    """
    if SOLUTION_TAG in _tags(cell):
        return True
    return cell.cell_type == "markdown" and cell.source.lstrip().lower().startswith(FOLDED_SOLUTIONS)


def is_checker(cell: Any) -> bool:
    """An exercise cell or a cell that calls an exercise checker: its saved output is a hint or a measured answer."""
    return cell.cell_type == "code" and (EXERCISE_TAG in _tags(cell) or bool(_CHECKER_CALL.search(cell.source)))


def without_check_marker(source: str) -> str:
    """``source`` without a leading ``# NBVAL_CHECK_OUTPUT`` line (the tests' marker, not the learner's)."""
    first, _, rest = source.partition("\n")
    return rest if first.strip() == CHECK_MARKER else source


def student_notebook(nb: Any) -> Any:
    """A student copy of a notebook (a new object).

    Solutions are removed, and so are the sentences that point to them ("A worked solution is at the end.").
    Exercise and checker cells lose their saved outputs (a hint or a measured value can give the answer away);
    left unanswered, they print "not attempted" when run. The tests' ``# NBVAL_CHECK_OUTPUT`` lines go too.
    Every other cell and output is kept.
    """
    import copy

    import nbformat

    out = copy.deepcopy(nb)
    removed = [c for c in out.cells if is_solution(c)]
    out.cells = [c for c in out.cells if not is_solution(c)]
    for cell in out.cells:
        if cell.cell_type == "markdown":
            cell.source = SOLUTION_POINTER.sub("", cell.source)
            continue
        if is_checker(cell):
            cell.outputs = []
            cell.execution_count = None
        cell.source = without_check_marker(cell.source)
    if removed:
        note = nbformat.v4.new_markdown_cell(STUDENT_NOTE)
        note.id = "student-edition-note"
        out.cells.append(note)
    out.metadata["psft_edu"] = {"edition": "student", "solutions_removed": len(removed)}
    return out


STUDENT_MARK = ".psft-edu-student"  # marks a folder build_student wrote and lists the files it wrote there


def _student_files(out: Path) -> list[Path]:
    """The files an earlier :func:`build_student` wrote into ``out`` (listed in its mark; none for an older mark)."""
    try:
        names = json.loads((out / STUDENT_MARK).read_text(encoding="utf-8"))["written"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [out / name for name in names if ".." not in Path(name).parts and not Path(name).is_absolute()]


def build_student(src: str | Path, out: str | Path) -> list[Path]:
    """Write the student edition of every notebook in ``src`` to ``out`` (replacing its notebooks).

    The committed results (``results/``) are copied beside them, so the copies run from ``out`` as the originals
    run from ``notebooks/``. The test set-up files (``conftest.py``, ``nbval_sanitize.cfg``) are not copied.
    """
    import nbformat

    src, out = Path(src), Path(out)
    sources = notebooks_in(src)
    if out.is_symlink() or (out / "results").is_symlink():
        raise RuntimeError(f"{out}: is or holds a link; the student edition is never written through a link")
    if out.exists() and not (out / STUDENT_MARK).is_file() and any(out.iterdir()):
        raise RuntimeError(f"{out}: not empty and not a student edition written here; give a new or empty folder")
    folder = src if src.is_dir() else src.parent
    results = sorted(p for p in (folder / "results").rglob("*") if p.is_file()) if (folder / "results").is_dir() else []
    targets = [out / path.name for path in sources] + [out / p.relative_to(folder) for p in results]
    linked = [t for t in targets if t.is_symlink()]
    if linked:
        raise RuntimeError(f"{linked[0]}: is a link; the student edition is never written through a link")
    for old in _student_files(out):  # what the previous build wrote, and nothing else (a learner's own files stay)
        if old.is_file() and not old.is_symlink():
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources:
        nb = student_notebook(nbformat.read(path, as_version=4))
        target = out / path.name
        target.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        written.append(target)
    for path in results:
        target = out / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    names = [str(t.relative_to(out)) for t in targets]
    (out / STUDENT_MARK).write_text(json.dumps({"written": names}, indent=1) + "\n", encoding="utf-8")
    return written


# ----------------------------------------------------------------------------------------- a copy of the course

def course_notebooks_dir() -> Path:
    """The course's notebooks: ``notebooks/`` of a checkout, or their copy inside an installed package."""
    from ..paths import RESULTS_DIR

    return RESULTS_DIR.parent


def copy_course(dest: str | Path, student: bool = False, src: str | Path | None = None) -> list[Path]:
    """Copy the notebooks and their committed results into ``dest`` (the student edition with ``student``).

    ``dest`` must be a new or an empty folder: nothing already there is replaced (:class:`ValueError` otherwise).
    Returns the notebooks written.
    """
    src = Path(src) if src is not None else course_notebooks_dir()
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"{dest}: is a file, not a folder")
    if dest.is_dir() and any(dest.iterdir()):
        raise ValueError(f"{dest}: not empty; give a new or an empty folder")
    notebooks = notebooks_in(src)  # before anything is written
    if student:
        return build_student(src, dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        shutil.copy2(path, dest / path.name)
        written.append(dest / path.name)
    if (src / "results").is_dir():
        shutil.copytree(src / "results", dest / "results")
    return written
