"""Command line: ``python -m psft_edu <command> --help``.

Commands: data, pretrain, eval, train, compare, sweep, rl, rl-compare, bench, notebooks; the course's own
(stamp, student, book) are ``python -m psft_edu.course <command>``. Flag groups, ``--config FILE`` and
``--version`` come from :mod:`psft_edu.cli.flags`.

Bad input (flags, data, run folders, checkpoints) stops before any training with one line on
stderr and exit code 2; a failed run exits 1; Ctrl-C exits 130 and SIGTERM 143, both after
saving a checkpoint. ``--debug`` (or ``PSFT_EDU_DEBUG=1``) shows the full traceback instead.

``train --resume`` and ``rl --resume`` refuse settings that differ from the saved run, except
how long it goes on and how often it evaluates and saves (``--max-steps`` / ``--steps``,
``--eval-every``, ``--save-every``; with ``--schedule cosine`` the decay follows ``--max-steps``,
so it must stay). Every command that writes follows one rule (:func:`psft_edu.engine.runs.claim_folder`): a new
or empty ``--out``, or one the same command made; an earlier run is kept unless ``--resume`` or
``--overwrite`` says otherwise; never through a link, never the model it reads, never two writers at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import fields

from ..presets import DEFAULT_PRESET, PRESET_ENV, PRESETS
from . import flags
from .commands import (
    cmd_bench,
    cmd_compare,
    cmd_data,
    cmd_eval,
    cmd_notebooks,
    cmd_pretrain,
    cmd_rl,
    cmd_rl_compare,
    cmd_sweep,
    cmd_train,
    forget_said_sources,
)
from .flags import add_settings, flag

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what schedulers expect after SIGTERM
DEBUG_ENV = "PSFT_EDU_DEBUG"


def _workers_args(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--resume`` of the commands that run many independent runs."""
    from ..engine.workers import usable_cores

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


def _resume_help(resumable: tuple[str, ...]) -> str:
    changeable = ", ".join(flag(name) for name in resumable)
    return f"continue from --out/checkpoint.pt (only {changeable} may change)"


def _add_train_command(sub) -> None:
    """The ``train`` command: every :class:`~psft_edu.engine.train.TrainConfig` field, plus where from and to."""
    from ..engine.train import RESUMABLE_SETTINGS, TrainConfig

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
    """The ``rl`` and ``rl-compare`` commands: every :class:`~psft_edu.engine.grpo_loop.RLConfig` field, plus
    their own."""
    from ..engine.grpo_loop import RL_RESUMABLE_SETTINGS, RLConfig
    from ..presets import RLBudget

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
  stamp [--repo URL]       write the Open-in-Colab and set-up cells of every notebook from psft_edu/course/home.json
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
    from ..experiments.sweep import KINDS

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
    from ..engine.outputs import release_folders
    from ..engine.runs import RECORDED_FLAGS

    forget_said_sources()
    try:
        return args.func(args)
    finally:
        RECORDED_FLAGS.clear()
        release_folders()


def main(argv: list[str] | None = None) -> int:
    from ..data import DataError
    from ..engine.runs import Interrupted, TrainingError

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
