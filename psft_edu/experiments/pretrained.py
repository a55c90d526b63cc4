"""A real pretrained model in the comparison: mid-training on the task world, and perplexity on English.

``python -m psft_edu compare --model hf:gpt2`` (or any causal-LM folder or hub id that brings its
own tokenizer) cannot start SFT vs PSFT straight away: a model that never saw the task world
has no out-of-domain skill to forget. So the comparison first **mid-trains** it for a short
while on the same mixture the preset bases were pretrained on (``data/pretrain.jsonl``: the
four out-of-domain families with clean answers, and ``make_sum`` with the noisy, spread-out
answers, never the SFT teacher's style). The mid-trained model is saved atomically in
``<out>/base`` and is the base of every run; a later comparison with the same settings reuses it.

A real language model can also forget *language*. :func:`perplexity` measures that on a short
held-out English text shipped in ``data/english_heldout.txt`` (see ``data/README.md``), and
:func:`report_lm_retention` adds it to the comparison's ``summary.json`` and ``report.md``: the
model as loaded, after mid-training, and every fine-tuned run's final model.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from ..data import atomic_write_bytes, load_split
from ..engine.runs import git_commit, save_model_atomic
from ..engine.train import TrainConfig, Trainer
from ..models import load_model, pick_device, weights_fingerprint
from ..paths import DATA_DIR
from ..stats import describe, paired_difference

HELDOUT_TEXT = "english_heldout.txt"
MIDTRAIN_STEPS = 1000  # optimiser steps of mid-training (batch 32): about 2 epochs of data/pretrain.jsonl
MIDTRAIN_BATCH = 32
MIDTRAIN_LR = 1e-4
PERPLEXITY_WINDOW = 256  # tokens per scored window (cut to the model's context length)
MANIFEST = "midtrain.json"


def heldout_text(root: str | Path = DATA_DIR) -> str:
    """The held-out English text used for perplexity."""
    path = Path(root) / HELDOUT_TEXT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the held-out English text is missing")
    return path.read_text(encoding="utf-8")


@torch.no_grad()
def perplexity(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, text: str, window: int = PERPLEXITY_WINDOW
) -> dict[str, float]:
    r"""Perplexity of ``text`` under ``model``: :math:`\exp(\frac{1}{N}\sum_t -\log p(x_t \mid x_{<t}))`.

    The text is tokenized once and cut into consecutive windows of ``window`` tokens (at most
    the model's context); inside each window every token after the first is scored given the
    tokens before it in that window. Returns ``{"perplexity", "nll", "tokens"}`` (``tokens`` =
    N, the number of scored tokens).
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    window = min(window, limit) if limit else window
    if window < 2 or len(ids) < 2:
        raise ValueError(
            f"perplexity needs at least 2 tokens per window and in the text (window {window}, text {len(ids)})"
        )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = torch.tensor([ids[start : start + window]], device=device)
        if chunk.shape[1] < 2:
            break
        logits = model(input_ids=chunk).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[0, :-1], chunk[0, 1:], reduction="sum")
        total += float(nll)
        count += chunk.shape[1] - 1
    model.train(was_training)
    mean = total / count
    return {"perplexity": math.exp(mean), "nll": mean, "tokens": count}


