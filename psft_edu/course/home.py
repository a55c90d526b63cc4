"""The course's home: the repository it lives in and the source a hosted runtime installs it from.

Both are written once, in ``psft_edu/course/home.json``. The set-up and Open-in-Colab cells of the notebooks
(:mod:`psft_edu.course`, ``stamp``) and the buttons of the course site (:mod:`psft_edu.course.book`) are made
from it. An instructor who forks the course points everything at the fork with one command::

    python -m psft_edu.course stamp --repo https://github.com/<owner>/<name>

which rewrites ``home.json``, the two cells in every notebook and the addresses in the README and
``docs/``. The links only work once the repository is public at that address.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

HOME_FILE = Path(__file__).resolve().with_name("home.json")
COLAB = "https://colab.research.google.com"
NOTEBOOK_FOLDER = "notebooks"  # where the notebooks sit in the repository
_GITHUB = re.compile(r"^https://github\.com/(?P<owner>[A-Za-z0-9][A-Za-z0-9-]*)/(?P<name>[A-Za-z0-9._-]+)$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]+$")


class HomeError(ValueError):
    """A repository address, branch or home file that cannot work; the message is one line."""


@dataclass(frozen=True)
class Home:
    """Where the course lives: a GitHub repository (Colab opens notebooks from GitHub only), its branch,
    and what ``pip install`` is given in a hosted runtime (a git URL, or any other pip source)."""

    repository: str
    branch: str = "main"
    install_source: str = ""

    def __post_init__(self) -> None:
        if not _GITHUB.match(self.repository):
            raise HomeError(f"repository {self.repository!r}: expected https://github.com/<owner>/<name>")
        if not _BRANCH.match(self.branch) or ".." in self.branch:
            raise HomeError(f"branch {self.branch!r}: not a branch name")
        if not self.install_source:
            object.__setattr__(self, "install_source", default_install_source(self.repository, self.branch))

    @property
    def slug(self) -> str:
        """``owner/name``."""
        return self.repository.removeprefix("https://github.com/")

    def notebook_path(self, notebook: str) -> str:
        """The notebook's path inside the repository, e.g. ``notebooks/01_lm_as_mdp.ipynb``."""
        return f"{NOTEBOOK_FOLDER}/{Path(notebook).name}"

    def colab_url(self, notebook: str) -> str:
        """The address that opens the notebook in Colab, straight from the repository."""
        return f"{COLAB}/github/{self.slug}/blob/{self.branch}/{self.notebook_path(notebook)}"

    def file_url(self, notebook: str) -> str:
        """The notebook's page in the repository."""
        return f"{self.repository}/blob/{self.branch}/{self.notebook_path(notebook)}"

    def addresses(self) -> list[str]:
        """Every address derived from this home that may appear in a text, longest first (for re-pointing)."""
        return sorted(
            {self.install_source, f"{COLAB}/github/{self.slug}/blob/{self.branch}/", f"{self.repository}.git",
             self.repository},
            key=len,
            reverse=True,
        )


def default_install_source(repository: str, branch: str = "main") -> str:
    """``git+<repository>``, with ``@<branch>`` unless the branch is ``main``."""
    return f"git+{repository}" + ("" if branch == "main" else f"@{branch}")


def load_home(path: str | Path = HOME_FILE) -> Home:
    """The home named in ``path`` (``psft_edu/course/home.json`` by default)."""
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HomeError(f"{path}: {err}") from None
    if not isinstance(values, dict) or "repository" not in values:
        raise HomeError(f"{path}: expected an object with 'repository', 'branch' and 'install_source'")
    unknown = sorted(set(values) - {"repository", "branch", "install_source"})
    if unknown:
        raise HomeError(f"{path}: unknown key(s) {', '.join(unknown)}")
    return Home(**values)


def write_home(home: Home, path: str | Path = HOME_FILE) -> None:
    """Write ``home`` to ``path`` atomically."""
    from ..data import atomic_write_bytes

    atomic_write_bytes(Path(path), (json.dumps(asdict(home), indent=2) + "\n").encode("utf-8"))


def repoint(text: str, old: Home, new: Home) -> str:
    """``text`` with every address of ``old`` replaced by the matching address of ``new``."""
    if old == new:
        return text
    mapping = {
        old.install_source: new.install_source,
        f"{COLAB}/github/{old.slug}/blob/{old.branch}/": f"{COLAB}/github/{new.slug}/blob/{new.branch}/",
        f"{old.repository}.git": f"{new.repository}.git",
        old.repository: new.repository,
    }
    pattern = re.compile("|".join(re.escape(a) for a in old.addresses()))
    return pattern.sub(lambda m: mapping[m.group(0)], text)


__all__ = ["HOME_FILE", "Home", "HomeError", "default_install_source", "load_home", "repoint", "write_home"]
