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

:func:`rl_after_finetuning` (command line: ``python -m psft_edu rl-compare``) runs GRPO with
one configuration and seed from several starting checkpoints, typically an SFT and a PSFT
model, and evaluates every task family before, during and after RL; :func:`fresh_prompts`
draws training prompts that are in none of the shipped splits.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from . import objectives as obj
from . import tasks
from .data import Batch, DataError, atomic_write_bytes, collate, load_split, read_jsonl, uncovered_characters
from .evaluate import Samples, sample
from .objectives import group_advantages  # its home is objectives; still importable from here
from .runs import (
    RunError,
    StopSignals,
    TrainingError,
    append_records,
    autocast,
    check_model_fits,
    check_run_folder,
    checkpoint_note,
    config_differences,
    load_model_for_run,
    read_checkpoint,
    read_log_until,
    restore_rng,
    rng_state,
    save_model_atomic,
    start_run_folder,
    write_checkpoint,
    write_run_header,
)

# Settings that may differ between a GRPO run and its ``--resume`` (length and cadence);
# everything else must match the checkpoint's saved config.
RL_RESUMABLE_SETTINGS = ("steps", "save_every", "eval_every", "eval_prompts", "eval_samples")


@dataclass
class RLConfig:
    """Settings of one GRPO run."""

    lr: float = 1e-4
    steps: int = 30  # sampled batches; each gives ``updates_per_step`` optimiser steps
    group_size: int = 8  # completions per prompt
    prompts_per_step: int = 16
    clip_low: float = 0.2
    clip_high: float = obj.PSFT_CLIP  # clip-higher, as in DAPO (the same epsilon as PSFT)
    beta: float = 0.0  # weight of the KL-to-reference penalty (k3 estimator); 0: none
    updates_per_step: int = 2  # mini-batches (optimiser steps) per frozen old policy
    temperature: float = 1.0
    max_new_tokens: int = 16
    agg: str = "token-mean"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 0  # 0: only at the end
    eval_every: int = 0  # 0: only at the end (when an eval_fn is given)
    eval_prompts: int = 32  # used by the command line's evaluation
    eval_samples: int = 4
    init: str = ""  # what the model was loaded from, recorded in config.json

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.lr <= 0:
            raise ValueError("steps and lr must be positive")
        if self.group_size < 2:
            raise ValueError(
                f"group_size must be at least 2 (advantages compare samples of one prompt), got {self.group_size}"
            )
        if self.prompts_per_step <= 0 or self.updates_per_step <= 0:
            raise ValueError("prompts_per_step and updates_per_step must be positive")
        if self.updates_per_step > self.prompts_per_step * self.group_size:
            raise ValueError("updates_per_step cannot exceed the number of samples per step")
        if self.agg not in obj.AGGREGATIONS:
            raise ValueError(f"agg must be one of {obj.AGGREGATIONS}, got {self.agg!r}")


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
    """The model's logits on ``batch``, in bf16 autocast on CUDA (:func:`psft_edu.runs.autocast`)."""
    with autocast(batch.input_ids.device):
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
    ratio_max, approx_kl, grad_norm and, with ``beta > 0``, kl_to_ref).
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
            raise TrainingError(f"non-finite loss ({loss.item()})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if not torch.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)
            raise TrainingError(f"non-finite gradient norm ({grad_norm.item()})")
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
        **rng_state(),
        "config": asdict(cfg),
    }
    write_checkpoint(state, out / "checkpoint.pt")


