"""The course's own commands: the notebooks' launch cells, the student edition and the course site.

    python -m psft_edu.course stamp                         # write the launch cells into every notebook
    python -m psft_edu.course stamp --repo https://github.com/<owner>/<name>   # ... pointing at a fork
    python -m psft_edu.course student notebooks/ student/   # student copies: solutions removed
    python -m psft_edu.course book notebooks/ _build/book   # static HTML site (needs the ``book`` extra)
    python -m psft_edu.course setup-cell --extras trl       # print a notebook's set-up cell

What they write is described in :mod:`psft_edu.course.editions` (launch cells, student edition) and
:mod:`psft_edu.course.book` (the site).
"""

from __future__ import annotations

import argparse
import sys

from .editions import EXTRA_MODULES, build_student, notebooks_in, repoint_texts, setup_cell_source, stamp_notebook
from .home import Home, HomeError, default_install_source, load_home, write_home


def _stamp(args: argparse.Namespace) -> None:
    from ..paths import IN_CHECKOUT, REPO_ROOT

    home = old = load_home()
    if args.repo or args.branch or args.install_source:
        if not IN_CHECKOUT:
            raise RuntimeError(
                "--repo, --branch and --install-source change psft_edu/course/home.json: run them in a clone"
            )
        repository = (args.repo or old.repository).rstrip("/").removesuffix(".git")
        branch = args.branch or (old.branch if not args.repo else "main")
        source = args.install_source or default_install_source(repository, branch)
        home = Home(repository, branch, source)  # checked before anything is written
    notebooks = [path for folder in args.paths for path in notebooks_in(folder)]
    if home != old:
        write_home(home)
        print(f"psft_edu/course/home.json: {home.repository} ({home.branch}), installs from {home.install_source}")
    for path in notebooks:
        print(f"{path}: {'updated' if stamp_notebook(path, home) else 'up to date'}")
    if home != old:
        texts = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))] if IN_CHECKOUT else []
        for path in repoint_texts([p for p in texts if p.is_file()], old, home):
            print(f"{path}: addresses updated")


def main(argv: list[str] | None = None) -> int:
    from .book import build_book

    parser = argparse.ArgumentParser(prog="python -m psft_edu.course", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("stamp", help="write the launch cells (Open in Colab, set-up) into notebooks from home.json")
    p.add_argument("paths", nargs="*", default=["notebooks"], help="notebook folders or files (default: notebooks)")
    p.add_argument("--repo", default=None, help="point the course at this repository first: https://github.com/o/n")
    p.add_argument("--branch", default=None, help="the repository's branch the links open (default: main)")
    p.add_argument("--install-source", default=None, help="what pip installs in a hosted runtime (default: git+REPO)")
    p = sub.add_parser("student", help="write the student edition (solutions removed)")
    p.add_argument("src", nargs="?", default="notebooks", help="the notebooks (default: notebooks)")
    p.add_argument("out", nargs="?", default="student", help="where the copies go (default: student)")
    p = sub.add_parser("book", help="build the static course site")
    p.add_argument("src", nargs="?", default="notebooks", help="the notebooks (default: notebooks)")
    p.add_argument("out", nargs="?", default="_build/book", help="build folder; the site is its html/ (%(default)s)")
    p = sub.add_parser("setup-cell", help="print the set-up cell's code")
    p.add_argument("--extras", nargs="*", default=[], choices=list(EXTRA_MODULES), help="extras the notebook needs")
    args = parser.parse_args(argv)
    try:
        if args.command == "stamp":
            _stamp(args)
        elif args.command == "student":
            for path in build_student(args.src, args.out):
                print(f"wrote {path}")
        elif args.command == "book":
            html = build_book(args.src, args.out)
            print(f"course site: {html / 'index.html'}")
        else:
            print(setup_cell_source(args.extras))
    except (FileNotFoundError, RuntimeError, HomeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
