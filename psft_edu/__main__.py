"""Command line: ``python -m psft_edu <command> --help``.

Commands: data, pretrain, eval, train, compare, sweep, rl, rl-compare, bench, notebooks; the course's own
(stamp, student, book) are ``python -m psft_edu.course <command>``. Flag groups, ``--config FILE`` and
``--version`` come from :mod:`psft_edu.flags`.

Bad input (flags, data, run folders, checkpoints) stops before any training with one line on
stderr and exit code 2; a failed run exits 1; Ctrl-C exits 130 and SIGTERM 143, both after
saving a checkpoint. ``--debug`` (or ``PSFT_EDU_DEBUG=1``) shows the full traceback instead.

``train --resume`` and ``rl --resume`` refuse settings that differ from the saved run, except
how long it goes on and how often it evaluates and saves (``--max-steps`` / ``--steps``,
``--eval-every``, ``--save-every``; with ``--schedule cosine`` the decay follows ``--max-steps``,
so it must stay). Every command that writes follows one rule (:func:`psft_edu.runs.claim_folder`): a new
or empty ``--out``, or one the same command made; an earlier run is kept unless ``--resume`` or
``--overwrite`` says otherwise; never through a link, never the model it reads, never two writers at once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from dataclasses import fields
from pathlib import Path

from . import flags
from .config import problem_with
from .flags import FlagError, add_settings, command_line, flag, settings_from_args
from .models import PRESETS, preset_name
from .presets import DEFAULT_PRESET, PRESET_ENV

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what schedulers expect after SIGTERM
DEBUG_ENV = "PSFT_EDU_DEBUG"


def say_model_source(spec: str | Path | None) -> None:
    """Print once per command where its model comes from (:func:`psft_edu.models.model_source`)."""
    from .models import model_source

    where = model_source(spec)
    if where not in _SAID:
        _SAID.add(where)
        print(f"model: {where}", flush=True)


_SAID: set[str] = set()


def load_model_for_run(spec: str | Path | None, device: str | None = None):
    """:func:`psft_edu.models.load_model`, with a failure to find or read the model as one-line :class:`RunError`;
    where the model came from is printed once (:func:`say_model_source`)."""
    from .models import load_model
    from .runs import RunError

    try:
        loaded = load_model(spec, device=device)
        say_model_source(spec)
        return loaded
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"cannot load model {spec}: {first}") from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise FlagError(message)


def _check(option: str, value: float | int | None, check: str = "positive") -> None:
    """A hand-written flag's value under one of :data:`psft_edu.config.CHECKS` (``None``: the default)."""
    problem = problem_with(value, check)
    _require(problem is None, f"{option} {problem}")


