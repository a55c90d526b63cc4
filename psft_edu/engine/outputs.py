"""Output folders: the one rule every command that writes follows.

A command writes only into a new or empty ``--out``, or into one the same command made before (a
marker file, :data:`MARKER`, names the command); an earlier run there is kept unless ``--resume`` or
``--overwrite`` says otherwise. It never writes or deletes through a link, never writes into the model
folder it reads, and holds a lock (:data:`LOCK`) so that a second process cannot write into the same
folder. It deletes only what it wrote, by name (:func:`remove_made_folder`), and a command that stops
before writing leaves the folder as it found it (:func:`release_folders`). Refusals are one line
(:class:`RunError`), before anything is written.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..data import atomic_write_bytes


class RunError(ValueError):
    """A run folder or checkpoint that cannot be used as asked; the message is one line."""


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried, since ``os.access`` says yes to root)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_writable_folder(out: str | Path, flag: str = "--out") -> None:
    """``out`` must be a folder this process can write in, or one it can create (one-line :class:`RunError`)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"{flag} {out}: is a file, not a folder")
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunError(f"{flag} {out}: {existing} is a file, not a folder")
    if not _writable(existing):
        raise RunError(f"{flag} {out}: cannot write in {existing}")


# ---------------------------------------------------------------- output folders: one rule for every command

MARKER = ".psft-edu-run"  # {"command": ...}: this folder was made by that command of this package
LOCK = ".psft-edu-lock"  # held (flock) by the process writing into the folder
_HELD: dict[Path, tuple[int, Path | None]] = {}  # locked by this process: folder -> (descriptor, topmost folder made)


def mark_folder(out: Path, command: str) -> None:
    """Write ``out``'s marker: this folder is ``command``'s (the folder must exist)."""
    atomic_write_bytes(Path(out) / MARKER, json.dumps({"command": command}).encode())


