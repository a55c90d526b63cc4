"""Fine-tune a causal language model with PSFT through TRL (``PSFTTrainer``), from the command line.

A script to copy into your own project: everything except the loss is TRL's ``SFTTrainer``
(tokenisation, completion-only or assistant-only masking, collator, PEFT, logging, launch).

    python examples/train_psft_trl.py --model tiny --out runs/psft-trl --lr 3e-3 --steps 64 --refresh-every 8
    python examples/train_psft_trl.py --model hf:Qwen/Qwen2.5-0.5B-Instruct --data chats.jsonl --out runs/qwen --peft
    accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 4 \\
        examples/train_psft_trl.py --model ./my-model --data demos.jsonl --out runs/ddp

Data: a JSONL file, one example per line, in one of two formats (the same on every line):

    {"prompt": "add 23 48:", "completion": " 71"}                loss on the completion only
    {"messages": [{"role": "user", "content": "add 23 48:"},
                  {"role": "assistant", "content": " 71"}]}      loss on the assistant turns only

Batch vocabulary: one optimiser step takes ``--per-device-batch x --grad-accum x processes``
sequences (notebook 05's mini-batch); the old policy is frozen every ``--refresh-every`` (K)
steps, so one frozen old policy covers K times that (05's global batch). The defaults are the
paper's settings for a 7B model (lr 1e-6, 10 warm-up steps then constant, weight decay 0.1,
gradient clipping 1.0, mini-batch 32, K = 8, clip 0.28); a small model needs a larger rate.

Writes, inside ``--out`` only (a new or empty folder): ``model/`` (the fine-tuned model, or
the LoRA adapter with ``--peft``, and the tokenizer), ``log_history.jsonl`` (every logged
step) and ``run.json`` (the settings, the batch sizes and the library versions).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent
CHAT_TEMPLATE = EXAMPLES / "chat_template.jinja"  # used when the tokenizer has none (the course's models)
ROLES = ("system", "user", "assistant")


def arg(default: Any, help: str) -> Any:  # noqa: A002 (argparse's word)
    return field(default=default, metadata={"help": help})


@dataclass
class Args:
    out: str = arg(None, "output folder (new or empty); everything the script writes goes inside it")
    model: str = arg("tiny", "a preset of this course (tiny, small, gpt2), a model folder, or hf:<hub id>")
    data: str | None = arg(None, "JSONL of prompt/completion or messages (default: the course's demonstrations)")
    objective: str = arg("psft", "psft, or sft / dft for a baseline through the same script")
    refresh_every: int = arg(8, "K: optimiser steps per frozen old policy (1: PSFT takes SFT's steps)")
    clip: float = arg(0.28, "epsilon: a token whose ratio passes 1 + epsilon gets no gradient of its own")
    lr: float = arg(1e-6, "peak learning rate (AdamW)")
    warmup_steps: int = arg(10, "linear warm-up steps; the rate is constant afterwards")
    weight_decay: float = arg(0.1, "AdamW weight decay")
    max_grad_norm: float = arg(1.0, "gradient-norm clipping")
    steps: int = arg(100, "optimiser steps")
    per_device_batch: int = arg(32, "sequences per device per micro-batch (per_device_train_batch_size)")
    grad_accum: int = arg(1, "micro-batches per optimiser step (gradient_accumulation_steps)")
    max_length: int = arg(1024, "longest sequence in tokens; longer ones are truncated")
    peft: bool = arg(False, "train a LoRA adapter (PEFT) instead of every weight")
    lora_r: int = arg(16, "LoRA rank")
    lora_alpha: int = arg(32, "LoRA scaling numerator (the update is scaled by alpha / r)")
    lora_dropout: float = arg(0.0, "dropout on the LoRA input")
    precision: str = arg("auto", "auto (TRL's default: bf16 where supported), bf16 or fp32")
    cpu: bool = arg(False, "train on the CPU even if a GPU is present (without one the CPU is used anyway)")
    logging_steps: int = arg(10, "optimiser steps between logged statistics")
    save_steps: int = arg(0, "optimiser steps between checkpoints in <out>/checkpoints (0: only the final model)")
    seed: int = arg(0, "seed of the data order and of LoRA's initialisation")


CHOICES = {"objective": ("psft", "sft", "dft"), "precision": ("auto", "bf16", "fp32")}
POSITIVE = ("refresh_every", "clip", "lr", "max_grad_norm", "steps", "per_device_batch", "grad_accum", "max_length",
            "lora_r", "lora_alpha", "logging_steps")


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.default is False:
            parser.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            kind = str if f.default is None else type(f.default)
            parser.add_argument(flag, type=kind, default=f.default, required=f.name == "out",
                                choices=CHOICES.get(f.name), help=f.metadata["help"])
    args = Args(**vars(parser.parse_args(argv)))
    for name in POSITIVE:
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.warmup_steps < 0 or args.weight_decay < 0 or args.save_steps < 0 or not 0 <= args.lora_dropout < 1:
        parser.error("--warmup-steps, --weight-decay and --save-steps must be >= 0, --lora-dropout in [0, 1)")
    return args


class DataError(ValueError):
    """Bad input: the message names the file, the line and the problem."""


def _problem(record: Any) -> tuple[str | None, str]:
    """``(problem or None, format)`` of one parsed line."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}", ""
    if "messages" in record:
        turns = record["messages"]
        if not isinstance(turns, list) or not turns:
            return "'messages' must be a non-empty list", "messages"
        for turn in turns:
            if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
                return f"every message needs a role ({', '.join(ROLES)}) and a string content", "messages"
        if not any(turn["role"] == "assistant" and turn["content"] for turn in turns):
            return "no assistant message with content: nothing to learn from", "messages"
        return None, "messages"
    for key in ("prompt", "completion"):
        if not isinstance(record.get(key), str):
            return f"needs a string {key!r} (or a 'messages' list)", "prompt/completion"
    if not record["completion"]:
        return "empty completion", "prompt/completion"
    return None, "prompt/completion"


