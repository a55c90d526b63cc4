"""Plumbing for the notebooks' live runs (notebook 07: RL after SFT and after PSFT).

A notebook shows the committed results of an experiment; with ``PSFT_EDU_LIVE=1`` it runs the
experiment again instead. The code that turns a results file back into runs (which checkpoints,
fine-tuned how, with which GRPO settings) lives here, so the notebook cell stays one call:

* :func:`finetune_checkpoints` fine-tunes the base model of a preset once per objective with the
  comparison's budget (notebook 06) and returns the saved checkpoints;
* :func:`parse_run_name` reads ``sft_lr1e-03_seed1`` back into (objective, learning rate, seed);
* :func:`rl_config_from_settings` rebuilds the :class:`psft_edu.engine.grpo_loop.RLConfig` recorded in a result;
* :func:`rerun_rl_experiment` runs a recorded ``rl-compare`` experiment again.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from ..presets import DEFAULT_PRESET

RUN_NAME = re.compile(r"(sft|psft)_lr([0-9.e+-]+?)(?:_seed(\d+))?")


def parse_run_name(name: str) -> tuple[str, float, int] | None:
    """``"psft_lr1e-03_seed2"`` -> ``("psft", 0.001, 2)``; the seed defaults to 0; None for other names (``"base"``)."""
    found = RUN_NAME.fullmatch(name)
    if not found:
        return None
    try:
        lr = float(found[2])
    except ValueError:
        return None
    return found[1], lr, int(found[3] or 0)


def finetune_checkpoints(
    preset: str,
    out: str | Path,
    objectives: tuple[str, ...] = ("sft", "psft"),
    lr: float | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    records: list[dict] | None = None,
) -> dict[str, Path]:
    """Fine-tune the base model of ``preset`` once per objective; returns ``{objective: checkpoint folder}``.

    Every run uses the comparison's settings at that preset (:data:`psft_edu.experiments.compare.SETTINGS`: steps,
    global batch and mini-batch; learning rate ``lr``, default its higher rate), the same seed and the
    same data (``records``, default the shipped ``sft_train`` split), so the checkpoints differ only by
    the objective. Each one is saved to ``out/<objective>/model``.
    """
    import torch

    from ..data import load_split
    from ..engine.train import TrainConfig, Trainer
    from ..experiments.build_base import load_with_base
    from ..experiments.compare import SETTINGS

    if preset not in SETTINGS:
        raise ValueError(f"no comparison settings for preset {preset!r}; known: {', '.join(SETTINGS)}")
    settings = SETTINGS[preset]
    records = records if records is not None else load_split("sft_train")
    out = Path(out)
    checkpoints = {}
    for objective in objectives:
        torch.manual_seed(seed)
        model, tokenizer = load_with_base(preset)
        cfg = TrainConfig(
            objective=objective,
            lr=settings.high_lr if lr is None else lr,
            max_steps=max_steps or settings.max_steps,
            global_batch=settings.global_batch,
            mini_batch=settings.mini_batch,
            seed=seed,
            log_kl=False,
            init=preset,
        )
        Trainer(model, tokenizer, records, cfg, out=out / objective, progress=False).train()
        checkpoints[objective] = out / objective / "model"
    return checkpoints


def rl_config_from_settings(settings: dict):
    """The :class:`psft_edu.engine.grpo_loop.RLConfig` recorded in a result's ``settings`` (extra keys are ignored)."""
    from ..engine.grpo_loop import RLConfig

    names = {f.name for f in fields(RLConfig)} - {"init"}
    return RLConfig(**{name: settings[name] for name in names if name in settings})


def resolve_init(path: str, root: Path | None = None) -> Path:
    """A recorded checkpoint path as a local path: relative paths are taken from the repository root."""
    from ..paths import REPO_ROOT

    candidate = Path(path)
    return candidate if candidate.is_absolute() else (root or REPO_ROOT) / candidate


def rerun_rl_experiment(
    cached: dict, workdir: str | Path, records: list[dict] | None = None, progress: bool = False
) -> dict:
    """Run a recorded ``rl-compare`` experiment (e.g. ``notebooks/results/rl_small.json``) again.

    For every run of ``cached``: its starting checkpoint is used when it exists on this machine
    (e.g. ``runs/compare/...`` after ``make compare``); a missing SFT or PSFT checkpoint is
    fine-tuned first, into ``workdir``, with the objective, learning rate and seed that its name
    records and the comparison's budget at the result's preset; other names (``"base"``) are loaded
    as recorded (a preset name loads the base model). GRPO then runs with the recorded settings,
    training prompts and evaluation sets. Returns the new result, in the same shape as ``cached``.
    """
    from .. import data
    from ..experiments.rl_experiment import rl_after_finetuning, training_prompts

    settings = cached["settings"]
    preset = cached.get("preset", DEFAULT_PRESET)
    workdir = Path(workdir)
    inits: dict[str, str] = {}
    for name, run in cached["runs"].items():
        path = resolve_init(run["init"])
        parsed = parse_run_name(name)
        if not path.exists() and parsed is not None:
            objective, lr, seed = parsed
            path = finetune_checkpoints(preset, workdir / f"{preset}_{name}", (objective,), lr=lr, seed=seed,
                                        records=records)[objective]
        inits[name] = str(path) if path.exists() else run["init"]
    prompts = training_prompts(settings["split"], settings.get("num_prompts", 512), settings.get("prompt_seed", 1))
    evals = {family: data.eval_prompts(family, n) for family, n in settings["eval_prompts_per_family"].items()}
    return rl_after_finetuning(
        inits,
        prompts,
        rl_config_from_settings(settings),
        evals,
        settings["eval_samples"],
        progress=progress,
        show_prompts=settings["show_prompts"],
        show_samples=settings["show_samples"],
        command="notebook 07 with PSFT_EDU_LIVE=1",
    )
