"""Run machinery shared by every training loop: the fine-tuning :class:`~psft_edu.engine.train.Trainer`
(also used by pretraining) and GRPO (:func:`psft_edu.engine.grpo_loop.grpo`).

One home for what a run does around its optimiser steps: refuse a run folder or device that
cannot work (one-line :class:`RunError`), write ``config.json``, append metric logs, write and
read checkpoints atomically and with ``weights_only=True``, turn Ctrl-C and SIGTERM into a flag
that the loop checks where its state is complete (:class:`StopSignals`), stop on a non-finite
loss or gradient (:func:`check_finite`), and run the forward passes in bf16 autocast on CUDA
(:func:`autocast`; nothing changes on CPU).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from ..data import atomic_write_bytes
from .outputs import (
    LOCK,
    MARKER,
    RunError,
    check_out,
    check_out_file,
    check_writable_folder,
    claim_data_folder,
    claim_folder,
    foreign_entries,
    release_folders,
    remove_made_folder,
)


class TrainingError(RuntimeError):
    """A run that cannot go on (for example a non-finite loss)."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during training; a checkpoint has been written.

    ``signum`` is the signal that stopped the run (``signal.SIGINT`` or ``signal.SIGTERM``).
    """

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum


# Settings that may differ between a run and its ``--resume``: how long it goes on and how
# often it evaluates and saves. Everything else must match the checkpoint's saved config.

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def check_run_folder(
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    model: str | Path | None = None,
    command: str = "train",
) -> None:
    """Refuse an ``--out`` that cannot hold this run of ``command``, before anything is written.

    The rule of every writing command (:func:`check_out`: not empty text, not a link, not the
    ``model`` being fine-tuned, not someone else's folder, an existing run only with ``resume`` or
    ``overwrite``), and for a run: no link at ``model/`` or ``model.old``, and with ``resume`` a
    ``checkpoint.pt`` to continue from. Raises :class:`RunError` with one line.
    """
    check_out(out, command, resume, overwrite, inputs=(model,))
    out = Path(out)
    for path in (out / "model", out / "model.old"):
        if path.is_symlink():
            raise RunError(f"--out {out}: {path} is a link; runs never write or delete through links, remove it first")
        foreign = foreign_entries(path)
        if foreign:  # saving the model at the end would refuse to replace it: say so before training
            raise RunError(f"--out {out}: {path} holds {foreign[0]}, which this package did not write; remove it first")
    if resume and not (out / "checkpoint.pt").is_file():
        raise RunError(f"--resume: {out} has no checkpoint.pt to continue from; run without --resume to start afresh")


def check_device(name: str | None) -> None:
    """Refuse a ``--device`` that torch does not know or this machine does not have (one-line :class:`RunError`)."""
    if name is None:
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RunError(f"--device {name}: not a device (try cpu, cuda, cuda:0 or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RunError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RunError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise RunError(f"--device {name}: MPS is not available on this machine")
    elif device.type != "cpu":
        raise RunError(f"--device {name}: only cpu, cuda and mps are supported")


def maybe_compile(model: torch.nn.Module, compile: bool = False) -> torch.nn.Module:
    """``torch.compile`` only on CUDA and only when asked; elsewhere the model unchanged."""
    device = next(model.parameters()).device
    if compile and device.type == "cuda":
        return torch.compile(model)  # type: ignore[return-value]
    return model


def check_model_fits(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None) -> None:
    """Refuse sizes that would only fail mid-run: a vocabulary smaller than the tokenizer's, or
    ``max_length`` above the model's positions (one-line :class:`RunError`)."""
    rows = model.get_input_embeddings().num_embeddings
    if rows < len(tokenizer):
        raise RunError(
            f"the model's vocabulary ({rows} tokens) is smaller than its tokenizer's ({len(tokenizer)} tokens); "
            "use the tokenizer the model was trained with"
        )
    positions = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    if max_length is not None and positions is not None and max_length > positions:
        raise RunError(f"--max-length {max_length} is above the model's {positions} positions")


def check_prompt_room(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    where: str,
    path: str | Path | None = None,
) -> None:
    """Refuse prompts that, with ``max_new_tokens`` sampled after them, would run past the model's positions
    (they fail mid-run otherwise): one-line :class:`RunError` naming the first, as ``path:line`` when the
    prompts come from a JSONL file, else as ``where, prompt n``."""
    from ..data import record_line

    positions = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    if positions is None or not prompts:
        return
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    for index, length in enumerate(lengths):
        if length + max_new_tokens > positions:
            place = f"{path}:{record_line(path, index)}" if path else f"{where}, prompt {index + 1}"
            raise RunError(
                f"{place}: {length} prompt tokens + {max_new_tokens} new tokens run past the model's {positions} "
                "positions"
            )