def _load_checkpoint(path: Path, model, optimizer, reference, cfg: RLConfig | None = None) -> int:
    """Restore ``path`` (``weights_only=True``); with ``cfg``, refuse a run saved with other settings."""
    device = next(model.parameters()).device
    state = read_checkpoint(path, device)
    if cfg is not None:
        differences = config_differences(state["config"], asdict(cfg), RL_RESUMABLE_SETTINGS)
        if differences:
            raise RunError(f"{path}: --resume with other settings than the saved run ({'; '.join(differences)})")
        if state["step"] > cfg.steps:
            raise RunError(f"{path}: the checkpoint is at step {state['step']}, past --steps {cfg.steps}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if reference is not None and state.get("reference") is not None:
        reference.load_state_dict(state["reference"])
    restore_rng(state)
    return state["step"]


def _read_log(path: Path, up_to_step: int) -> list[dict]:
    """Records of a JSONL log with ``step <= up_to_step``; the file is rewritten to hold only those
    (a half-written last line is dropped with a note, see :func:`psft_edu.train.read_log_until`)."""
    return read_log_until(path, up_to_step)


def _append(path: Path | None, record: dict) -> None:
    append_records(path, [record])


# ---------------------------------------------------------------- the loop


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
    Ctrl-C saves a checkpoint and raises :class:`psft_edu.train.Interrupted`.

    Returns the per-step metric records of the whole run (earlier steps included on resume).
    """
    if not prompts:
        raise ValueError("grpo needs at least one prompt")
    out = Path(out) if out is not None else None
    if cfg.beta <= 0:
        reference = None  # no penalty: skip the reference's forward pass
    else:
        reference = (reference if reference is not None else copy.deepcopy(model)).eval().requires_grad_(False)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    step, history, evals = 0, [], []
    metrics_path = out / "metrics.jsonl" if out is not None else None
    evals_path = out / "evals.jsonl" if out is not None else None
    if out is not None:
        if start_run_folder(out, resume):
            step = _load_checkpoint(out / "checkpoint.pt", model, optimizer, reference, cfg)
            history, evals = _read_log(metrics_path, step), _read_log(evals_path, step)
        write_run_header(out, cfg)

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
        with StopSignals() as stop:
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
                save_model_atomic(model, tokenizer, out / "model")
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
    except TrainingError as err:
        raise TrainingError(f"step {step + 1}: {err}; {checkpoint_note(out)}") from None
    return {
        "step": step + 1,
        **sample_metrics(batch_prompts, samples, rewards),
        **stats,
        "lr": optimizer.param_groups[0]["lr"],
    }


# ---------------------------------------------------------------- RL after SFT vs after PSFT


def fresh_prompts(size: int, seed: int = 1, family: str = tasks.IN_DOMAIN, **kwargs) -> list[str]:
    """``size`` distinct new prompts of ``family`` drawn with ``random.Random(seed)``.

    Every prompt of the shipped evaluation splits is left out, so training on these never
    touches the held-out evaluation set (prompts of the SFT data may recur: the RL stage
    practises the task it was fine-tuned on). ``kwargs`` go to the family's generator
    (e.g. ``count=7, max_value=29`` for harder ``make_sum`` prompts).
    """
    import random

    excluded = {r["prompt"] for f in tasks.FAMILIES for r in load_split(f"eval/{f}")}
    rng, picked, seen = random.Random(seed), [], set()
    for _ in range(200 * size):
        prompt = tasks.generate(family, rng, **kwargs).prompt
        if prompt not in excluded and prompt not in seen:
            seen.add(prompt)
            picked.append(prompt)
            if len(picked) == size:
                return picked
    raise ValueError(f"could not draw {size} distinct new {family} prompts")


def _summary_row(run: dict, window: int = 5) -> dict[str, float]:
    """Headline numbers of one run: first and last ``window`` steps, before and after evaluation."""
    metrics = run["metrics"]
    k = next(key for key in metrics[0] if key.startswith("pass@") and key != "pass@1")

    def mean(key: str, part: list[dict]) -> float:
        return sum(r[key] for r in part) / len(part)

    window = max(1, min(window, len(metrics) // 2))
    head, tail = metrics[:window], metrics[-window:]
    before, after = run["before"]["summary"], run["after"]["summary"]
    return {
        "reward_first": mean("reward", head),
        "reward_last": mean("reward", tail),
        f"{k}_first": mean(k, head),
        f"{k}_last": mean(k, tail),
        "entropy_first": mean("entropy", head),
        "entropy_last": mean("entropy", tail),
        "distinct_valid_first": mean("distinct_valid", head),
        "distinct_valid_last": mean("distinct_valid", tail),
        "zero_signal_first": mean("zero_signal_groups", head),
        "zero_signal_last": mean("zero_signal_groups", tail),
        "in_domain_before": before["in_domain_accuracy"],
        "in_domain_after": after["in_domain_accuracy"],
        "ood_before": before["ood_accuracy"],
        "ood_after": after["ood_accuracy"],
    }


def _rounded(value, digits: int = 5):
    """``value`` with every float rounded to ``digits`` significant digits (keeps the JSON small)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def _preset_of(model: torch.nn.Module) -> str:
    """The name of the preset whose shape ``model`` has (``"custom"`` if none)."""
    from .presets import preset_of_shape

    return preset_of_shape(model.config.n_layer, model.config.n_head, model.config.n_embd)


def rl_after_finetuning(
    inits: dict[str, str | Path],
    prompts: list[str],
    cfg: RLConfig,
    eval_prompts_per_family: dict[str, list[str]],
    samples: int = 8,
    out: str | Path | None = None,
    progress: bool = False,
    show_prompts: list[str] | None = None,
    show_samples: int = 6,
    command: str = "",
    device: str | None = None,
) -> dict:
    """GRPO from each checkpoint in ``inits`` with one config and seed; a JSON-able result.

    ``inits`` maps a run name (e.g. ``"sft"``, ``"psft"``) to what
    :func:`psft_edu.models.load_model` accepts. Every run sees the same prompts in the same
    order and draws with the same seeds, so the runs differ only by where they start.
    Each run is evaluated on ``eval_prompts_per_family`` (``samples`` per prompt) before
    RL, every ``cfg.eval_every`` steps and at the end; each evaluation also keeps
    ``show_samples`` completions (temperature 1) of each of ``show_prompts``.

    Returns ``{"settings", "command", "runs": {name: {"init", "metrics", "evals", "before",
    "after", "seconds"}}, "table"}``: ``metrics`` is the list of per-step records of
    :func:`grpo` (reward, pass@k, entropy, distinct_valid, zero_signal_groups, clip
    statistics...), ``evals`` the evaluations (``step``, :func:`psft_edu.evaluate.evaluate_model`'s
    families and ``summary``, ``samples``), ``before``/``after`` the first and last of them,
    ``table`` the headline numbers of :func:`_summary_row`. With ``out``, each run's files
    go to ``out/<name>/`` and the result to ``out/rl_compare.json``.
    """
    import time

    from .evaluate import evaluate_model
    from .models import load_model

    if not inits:
        raise ValueError("rl_after_finetuning needs at least one initial checkpoint")
    held_out = {p for ps in eval_prompts_per_family.values() for p in ps}
    leaked = [p for p in prompts if p in held_out]
    if leaked:
        raise ValueError(
            f"{len(leaked)} training prompts are evaluation prompts too (e.g. {leaked[0]!r}); train on other prompts"
        )
    show_prompts = list(show_prompts or [])
    out = Path(out) if out is not None else None
    runs, preset = {}, ""
    for name, init in inits.items():
        run_cfg = RLConfig(**{**asdict(cfg), "init": str(init)})
        model, tokenizer = load_model(str(init), device=device)
        preset = preset or _preset_of(model)
        evals: list[dict] = []

        def eval_fn(m: torch.nn.Module, step: int, tokenizer=tokenizer, evals=evals) -> dict:
            result = evaluate_model(m, tokenizer, eval_prompts_per_family, samples, seed=cfg.seed)
            shown = {}
            if show_prompts:
                drawn = sample(m, tokenizer, show_prompts, show_samples, 1.0, cfg.max_new_tokens, seed=cfg.seed)
                shown = dict(zip(show_prompts, drawn.texts))
            evals.append({"step": step, **result, "samples": shown})
            return {"summary": result["summary"]}

        if progress:
            print(f"[rl-compare] {name}: GRPO from {init}", flush=True)
        started = time.time()
        if not run_cfg.eval_every:
            eval_fn(model, 0)  # before RL (with eval_every, grpo evaluates step 0 itself)
        history = grpo(
            model, tokenizer, prompts, run_cfg, out=out / name if out else None, eval_fn=eval_fn, progress=progress
        )
        runs[name] = {
            "init": str(init),
            "metrics": history,
            "evals": evals,
            "before": evals[0],
            "after": evals[-1],
            "seconds": round(time.time() - started, 1),
        }
    result = {
        "preset": preset,
        "settings": {
            **asdict(cfg),
            "eval_prompts_per_family": {f: len(p) for f, p in eval_prompts_per_family.items()},
            "eval_samples": samples,
            "train_prompts": len(prompts),
            "show_prompts": show_prompts,
            "show_samples": show_samples,
        },
        "command": command,
        "runs": runs,
    }
    result["table"] = {name: _summary_row(run) for name, run in runs.items()}
    result = _rounded(result)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "rl_compare.json", json.dumps(result, separators=(",", ":")).encode())
    return result


