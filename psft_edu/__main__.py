"""Command line: ``python -m psft_edu <command> --help``.

Commands: data, pretrain, eval, train, compare, sweep, rl, rl-compare, bench.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .models import PRESETS, preset_name
from .objectives import OBJECTIVES, PSFT_CLIP

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _preset_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=list(PRESETS), default=None, help="model size (default: $PSFT_EDU_PRESET or small)")


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
        print("error: the data inside the installed package is read-only; set PSFT_EDU_DATA=<folder> to write it there",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    for name in write_data():
        print(f"wrote data/{name}")
    return 0


def cmd_pretrain(args) -> int:
    from .pretrain import pretrain

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
    from .models import load_model

    model, tokenizer = load_model(args.model or preset_name(args.preset), device=args.device)
    families = args.families or list(tasks.FAMILIES)
    result = evaluate_model(model, tokenizer, {f: eval_prompts(f, args.prompts) for f in families}, args.samples, seed=args.seed)
    for family, row in result.items():
        print(f"{family:9s} " + "  ".join(f"{k}={v:.3f}" for k, v in row.items()))
    return 0


def cmd_train(args) -> int:
    from .compare import make_eval_fn
    from .data import load_split, read_jsonl
    from .models import load_model
    from .train import TrainConfig, Trainer

    # Read and validate the data before anything is written to --out.
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
    model, tokenizer = load_model(spec, device=args.device)
    eval_fn = None
    if not args.no_eval and not args.data:
        sizes = PRESETS[preset_name(args.preset)]
        eval_fn = make_eval_fn(tokenizer, val, sizes.eval_prompts, sizes.eval_samples, args.seed)
    trainer = Trainer(model, tokenizer, records, cfg, out=args.out, eval_fn=eval_fn)
    trainer.train(resume=args.resume)
    last = trainer.history[-1] if trainer.history else {}
    print(f"done: {trainer.step} steps; final loss {last.get('loss', float('nan')):.4f}, entropy {last.get('entropy', float('nan')):.4f}")
    print(f"model saved to {Path(args.out) / 'model'}")
    return 0


def cmd_compare(args) -> int:
    from .compare import compare

    out = Path(args.out)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    seeds = tuple(args.seeds) if args.seeds else None
    summary = compare(preset_name(args.preset), seeds, out, max_steps=args.max_steps, long=not args.no_long)
    print((out / "report.md").read_text())
    print(f"report: {out / 'report.md'}  (summary.json and figures beside it; {summary['seconds']} s)")
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    run_bench(preset_name(args.preset), steps=args.steps, device=args.device, out=args.out)
    return 0


def cmd_rl(args) -> int:
    from .rl import main as rl_main

    return rl_main(args)


def cmd_rl_compare(args) -> int:
    from .rl import compare_main

    return compare_main(args)


def cmd_sweep(args) -> int:
    from .sweep import main as sweep_main

    return sweep_main(args)


def _rl_args(parser: argparse.ArgumentParser, steps: int, lr: float) -> None:
    """GRPO settings shared by ``rl`` and ``rl-compare`` (see :func:`psft_edu.rl.config_from_args`)."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=16)
    parser.add_argument("--clip-low", type=float, default=0.2)
    parser.add_argument("--clip-high", type=float, default=PSFT_CLIP)
    parser.add_argument("--beta", type=float, default=0.0, help="KL-to-reference weight")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m psft_edu", description="Proximal SFT, from first principles.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="(re)build data/ from the seeded generators")
    p.add_argument("--check", action="store_true", help="verify data/ against the generator instead of writing")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("pretrain", help="train a base model on the task mixture")
    _preset_arg(p)
    p.add_argument("--out", default=None, help="folder (default: data/checkpoints/<preset>; from an installed package, the user cache)")
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
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="SFT vs PSFT side by side (the main experiment)")
    _preset_arg(p)
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--max-steps", type=int, default=None, help="main view's optimiser steps (default: the preset's)")
    p.add_argument("--no-long", action="store_true", help="skip the prolonged view (many epochs over a small set)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("bench", help="speed and memory benchmark (ratios measured in one run)")
    _preset_arg(p)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="also write the table as JSON here")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("rl", help="GRPO on the harder in-domain split, from a checkpoint")
    p.add_argument("--init", required=True, help="checkpoint folder (or preset) to start from")
    p.add_argument("--out", required=True)
    _rl_args(p, steps=30, lr=1e-4)
    p.add_argument("--split", default="rl_hard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=10)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_rl)

    p = sub.add_parser("rl-compare", help="GRPO from an SFT and a PSFT checkpoint with the same settings, side by side")
    p.add_argument("--sft", required=True, help="checkpoint folder of the SFT model")
    p.add_argument("--psft", required=True, help="checkpoint folder of the PSFT model")
    p.add_argument("--tag", default="", help="suffix of their run names, e.g. lr1e-03 -> sft_lr1e-03, psft_lr1e-03")
    p.add_argument("--init", action="append", default=None, metavar="NAME=PATH", help="another start (repeatable), e.g. base=small")
    p.add_argument("--out", required=True)
    _rl_args(p, steps=60, lr=3e-4)
    p.add_argument("--updates-per-step", type=int, default=2)
    p.add_argument("--split", default="generated",
                   help="'generated' (new make_sum prompts, none from data/), 'generated-hard', a shipped split or a JSONL file")
    p.add_argument("--num-prompts", type=int, default=512, help="with --split generated*")
    p.add_argument("--prompt-seed", type=int, default=1, help="with --split generated*")
    p.add_argument("--eval-prompts", type=int, default=64, help="per family")
    p.add_argument("--eval-samples", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--show-prompts", type=int, default=4, help="in-domain prompts whose samples are kept at every evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the result here (e.g. notebooks/results/rl_small.json)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_rl_compare)

    p = sub.add_parser("sweep", help="neighbours and ablations (writes results under --out)")
    _preset_arg(p)
    p.add_argument("--what", default="all", choices=["neighbours", "clip", "refresh", "lr", "all"])
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="rate of the neighbours/clip/refresh sweeps (default: the higher rate)")
    p.set_defaults(func=cmd_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .data import DataError
    from .train import Interrupted, TrainingError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as err:
        print(str(err), file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