def config_differences(saved: dict, requested: dict, may_change: tuple[str, ...]) -> list[str]:
    """``"name: saved -> requested"`` for every setting that differs and may not change on resume."""
    return [
        f"{key}: {saved.get(key)!r} -> {requested.get(key)!r}"
        for key in sorted(set(saved) | set(requested))
        if key not in may_change and saved.get(key) != requested.get(key)
    ]


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain values, never code.

    A file that holds other objects (a crafted pickle) or cannot be read is refused with a
    one-line :class:`RunError`; nothing in it runs.
    """
    import pickle

    path = Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if found is None:
            raise RunError(f"{path}: corrupt or not a checkpoint (unreadable as tensors and plain values)") from None
        raise RunError(
            f"{path}: refused: it would load {found.group(1)}, not only tensors and plain values; nothing in it was run"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"{path}: corrupt or truncated checkpoint ({reason})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "step", "config"} <= set(state):
        raise RunError(f"{path}: not a checkpoint of this package (missing model, optimizer, step or config)")
    return state


def restore_state(path: str | Path, what: str, target, state: dict) -> None:
    """``target.load_state_dict(state)``; a state that does not fit (another model's checkpoint) is a one-line
    :class:`RunError` naming the checkpoint file, what part of it, and the first problem."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 and lines[0].endswith(":") else (lines[0] if lines else type(err).__name__)
        raise RunError(f"{path}: the {what} saved in it cannot be loaded into this run ({detail[:300]})") from None


def write_checkpoint(state: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place.

    If writing fails (a full disk, a file-size limit) the temporary file is removed, the
    previous checkpoint stays as it was, and :class:`TrainingError` says so in one line.
    """
    path = Path(path)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=".checkpoint.", suffix=".tmp", delete=False)
    try:
        with handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException as err:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(err, OSError):
            kept = "the previous checkpoint is kept" if path.exists() else "no checkpoint was written"
            raise TrainingError(f"could not write {path} ({err.strerror or err}); {kept}") from None
        raise


def remove_stale_temporaries(out: Path) -> None:
    """Delete ``.checkpoint.*.tmp`` left behind by a killed run (they only take space)."""
    for stale in out.glob(".checkpoint.*.tmp"):
        stale.unlink(missing_ok=True)


def read_log_until(path: Path, step: int) -> list[dict]:
    """Records of a JSONL log with ``"step" <= step``; rewrites the file to hold only those.

    A half-written last line (a run killed while appending) is dropped with a note on stderr;
    a broken line elsewhere is a :class:`RunError` naming ``file:line``.
    """
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    kept, raw = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            at = record["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            if number == len(lines):
                print(f"note: {path}:{number}: dropped a half-written last line", file=sys.stderr)
                continue
            raise RunError(f"{path}:{number}: not a log record; the log is damaged") from None
        if at <= step:
            kept.append(record)
            raw.append(line)
    atomic_write_bytes(path, "".join(line + "\n" for line in raw).encode())
    return kept


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def save_model_atomic(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase | None, folder: str | Path) -> None:
    """``save_pretrained`` into a temporary folder, then swap it into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    tmp.chmod(0o755)
    getattr(model, "_orig_mod", model).save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    old = folder.with_name(folder.name + ".old")
    for path in (folder, old):
        if path.is_symlink():
            remove_made_folder(tmp)
            raise RunError(f"{path} is a link; a model is never saved or deleted through a link")
    if old.exists():
        remove_made_folder(old)  # left by an interrupted save
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        remove_made_folder(old)


def save_model_into(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase | None, folder: str | Path) -> None:
    """Save a model's files into ``folder`` itself (a base checkpoint), each file swapped in by rename.

    Unlike :func:`save_model_atomic` the folder is not replaced, so whatever else this package keeps
    there (a manifest, a training log) stays; a file that is a link is refused, never written through.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".model."))
    getattr(model, "_orig_mod", model).save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    links = sorted(p.name for p in tmp.iterdir() if (folder / p.name).is_symlink())
    if links:
        remove_made_folder(tmp)
        raise RunError(f"{folder}: {links[0]} is a link; a model is never saved through a link")
    for path in sorted(tmp.iterdir()):
        os.replace(path, folder / path.name)
    tmp.rmdir()


# ---------------------------------------------------------------- the pieces a loop calls


def autocast(device: torch.device):
    """bf16 autocast for forward passes on CUDA; a no-op elsewhere (CPU runs stay bit for bit the same)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def start_run_folder(out: Path, resume: bool, logs: Iterable[str] = ("metrics.jsonl", "evals.jsonl")) -> bool:
    """Create ``out`` and clear leftovers; returns whether ``out/checkpoint.pt`` should be resumed.

    Without ``resume`` (or without a checkpoint to resume) the logs and the old checkpoint are
    removed, so the run starts afresh.
    """
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    if resume and (out / "checkpoint.pt").exists():
        return True
    for name in (*logs, "checkpoint.pt"):
        (out / name).unlink(missing_ok=True)
    return False


def command_line_of_process() -> str:
    """This process's command, shell-quoted so it can be pasted back: ``python -m psft_edu ...`` for the CLI."""
    import shlex

    words = list(sys.argv)
    if words and Path(words[0]).name == "__main__.py" and Path(words[0]).parent.name == "psft_edu":
        words = ["python", "-m", "psft_edu", *words[1:]]
    return shlex.join(words)


#: Flags of the running command that are not settings fields but shape the run (``train --data``,
#: ``--no-eval``; ``rl --split``): set by the command line, recorded in ``config.json`` so that it works
#: as a ``--config`` file that reproduces the run.
RECORDED_FLAGS: dict[str, object] = {}


def write_run_header(out: Path, cfg) -> None:
    """``out/config.json``: the run's settings (a dataclass), the flags of :data:`RECORDED_FLAGS`, the package's
    commit and the command line."""
    config = {**asdict(cfg), **RECORDED_FLAGS, "commit": git_commit(), "command": command_line_of_process()}
    atomic_write_bytes(out / "config.json", json.dumps(config, indent=2).encode())


def append_records(path: Path | None, records: Iterable[dict]) -> None:
    """Append ``records`` to the JSONL log ``path`` in one write (nothing when ``path`` is None)."""
    lines = [json.dumps(record) + "\n" for record in records]
    if path is not None and lines:
        with open(path, "a") as handle:
            handle.writelines(lines)


def checkpoint_note(out: Path | None) -> str:
    """Where a run that stops on an error left its state: the last good checkpoint, or none."""
    if out is not None and (out / "checkpoint.pt").exists():
        return f"the last good checkpoint is {out / 'checkpoint.pt'}"
    return "stopping; no checkpoint was saved before it"


def check_finite(
    step: int, values: Iterable[float], what: str, out: Path | None, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Raise :class:`TrainingError` for step ``step`` unless every number in ``values`` is finite.

    ``what`` names the numbers in the message (e.g. ``"loss or gradient (loss=nan)"``); the
    gradients of ``optimizer`` are dropped first, so nothing of the bad step is applied.
    """
    if not all(math.isfinite(v) for v in values):
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        raise TrainingError(f"step {step}: non-finite {what}; {checkpoint_note(out)}")


class StopSignals:
    """Within ``with StopSignals() as stop:``, Ctrl-C and SIGTERM only set ``stop.requested``.

    The loop checks the flag where its state is complete, saves, and raises :meth:`interrupted`.
    Outside the main thread (where handlers cannot be installed) the signals act as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signum: int = signal.SIGINT
        self._previous: dict[int, object] = {}

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self.requested = True
        self.signum = signum

    def __enter__(self) -> StopSignals:
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        if previous[signal.SIGINT] is not None and threading.current_thread() is threading.main_thread():
            self._previous = previous
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def interrupted(self, step: int, out: Path | None) -> Interrupted:
        """The :class:`Interrupted` to raise once the checkpoint of ``step`` is written."""
        what = "terminated (SIGTERM)" if self.signum == signal.SIGTERM else "interrupted"
        where = f"checkpoint saved to {out / 'checkpoint.pt'}, continue with --resume" if out else "nothing saved"
        return Interrupted(f"{what} at step {step}; {where}", self.signum)


def restore_rng(state: dict) -> None:
    """Set torch's CPU (and, when present, CUDA) random state from a checkpoint."""
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def rng_state() -> dict:
    """torch's CPU and CUDA random state, as a checkpoint stores it."""
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


__all__ = [
    "Interrupted",
    "LOCK",
    "MARKER",
    "RECORDED_FLAGS",
    "RunError",
    "StopSignals",
    "TrainingError",
    "append_records",
    "autocast",
    "check_device",
    "check_finite",
    "check_model_fits",
    "check_out",
    "check_out_file",
    "check_prompt_room",
    "check_run_folder",
    "check_writable_folder",
    "claim_data_folder",
    "claim_folder",
    "command_line_of_process",
    "config_differences",
    "git_commit",
    "maybe_compile",
    "read_checkpoint",
    "read_log_until",
    "release_folders",
    "remove_made_folder",
    "remove_stale_temporaries",
    "restore_rng",
    "restore_state",
    "rng_state",
    "save_model_atomic",
    "save_model_into",
    "start_run_folder",
    "write_checkpoint",
    "write_run_header",
]