def condition_of(run: str) -> str:
    """A run's name without its ``_seed<k>`` suffix: runs that differ only by seed share a condition."""
    return re.sub(r"_seed\d+$", "", run)


def conditions(result: dict) -> dict[str, list[str]]:
    """Run names of a :func:`rl_after_finetuning` result grouped by :func:`condition_of`, in order."""
    groups: dict[str, list[str]] = {}
    for name in result["runs"]:
        groups.setdefault(condition_of(name), []).append(name)
    return groups


def aggregate_table(result: dict) -> dict[str, dict]:
    """The ``table`` of a result averaged over the seeds of each condition.

    Returns ``{condition: {key: {mean, std}, "seeds": n}}``.

    ``std`` is the sample standard deviation over seeds (0 for a single seed).
    """
    import statistics

    out = {}
    for condition, names in conditions(result).items():
        rows = [result["table"][n] for n in names]
        out[condition] = {"seeds": len(rows)}
        for key in rows[0]:
            values = [r[key] for r in rows]
            out[condition][key] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    return out


def format_table(result: dict, by_condition: bool = False) -> str:
    """The headline numbers of :func:`rl_after_finetuning` as a plain-text table (first/last 5 steps).

    ``by_condition=True``: one row per condition (runs differing only by ``_seed<k>``), the mean over
    seeds with the standard deviation of the final value after ``±``.
    """
    if by_condition:
        table = aggregate_table(result)
        first_row = next(iter(table.values()))
    else:
        table = result["table"]
        first_row = next(iter(table.values()))
    k = next(key.split("_")[0] for key in first_row if key.startswith("pass@"))
    columns = [
        ("reward", "reward_first", "reward_last"),
        (k, f"{k}_first", f"{k}_last"),
        ("entropy", "entropy_first", "entropy_last"),
        ("distinct", "distinct_valid_first", "distinct_valid_last"),
        ("zero-signal", "zero_signal_first", "zero_signal_last"),
        ("in-domain", "in_domain_before", "in_domain_after"),
        ("OOD", "ood_before", "ood_after"),
    ]
    if by_condition:
        width = max(len(f"{n} (x{row['seeds']})") for n, row in table.items()) + 2
        lines = [f"{'condition (seeds)':{width}s}" + "".join(f"{title:>22s}" for title, _, _ in columns)]
        for name, row in table.items():
            cells = "".join(
                f"{row[a]['mean']:7.3f} -> {row[b]['mean']:5.3f}"
                + (f"±{row[b]['std']:.3f}" if row["seeds"] > 1 else " " * 6)
                for _, a, b in columns
            )
            lines.append(f"{name + ' (x' + str(row['seeds']) + ')':{width}s}" + cells)
        return "\n".join(lines)
    width = max(len(n) for n in table) + 2
    lines = [f"{'run':{width}s}" + "".join(f"{title:>16s}" for title, _, _ in columns)]
    for name, row in table.items():
        lines.append(f"{name:{width}s}" + "".join(f"{row[a]:7.3f} -> {row[b]:5.3f}" for _, a, b in columns))
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def config_from_args(args, **extra) -> RLConfig:
    """The :class:`RLConfig` fields that the ``rl`` and ``rl-compare`` commands share, plus ``extra``."""
    return RLConfig(
        lr=args.lr,
        steps=args.steps,
        group_size=args.group_size,
        prompts_per_step=args.prompts_per_step,
        clip_low=args.clip_low,
        clip_high=args.clip_high,
        beta=args.beta,
        seed=args.seed,
        **extra,
    )