def read_examples(path: str | Path) -> tuple[list[dict], str]:
    """The examples of a JSONL file and their format (``"prompt/completion"`` or ``"messages"``).

    Raises :class:`DataError` (``"<file>:<line>: <problem>"``) on the first bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    records, first = [], None
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
                record = json.loads(line) if line.strip() else None
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: not valid UTF-8 (byte {err.start})") from None
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: broken JSON ({err.msg} at column {err.colno})") from None
            if record is None:
                continue
            problem, kind = _problem(record)
            first = first or kind
            if problem is None and kind != first:
                problem = f"{kind} example in a {first} file: use one format throughout"
            if problem:
                raise DataError(f"{path}:{number}: {problem}")
            keep = ("messages",) if kind == "messages" else ("prompt", "completion")
            records.append({k: record[k] for k in keep})
    if not records:
        raise DataError(f"{path}: no examples")
    return records, first


def check_out(out: str | Path) -> None:
    """``out`` must not exist yet or be an empty folder: the script never writes over anything it did not make."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DataError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise DataError(f"--out {out}: not empty; choose a new folder")


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    import accelerate
    import datasets
    import torch
    import transformers
    import trl

    found = {m.__name__: m.__version__ for m in (trl, transformers, torch, accelerate, datasets)}
    try:
        import peft

        found["peft"] = peft.__version__
    except ImportError:
        found["peft"] = "not installed"
    return found


