"""Command line: ``python -m psft_edu <command> --help``.

Commands: data, pretrain, eval, train, compare, sweep, rl, rl-compare, bench.

Bad input (flags, data, run folders, checkpoints) stops before any training with one line on
stderr and exit code 2; a failed run exits 1; Ctrl-C exits 130 and SIGTERM 143, both after
saving a checkpoint. ``--debug`` (or ``PSFT_EDU_DEBUG=1``) shows the full traceback instead.

``train --resume`` and ``rl --resume`` refuse settings that differ from the saved run, except
how long it goes on and how often it evaluates and saves (``--max-steps`` / ``--steps``,
``--eval-every``, ``--save-every``; with ``--schedule cosine`` the decay follows ``--max-steps``,
so it must stay). A folder that already holds a run is only replaced with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from pathlib import Path

from .models import PRESETS, preset_name
from .objectives import OBJECTIVES, PSFT_CLIP

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what schedulers expect after SIGTERM
DEBUG_ENV = "PSFT_EDU_DEBUG"


class FlagError(ValueError):
    """A command-line value that cannot work; the message names the flag."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise FlagError(message)


def _positive(flag: str, value: float | int | None, allow_none: bool = True) -> None:
    """``value`` must be a finite number above zero (``None`` means the default, when allowed)."""
    if value is None and allow_none:
        return
    _require(value is not None and math.isfinite(value) and value > 0, f"{flag} must be a positive number, got {value}")


def _not_negative(flag: str, value: float | int | None) -> None:
    if value is None:
        return
    _require(math.isfinite(value) and value >= 0, f"{flag} must be zero or more, got {value}")


def _check_out_folder(out: str | None) -> None:
    """An output folder (not a whole run) that must be creatable and writable."""
    if out is None:
        return
    from .train import check_writable_folder

    check_writable_folder(out)  # only the location: these commands manage the runs inside it themselves


def _preset_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", choices=list(PRESETS), default=None, help="model size (default: $PSFT_EDU_PRESET or small)"
    )


def cmd_data(args) -> int:
    from .data import check_data, write_data

    if args.check:
        bad = check_data()
        if bad:
            print("data/ differs from the generator: " + ", ".join(bad), file=sys.stderr)
            return 1
        print("data/ matches the generator")
        return 0
    from .paths import data_is_read_only

    if data_is_read_only():
        print(
            "error: the data inside the installed package is read-only; set PSFT_EDU_DATA=<folder> to write it there",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    for name in write_data():
        print(f"wrote data/{name}")
    return 0


def cmd_pretrain(args) -> int:
    from .pretrain import pretrain
    from .train import check_device

    _positive("--steps", args.steps)
    check_device(args.device)
    _check_out_folder(args.out)

    out = pretrain(preset_name(args.preset), args.out, seed=args.seed, steps=args.steps, device=args.device)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"saved {out} ({manifest['train_seconds']} s)")
    for family, row in manifest["evaluation"]["results"].items():
        print(f"  {family:9s} " + "  ".join(f"{k}={v:.3f}" for k, v in row.items()))
    return 0


def cmd_eval(args) -> int:
    from . import tasks
    from .data import eval_prompts
    from .evaluate import evaluate_model
    from .train import check_device, check_model_fits, load_model_for_run

    _positive("--samples", args.samples, allow_none=False)
    _positive("--prompts", args.prompts, allow_none=False)
    check_device(args.device)
    model, tokenizer = load_model_for_run(args.model or preset_name(args.preset), args.device)
    check_model_fits(model, tokenizer)
    families = args.families or list(tasks.FAMILIES)
    result = evaluate_model(
        model, tokenizer, {f: eval_prompts(f, args.prompts) for f in families}, args.samples, seed=args.seed
    )
    for family, row in result.items():
        print(f"{family:9s} " + "  ".join(f"{k}={v:.3f}" for k, v in row.items()))
    return 0


