r"""GRPO: the RL stage after SFT or PSFT, built on the very same clipped objective.

PSFT and GRPO minimise one loss, :func:`psft_edu.objectives.ppo_clip_loss`. They differ
only in where the tokens and the advantages come from:

==============  ===================================  ==========================================
                tokens                               advantage :math:`\hat A_t`
==============  ===================================  ==========================================
PSFT            demonstrations from a data set       1 on every completion token
GRPO            the model's own samples              the group-normalised verifier reward
==============  ===================================  ==========================================

One GRPO step:

1. take ``prompts_per_step`` prompts and sample ``group_size`` completions for each;
2. score every completion with the task verifier (reward 1 or 0);
3. normalise the rewards within each prompt's group (:func:`group_advantages`), so a
   completion is pushed up when it beats its siblings and down when it loses to them;
   no value network ("critic") is needed;
4. freeze the old policy (one no-grad forward for ``old_logp``), then take
   ``updates_per_step`` optimiser steps on mini-batches of the samples with the clipped
   loss; the clip starts to bite from the second mini-batch on, once the policy moved.

The upper clip bound is larger than the lower one (``clip_high = 0.28``, "clip-higher"
as in DAPO): unlikely tokens that turned out well may gain more probability before the
clip stops them, which keeps the entropy from collapsing during RL.

The experiment built on it (GRPO from several fine-tuned checkpoints) is in
:mod:`psft_edu.experiments.rl_experiment`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from .. import objectives as obj
from .. import tasks
from ..config import SettingError, check_settings, setting
from ..data import Batch, collate, load_split, read_jsonl
from ..objectives import group_advantages
from . import runs
from .evaluate import Samples, sample

# Settings that may differ between a GRPO run and its ``--resume`` (length and cadence);
# everything else must match the checkpoint's saved config.
RL_RESUMABLE_SETTINGS = ("steps", "save_every", "eval_every", "eval_prompts", "eval_samples")


@dataclass
class RLConfig:
    """Settings of one GRPO run; each field is also a flag of ``python -m psft_edu rl`` and ``rl-compare``."""

    lr: float = setting(1e-4, "peak learning rate (AdamW)", check="positive")
    steps: int = setting(30, "sampled batches; each gives --updates-per-step optimiser steps", check="positive")
    group_size: int = setting(8, "completions sampled per prompt (at least 2)", check="positive")
    prompts_per_step: int = setting(16, "prompts per sampled batch", check="positive")
    clip_low: float = setting(
        obj.PPO_CLIP, "lower clip: the ratio of a below-average completion stops at 1 - this", check="non-negative"
    )
    clip_high: float = setting(obj.PSFT_CLIP, "upper clip (clip-higher, as in DAPO; PSFT's epsilon)", check="positive")
    beta: float = setting(0.0, "weight of the KL-to-reference penalty (k3 estimator); 0: none", check="non-negative")
    updates_per_step: int = setting(2, "optimiser steps (mini-batches) per frozen old policy", check="positive")
    temperature: float = setting(1.0, "sampling temperature", check="positive")
    max_new_tokens: int = setting(16, "longest sampled completion in tokens", check="positive")
    agg: str = setting("token-mean", "how token losses are averaged", choices=obj.AGGREGATIONS)
    weight_decay: float = setting(0.0, "AdamW weight decay", check="non-negative")
    grad_clip: float = setting(1.0, "gradient-norm clipping threshold", check="positive")
    seed: int = setting(0, "seed of prompt order, sampling and evaluation")
    save_every: int = setting(0, "steps between checkpoints; 0: only at the end and on Ctrl-C", check="non-negative")
    eval_every: int = setting(0, "steps between evaluations; 0: only at the end", check="non-negative")
    eval_prompts: int = setting(32, "evaluation prompts per task family", check="positive")
    eval_samples: int = setting(4, "samples per evaluation prompt (k of pass@k)", check="positive")
    init: str = setting("", "what the model was loaded from, recorded in config.json", cli=False)
    prompts: str = setting("", "the prompts' source and the SHA-256 of their text (--resume refuses others)", cli=False)

    def __post_init__(self) -> None:
        check_settings(self)
        if self.group_size < 2:
            raise SettingError(
                f"{{0}} must be at least 2 (advantages compare samples of one prompt), got {self.group_size}",
                "group_size",
            )
        if self.updates_per_step > self.prompts_per_step * self.group_size:
            raise SettingError(
                "{0} cannot exceed the samples per step ({1} x {2})",
                "updates_per_step",
                "prompts_per_step",
                "group_size",
            )


# ---------------------------------------------------------------- pure pieces


def load_prompts(split: str) -> list[str]:
    """Prompts of a shipped split (``"rl_hard"``, ``"eval/make_sum"``, ...) or of a JSONL file."""
    path = Path(split)
    if path.suffix == ".jsonl" or path.is_file():
        return [r["prompt"] for r in read_jsonl(path)]
    return [r["prompt"] for r in load_split(split)]


def prompts_for_step(prompts: list[str], step: int, cfg: RLConfig) -> list[str]:
    """The ``prompts_per_step`` prompts of step ``step`` (0-based).

    Epoch after epoch the prompts are visited in a seeded random order, so the batch of a
    step depends only on the seed and the step number (which makes resuming exact).
    """
    picked, orders = [], {}
    for position in range(step * cfg.prompts_per_step, (step + 1) * cfg.prompts_per_step):
        epoch, index = divmod(position, len(prompts))
        if epoch not in orders:
            orders[epoch] = torch.randperm(
                len(prompts), generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
            ).tolist()
        picked.append(prompts[orders[epoch][index]])
    return picked


def rollout_batch(tokenizer: PreTrainedTokenizerBase, prompts: list[str], samples: Samples) -> Batch:
    """Prompt + sampled completion token ids, one row per sample (prompt-major order).

    The ids are the sampled ones, not a re-encoding of the text; the eos token is part of a
    completion only when the model produced it. ``mask`` marks the sampled tokens.
    """
    ids, prompt_lengths = [], []
    for prompt, completions in zip(prompts, samples.token_ids):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for completion in completions:
            ids.append(prompt_ids + completion)
            prompt_lengths.append(len(prompt_ids))
    return collate(ids, prompt_lengths, tokenizer.pad_token_id)


def sample_metrics(prompts: list[str], samples: Samples, rewards: torch.Tensor) -> dict[str, float]:
    """Reward, pass@1, pass@k, entropy, distinct correct answers and length of one step's samples."""
    k = len(samples.texts[0])
    correct = rewards.reshape(len(prompts), k) > 0
    distinct = [len({t for t, ok in zip(texts, oks) if ok}) for texts, oks in zip(samples.texts, correct.tolist())]
    entropies = [e for per_prompt in samples.entropies for per_sample in per_prompt for e in per_sample]
    lengths = [len(ids) for per_prompt in samples.token_ids for ids in per_prompt]
    spread = rewards.reshape(len(prompts), k).float().std(dim=-1, unbiased=False)
    return {
        "reward": rewards.float().mean().item(),
        "pass@1": correct.float().mean().item(),
        f"pass@{k}": correct.any(dim=-1).float().mean().item(),
        "entropy": sum(entropies) / max(len(entropies), 1),
        "distinct_valid": sum(distinct) / len(prompts),
        "completion_length": sum(lengths) / len(lengths),
        "zero_signal_groups": (spread == 0).float().mean().item(),
    }