def accelerated() -> bool:
    """Whether torch sees a GPU (CUDA) or Apple's MPS."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps is not None and mps.is_available())


def build_trainer(args: Args, out: Path):
    """The ``PSFTTrainer`` for ``args`` (model, data, SFTConfig, LoRA): the part to lift into your own script."""
    from datasets import Dataset
    from trl import SFTConfig

    from psft_edu.integrations import PSFTTrainer
    from psft_edu.models import load_model
    from psft_edu.paths import DATA_DIR

    records, kind = read_examples(args.data or DATA_DIR / "sft_train.jsonl")
    model, tokenizer = load_model(args.model, device="cpu")  # the trainer moves it to its device
    chat = kind == "messages"
    config = SFTConfig(
        output_dir=str(out / "checkpoints"),
        learning_rate=args.lr,
        lr_scheduler_type="constant_with_warmup",  # the paper's (verl's default): warm-up, then constant
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        max_steps=args.steps,
        per_device_train_batch_size=args.per_device_batch,
        gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length,
        assistant_only_loss=chat,  # messages: loss on the assistant turns; prompt/completion: on the completion
        chat_template_path=str(CHAT_TEMPLATE) if chat and not tokenizer.chat_template else None,
        **({} if args.precision == "auto" else {"bf16": args.precision == "bf16"}),
        use_cpu=args.cpu or not accelerated(),  # TRL's default bf16 is refused on a machine without one
        logging_steps=args.logging_steps,
        save_strategy="steps" if args.save_steps else "no",
        **({"save_steps": args.save_steps} if args.save_steps else {}),
        report_to=[],
        seed=args.seed,
    )
    peft_config = None
    if args.peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM",
                                 fan_in_fan_out=model.config.model_type == "gpt2")  # GPT-2's Conv1D stores W^T
    return PSFTTrainer(
        model, config, train_dataset=Dataset.from_list(records), processing_class=tokenizer, peft_config=peft_config,
        objective=args.objective, clip=args.clip, refresh_every=args.refresh_every,
    )


def batch_sizes(args: Args, processes: int) -> dict[str, int]:
    """Notebook 05's batch vocabulary in TRL's terms."""
    mini = args.per_device_batch * args.grad_accum * processes
    return {"processes": processes, "mini_batch": mini, "refresh_every": args.refresh_every,
            "global_batch": mini * args.refresh_every}


def summary(history: list[dict]) -> str:
    steps = [h for h in history if "nll" in h and "loss" in h]
    if not steps:
        return "no training step was logged"
    line = f"nll {steps[0]['nll']:.3f} -> {steps[-1]['nll']:.3f} over {steps[-1]['step']} steps"
    if "clip_fraction" in steps[0]:
        mean_clip = sum(h["clip_fraction"] for h in steps) / len(steps)
        line += (f"; clip_fraction mean {mean_clip:.3f}, largest ratio_p99 {max(h['ratio_p99'] for h in steps):.3g}, "
                 f"largest ratio_max {max(h['ratio_max'] for h in steps):.3g}")
    return line


def run(args: Args) -> list[dict]:
    """Train and write ``model/``, ``log_history.jsonl`` and ``run.json`` inside ``args.out``; returns the log."""
    out = Path(args.out)
    trainer = build_trainer(args, out)
    main_process = trainer.is_world_process_zero()
    sizes = batch_sizes(args, trainer.accelerator.num_processes)
    if main_process:
        print(f"one optimiser step: {args.per_device_batch} per device x {args.grad_accum} accumulated x "
              f"{sizes['processes']} process(es) = {sizes['mini_batch']} sequences (mini-batch); old policy frozen "
              f"every K = {args.refresh_every} steps = {sizes['global_batch']} sequences (global batch)")
    trainer.train()
    partial = out / ".model.partial"
    trainer.save_model(str(partial))  # all processes take part (sharded models); the main one writes
    if main_process:
        os.replace(partial, out / "model")
        history = trainer.state.log_history
        write_atomic(out / "log_history.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        record = {"args": asdict(args), "batch": sizes, "versions": versions(), "command": " ".join(sys.argv)}
        write_atomic(out / "run.json", json.dumps(record, indent=1) + "\n")
        print(summary(history))
        what = "LoRA adapter" if args.peft else "model"
        print(f"wrote {out / 'model'} ({what} and tokenizer), {out / 'log_history.jsonl'} and {out / 'run.json'}")
    return trainer.state.log_history


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if os.environ.get("RANK", "0") == "0":  # under accelerate launch, the first process checks and creates
            check_out(args.out)
            if args.data:
                read_examples(args.data)
            Path(args.out).mkdir(parents=True, exist_ok=True)
        run(args)
    except (DataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
