"""Taking the course elsewhere: the hosted-runtime set-up cell, the student edition and the course site.

Command line (from the repository root)::

    python -m psft_edu.course stamp notebooks/              # insert or update the set-up cell in every notebook
    python -m psft_edu.course student notebooks/ student/   # student copies: solution cells removed
    python -m psft_edu.course book notebooks/ _build/book   # static HTML site (needs the ``book`` extra)

The set-up cell is the notebook's first code cell, right under its title, tagged ``colab-setup``. It
installs the course with pip when ``psft_edu`` cannot be imported; in Colab and Kaggle (and wherever
it had to install) it also picks the preset from the hardware, so a restarted runtime gets it again.
Elsewhere, where the course is installed, it does nothing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Where a hosted runtime installs the course from (``$PSFT_EDU_INSTALL_SOURCE`` overrides it).
REPOSITORY_URL = "https://github.com/psft-edu/psft-edu"
INSTALL_SOURCE = f"git+{REPOSITORY_URL}"
INSTALL_ENV = "PSFT_EDU_INSTALL_SOURCE"
SETUP_TAG = "colab-setup"
SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"
SETUP_CELL_ID = "colab-setup"
FOLDED_SOLUTIONS = "<details><summary>solution"  # lower-cased start of a folded solutions cell
STUDENT_NOTE = (
    "## Solutions\n\nThis is the student edition: the worked solutions are not included. Ask your instructor, or "
    "compare with the full notebook in the course repository after the session."
)
NOTEBOOK_SUPPORT = ("conftest.py", "nbval_sanitize.cfg")  # what nbval needs beside the notebooks
BOOK_TITLE = "Proximal SFT from first principles"


def setup_cell_source(source: str = INSTALL_SOURCE) -> str:
    """The code of the set-up cell (it runs before ``psft_edu`` can be imported, so it stands alone)."""
    return f'''# Set-up for hosted runtimes (Colab, Kaggle): install the course if it is missing, and there pick the
# preset from the hardware (`small` with a GPU) unless $PSFT_EDU_PRESET is set. Elsewhere, where psft_edu
# is installed (a clone after `make setup`, a workshop machine), this cell does nothing.
# ${INSTALL_ENV} installs from another source (a fork, a wheel, a folder).
import importlib.util
import os
import subprocess
import sys

colab = "google.colab" in sys.modules or bool(os.environ.get("COLAB_RELEASE_TAG"))
hosted = colab or bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE"))
if importlib.util.find_spec("psft_edu") is None:
    source = os.environ.get("{INSTALL_ENV}", "{source}")
    print(f"installing the course from {{source}} ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source], check=True)
    importlib.invalidate_caches()
    hosted = True
if hosted and not os.environ.get("PSFT_EDU_PRESET"):
    import torch

    os.environ["PSFT_EDU_PRESET"] = "small" if torch.cuda.is_available() else "tiny"
    print("preset:", os.environ["PSFT_EDU_PRESET"])'''


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _setup_cell(nbformat_module: Any) -> Any:
    cell = nbformat_module.v4.new_code_cell(setup_cell_source())
    cell.id = SETUP_CELL_ID
    cell.metadata["tags"] = [SETUP_TAG]
    return cell


def stamp_notebook(path: str | Path) -> bool:
    """Insert the set-up cell under the title of one notebook, or bring an existing one up to date.

    Idempotent: returns whether the file changed. The cell goes right after the first cell when that is
    markdown (the title), else first; cells tagged ``colab-setup`` elsewhere are removed.
    """
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    current = [c for c in nb.cells if SETUP_TAG in _tags(c)]
    if len(current) == 1 and current[0].source == setup_cell_source():
        return False
    nb.cells = [c for c in nb.cells if SETUP_TAG not in _tags(c)]
    at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
    nb.cells.insert(at, _setup_cell(nbformat))
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


def is_solution(cell: Any) -> bool:
    """A worked solution: tagged ``solution``, or a markdown cell of folded solutions
    (``<details><summary>Solution``).
    """
    if SOLUTION_TAG in _tags(cell):
        return True
    return cell.cell_type == "markdown" and cell.source.lstrip().lower().startswith(FOLDED_SOLUTIONS)


def student_notebook(nb: Any) -> Any:
    """A student copy of a notebook (a new object): solutions removed, exercise cells and every output kept.

    The exercise cells are kept as they are: their committed form leaves the answer as ``None``, so
    their checkers print "not attempted" and the copy runs without errors.
    """
    import copy

    import nbformat

    out = copy.deepcopy(nb)
    removed = [c for c in out.cells if is_solution(c)]
    out.cells = [c for c in out.cells if not is_solution(c)]
    if removed:
        note = nbformat.v4.new_markdown_cell(STUDENT_NOTE)
        note.id = "student-edition-note"
        out.cells.append(note)
    out.metadata["psft_edu"] = {"edition": "student", "solutions_removed": len(removed)}
    return out


def build_student(src: str | Path, out: str | Path) -> list[Path]:
    """Write the student edition of every notebook in ``src`` to ``out`` (replacing its notebooks).

    The committed results (``results/``) and the nbval set-up files are copied beside them, so the copies
    run from ``out`` exactly as the originals run from ``notebooks/``.
    """
    import nbformat

    src, out = Path(src), Path(out)
    sources = notebooks_in(src)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.ipynb"):
        old.unlink()
    written = []
    for path in sources:
        nb = student_notebook(nbformat.read(path, as_version=4))
        target = out / path.name
        target.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        written.append(target)
    folder = src if src.is_dir() else src.parent
    if (folder / "results").is_dir():
        shutil.rmtree(out / "results", ignore_errors=True)
        shutil.copytree(folder / "results", out / "results")
    for name in NOTEBOOK_SUPPORT:
        if (folder / name).exists():
            shutil.copy2(folder / name, out / name)
    return written


# ----------------------------------------------------------------------------------------- course site

def mathjax_dir() -> Path:
    """The MathJax 2 files shipped by the ``jupyter-server-mathjax`` package (the ``book`` extra)."""
    try:
        import jupyter_server_mathjax
    except ImportError as err:
        raise RuntimeError("the course site needs the book extra: pip install -e '.[book]' (or make setup)") from err
    folder = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (folder / "MathJax.js").exists():
        raise RuntimeError(f"{folder}: no MathJax.js in jupyter-server-mathjax")
    return folder


def _chapter_title(nb: Any, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


SPHINX_CONF = '''# Generated by `python -m psft_edu.course book`; edit psft_edu/course.py instead.
project = {title!r}
author = "psft-edu"
extensions = ["myst_nb"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
nb_execution_mode = "off"  # the committed outputs are the site: nothing is executed
nb_ipywidgets_js = {{}}  # widget outputs need a live kernel; no widget scripts from a CDN
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True
html_static_path = ["_static"]
html_copy_source = False
# MathJax served from the site itself (copied from the jupyter-server-mathjax package): no CDN.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {{"tex2jax": {{"inlineMath": [["\\\\(", "\\\\)"]], "displayMath": [["\\\\[", "\\\\]"]],
                                "processEscapes": True, "ignoreClass": "tex2jax_ignore|mathjax_ignore",
                                "processClass": "tex2jax_process|mathjax_process|math|output_area"}},
                   "messageStyle": "none", "menuSettings": {{"zoom": "None"}},
                   # jupyter-server-mathjax ships the STIX web fonts only
                   "HTML-CSS": {{"availableFonts": ["STIX-Web"], "preferredFont": "STIX-Web", "webFont": "STIX-Web",
                                "imageFont": None}}}}
try:
    import sphinx_book_theme  # noqa: F401

    html_theme = "sphinx_book_theme"
    html_theme_options = {{"show_navbar_depth": 1, "show_toc_level": 2, "use_download_button": False}}
except ImportError:
    html_theme = "alabaster"
html_title = {title!r}
'''


def write_book_source(src: str | Path, stage: str | Path) -> list[str]:
    """A Sphinx project in ``stage``: the notebooks (set-up cells left out), an index page and the config."""
    import nbformat

    src, stage = Path(src), Path(stage)
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "_static").mkdir(parents=True)
    shutil.copytree(mathjax_dir(), stage / "_static" / "mathjax", ignore=shutil.ignore_patterns("*.py"))
    chapters, rows = [], []
    for path in notebooks_in(src):
        nb = nbformat.read(path, as_version=4)
        nb.cells = [c for c in nb.cells if SETUP_TAG not in _tags(c)]
        (stage / path.name).write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        chapters.append(path.stem)
        rows.append(f"* [{_chapter_title(nb, path.stem)}]({path.stem}.ipynb)")
    index = (
        f"# {BOOK_TITLE}\n\nThe course's notebooks as they were last executed (preset `tiny`, the committed outputs). "
        "To run them, open them in Jupyter or in Colab (see the repository's README).\n\n"
        + "\n".join(rows)
        + "\n\n```{toctree}\n:maxdepth: 1\n:hidden:\n\n"
        + "\n".join(chapters)
        + "\n```\n"
    )
    (stage / "index.md").write_text(index, encoding="utf-8")
    (stage / "conf.py").write_text(SPHINX_CONF.format(title=BOOK_TITLE), encoding="utf-8")
    return chapters


def build_book(src: str | Path, out: str | Path, quiet: bool = True) -> Path:
    """Build the static site of the notebooks in ``src`` into ``out/html`` (``out/source`` holds the Sphinx project).

    Offline: nothing is executed or downloaded; MathJax is copied into the site. Returns the html folder.
    """
    out = Path(out)
    stage = out / "source"
    write_book_source(src, stage)
    html = out / "html"
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-W", "--keep-going", str(stage), str(html)]
    if quiet:
        command.insert(3, "-q")
    done = subprocess.run(command, capture_output=quiet, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"sphinx-build failed:\n{(done.stdout or '')[-3000:]}{(done.stderr or '')[-3000:]}")
    return html


# ----------------------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m psft_edu.course", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("stamp", help="insert or update the hosted-runtime set-up cell (tag colab-setup) in notebooks")
    p.add_argument("paths", nargs="*", default=["notebooks"], help="notebook folders or files")
    p = sub.add_parser("student", help="write the student edition (solutions removed)")
    p.add_argument("src", nargs="?", default="notebooks")
    p.add_argument("out", nargs="?", default="student")
    p = sub.add_parser("book", help="build the static course site")
    p.add_argument("src", nargs="?", default="notebooks")
    p.add_argument("out", nargs="?", default="_build/book")
    p = sub.add_parser("setup-cell", help="print the set-up cell's code")
    args = parser.parse_args(argv)
    try:
        if args.command == "stamp":
            for folder in args.paths:
                for path in notebooks_in(folder):
                    print(f"{path}: {'updated' if stamp_notebook(path) else 'up to date'}")
        elif args.command == "student":
            for path in build_student(args.src, args.out):
                print(f"wrote {path}")
        elif args.command == "book":
            html = build_book(args.src, args.out)
            print(f"course site: {html / 'index.html'}")
        else:
            print(setup_cell_source())
    except (FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
