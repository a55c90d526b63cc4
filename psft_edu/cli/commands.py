"""The command handlers of ``python -m psft_edu``: one ``cmd_<name>(args) -> int`` per command, each reading the
parsed flags (built in :mod:`psft_edu.cli.main`), checking them and calling the engine or an experiment.

Bad input raises before anything is written (:class:`~psft_edu.cli.flags.FlagError`, ``FileNotFoundError``,
``RunError``); :func:`psft_edu.cli.main.main` turns it into one line and the exit status.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..config import problem_with
from ..presets import preset_name
from .flags import FlagError, command_line, settings_from_args


def say_model_source(spec: str | Path | None) -> None:
    """Print once per command where its model comes from (:func:`psft_edu.models.model_source`)."""
    from ..models import model_source

    where = model_source(spec)
    if where not in _SAID:
        _SAID.add(where)
        print(f"model: {where}", flush=True)


_SAID: set[str] = set()


def forget_said_sources() -> None:
    """Start a new command: it says again, once, where its models come from."""
    _SAID.clear()


def load_model_for_run(spec: str | Path | None, device: str | None = None):
    """:func:`psft_edu.models.load_model`, with a failure to find or read the model as one-line :class:`RunError`;
    where the model came from is printed once (:func:`say_model_source`). A preset's missing base is built first
    where that is allowed (:func:`psft_edu.experiments.build_base.load_with_base`)."""
    from ..engine.outputs import RunError
    from ..experiments.build_base import load_with_base

    try:
        loaded = load_with_base(spec, device=device)
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


def cmd_data(args) -> int:
    from ..data import DATA_DIR, all_data_files, check_data, write_data
    from ..engine.outputs import RunError, claim_data_folder
    from ..paths import data_is_read_only

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
    from ..engine.outputs import claim_folder
    from ..engine.runs import check_device
    from ..experiments.pretrain import pretrain
    from ..paths import user_checkpoint_dir

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
    from .. import tasks
    from ..data import eval_prompts
    from ..engine.evaluate import EVAL_NEW_TOKENS, evaluate_model
    from ..engine.runs import check_device, check_model_fits, check_prompt_room

    _check("--samples", args.samples)
    _check("--prompts", args.prompts)
    if args.out is not None:
        from ..engine.outputs import check_out_file

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
        from ..data import atomic_write_bytes

        table = {"written_by": "eval", "model": str(args.model or preset_name(args.preset)), "prompts": args.prompts,
                 "samples": args.samples, "seed": args.seed, "results": result}
        atomic_write_bytes(Path(args.out), (json.dumps(table, indent=2) + "\n").encode())
        print(f"saved {args.out}")
    return 0


def cmd_train(args) -> int:
    from ..data import DATA_DIR, check_coverage, check_lengths, load_split, read_jsonl
    from ..engine.evaluate import make_eval_fn
    from ..engine.outputs import claim_folder
    from ..engine.runs import RECORDED_FLAGS, check_device, check_model_fits, check_run_folder
    from ..engine.train import TrainConfig, Trainer

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
    from ..engine.outputs import claim_folder, forget_results
    from ..experiments.compare import compare

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
    from ..engine.runs import check_device
    from ..experiments.bench import run_bench

    _check("--steps", args.steps)
    check_device(args.device)
    if args.out is not None:
        from ..engine.outputs import check_out_file

        check_out_file(args.out, "bench", args.overwrite)

    run_bench(preset_name(args.preset), steps=args.steps, device=args.device, out=args.out)
    return 0


def cmd_sweep(args) -> int:
    from ..engine.outputs import claim_folder, forget_results
    from ..experiments.sweep import KINDS, markdown_table, sweep

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
    from .. import tasks
    from ..data import DataError, eval_prompts, prompts_digest, uncovered_characters
    from ..engine.evaluate import EVAL_NEW_TOKENS, evaluate_model
    from ..engine.grpo_loop import RLConfig, grpo, load_prompts
    from ..engine.outputs import claim_folder
    from ..engine.runs import RECORDED_FLAGS, check_device, check_model_fits, check_prompt_room, check_run_folder

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
    from .. import tasks
    from ..data import atomic_write_bytes, eval_prompts
    from ..engine.grpo_loop import RLConfig
    from ..engine.outputs import claim_folder, forget_results
    from ..engine.runs import check_device
    from ..experiments.rl_experiment import (
        conditions,
        format_table,
        rl_after_finetuning,
        starting_points,
        training_prompts,
    )
    from ..presets import get_preset

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


def cmd_notebooks(args: argparse.Namespace) -> int:
    """``python -m psft_edu notebooks DIR [--student]``."""
    from ..course.editions import copy_course

    written = copy_course(args.dest, student=args.student)
    edition = "student edition" if args.student else "notebooks"
    print(f"{len(written)} {edition} and their results in {args.dest}; open them with: jupyter lab {args.dest}")
    return 0