def cmd_train(args) -> int:
    from .compare import make_eval_fn
    from .data import DATA_DIR, check_coverage, load_split, read_jsonl
    from .train import TrainConfig, Trainer, check_device, check_model_fits, check_run_folder, load_model_for_run

    # Every check comes before anything is written to --out: flags, the folder, the data, the model.
    check_train_flags(args)
    check_run_folder(args.out, args.resume, args.overwrite)
    records = read_jsonl(args.data) if args.data else load_split("sft_train")
    val = load_split("sft_val")
    spec = args.model or preset_name(args.preset)
    cfg = TrainConfig(
        objective=args.objective,
        lr=args.lr,
        max_steps=args.max_steps,
        global_batch=args.global_batch,
        mini_batch=args.mini_batch,
        micro_batch=args.micro_batch,
        clip=args.clip,
        beta=args.beta,
        never_refresh=args.never_refresh,
        seed=args.seed,
        max_length=args.max_length,
        eval_every=args.eval_every,
        save_every=args.save_every,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        compile=args.compile,
        log_kl=not args.no_kl_log,
        init=str(spec),
    )
    check_device(args.device)
    model, tokenizer = load_model_for_run(spec, args.device)
    check_model_fits(model, tokenizer, cfg.max_length)
    check_coverage(args.data or Path(DATA_DIR) / "sft_train.jsonl", records, tokenizer)
    eval_fn = None
    if not args.no_eval and not args.data:
        sizes = PRESETS[preset_name(args.preset)]
        eval_fn = make_eval_fn(tokenizer, val, sizes.eval_prompts, sizes.eval_samples, args.seed)
    trainer = Trainer(model, tokenizer, records, cfg, out=args.out, eval_fn=eval_fn)
    trainer.train(resume=args.resume)
    last = trainer.history[-1] if trainer.history else {}
    print(
        f"done: {trainer.step} steps; final loss {last.get('loss', float('nan')):.4f}, "
        f"entropy {last.get('entropy', float('nan')):.4f}"
    )
    print(f"model saved to {Path(args.out) / 'model'}")
    return 0


def check_train_flags(args) -> None:
    """Values of ``train``'s flags that could only fail (or silently do nothing) once training runs."""
    _positive("--lr", args.lr, allow_none=False)
    _positive("--max-steps", args.max_steps, allow_none=False)
    _positive("--global-batch", args.global_batch, allow_none=False)
    _positive("--mini-batch", args.mini_batch, allow_none=False)
    _positive("--micro-batch", args.micro_batch)
    _positive("--clip", args.clip, allow_none=False)
    _not_negative("--beta", args.beta)
    _not_negative("--warmup-steps", args.warmup_steps)
    _not_negative("--eval-every", args.eval_every)
    _not_negative("--save-every", args.save_every)
    _require(
        args.max_length >= 2, f"--max-length must be at least 2 (a prompt token and a target), got {args.max_length}"
    )
    _require(
        args.global_batch % args.mini_batch == 0,
        f"--global-batch ({args.global_batch}) must be a multiple of --mini-batch ({args.mini_batch})",
    )
    if args.micro_batch:
        _require(
            args.mini_batch % args.micro_batch == 0,
            f"--mini-batch ({args.mini_batch}) must be a multiple of --micro-batch ({args.micro_batch})",
        )


def cmd_compare(args) -> int:
    from .compare import compare

    _positive("--max-steps", args.max_steps)
    _positive("--threads", args.threads)
    _check_out_folder(args.out)

    out = Path(args.out)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    seeds = tuple(args.seeds) if args.seeds else None
    summary = compare(
        preset_name(args.preset),
        seeds,
        out,
        max_steps=args.max_steps,
        long=not args.no_long,
        model=args.model,
        midtrain_steps=args.midtrain_steps,
    )
    print((out / "report.md").read_text())
    print(f"report: {out / 'report.md'}  (summary.json and figures beside it; {summary['seconds']} s)")
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench
    from .train import check_device

    _positive("--steps", args.steps)
    check_device(args.device)
    if args.out is not None:
        _require(not Path(args.out).is_dir(), f"--out {args.out}: is a folder; bench writes one JSON file")

    run_bench(preset_name(args.preset), steps=args.steps, device=args.device, out=args.out)
    return 0


