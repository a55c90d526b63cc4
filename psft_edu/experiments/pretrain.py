"""Pretraining the base models: plain next-token training on the mixture of all task families.

It is the same :class:`~psft_edu.engine.train.Trainer` with the ``sft`` objective, one
mini-batch per global batch and a cosine schedule; only the data makes it "pretraining":
every family, clean answers drawn uniformly from the valid set, except ``make_sum``'s noisy
ones (:func:`psft_edu.tasks.pretrain_completion`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .. import tasks
from ..data import atomic_write_bytes, eval_prompts, load_split
from ..engine.evaluate import evaluate_model
from ..engine.outputs import mark_folder, remove_made_folder
from ..engine.runs import command_line_of_process, git_commit, save_model_into
from ..engine.train import TrainConfig, Trainer
from ..models import load_tokenizer, new_model, pick_device
from ..paths import user_checkpoint_dir
from ..presets import get_preset

MANIFEST = "manifest.json"
TRAINING = "training"  # sub-folder of the training log (metrics.jsonl, config.json)
MANIFEST_PROMPTS = 100  # prompts per family in the manifest's evaluation table
MANIFEST_SAMPLES = 8
MANIFEST_SEED = 0


def base_evaluation(model: torch.nn.Module, tokenizer, prompts: int = MANIFEST_PROMPTS) -> dict:
    """The evaluation table stored in a base checkpoint's manifest (and reproduced by a test)."""
    per_family = {f: eval_prompts(f, prompts) for f in tasks.FAMILIES}
    return evaluate_model(model, tokenizer, per_family, MANIFEST_SAMPLES, seed=MANIFEST_SEED)


def pretrain(
    preset: str,
    out: str | Path | None = None,
    seed: int = 0,
    steps: int | None = None,
    device: str | None = None,
    progress: bool = True,
    eval_prompts: int = MANIFEST_PROMPTS,
) -> Path:
    """Train the preset's base model from scratch and save it with a manifest.

    ``progress`` shows a progress bar with the time left; ``eval_prompts`` is the number of
    prompts per family in the manifest's evaluation table.
    """
    p = get_preset(preset)
    out = Path(out) if out else user_checkpoint_dir(p.name)  # never inside an installed package
    tokenizer = load_tokenizer()
    model = new_model(p, tokenizer, seed=seed).to(pick_device(device))
    cfg = TrainConfig(
        objective="sft",
        lr=p.pretrain_lr,
        max_steps=steps or p.pretrain_steps,
        global_batch=p.pretrain_batch,
        mini_batch=p.pretrain_batch,
        warmup_steps=100,
        schedule="cosine",
        weight_decay=0.01,
        seed=seed,
        log_kl=False,
        log_mechanism=False,
    )
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    mark_folder(out, "pretrain")  # also when called from Python (the base build): a later CLI call knows it
    work = out / TRAINING  # the trainer's log; its checkpoint and model copy are removed once the model is saved
    Trainer(model, tokenizer, load_split("pretrain"), cfg, out=work, progress=progress).train()
    seconds = time.time() - started
    model.eval()
    table = base_evaluation(model, tokenizer, prompts=eval_prompts)
    save_model_into(model, tokenizer, out)
    (work / "checkpoint.pt").unlink(missing_ok=True)
    if (work / "model").is_dir():
        remove_made_folder(work / "model")
    manifest = {
        "preset": p.name,
        "command": command_line_of_process(),
        "seed": seed,
        "steps": cfg.max_steps,
        "commit": git_commit(),
        "train_seconds": round(seconds, 1),
        "device": str(next(model.parameters()).device),
        "parameters": sum(t.numel() for t in model.parameters()),
        "evaluation": {
            "prompts_per_family": eval_prompts,
            "samples": MANIFEST_SAMPLES,
            "seed": MANIFEST_SEED,
            "results": table,
        },
    }
    atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=2).encode())
    return out
