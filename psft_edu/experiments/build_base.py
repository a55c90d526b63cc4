"""Building a preset's base model on first use.

The ``tiny`` and ``small`` bases ship with the course; the ``gpt2`` base (124M parameters) does
not. When a preset's base is missing, :func:`ensure_base` builds it with
:func:`psft_edu.experiments.pretrain.pretrain` into the user cache (``paths.built_checkpoint_dir``, never the
installed package), where every later run finds it. Before it starts it times a few pretraining
steps, so the one-line message can say how long the build will take; the progress bar then shows
the time left.

On a CPU the build is refused with that estimate instead (the ``gpt2`` base would take many hours
there), unless ``$PSFT_EDU_BUILD_BASE`` says otherwise:

* unset or ``auto``: build on a GPU (or Apple's MPS), refuse on the CPU;
* ``1`` (or ``yes``, ``force``): build on whatever device there is, the CPU included;
* ``0`` (or ``no``, ``never``): never build; report the missing checkpoint.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from ..data import load_split
from ..engine.train import TrainConfig, Trainer
from ..models import load_model, load_tokenizer, new_model, pick_device
from ..paths import base_checkpoint_dir, built_checkpoint_dir
from ..presets import PRESETS, get_preset, preset_name

BUILD_ENV = "PSFT_EDU_BUILD_BASE"
PROBE_STEPS = 2  # timed pretraining steps, after one untimed warm-up step
CPU_PROBE_BATCH = 4  # sequences per probe step on the CPU (the time is scaled to the full batch)


class BaseRefused(FileNotFoundError):
    """The base checkpoint is missing and will not be built here; the message says why and what to do."""


def build_policy() -> str:
    """``"auto"``, ``"force"`` or ``"never"``, from ``$PSFT_EDU_BUILD_BASE``."""
    raw = os.environ.get(BUILD_ENV, "").strip().lower()
    if raw in ("", "auto"):
        return "auto"
    if raw in ("1", "yes", "true", "force", "on"):
        return "force"
    if raw in ("0", "no", "false", "never", "off"):
        return "never"
    raise ValueError(
        f"${BUILD_ENV}={raw!r}: use 1 (build anywhere), 0 (never build) or leave it unset (build on a GPU only)"
    )


def format_duration(seconds: float) -> str:
    """A rough, readable duration: ``"40 s"``, ``"12 min"``, ``"3 h 20 min"``, ``"2.5 days"``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{seconds / 86400:.1f} days"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def probe_seconds_per_step(
    preset: str, device: torch.device | str | None = None, steps: int = PROBE_STEPS, batch: int | None = None
) -> float:
    """Seconds per pretraining step of the preset at its full batch, from a few timed steps.

    The probe trains a throw-away model with the pretraining settings. On the CPU it uses a
    smaller batch (:data:`CPU_PROBE_BATCH`) and scales the time by the batch ratio, which keeps
    the probe to seconds even for the 124M model.
    """
    p = get_preset(preset)
    device = torch.device(device) if device is not None else pick_device()
    if batch is None:
        batch = min(CPU_PROBE_BATCH, p.pretrain_batch) if device.type == "cpu" else p.pretrain_batch
    tokenizer = load_tokenizer()
    model = new_model(p, tokenizer, seed=0).to(device)
    records = load_split("pretrain")[: batch * (steps + 1)]
    cfg = TrainConfig(
        objective="sft",
        lr=p.pretrain_lr,
        max_steps=1,
        global_batch=batch,
        mini_batch=batch,
        warmup_steps=0,
        weight_decay=0.01,
        log_kl=False,
        log_mechanism=False,
    )
    trainer = Trainer(model, tokenizer, records, cfg, progress=False)
    trainer.train()  # warm-up: allocations, kernel selection
    _sync(device)
    started = time.perf_counter()
    cfg.max_steps = 1 + steps
    trainer.train()
    _sync(device)
    seconds = (time.perf_counter() - started) / steps
    del trainer, model
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the probe's model and optimiser state, before the real build
    return seconds * p.pretrain_batch / batch


