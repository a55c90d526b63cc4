"""The RL experiment: GRPO (:mod:`psft_edu.engine.grpo_loop`) from several fine-tuned checkpoints, side by side.

:func:`rl_after_finetuning` (command line: ``python -m psft_edu rl-compare``) runs GRPO with
one configuration and seed from several starting checkpoints, typically an SFT and a PSFT
model, and evaluates every task family before, during and after RL; :func:`fresh_prompts`
draws training prompts that are in none of the shipped splits. The tables of the result
(:func:`format_table`, :func:`aggregate_table`) group runs that differ only by seed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from pathlib import Path

import torch

from .. import tasks
from ..data import atomic_write_bytes, load_split, prompts_digest
from ..engine.evaluate import sample
from ..engine.grpo_loop import RLConfig, grpo, load_prompts


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
    from ..presets import preset_of_shape

    return preset_of_shape(model.config.n_layer, model.config.n_head, model.config.n_embd)


def _refuse_leaks(prompts: list[str], eval_prompts_per_family: dict[str, list[str]]) -> None:
    """A training prompt that is also an evaluation prompt would inflate the evaluation: refuse it."""
    held_out = {p for ps in eval_prompts_per_family.values() for p in ps}
    leaked = [p for p in prompts if p in held_out]
    if leaked:
        raise ValueError(
            f"{len(leaked)} training prompts are evaluation prompts too (e.g. {leaked[0]!r}); train on other prompts"
        )


def _recording_eval_fn(
    tokenizer,
    evals: list[dict],
    eval_prompts_per_family: dict[str, list[str]],
    samples: int,
    show_prompts: list[str],
    show_samples: int,
    cfg: RLConfig,
):
    """An ``eval_fn(model, step)`` for :func:`grpo` that appends the full evaluation (and, for
    ``show_prompts``, ``show_samples`` completions each) to ``evals`` and returns its summary."""
    from ..engine.evaluate import evaluate_model

    def eval_fn(m: torch.nn.Module, step: int) -> dict:
        result = evaluate_model(m, tokenizer, eval_prompts_per_family, samples, seed=cfg.seed)
        shown = {}
        if show_prompts:
            drawn = sample(m, tokenizer, show_prompts, show_samples, 1.0, cfg.max_new_tokens, seed=cfg.seed)
            shown = dict(zip(show_prompts, drawn.texts))
        evals.append({"step": step, **result, "samples": shown})
        return {"summary": result["summary"]}

    return eval_fn


def _settings(
    cfg: RLConfig, per_family: dict[str, list[str]], samples: int, train_prompts: int, show: list, show_samples: int
) -> dict:
    """The ``settings`` recorded in a :func:`rl_after_finetuning` result."""
    return {
        **asdict(cfg),
        "eval_prompts_per_family": {f: len(p) for f, p in per_family.items()},
        "eval_samples": samples,
        "train_prompts": train_prompts,
        "show_prompts": show,
        "show_samples": show_samples,
    }


def rl_run(
    name: str,
    init: str,
    prompts: list[str],
    cfg: RLConfig,
    eval_prompts_per_family: dict[str, list[str]],
    samples: int,
    show_prompts: list[str],
    show_samples: int,
    out: Path | None = None,
    device: str | None = None,
) -> dict:
    """One GRPO run of :func:`rl_after_finetuning` (in a worker process): ``{"init", "metrics", "evals",
    "before", "after", "seconds", "preset"}``; with ``out`` its files go to ``out/<name>/``."""
    import time

    from ..models import load_model

    run_cfg = RLConfig(**{**asdict(cfg), "init": str(init)})
    model, tokenizer = load_model(str(init), device=device)
    evals: list[dict] = []
    eval_fn = _recording_eval_fn(tokenizer, evals, eval_prompts_per_family, samples, show_prompts, show_samples, cfg)
    started = time.time()
    if not run_cfg.eval_every:
        eval_fn(model, 0)  # before RL (with eval_every, grpo evaluates step 0 itself)
    history = grpo(model, tokenizer, prompts, run_cfg, out=out / name if out else None, eval_fn=eval_fn,
                   progress=False)
    return {
        "init": str(init),
        "metrics": history,
        "evals": evals,
        "before": evals[0],
        "after": evals[-1],
        "seconds": round(time.time() - started, 1),
        "preset": _preset_of(model),
    }


def starting_points(sft: str, psft: str, tag: str = "", more: list[str] | None = None) -> dict[str, str]:
    """``rl-compare``'s starting checkpoints by run name: ``--sft``, ``--psft`` (names suffixed with ``tag``) and
    every ``--init NAME=PATH`` in ``more``. A malformed item is a ValueError, a missing folder FileNotFoundError."""
    from ..presets import PRESETS

    suffix = f"_{tag}" if tag else ""
    inits = {f"sft{suffix}": sft, f"psft{suffix}": psft}
    for item in more or []:
        name, sep, path = item.partition("=")
        if not (sep and name and path):
            raise ValueError(f"--init takes NAME=PATH, got {item!r}")
        inits[name] = path
    for name, path in inits.items():
        if not Path(path).is_dir() and path not in PRESETS and not path.startswith("hf:"):
            raise FileNotFoundError(f"{name}: no such checkpoint folder: {path}")
    return inits


def _reused_and_todo(inits: dict, prompts: list[str], settings: dict, common: dict, out: Path | None, resume: bool):
    """Runs an earlier call finished (with ``resume``: same start weights, settings and prompts), and the tasks of
    the others; each task keeps its result, with its key, in ``out/<name>/result.json``."""
    from ..engine.workers import Task
    from ..models import weights_fingerprint
    from .compare import keep_result, stored_result

    digest = prompts_digest(prompts)
    runs: dict[str, dict] = {}
    tasks = []
    for name, init in inits.items():
        folder = out / name if out is not None else None
        key = json.dumps([name, str(init), weights_fingerprint(str(init)), settings, digest], sort_keys=True)
        stored = stored_result(folder, key, resume)
        if stored is not None:
            runs[name] = stored
            continue
        kwargs = {"fn": rl_run, "key": key, "folder": folder, "kwargs": {"name": name, "init": str(init), **common}}
        tasks.append((name, Task(f"GRPO from {name}", keep_result, kwargs)))
    return runs, tasks


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
    extra_settings: dict | None = None,
    workers: int | None = None,
    resume: bool = False,
) -> dict:
    """GRPO from each checkpoint in ``inits`` with one config and seed; a JSON-able result.

    ``inits`` maps a run name (e.g. ``"sft"``, ``"psft"``) to what
    :func:`psft_edu.models.load_model` accepts. Every run sees the same prompts in the same
    order and draws with the same seeds, so the runs differ only by where they start; they are
    independent, so ``workers`` of them run at once, one torch thread each (:mod:`psft_edu.engine.workers`;
    None: one per usable core). Each run is evaluated on ``eval_prompts_per_family`` (``samples``
    per prompt) before RL, every ``cfg.eval_every`` steps and at the end; each evaluation also keeps
    ``show_samples`` completions (temperature 1) of each of ``show_prompts``.

    Returns ``{"settings", "command", "runs": {name: {"init", "metrics", "evals", "before",
    "after", "seconds"}}, "table"}``: ``metrics`` is the list of per-step records of
    :func:`grpo` (reward, pass@k, entropy, distinct_valid, zero_signal_groups, clip
    statistics...), ``evals`` the evaluations (``step``, :func:`psft_edu.engine.evaluate.evaluate_model`'s
    families and ``summary``, ``samples``), ``before``/``after`` the first and last of them,
    ``table`` the headline numbers of :func:`_summary_row`; ``extra_settings`` (e.g. how the prompts
    were made) are recorded with the settings. With ``out``, each run's files
    go to ``out/<name>/`` and the result to ``out/rl_compare.json``; with ``resume`` too, a run an
    interrupted call finished (``out/<name>/result.json``, same start weights, settings and prompts) is read
    back instead of run again.
    """
    from ..engine.workers import WorkerPool

    if not inits:
        raise ValueError("rl_after_finetuning needs at least one initial checkpoint")
    _refuse_leaks(prompts, eval_prompts_per_family)
    show_prompts = list(show_prompts or [])
    out = Path(out) if out is not None else None
    common = {"prompts": prompts, "cfg": cfg, "eval_prompts_per_family": eval_prompts_per_family, "samples": samples,
              "show_prompts": show_prompts, "show_samples": show_samples, "out": out, "device": device}
    settings = _settings(cfg, eval_prompts_per_family, samples, len(prompts), show_prompts, show_samples)
    runs, tasks = _reused_and_todo(inits, prompts, settings, common, out, resume)
    hint = "run the same command with --resume to reuse them" if out is not None else ""
    with WorkerPool(min(workers or len(inits), len(inits)), progress=progress, resume_hint=hint) as pool:
        finished, timing = pool.run([task for _, task in tasks], "rl-compare")
    timing["reused"] = len(inits) - len(tasks)
    runs.update({name: result for (name, _), result in zip(tasks, finished)})
    runs = {name: runs[name] for name in inits}
    for r in runs.values():
        r.pop("key", None)
    preset = next((r.pop("preset") for r in runs.values() if r.get("preset")), "")
    for r in runs.values():
        r.pop("preset", None)
    result = {
        "preset": preset,
        "settings": {**settings, **(extra_settings or {})},
        "command": command,
        "runs": runs,
        "timing": timing,
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


def training_prompts(split: str, size: int = 512, seed: int = 1) -> list[str]:
    """``"generated"``: :func:`fresh_prompts` (``size`` new ``make_sum`` prompts); ``"generated-hard"``: the same
    with ``rl_hard``'s harder settings (7 numbers up to 29); otherwise :func:`load_prompts`."""
    if split == "generated":
        return fresh_prompts(size, seed)
    if split == "generated-hard":
        from ..data import RL_KWARGS

        return fresh_prompts(size, seed, **RL_KWARGS)
    return load_prompts(split)


__all__ = [
    "aggregate_table",
    "condition_of",
    "conditions",
    "format_table",
    "fresh_prompts",
    "rl_after_finetuning",
    "training_prompts",
]