def main(args) -> int:
    """``python -m psft_edu rl``: GRPO from ``--init`` on ``--split``, written to ``--out``."""
    from .data import eval_prompts
    from .evaluate import evaluate_model

    prompts = load_prompts(args.split)  # validate the data before anything is written
    cfg = config_from_args(args, save_every=args.save_every, init=str(args.init))
    check_run_folder(args.out, args.resume, getattr(args, "overwrite", False))
    model, tokenizer = load_model_for_run(args.init, args.device)
    check_model_fits(model, tokenizer)
    uncovered = uncovered_characters(tokenizer, prompts)
    if uncovered:
        raise DataError(
            f"{args.split}: prompts hold characters the tokenizer cannot encode: " + " ".join(map(repr, uncovered))
        )
    per_family = {f: eval_prompts(f, cfg.eval_prompts) for f in tasks.FAMILIES}

    def eval_fn(m: torch.nn.Module, step: int) -> dict:  # noqa: ARG001
        return evaluate_model(m, tokenizer, per_family, cfg.eval_samples, seed=cfg.seed)

    history = grpo(model, tokenizer, prompts, cfg, out=args.out, eval_fn=eval_fn, resume=args.resume)
    if history:
        first, last = history[0], history[-1]
        print(
            f"done: {last['step']} steps; reward {first['reward']:.3f} -> {last['reward']:.3f}, "
            f"entropy {last['entropy']:.3f}"
        )
    summary = json.loads((Path(args.out) / "evals.jsonl").read_text().splitlines()[-1]).get("summary", {})
    if summary:
        print(
            "final evaluation: "
            + "  ".join(f"{k}={v:.3f}" for k, v in summary.items() if isinstance(v, float) and math.isfinite(v))
        )
    print(f"model saved to {Path(args.out) / 'model'}")
    return 0


