"""Where the course reads its data from and where it writes.

Two layouts are supported:

* **a checkout** of the repository (also an editable install): the data is the top-level ``data/``
  folder beside the package and the committed notebook results are in ``notebooks/results/``;
* **an installed wheel** (``pip install .`` or from a git URL, as a hosted notebook does): the same
  files travel inside the package, under ``psft_edu/_course/`` with the repository's layout
  (``_course/data/...``, ``_course/notebooks/results/...``), mapped there by ``pyproject.toml``.

``$PSFT_EDU_DATA`` replaces the data folder in both. Shipped data is only read: anything the course
writes by default (a base checkpoint made with ``pretrain``) goes to a user cache, ``$PSFT_EDU_CACHE``
or else ``$XDG_CACHE_HOME/psft-edu`` (``~/.cache/psft-edu``), never into the installed package. Runs
and reports go where their ``--out`` says, relative to the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "PSFT_EDU_DATA"
CACHE_ENV = "PSFT_EDU_CACHE"

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_ROOT = PACKAGE_DIR / "_course"


def _is_checkout(root: Path) -> bool:
    """A repository checkout: the data folder (with its tokenizer) and pyproject.toml beside the package."""
    return (root / "data" / "tokenizer").is_dir() and (root / "pyproject.toml").is_file()


IN_CHECKOUT = _is_checkout(PACKAGE_DIR.parent)
#: The course's root: the repository checkout, or the copy of its data and results inside the package.
REPO_ROOT = PACKAGE_DIR.parent if IN_CHECKOUT else SHIPPED_ROOT
SHIPPED_DATA_DIR = REPO_ROOT / "data"
DATA_DIR = Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else SHIPPED_DATA_DIR
TOKENIZER_DIR = DATA_DIR / "tokenizer"
CHECKPOINT_DIR = DATA_DIR / "checkpoints"
RESULTS_DIR = REPO_ROOT / "notebooks" / "results"


def cache_dir() -> Path:
    """The user's writable folder for the course (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "psft-edu"


def data_is_read_only() -> bool:
    """True when the data folder is the copy inside an installed package (no checkout, no override)."""
    return DATA_DIR == SHIPPED_DATA_DIR and not IN_CHECKOUT


def user_checkpoint_dir(preset: str) -> Path:
    """Where ``pretrain`` writes a preset's base model by default: ``<cache>/checkpoints/<preset>``.

    Never the shipped checkpoints (a checkout's ``data/checkpoints`` included): replacing those takes an
    explicit ``--out``.
    """
    return cache_dir() / "checkpoints" / preset


def built_checkpoint_dir(preset: str) -> Path:
    """Where a missing preset base is built on first use (:mod:`psft_edu.experiments.build_base`): always the
    user cache."""
    return cache_dir() / "checkpoints" / preset


def base_checkpoint_dir(preset: str) -> Path:
    """The base checkpoint a preset name loads: the user's own (pretrained or built into the cache) first, else
    the shipped one (:func:`base_source` says which, in words).
    """
    own = user_checkpoint_dir(preset)
    if (own / "config.json").exists():
        return own
    shipped = CHECKPOINT_DIR / preset
    return shipped if (shipped / "config.json").exists() else own


def base_source(preset: str) -> str:
    """Where a preset's base comes from, for a message: ``"<folder> (shipped with the course)"`` or
    ``"<folder> (your cache: pretrained or built on this machine)"``."""
    folder = base_checkpoint_dir(preset)
    if folder.is_relative_to(CHECKPOINT_DIR):
        return f"{folder} (shipped with the course)"
    return f"{folder} (your cache: pretrained or built on this machine; {CACHE_ENV} moves it)"


__all__ = [
    "CACHE_ENV",
    "CHECKPOINT_DIR",
    "DATA_DIR",
    "DATA_ENV",
    "IN_CHECKOUT",
    "PACKAGE_DIR",
    "REPO_ROOT",
    "RESULTS_DIR",
    "SHIPPED_DATA_DIR",
    "SHIPPED_ROOT",
    "TOKENIZER_DIR",
    "base_checkpoint_dir",
    "base_source",
    "built_checkpoint_dir",
    "cache_dir",
    "data_is_read_only",
    "user_checkpoint_dir",
]