def estimate_build_seconds(preset: str, device: torch.device | str | None = None) -> tuple[float, float]:
    """``(total seconds, seconds per step)`` of pretraining the preset's base on ``device``.

    On the CPU a step is timed at two small batches and the time extended along the line through them
    to the full batch: a step costs a fixed part plus a part per sequence, and scaling one small batch's
    time by the batch ratio would multiply the fixed part too (for ``tiny`` that overstated the build
    tens of times).
    """
    p = get_preset(preset)
    device = torch.device(device) if device is not None else pick_device()
    small, large = min(CPU_PROBE_BATCH, p.pretrain_batch), min(2 * CPU_PROBE_BATCH, p.pretrain_batch)
    if device.type != "cpu" or large <= small:
        per_step = probe_seconds_per_step(preset, device)
    else:  # the probe reports its time scaled to the full batch: undo that, then fit time = fixed + slope * batch
        at_small = probe_seconds_per_step(preset, device, batch=small) * small / p.pretrain_batch
        at_large = probe_seconds_per_step(preset, device, batch=large) * large / p.pretrain_batch
        slope = max(0.0, (at_large - at_small) / (large - small))
        per_step = max(at_large, at_small + slope * (p.pretrain_batch - small))
    return per_step * p.pretrain_steps, per_step


def ensure_base(preset: str, device: str | torch.device | None = None, progress: bool = True) -> Path:
    """The folder of the preset's base checkpoint, built on first use where that is allowed.

    Returns at once when the checkpoint exists (shipped, pretrained by the user, or built
    before). Otherwise, following ``$PSFT_EDU_BUILD_BASE`` (see the module docstring), it either
    pretrains the base into the user cache with a progress bar, or raises :class:`BaseRefused`
    with a one-line message: the estimated build time on this device and how to force it.
    """
    p = get_preset(preset)
    existing = base_checkpoint_dir(p.name)
    if (existing / "config.json").exists():
        return existing
    target = built_checkpoint_dir(p.name)
    policy = build_policy()
    if policy == "never":
        raise BaseRefused(
            f"no `{p.name}` base checkpoint ({target}); ${BUILD_ENV}=0 forbids building it: unset it, "
            f"or run `python -m psft_edu pretrain --preset {p.name}`"
        )
    device = torch.device(device) if device is not None else pick_device()
    total, per_step = estimate_build_seconds(p.name, device)
    how = f"{p.pretrain_steps} steps at {per_step:.3g} s each, timed on {PROBE_STEPS} steps"
    if device.type == "cpu" and policy != "force":
        raise BaseRefused(
            f"no `{p.name}` base checkpoint yet, and building it on this CPU would take about {format_duration(total)} "
            f"({how}); run on a GPU, or set {BUILD_ENV}=1 to build it here anyway (it is cached in {target})"
        )
    print(
        f"no `{p.name}` base checkpoint yet: building it now on {device.type}, about {format_duration(total)} "
        f"({how}); it is cached in {target} for later runs",
        file=sys.stderr,
        flush=True,
    )
    from .pretrain import pretrain

    with _build_lock(target):
        if (target / "config.json").exists():  # another process built it while this one waited
            return target
        started = time.time()
        pretrain(p.name, out=target, device=str(device), progress=progress)
    print(
        f"built the `{p.name}` base in {format_duration(time.time() - started)}: {target}", file=sys.stderr, flush=True
    )
    return target


def load_with_base(
    spec: str | Path | None = None, device: str | torch.device | None = None
) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """:func:`psft_edu.models.load_model`, with a preset's missing base built first where that is allowed
    (:func:`ensure_base`); a folder or an ``hf:`` id is loaded as it is."""
    if spec is None or str(spec) in PRESETS:
        ensure_base(preset_name(str(spec) if spec else None), device=device)
    return load_model(spec, device=device)


@contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    """One build of a base at a time: an exclusive lock on ``<target>.lock`` (POSIX; elsewhere none)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = [
    "BUILD_ENV",
    "BaseRefused",
    "build_policy",
    "ensure_base",
    "estimate_build_seconds",
    "format_duration",
    "load_with_base",
    "probe_seconds_per_step",
]