def _no_dropout(model: torch.nn.Module) -> None:
    """Dropout off, in the modules and in the saved config (as for the course's own models).

    PSFT compares the current policy with a frozen copy; with dropout on, the two would differ
    even before any update.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for key, value in model.config.to_dict().items():
        if isinstance(value, float) and ("pdrop" in key or "dropout" in key):
            setattr(model.config, key, 0.0)


def midtrain(
    spec: str,
    out: str | Path,
    steps: int | None = None,
    lr: float = MIDTRAIN_LR,
    batch: int = MIDTRAIN_BATCH,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Mid-train the model ``spec`` on the task world's pretraining mixture; returns the saved folder.

    Plain next-token training on the completions of ``data/pretrain.jsonl`` with the model's own
    tokenizer (AdamW, short warm-up, cosine decay, dropout off). ``out`` receives the model, its
    tokenizer and ``midtrain.json`` (settings, time, loss, perplexity on the held-out English
    text before and after). A folder made earlier with the same settings is reused as it is.
    """
    steps = steps or MIDTRAIN_STEPS
    out = Path(out)
    # The source's weights are part of the key: a folder whose weights changed is mid-trained again.
    settings = {"source": str(spec), "weights": weights_fingerprint(spec), "steps": steps, "lr": lr, "batch": batch,
                "seed": seed}
    manifest_path = out / MANIFEST
    if (out / "config.json").exists() and manifest_path.exists():
        previous = json.loads(manifest_path.read_text())
        if previous.get("settings") == settings:
            print(f"mid-trained base reused: {out}", file=sys.stderr, flush=True)
            return out
    model, tokenizer = load_model(spec, device=device or pick_device())
    _no_dropout(model)
    text = heldout_text()
    before = perplexity(model, tokenizer, text)
    cfg = TrainConfig(
        objective="sft",
        lr=lr,
        max_steps=steps,
        global_batch=batch,
        mini_batch=batch,
        warmup_steps=min(100, steps // 10),
        schedule="cosine",
        weight_decay=0.01,
        seed=seed,
        log_kl=False,
        log_mechanism=False,
        init=str(spec),
    )
    print(f"mid-training {spec} on the task world: {steps} steps of {batch} sequences", file=sys.stderr, flush=True)
    started = time.time()
    records = load_split("pretrain")
    records = records[: max(batch, steps * batch)]  # only what the steps will see (the file is already shuffled)
    history = Trainer(model, tokenizer, records, cfg, progress=progress).train()
    seconds = time.time() - started
    after = perplexity(model, tokenizer, text)
    model.eval()
    save_model_atomic(model, tokenizer, out)
    manifest = {
        "settings": settings,
        "commit": git_commit(),
        "train_seconds": round(seconds, 1),
        "device": str(next(model.parameters()).device),
        "parameters": sum(t.numel() for t in model.parameters()),
        "first_loss": history[0]["loss"],
        "last_loss": history[-1]["loss"],
        "heldout_text": HELDOUT_TEXT,
        "perplexity_before": before,
        "perplexity_after": after,
    }
    atomic_write_bytes(manifest_path, json.dumps(manifest, indent=2).encode())
    return out


VIEW_FOLDERS = (("main", None), ("long", "long"))  # (folder under the comparison's output, key in summary.json)


def report_lm_retention(
    summary: dict,
    spec: str,
    base: str | Path,
    out: str | Path,
    pairs: Callable[[dict], list[tuple[str, str, str]]],
    device: str | None = None,
) -> dict:
    """Perplexity on the held-out English text of the original model, the mid-trained base and every run.

    ``pairs(view)`` names the SFT/PSFT pairs whose per-seed differences are reported
    (:func:`psft_edu.experiments.results.pairings`).

    Reads the final models the comparison saved under ``<out>/<view>/<run>_seed<k>/model``, adds
    ``summary["lm_retention"]`` (and ``summary["model"]``), rewrites ``summary.json`` and appends a
    section to ``report.md``; returns the new entry.
    """
    out, base = Path(out), Path(base)
    text = heldout_text()
    manifest = json.loads((base / MANIFEST).read_text())
    retention: dict = {
        "text": f"data/{HELDOUT_TEXT}",
        "tokens": manifest["perplexity_after"]["tokens"],
        "original": manifest["perplexity_before"]["perplexity"],
        "base": manifest["perplexity_after"]["perplexity"],
    }
    for folder, key in VIEW_FOLDERS:
        if key and key not in summary:
            continue
        view = summary[key] if key else summary
        runs = {}
        for name, run in view["runs"].items():
            values = []
            for seed in run["seeds"]:
                model, tokenizer = load_model(out / folder / f"{name}_seed{seed}" / "model", device=device)
                values.append(perplexity(model, tokenizer, text)["perplexity"])
                del model
            runs[name] = describe(values)
        paired = {}
        for label, sft, psft in pairs(view):
            paired[label] = paired_difference(runs[sft]["per_seed"], runs[psft]["per_seed"])
        retention[folder] = {"runs": runs, "paired": paired}
    summary["model"] = str(spec)
    summary["lm_retention"] = retention
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=1).encode())
    report = out / "report.md"
    previous = report.read_text() if report.exists() else ""
    # The report's title names the base; say which model that base came from.
    previous = previous.replace(f"`{summary['preset']}` preset", f"`{spec}`, mid-trained on the task world", 1)
    atomic_write_bytes(report, (previous + "\n".join(retention_lines(summary)) + "\n").encode())
    return retention


def _stat(stat: dict) -> str:
    from .report import fmt

    return fmt(stat)


def retention_lines(summary: dict) -> list[str]:
    """Markdown: the language-modelling retention section of the report."""
    r = summary["lm_retention"]
    lines = [
        "",
        "## Language-modelling retention",
        "",
        f"Model: `{summary['model']}`, mid-trained on the task world before fine-tuning. Perplexity on held-out "
        f"English text (`{r['text']}`, {r['tokens']} scored tokens of the model's own tokenizer); lower is better. "
        "Fine-tuned runs: mean [95% interval over seeds].",
        "",
        "| model | perplexity |",
        "| --- | --- |",
        f"| as loaded | {r['original']:.2f} |",
        f"| after mid-training (the base) | {r['base']:.2f} |",
    ]
    for folder, _ in VIEW_FOLDERS:
        if folder in r:
            lines += [f"| {folder}: {name} | {_stat(stat)} |" for name, stat in r[folder]["runs"].items()]
    paired = [
        (folder, label, d) for folder, _ in VIEW_FOLDERS if folder in r for label, d in r[folder]["paired"].items()
    ]
    if paired:
        lines += ["", "Paired differences SFT − PSFT of perplexity (positive: SFT forgot more English):", ""]
        lines += ["| view | pairing | Δ perplexity |", "| --- | --- | --- |"]
        lines += [f"| {folder} | {label} | {_stat(d)} |" for folder, label, d in paired]
    return lines


__all__ = [
    "HELDOUT_TEXT",
    "MIDTRAIN_STEPS",
    "heldout_text",
    "midtrain",
    "perplexity",
    "report_lm_retention",
    "retention_lines",
]
