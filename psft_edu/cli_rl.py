"""Handlers of the ``rl`` and ``rl-compare`` commands (the parser is in :mod:`psft_edu.__main__`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from . import tasks
from .data import DataError, atomic_write_bytes, uncovered_characters
from .grpo_loop import RLConfig, grpo, load_prompts
from .rl_experiment import conditions, format_table, rl_after_finetuning, training_prompts
from .runs import check_model_fits, check_run_folder, load_model_for_run


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


__all__ = ["compare_main", "config_from_args", "main"]