def cmd_rl(args) -> int:
    from .cli_rl import main as rl_main
    from .train import check_device

    check_rl_flags(args)
    _not_negative("--save-every", args.save_every)
    check_device(args.device)

    return rl_main(args)


def cmd_rl_compare(args) -> int:
    from .cli_rl import compare_main
    from .train import check_device

    check_rl_flags(args)
    for flag in ("updates_per_step", "num_prompts", "eval_prompts", "eval_samples"):
        _positive("--" + flag.replace("_", "-"), getattr(args, flag), allow_none=False)
    _not_negative("--eval-every", args.eval_every)
    check_device(args.device)
    _check_out_folder(args.out)

    return compare_main(args)


def cmd_sweep(args) -> int:
    from .sweep import main as sweep_main

    _positive("--max-steps", args.max_steps)
    _positive("--lr", args.lr)
    _check_out_folder(args.out)

    return sweep_main(args)


def check_rl_flags(args) -> None:
    """GRPO settings shared by ``rl`` and ``rl-compare`` that cannot work."""
    _positive("--lr", args.lr, allow_none=False)
    _positive("--steps", args.steps, allow_none=False)
    _positive("--prompts-per-step", args.prompts_per_step, allow_none=False)
    _require(args.group_size >= 2, f"--group-size must be at least 2, got {args.group_size}")
    _not_negative("--clip-low", args.clip_low)
    _positive("--clip-high", args.clip_high, allow_none=False)
    _not_negative("--beta", args.beta)