@torch.no_grad()
def _frozen_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    return obj.token_logprobs(_logits(model, batch), batch.targets)


def _logits(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The model's logits on ``batch``, in bf16 autocast on CUDA (:func:`psft_edu.engine.runs.autocast`)."""
    with runs.autocast(batch.input_ids.device):
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def update_policy(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    advantages: torch.Tensor,
    cfg: RLConfig,
    reference: torch.nn.Module | None = None,
) -> dict[str, float]:
    """Freeze the old policy on ``batch``, then take ``cfg.updates_per_step`` clipped updates.

    ``advantages`` has one value per row; it is broadcast over that row's completion tokens.
    The rows are cut into ``updates_per_step`` consecutive mini-batches, one optimiser step
    each; all of them share the same frozen ``old_logp``, so from the second one on the
    ratio differs from 1 and the clip can act.
    Returns the statistics averaged over the updates (loss, clip_fraction, ratio_mean,
    ratio_max, k3_old_new, grad_norm and, with ``beta > 0``, kl_to_ref).
    """
    old_logp = _frozen_logprobs(model, batch)
    ref_logp = _frozen_logprobs(reference, batch) if reference is not None else None
    token_adv = advantages[:, None].expand_as(batch.mask)
    totals: dict[str, float] = {}
    for rows in torch.arange(len(batch)).tensor_split(cfg.updates_per_step):
        mini = batch[rows]
        logp = obj.token_logprobs(_logits(model, mini), mini.targets)
        # The same clipped surrogate as PSFT; only the advantages differ.
        loss, stats = obj.ppo_clip_loss(
            logp, old_logp[rows], token_adv[rows], mini.mask, cfg.clip_low, cfg.clip_high, cfg.agg
        )
        if ref_logp is not None:
            kl = obj.kl_to_reference(logp, ref_logp[rows], mini.mask, cfg.agg)
            loss = loss + cfg.beta * kl
            stats["kl_to_ref"] = kl.detach()
        if not torch.isfinite(loss):
            optimizer.zero_grad(set_to_none=True)
            raise runs.TrainingError(f"non-finite loss ({loss.item()})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if not torch.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)
            raise runs.TrainingError(f"non-finite gradient norm ({grad_norm.item()})")
        optimizer.step()
        values = {"loss": loss.detach(), **stats, "grad_norm": grad_norm}
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + float(value) / cfg.updates_per_step
    optimizer.zero_grad(set_to_none=True)
    totals.pop("ratio_min", None)
    return totals


# ---------------------------------------------------------------- checkpoints and logs


def _save_checkpoint(out: Path, model, optimizer, reference, step: int, cfg: RLConfig) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "reference": reference.state_dict() if reference is not None else None,
        "step": step,
        **runs.rng_state(),
        "config": asdict(cfg),
    }
    runs.write_checkpoint(state, out / "checkpoint.pt")


def _load_checkpoint(path: Path, model, optimizer, reference, cfg: RLConfig | None = None) -> int:
    """Restore ``path`` (``weights_only=True``); with ``cfg``, refuse a run saved with other settings."""
    device = next(model.parameters()).device
    state = runs.read_checkpoint(path, device)
    if cfg is not None:
        differences = runs.config_differences(state["config"], asdict(cfg), RL_RESUMABLE_SETTINGS)
        if differences:
            raise runs.RunError(f"{path}: --resume with other settings than the saved run ({'; '.join(differences)})")
        if state["step"] > cfg.steps:
            raise runs.RunError(f"{path}: the checkpoint is at step {state['step']}, past --steps {cfg.steps}")
    runs.restore_state(path, "model weights", model, state["model"])
    runs.restore_state(path, "optimizer state", optimizer, state["optimizer"])
    if reference is not None and state.get("reference") is not None:
        runs.restore_state(path, "reference model", reference, state["reference"])
    runs.restore_rng(state)
    return state["step"]


def _read_log(path: Path, up_to_step: int) -> list[dict]:
    """Records of a JSONL log with ``step <= up_to_step``; the file is rewritten to hold only those
    (a half-written last line is dropped with a note, see :func:`psft_edu.engine.runs.read_log_until`)."""
    return runs.read_log_until(path, up_to_step)


def _append(path: Path | None, record: dict) -> None:
    runs.append_records(path, [record])


# ---------------------------------------------------------------- the loop


def _penalty_reference(model: torch.nn.Module, reference: torch.nn.Module | None, cfg: RLConfig):
    """The frozen model of the KL penalty: ``reference`` or a copy of ``model`` now; None when ``beta <= 0``
    (no penalty: the reference's forward pass is skipped)."""
    if cfg.beta <= 0:
        return None
    return (reference if reference is not None else copy.deepcopy(model)).eval().requires_grad_(False)


def grpo(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    cfg: RLConfig,
    out: str | Path | None = None,
    reference: torch.nn.Module | None = None,
    eval_fn: Callable[[torch.nn.Module, int], dict] | None = None,
    progress: bool = True,
    resume: bool = False,
) -> list[dict]:
    """Train ``model`` with GRPO on ``prompts`` (verified by :func:`psft_edu.tasks.verify`).

    ``out`` (optional) receives ``metrics.jsonl`` (one line per step, written as it
    happens), ``evals.jsonl``, ``config.json``, ``checkpoint.pt`` (every ``save_every``
    steps and at the end) and the final ``model/``. ``reference`` is the model of the KL
    penalty (default: a frozen copy of ``model`` as it is now; only used when ``beta > 0``).
    ``eval_fn(model, step)`` returns a dict appended to ``evals.jsonl`` every ``eval_every``
    steps and at the end. ``resume=True`` continues from ``out/checkpoint.pt`` when it exists.
    Ctrl-C saves a checkpoint and raises :class:`psft_edu.engine.runs.Interrupted`.

    Returns the per-step metric records of the whole run (earlier steps included on resume).
    """
    if not prompts:
        raise ValueError("grpo needs at least one prompt")
    out = Path(out) if out is not None else None
    reference = _penalty_reference(model, reference, cfg)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    step, history, evals = 0, [], []
    metrics_path = out / "metrics.jsonl" if out is not None else None
    evals_path = out / "evals.jsonl" if out is not None else None
    if out is not None:
        if runs.start_run_folder(out, resume):
            step = _load_checkpoint(out / "checkpoint.pt", model, optimizer, reference, cfg)
            history, evals = _read_log(metrics_path, step), _read_log(evals_path, step)
        runs.write_run_header(out, cfg)

    def evaluate() -> None:
        if eval_fn is None or (evals and evals[-1]["step"] == step):
            return
        was_training = model.training
        model.eval()
        record = {"step": step, **eval_fn(model, step)}
        model.train(was_training)
        evals.append(record)
        _append(evals_path, record)

    def save() -> None:
        if out is not None:
            _save_checkpoint(out, model, optimizer, reference, step, cfg)

    bar = tqdm(total=cfg.steps, initial=step, desc="grpo", disable=not progress, leave=False)
    try:
        with runs.StopSignals() as stop:
            if step == 0 and cfg.eval_every:
                evaluate()
            while step < cfg.steps:
                record = _grpo_step(model, tokenizer, optimizer, reference, prompts, step, cfg, out)
                step += 1
                history.append(record)
                _append(metrics_path, record)
                bar.update(1)
                bar.set_postfix(reward=f"{record['reward']:.3f}", entropy=f"{record['entropy']:.3f}")
                if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                    evaluate()
                if cfg.save_every and step % cfg.save_every == 0:
                    save()
                if stop.requested:
                    save()
                    raise stop.interrupted(step, out)
            evaluate()
            save()
            if out is not None:
                runs.save_model_atomic(model, tokenizer, out / "model")
    finally:
        bar.close()
    return history


def _grpo_step(model, tokenizer, optimizer, reference, prompts: list[str], step: int, cfg: RLConfig, out) -> dict:
    """Step ``step`` (0-based) of :func:`grpo`: sample, score, normalise, update; its metric record."""
    device = next(model.parameters()).device
    batch_prompts = prompts_for_step(prompts, step, cfg)
    # Seeded by the step alone, so a resumed run draws the same samples.
    samples = sample(
        model, tokenizer, batch_prompts, cfg.group_size, cfg.temperature, cfg.max_new_tokens,
        seed=cfg.seed * 1000003 + step,
    )  # fmt: skip
    rewards = torch.tensor([float(tasks.verify(p, t)) for p, group in zip(batch_prompts, samples.texts) for t in group])
    advantages = group_advantages(rewards, cfg.group_size)
    batch = rollout_batch(tokenizer, batch_prompts, samples).to(device)
    try:
        stats = update_policy(model, optimizer, batch, advantages.to(device), cfg, reference)
    except runs.TrainingError as err:
        raise runs.TrainingError(f"step {step + 1}: {err}; {runs.checkpoint_note(out)}") from None
    return {
        "step": step + 1,
        **sample_metrics(batch_prompts, samples, rewards),
        **stats,
        "lr": optimizer.param_groups[0]["lr"],
    }


__all__ = [
    "RL_RESUMABLE_SETTINGS",
    "RLConfig",
    "group_advantages",
    "grpo",
    "load_prompts",
    "prompts_for_step",
    "rollout_batch",
    "sample_metrics",
    "update_policy",
]