def _made_by(out: Path) -> str | None:
    """The command that made ``out`` (from its marker), or None."""
    try:
        return str(json.loads((out / MARKER).read_text())["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _other_holder(fd: int) -> str | None:
    """Take the lock on the open lock file ``fd``; if another process holds it, its pid (as written), else None.

    Without ``flock`` (Windows) there is no lock and None is returned: the rest of the rule still holds.
    """
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return os.read(fd, 32).decode(errors="replace").strip() or "?"
    return None


def _lock(out: Path, made: Path | None) -> None:
    """Hold ``out/.psft-edu-lock`` until :func:`release_folders` or the process ends; refuse a second writer."""
    key = out.resolve()
    if key in _HELD:
        return
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    holder = _other_holder(fd)
    if holder is not None:
        os.close(fd)
        raise RunError(f"--out {out}: another process (pid {holder}) is writing into it; wait or choose another folder")
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _HELD[key] = (fd, made)


def _writer(out: Path) -> str | None:
    """The pid of another process holding ``out``'s lock, or None."""
    if out.resolve() in _HELD or not (out / LOCK).is_file():
        return None
    fd = os.open(out / LOCK, os.O_RDONLY)
    try:
        return _other_holder(fd)
    finally:
        os.close(fd)  # closing also drops a lock taken just now


def release_folders() -> None:
    """Give up every output folder this process holds (the end of a command).

    A folder the command left with nothing but its marker and lock (it stopped before writing) is
    put back as it was: those two files are removed, and the folders it created are removed again.
    """
    while _HELD:
        folder, (fd, made) = _HELD.popitem()
        os.close(fd)
        if not folder.is_dir() or {p.name for p in folder.iterdir()} - {MARKER, LOCK}:
            continue
        for name in (MARKER, LOCK):
            (folder / name).unlink(missing_ok=True)
        while made is not None and folder.is_relative_to(made) and not any(folder.iterdir()):
            folder.rmdir()
            if folder == made:
                break
            folder = folder.parent


def check_out(
    out: str | Path,
    command: str,
    resume: bool = False,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
    can_resume: bool = True,
) -> None:
    """The one rule for an output folder, checked before anything is written (one-line :class:`RunError`).

    Refused: empty text; a link; a folder given as input (``inputs``, e.g. the model being
    fine-tuned); a non-empty folder this package did not make, or made with another command; a
    folder holding a run of ``command`` unless ``resume`` or ``overwrite`` says what to do with it.
    """
    flag = "--out"
    if not str(out).strip():
        raise RunError(f"{flag} is empty: give the folder the {command} command should write to")
    out = Path(out)
    if resume and overwrite:
        raise RunError("--resume and --overwrite exclude each other: continue the run or replace it")
    if out.is_symlink():
        raise RunError(f"{flag} {out}: is a link; nothing is written or deleted through links, give a real folder")
    for given in inputs:
        if given and Path(given).is_dir() and Path(given).resolve() in (out.resolve(), (out / "model").resolve()):
            raise RunError(f"{flag} {out}: that is the model folder this command reads ({given}); give another folder")
    check_writable_folder(out, flag)
    writer = _writer(out) if out.is_dir() else None
    if writer is not None:
        raise RunError(f"{flag} {out}: another process (pid {writer}) is writing into it; wait or give another folder")
    entries = sorted(p.name for p in out.iterdir() if p.name not in (MARKER, LOCK)) if out.is_dir() else []
    made = _made_by(out) if out.is_dir() else None
    if not entries and made in (None, command):
        return
    if made is None:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise RunError(
            f"{flag} {out}: holds files this package did not write ({shown}); give a new or empty folder"
        )
    if made != command:
        raise RunError(f"{flag} {out}: holds a {made} run, not a {command} one; give another folder")
    if not (resume or overwrite):
        how = "replace it with --overwrite"
        if can_resume:
            how = "continue it with --resume or " + how
        raise RunError(f"{flag} {out}: already holds a {command} run; {how}")


def check_out_file(path: str | Path, command: str, overwrite: bool = False, flag: str = "--out") -> None:
    """The rule for a command that writes one JSON file (``eval --out``, ``bench --out``): not empty text, not a
    link or a folder; an existing file only if this command wrote it (its ``written_by``) and ``overwrite``."""
    if not str(path).strip():
        raise RunError(f"{flag} is empty: give the file the {command} command should write")
    path = Path(path)
    if path.is_symlink():
        raise RunError(f"{flag} {path}: is a link; nothing is written through links, give a real file")
    if path.is_dir():
        raise RunError(f"{flag} {path}: is a folder; {command} writes one JSON file")
    check_writable_folder(path.absolute().parent, flag)
    if not path.exists():
        return
    try:
        made = json.loads(path.read_text()).get("written_by")
    except (OSError, ValueError, AttributeError):
        made = None
    if made != command:
        raise RunError(f"{flag} {path}: a file this package's {command} command did not write; give a new file")
    if not overwrite:
        raise RunError(f"{flag} {path}: already holds a {command} result; replace it with --overwrite")


def claim_data_folder(folder: str | Path, names: Iterable[str]) -> Path:
    """The rule for ``data``: write only into a folder that holds nothing but the course's data (``names``, the
    checkpoints, the README and the English text), and hold its lock while writing."""
    folder = Path(folder)
    if folder.is_symlink():
        raise RunError(f"{folder}: is a link; nothing is written through links, give a real folder")
    check_writable_folder(folder, "data folder")
    allowed = {*names, "checkpoints", "README.md", "english_heldout.txt", MARKER, LOCK}
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in allowed) if folder.is_dir() else []
    if foreign:
        raise RunError(f"{folder}: holds {foreign[0]}, which is not the course's data; give a folder of its own")
    links = sorted(p.name for p in folder.iterdir() if p.is_symlink()) if folder.is_dir() else []
    if links:
        raise RunError(f"{folder}: {links[0]} is a link; nothing is written through links")
    folder.mkdir(parents=True, exist_ok=True)
    writer = _writer(folder)
    if writer is not None:
        raise RunError(f"{folder}: another process (pid {writer}) is writing into it; wait for it")
    _lock(folder, None)
    return folder


def forget_results(out: str | Path, names: Iterable[str]) -> None:
    """Remove the result files ``names`` a call of the same command left in ``out`` (a summary, a report), so that
    a call that is interrupted before writing its own never leaves the old ones beside new runs."""
    for name in names:
        path = Path(out) / name
        if path.is_symlink() or path.is_file():
            path.unlink()  # a link is removed itself, never what it points to


def claim_folder(
    out: str | Path,
    command: str,
    resume: bool = False,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
    can_resume: bool = True,
) -> Path:
    """Check ``out`` (:func:`check_out`), then create it, mark it as ``command``'s and lock it.

    The lock refuses a second process writing into the same folder, in one line. Commands delete or
    replace only the files they write there, by name, and never through a link; a command that stops
    before writing anything leaves the folder as it found it (:func:`release_folders`).
    """
    check_out(out, command, resume, overwrite, inputs, can_resume)
    out = Path(out)
    made = None  # the topmost folder this call creates, removed again if the command writes nothing
    for folder in (out.absolute(), *out.absolute().parents):
        if folder.exists():
            break
        made = folder
    out.mkdir(parents=True, exist_ok=True)
    _lock(out, made.resolve() if made is not None else None)
    if _made_by(out) != command:
        mark_folder(out, command)
    return out


def foreign_entries(folder: Path) -> list[str]:
    """Names in a folder of files this package writes (a saved model) that it cannot have written: links and
    sub-folders (empty when ``folder`` is not a folder)."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_symlink() or not p.is_file())


def remove_made_folder(folder: str | Path) -> None:
    """Delete a folder of files this package wrote (a saved model), never following a link.

    Everything is checked before anything is deleted: the folder itself must not be a link and may hold
    only regular files; a link or a subfolder inside means someone else's files, and :class:`RunError`
    says so in one line with nothing removed.
    """
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise RunError(f"{folder}: not a folder this package wrote (a link or a file); left alone")
    foreign = foreign_entries(folder)
    if foreign:
        raise RunError(f"{folder}: holds {', '.join(foreign)}, which this package did not write; left alone")
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()


__all__ = [
    "LOCK",
    "MARKER",
    "RunError",
    "check_out",
    "check_out_file",
    "check_writable_folder",
    "claim_data_folder",
    "claim_folder",
    "foreign_entries",
    "forget_results",
    "mark_folder",
    "release_folders",
    "remove_made_folder",
]