def _rl_args(parser: argparse.ArgumentParser, steps: int, lr: float) -> None:
    """GRPO settings shared by ``rl`` and ``rl-compare`` (see :func:`psft_edu.cli_rl.config_from_args`)."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=16)
    parser.add_argument("--clip-low", type=float, default=0.2)
    parser.add_argument("--clip-high", type=float, default=PSFT_CLIP)
    parser.add_argument("--beta", type=float, default=0.0, help="KL-to-reference weight")


def _add_train_command(sub) -> None:
    """The ``train`` command: fine-tune with one objective."""
    p = sub.add_parser("train", help="fine-tune with one objective")
    p.add_argument("--objective", default="psft", choices=list(OBJECTIVES))
    _preset_arg(p)
    p.add_argument("--model", default=None, help="folder or hf:<id> instead of the preset's base")
    p.add_argument("--data", default=None, help="prompt/completion JSONL instead of data/sft_train.jsonl")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=192)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--global-batch", type=int, default=256)
    p.add_argument("--mini-batch", type=int, default=32)
    p.add_argument("--micro-batch", type=int, default=None)
    p.add_argument("--clip", type=float, default=PSFT_CLIP)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--never-refresh", action="store_true", help="PSFT: keep the base model as the old policy")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--save-every", type=int, default=50)
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--no-kl-log", action="store_true", help="skip logging KL to the base model (saves a forward)")
    p.add_argument("--compile", action="store_true", help="torch.compile (CUDA only)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from --out/checkpoint.pt (only --max-steps, --eval-every, --save-every may change)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_train)


def _add_rl_commands(sub) -> None:
    """The ``rl`` and ``rl-compare`` commands (GRPO; handlers in :mod:`psft_edu.cli_rl`)."""
    p = sub.add_parser("rl", help="GRPO on the harder in-domain split, from a checkpoint")
    p.add_argument("--init", required=True, help="checkpoint folder (or preset) to start from")
    p.add_argument("--out", required=True)
    _rl_args(p, steps=30, lr=1e-4)
    p.add_argument("--split", default="rl_hard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=10)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from --out/checkpoint.pt (only --steps and --save-every may change)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_rl)

    p = sub.add_parser("rl-compare", help="GRPO from an SFT and a PSFT checkpoint with the same settings, side by side")
    p.add_argument("--sft", required=True, help="checkpoint folder of the SFT model")
    p.add_argument("--psft", required=True, help="checkpoint folder of the PSFT model")
    p.add_argument("--tag", default="", help="suffix of their run names, e.g. lr1e-03 -> sft_lr1e-03, psft_lr1e-03")
    p.add_argument(
        "--init", action="append", default=None, metavar="NAME=PATH", help="another start (repeatable), e.g. base=small"
    )
    p.add_argument("--out", required=True)
    _rl_args(p, steps=60, lr=3e-4)
    p.add_argument("--updates-per-step", type=int, default=2)
    p.add_argument(
        "--split",
        default="generated",
        help="'generated' (new make_sum prompts, none from data/), 'generated-hard', a shipped split or a JSONL file",
    )
    p.add_argument("--num-prompts", type=int, default=512, help="with --split generated*")
    p.add_argument("--prompt-seed", type=int, default=1, help="with --split generated*")
    p.add_argument("--eval-prompts", type=int, default=64, help="per family")
    p.add_argument("--eval-samples", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument(
        "--show-prompts", type=int, default=4, help="in-domain prompts whose samples are kept at every evaluation"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the result here (e.g. notebooks/results/rl_small.json)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_rl_compare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m psft_edu", description="Proximal SFT, from first principles.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="(re)build data/ from the seeded generators")
    p.add_argument("--check", action="store_true", help="verify data/ against the generator instead of writing")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("pretrain", help="train a base model on the task mixture")
    _preset_arg(p)
    p.add_argument(
        "--out",
        default=None,
        help="folder (default: data/checkpoints/<preset>; from an installed package, the user cache)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("eval", help="evaluate a model on every task family")
    _preset_arg(p)
    p.add_argument("--model", default=None, help="folder, preset or hf:<id> (default: the preset's base)")
    p.add_argument("--families", nargs="*", default=None)
    p.add_argument("--prompts", type=int, default=100)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_eval)

    _add_train_command(sub)

    p = sub.add_parser("compare", help="SFT vs PSFT side by side (the main experiment)")
    _preset_arg(p)
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--max-steps", type=int, default=None, help="main view's optimiser steps (default: the preset's)")
    p.add_argument("--no-long", action="store_true", help="skip the prolonged view (many epochs over a small set)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument(
        "--model",
        default=None,
        help="a pretrained causal LM (folder or hf:<id>, own tokenizer) as the base, "
        "mid-trained on the task world first",
    )
    p.add_argument("--midtrain-steps", type=int, default=None, help="with --model: mid-training steps (default 1000)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("bench", help="speed and memory benchmark (ratios measured in one run)")
    _preset_arg(p)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="also write the table as JSON here")
    p.set_defaults(func=cmd_bench)

    _add_rl_commands(sub)

    p = sub.add_parser("sweep", help="neighbours and ablations (writes results under --out)")
    _preset_arg(p)
    p.add_argument("--what", default="all", choices=["neighbours", "clip", "refresh", "lr", "all"])
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument(
        "--lr", type=float, default=None, help="rate of the neighbours/clip/refresh sweeps (default: the higher rate)"
    )
    p.set_defaults(func=cmd_sweep)

    debug_help = f"show the full traceback of an error (or set {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    for command in sub.choices.values():  # also accepted after the command's name
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def main(argv: list[str] | None = None) -> int:
    from .data import DataError
    from .train import Interrupted, TrainingError

    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return args.func(args)
    except Interrupted as err:
        print(str(err), file=sys.stderr)
        return EXIT_TERMINATED if err.signum == signal.SIGTERM else EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if debug:
            raise
        if isinstance(err, (DataError, FileNotFoundError, ValueError)):
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if isinstance(err, TrainingError):
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return EXIT_FAILED
        if isinstance(err, OSError):
            where = f"{err.filename}: " if err.filename else ""
            print(f"error: {where}{err.strerror or _one_line(err)}", file=sys.stderr)
            return EXIT_FAILED
        print(f"error: {type(err).__name__}: {_one_line(err)} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