def _command_line(args) -> str:
    """The ``rl-compare`` command that reproduces ``args`` (recorded in the result)."""
    import shlex

    words = ["python", "-m", "psft_edu", "rl-compare"]
    for key, value in vars(args).items():
        if key in ("func", "command") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, list):  # options given several times (action="append")
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def training_prompts(split: str, size: int = 512, seed: int = 1) -> list[str]:
    """``"generated"``: :func:`fresh_prompts` (``size`` new ``make_sum`` prompts); ``"generated-hard"``: the same
    with ``rl_hard``'s harder settings (7 numbers up to 29); otherwise :func:`load_prompts`."""
    if split == "generated":
        return fresh_prompts(size, seed)
    if split == "generated-hard":
        from .data import RL_KWARGS

        return fresh_prompts(size, seed, **RL_KWARGS)
    return load_prompts(split)


def compare_main(args) -> int:
    """``python -m psft_edu rl-compare``: GRPO from an SFT and a PSFT checkpoint, side by side."""
    from .data import eval_prompts
    from .presets import PRESETS

    suffix = f"_{args.tag}" if args.tag else ""
    inits: dict[str, str] = {f"sft{suffix}": args.sft, f"psft{suffix}": args.psft}
    for item in args.init or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--init takes NAME=PATH, got {item!r}")
        inits[name] = path
    for name, path in inits.items():
        if not Path(path).is_dir() and path not in PRESETS and not path.startswith("hf:"):
            raise FileNotFoundError(f"{name}: no such checkpoint folder: {path}")
    prompts = training_prompts(args.split, args.num_prompts, args.prompt_seed)  # validate before anything is written
    cfg = config_from_args(args, updates_per_step=args.updates_per_step, eval_every=args.eval_every)
    per_family = {f: eval_prompts(f, args.eval_prompts) for f in tasks.FAMILIES}
    show = eval_prompts(tasks.IN_DOMAIN, args.show_prompts)
    result = rl_after_finetuning(
        inits,
        prompts,
        cfg,
        per_family,
        args.eval_samples,
        out=args.out,
        progress=True,
        show_prompts=show,
        command=_command_line(args),
        device=args.device,
    )
    result["settings"]["split"] = args.split
    if args.split.startswith("generated"):
        result["settings"].update(num_prompts=args.num_prompts, prompt_seed=args.prompt_seed)
    payload = json.dumps(result, separators=(",", ":")).encode()
    atomic_write_bytes(Path(args.out) / "rl_compare.json", payload)
    if args.json:
        atomic_write_bytes(Path(args.json), payload)
    print("\n" + format_table(result))
    if any(len(names) > 1 for names in conditions(result).values()):
        print("\nmean over seeds (± sample std of the final value):\n" + format_table(result, by_condition=True))
    print(
        f"(reward, pass@k, entropy, distinct and zero-signal: mean of the first -> last 5 steps; in-domain and OOD: "
        f"sampled accuracy before -> after RL)\nresults: {Path(args.out) / 'rl_compare.json'}"
    )
    return 0


__all__ = [
    "RLConfig",
    "aggregate_table",
    "compare_main",
    "condition_of",
    "conditions",
    "format_table",
    "fresh_prompts",
    "group_advantages",
    "grpo",
    "load_prompts",
    "main",
    "prompts_for_step",
    "rl_after_finetuning",
    "rollout_batch",
    "training_prompts",
    "update_policy",
]