def _workers_args(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--resume`` of the commands that run many independent runs."""
    from .workers import usable_cores

    parser.add_argument(
        "--workers", type=int, default=None,
        help=f"runs at once, each in its own process with one torch thread (default: the usable cores, "
        f"{usable_cores()} here); 1 runs them one after another",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="reuse the runs an interrupted call into the same --out finished (the others start again)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace what an earlier call wrote into --out")


def _preset_arg(parser: argparse.ArgumentParser, what: str = "model size") -> None:
    parser.add_argument(
        "--preset", choices=list(PRESETS), default=None, help=f"{what} (default: ${PRESET_ENV} or {DEFAULT_PRESET})"
    )


def cmd_data(args) -> int:
    from .data import DATA_DIR, all_data_files, check_data, write_data
    from .paths import data_is_read_only
    from .runs import RunError, claim_data_folder

    if args.check:
        bad = check_data(DATA_DIR)
        print("data/ differs from the generator: " + ", ".join(bad) if bad else "data/ matches the generator",
              file=sys.stderr if bad else sys.stdout)
        return 1 if bad else 0
    if data_is_read_only():
        raise RunError("the data inside the installed package is read-only; set PSFT_EDU_DATA=<folder> to write it")
    claim_data_folder(DATA_DIR, {name.split("/")[0] for name in all_data_files()})
    for name in write_data(DATA_DIR):
        print(f"wrote data/{name}")
    return 0


def cmd_pretrain(args) -> int:
    from .paths import user_checkpoint_dir
    from .pretrain import pretrain
    from .runs import check_device, claim_folder

    _check("--steps", args.steps)
    check_device(args.device)
    out = args.out if args.out is not None else user_checkpoint_dir(preset_name(args.preset))
    claim_folder(out, "pretrain", overwrite=args.overwrite, can_resume=False)

    out = pretrain(preset_name(args.preset), out, seed=args.seed, steps=args.steps, device=args.device)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"saved {out} ({manifest['train_seconds']} s)")
    for family, row in manifest["evaluation"]["results"].items():
        print(f"  {family:9s} " + "  ".join(f"{k}={v:.3f}" for k, v in row.items()))
    return 0


def cmd_eval(args) -> int:
    from . import tasks
    from .data import eval_prompts
    from .evaluate import EVAL_NEW_TOKENS, evaluate_model
    from .runs import check_device, check_model_fits, check_prompt_room

    _check("--samples", args.samples)
    _check("--prompts", args.prompts)
    if args.out is not None:
        from .runs import check_out_file

        check_out_file(args.out, "eval", args.overwrite)
    check_device(args.device)
    model, tokenizer = load_model_for_run(args.model or preset_name(args.preset), args.device)
    check_model_fits(model, tokenizer)
    families = args.families or list(tasks.FAMILIES)
    per_family = {f: eval_prompts(f, args.prompts) for f in families}
    check_prompt_room(model, tokenizer, [p for ps in per_family.values() for p in ps], EVAL_NEW_TOKENS,
                      "the evaluation prompts")
    result = evaluate_model(model, tokenizer, per_family, args.samples, seed=args.seed)
    for family, row in result.items():
        print(f"{family:9s} " + "  ".join(f"{k}={v:.3f}" for k, v in row.items()))
    if args.out:
        from .data import atomic_write_bytes

        table = {"written_by": "eval", "model": str(args.model or preset_name(args.preset)), "prompts": args.prompts,
                 "samples": args.samples, "seed": args.seed, "results": result}
        atomic_write_bytes(Path(args.out), (json.dumps(table, indent=2) + "\n").encode())
        print(f"saved {args.out}")
    return 0


def cmd_train(args) -> int:
    from .data import DATA_DIR, check_coverage, check_lengths, load_split, read_jsonl
    from .evaluate import make_eval_fn
    from .runs import RECORDED_FLAGS, check_device, check_model_fits, check_run_folder, claim_folder
    from .train import TrainConfig, Trainer

    # Every check comes before anything is written to --out: flags, the folder, the data, the model.
    spec = args.model or preset_name(args.preset)
    cfg = settings_from_args(TrainConfig, args, init=str(spec))
    check_run_folder(args.out, args.resume, args.overwrite, model=args.model)
    records = read_jsonl(args.data) if args.data else load_split("sft_train")
    check_device(args.device)
    model, tokenizer = load_model_for_run(spec, args.device)
    check_model_fits(model, tokenizer, cfg.max_length)
    check_coverage(args.data or Path(DATA_DIR) / "sft_train.jsonl", records, tokenizer)
    check_lengths(args.data or Path(DATA_DIR) / "sft_train.jsonl", records, tokenizer, cfg.max_length)
    eval_fn = None
    if not args.no_eval and not args.data:
        eval_fn = make_eval_fn(tokenizer, load_split("sft_val"), cfg.eval_prompts, cfg.eval_samples, cfg.seed)
    claim_folder(args.out, "train", args.resume, args.overwrite, inputs=(args.model,))
    RECORDED_FLAGS.update(data=str(Path(args.data).absolute()) if args.data else None, no_eval=args.no_eval)
    trainer = Trainer(model, tokenizer, records, cfg, out=args.out, eval_fn=eval_fn)
    trainer.train(resume=args.resume)
    last = trainer.history[-1] if trainer.history else {}
    print(
        f"done: {trainer.step} steps; final loss {last.get('loss', float('nan')):.4f}, "
        f"entropy {last.get('entropy', float('nan')):.4f}"
    )
    print(f"model saved to {Path(args.out) / 'model'}")
    return 0


def cmd_compare(args) -> int:
    from .compare import compare
    from .runs import claim_folder, forget_results

    _check("--max-steps", args.max_steps)
    _check("--workers", args.workers)
    claim_folder(args.out, "compare", args.resume, args.overwrite, inputs=(args.model,))
    forget_results(args.out, ("summary.json", "report.md"))
    say_model_source(args.model or preset_name(args.preset))

    out = Path(args.out)
    seeds = tuple(args.seeds) if args.seeds else None
    summary = compare(
        preset_name(args.preset),
        seeds,
        out,
        max_steps=args.max_steps,
        long=not args.no_long,
        model=args.model,
        midtrain_steps=args.midtrain_steps,
        workers=args.workers,
        resume=args.resume,
    )
    print((out / "report.md").read_text())
    print(f"report: {out / 'report.md'}  (summary.json and figures beside it; {summary['seconds']} s)")
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench
    from .runs import check_device

    _check("--steps", args.steps)
    check_device(args.device)
    if args.out is not None:
        from .runs import check_out_file

        check_out_file(args.out, "bench", args.overwrite)

    run_bench(preset_name(args.preset), steps=args.steps, device=args.device, out=args.out)
    return 0


def cmd_sweep(args) -> int:
    from .runs import claim_folder, forget_results
    from .sweep import KINDS, markdown_table, sweep

    _check("--max-steps", args.max_steps)
    _check("--lr", args.lr)
    _check("--workers", args.workers)
    claim_folder(args.out, "sweep", args.resume, args.overwrite)
    forget_results(args.out, [f"{what}/summary.json" for what in (KINDS if args.what == "all" else (args.what,))])
    for what in KINDS if args.what == "all" else (args.what,):
        summary = sweep(
            what, args.preset, tuple(args.seeds) if args.seeds else None, args.out, args.max_steps, lr=args.lr,
            workers=args.workers, resume=args.resume,
        )
        print(f"\n{what} ({summary['seconds']} s): {Path(args.out) / what / 'summary.json'}")
        print(markdown_table(summary))
    return 0


def cmd_rl(args) -> int:
    from . import tasks
    from .data import DataError, eval_prompts, prompts_digest, uncovered_characters
    from .evaluate import EVAL_NEW_TOKENS, evaluate_model
    from .grpo_loop import RLConfig, grpo, load_prompts
    from .runs import RECORDED_FLAGS, check_device, check_model_fits, check_prompt_room, check_run_folder, claim_folder

    check_device(args.device)
    prompts = load_prompts(args.split)  # the data is checked before anything is written
    digest = prompts_digest(prompts)
    cfg = settings_from_args(RLConfig, args, init=str(args.init), prompts=f"{args.split} (sha256 {digest})")
    check_run_folder(args.out, args.resume, args.overwrite, model=args.init, command="rl")
    model, tokenizer = load_model_for_run(args.init, args.device)
    check_model_fits(model, tokenizer)
    uncovered = uncovered_characters(tokenizer, prompts)
    if uncovered:
        raise DataError(
            f"{args.split}: prompts hold characters the tokenizer cannot encode: " + " ".join(map(repr, uncovered))
        )
    split_file = args.split if Path(args.split).is_file() else None
    check_prompt_room(model, tokenizer, prompts, cfg.max_new_tokens, args.split, path=split_file)
    per_family = {f: eval_prompts(f, cfg.eval_prompts) for f in tasks.FAMILIES}
    check_prompt_room(model, tokenizer, [p for ps in per_family.values() for p in ps], EVAL_NEW_TOKENS,
                      "the evaluation prompts")

    def eval_fn(m, step: int) -> dict:  # noqa: ARG001 (grpo passes the step)
        return evaluate_model(m, tokenizer, per_family, cfg.eval_samples, seed=cfg.seed)

    claim_folder(args.out, "rl", args.resume, args.overwrite, inputs=(args.init,))
    RECORDED_FLAGS.update(split=args.split)
    history = grpo(model, tokenizer, prompts, cfg, out=args.out, eval_fn=eval_fn, resume=args.resume)
    if history:
        first, last = history[0], history[-1]
        print(
            f"done: {last['step']} steps; reward {first['reward']:.3f} -> {last['reward']:.3f}, "
            f"entropy {last['entropy']:.3f}"
        )
    summary = json.loads((Path(args.out) / "evals.jsonl").read_text().splitlines()[-1]).get("summary", {})
    finite = {k: v for k, v in summary.items() if isinstance(v, float) and math.isfinite(v)}
    if finite:
        print("final evaluation: " + "  ".join(f"{k}={v:.3f}" for k, v in finite.items()))
    print(f"model saved to {Path(args.out) / 'model'}")
    return 0


def cmd_rl_compare(args) -> int:
    from . import tasks
    from .data import atomic_write_bytes, eval_prompts
    from .grpo_loop import RLConfig
    from .models import get_preset
    from .rl_experiment import conditions, format_table, rl_after_finetuning, starting_points, training_prompts
    from .runs import check_device, claim_folder, forget_results

    budget = get_preset(args.preset).rl
    for name, value in {**budget.config_kwargs(), "num_prompts": budget.num_prompts}.items():
        if getattr(args, name) is None:
            setattr(args, name, value)  # the recorded command then states every value
    cfg = settings_from_args(RLConfig, args)
    _check("--workers", args.workers)
    _check("--num-prompts", args.num_prompts)
    _check("--show-prompts", args.show_prompts, "non-negative")
    check_device(args.device)
    inits = starting_points(args.sft, args.psft, args.tag, args.init)
    prompts = training_prompts(args.split, args.num_prompts, args.prompt_seed)  # checked before anything is written
    made = (
        {"num_prompts": args.num_prompts, "prompt_seed": args.prompt_seed} if args.split.startswith("generated") else {}
    )
    claim_folder(args.out, "rl-compare", args.resume, args.overwrite, inputs=inits.values())
    forget_results(args.out, ("rl_compare.json",))
    result = rl_after_finetuning(
        inits,
        prompts,
        cfg,
        {f: eval_prompts(f, cfg.eval_prompts) for f in tasks.FAMILIES},
        cfg.eval_samples,
        out=args.out,
        progress=True,
        show_prompts=eval_prompts(tasks.IN_DOMAIN, args.show_prompts),
        command=command_line(args),
        device=args.device,
        extra_settings={"split": args.split, **made},
        workers=args.workers,
        resume=args.resume,
    )
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(result, separators=(",", ":")).encode())
    print("\n" + format_table(result))
    if any(len(names) > 1 for names in conditions(result).values()):
        print("\nmean over seeds (± sample std of the final value):\n" + format_table(result, by_condition=True))
    print(
        f"(reward, pass@k, entropy, distinct and zero-signal: mean of the first -> last 5 steps; in-domain and OOD: "
        f"sampled accuracy before -> after RL)\nresults: {Path(args.out) / 'rl_compare.json'}"
    )
    return 0


def _resume_help(resumable: tuple[str, ...]) -> str:
    changeable = ", ".join(flag(name) for name in resumable)
    return f"continue from --out/checkpoint.pt (only {changeable} may change)"


def _add_train_command(sub) -> None:
    """The ``train`` command: every :class:`~psft_edu.train.TrainConfig` field, plus where from and to."""
    from .train import RESUMABLE_SETTINGS, TrainConfig

    p = sub.add_parser("train", help="fine-tune with one objective")
    _preset_arg(p)
    p.add_argument("--model", default=None, help="folder or hf:<id> instead of the preset's base")
    p.add_argument("--data", default=None, help="prompt/completion JSONL instead of data/sft_train.jsonl")
    p.add_argument("--out", required=True, help="run folder: metrics, evaluations, checkpoint and final model")
    add_settings(p, TrainConfig)
    p.add_argument("--no-eval", action="store_true", help="skip the evaluations (always skipped with --data)")
    p.add_argument("--resume", action="store_true", help=_resume_help(RESUMABLE_SETTINGS))
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.set_defaults(func=cmd_train)


def _add_rl_commands(sub) -> None:
    """The ``rl`` and ``rl-compare`` commands: every :class:`~psft_edu.grpo_loop.RLConfig` field, plus their own."""
    from .grpo_loop import RL_RESUMABLE_SETTINGS, RLConfig
    from .presets import RLBudget

    p = sub.add_parser("rl", help="GRPO on the harder in-domain split, from a checkpoint")
    p.add_argument("--init", required=True, help="checkpoint folder (or preset) to start from")
    p.add_argument("--out", required=True, help="run folder: metrics, evaluations, checkpoint and final model")
    p.add_argument("--split", default="rl_hard", help="a shipped split or a JSONL file of prompts")
    add_settings(p, RLConfig)
    p.add_argument("--resume", action="store_true", help=_resume_help(RL_RESUMABLE_SETTINGS))
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.set_defaults(func=cmd_rl)

    p = sub.add_parser("rl-compare", help="GRPO from an SFT and a PSFT checkpoint with the same settings, side by side")
    p.add_argument("--sft", required=True, help="checkpoint folder of the SFT model")
    p.add_argument("--psft", required=True, help="checkpoint folder of the PSFT model")
    p.add_argument("--tag", default="", help="suffix of their run names, e.g. lr1e-03 -> sft_lr1e-03, psft_lr1e-03")
    p.add_argument(
        "--init", action="append", default=None, metavar="NAME=PATH", help="another start (repeatable), e.g. base=small"
    )
    p.add_argument("--out", required=True, help="folder of the GRPO runs (one sub-folder each) and rl_compare.json")
    _preset_arg(p, "whose RL budget sets the defaults below")
    add_settings(p, RLConfig, from_preset=tuple(f.name for f in fields(RLBudget)))
    p.add_argument(
        "--split",
        default="generated",
        help="'generated' (new make_sum prompts, none from data/), 'generated-hard', a shipped split or a JSONL file",
    )
    p.add_argument(
        "--num-prompts", type=int, default=None, help="with --split generated*: how many (default: the preset's)"
    )
    p.add_argument("--prompt-seed", type=int, default=1, help="with --split generated*")
    p.add_argument(
        "--show-prompts", type=int, default=4, help="in-domain prompts whose samples are kept at every evaluation"
    )
    p.add_argument("--json", default=None, help="also write the result here (e.g. notebooks/results/rl_small.json)")
    _workers_args(p)
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.set_defaults(func=cmd_rl_compare)


DEVICE_HELP = "cpu, cuda, cuda:1 or mps (default: CUDA if present, then MPS, then the CPU)"
COURSE_COMMANDS = """the course's own commands (python -m psft_edu.course <command> --help):
  stamp [--repo URL]       write the Open-in-Colab and set-up cells of every notebook from psft_edu/home.json
  student [SRC] [OUT]      the student edition: solutions removed (make student)
  book [SRC] [OUT]         the static course site (make book)

Bad input exits with 2, a failed run with 1, Ctrl-C with 130 and SIGTERM with 143."""


def _add_model_commands(sub) -> None:
    """``data``, ``pretrain`` and ``eval``."""
    p = sub.add_parser("data", help="(re)build data/ from the seeded generators")
    p.add_argument("--check", action="store_true", help="verify data/ against the generator instead of writing")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("pretrain", help="train a base model on the task mixture")
    _preset_arg(p)
    p.add_argument(
        "--out",
        default=None,
        help="folder (default: <cache>/checkpoints/<preset>, where $PSFT_EDU_CACHE or ~/.cache/psft-edu is the "
        "cache; the shipped checkpoints are only replaced when --out names them)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a base pretrained earlier into --out")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the data order (default: 0)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the preset's pretraining budget)")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("eval", help="evaluate a model on every task family")
    _preset_arg(p)
    p.add_argument("--model", default=None, help="folder, preset or hf:<id> (default: the preset's base)")
    p.add_argument("--families", nargs="*", default=None, help="task families to evaluate (default: all five)")
    p.add_argument("--prompts", type=int, default=100, help="held-out prompts per family (default: 100)")
    p.add_argument("--samples", type=int, default=8, help="completions sampled per prompt, k of pass@k (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--out", default=None, metavar="FILE", help="also save the table as JSON in this file")
    p.add_argument("--overwrite", action="store_true", help="replace a table an earlier eval saved in --out")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.set_defaults(func=cmd_eval)


def _add_experiment_commands(sub) -> None:
    """``compare``, ``bench`` and ``sweep``."""
    from .sweep import KINDS

    p = sub.add_parser(
        "compare", help="SFT vs PSFT side by side (the main experiment)",
        description=f"SFT vs PSFT side by side (the main experiment). Expected time: {flags.COMPARE_TIME}.",
    )
    _preset_arg(p)
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="seeds of the main view (default: the preset's)")
    p.add_argument("--out", default="runs/compare", help="folder of the report, summary and runs (%(default)s)")
    p.add_argument("--max-steps", type=int, default=None, help="main view's optimiser steps (default: the preset's)")
    p.add_argument("--no-long", action="store_true", help="skip the prolonged view (many epochs over a small set)")
    _workers_args(p)
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
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per timing (default: the preset's)")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--out", default=None, metavar="FILE", help="also write the table as JSON in this file")
    p.add_argument("--overwrite", action="store_true", help="replace a table an earlier bench wrote in --out")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("sweep", help="neighbours and ablations (writes results under --out)")
    _preset_arg(p)
    p.add_argument(
        "--what", default="all", choices=[*KINDS, "regime", "all"],
        help="which sweep; 'all' runs every one but the regime map (default: all)",
    )
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="seeds of every run (default: the sweep's own)")
    p.add_argument("--out", default="runs/sweep", help="folder of the sweeps, one sub-folder each (%(default)s)")
    p.add_argument("--max-steps", type=int, default=None, help="optimiser steps per run (default: the preset's)")
    p.add_argument(
        "--lr", type=float, default=None, help="rate of the neighbours/clip/refresh sweeps (default: the higher rate)"
    )
    _workers_args(p)
    p.set_defaults(func=cmd_sweep)


def build_parser() -> argparse.ArgumentParser:
    from .course import cmd_notebooks

    parser = argparse.ArgumentParser(
        prog="python -m psft_edu", description="Proximal SFT, from first principles.", epilog=COURSE_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=flags.VersionAction)
    sub = flags.GroupedSubparsers(parser.add_subparsers(dest="command", required=True, metavar="<command>"))
    _add_model_commands(sub)
    _add_train_command(sub)
    _add_experiment_commands(sub)
    _add_rl_commands(sub)
    p = sub.add_parser("notebooks", help="copy the course's notebooks and results into a folder (from any install)")
    p.add_argument("dest", metavar="DIR", help="a new or empty folder")
    p.add_argument("--student", action="store_true", help="the student edition: solutions removed")
    p.set_defaults(func=cmd_notebooks)

    commands = flags.command_parsers(parser)
    for name in ("train", "rl", "compare", "sweep"):
        flags.add_config_flag(commands[name])
    debug_help = f"show the full traceback of an error (or set {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    for command in commands.values():  # also accepted after the command's name
        flags.add_to_group(
            command, flags.EXECUTION_GROUP, "--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help
        )
    return parser


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _run_command(args: argparse.Namespace) -> int:
    """The command, then its output folders released (a folder it left untouched is put back as it was)."""
    from .runs import RECORDED_FLAGS, release_folders

    _SAID.clear()  # each command says once where its models come from
    try:
        return args.func(args)
    finally:
        RECORDED_FLAGS.clear()
        release_folders()


def main(argv: list[str] | None = None) -> int:
    from .data import DataError
    from .runs import Interrupted, TrainingError

    args = flags.parse_args(build_parser(), argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return _run_command(args)
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
