"""A few PSFTTrainer steps on the tiny preset, run alone or under ``accelerate launch``.

Used by tests/test_integrations.py. The global batch is fixed (``--global-batch``): each of
the ``WORLD_SIZE`` processes takes ``global_batch / WORLD_SIZE`` sequences per step, read in
file order (sequential sampling), so one process and two processes see the same global
batches. Each rank writes ``rank<r>.pt`` (its final weights, flattened) and ``rank<r>.json``
(a checksum of them, the logged per-step losses and clip fractions, the distributed set-up).

    accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 2 --mixed_precision no \
        tests/accelerate_psft_script.py --out runs/ddp
    python tests/accelerate_psft_script.py --out runs/single

On a machine without GPUs the DDP config (``distributed_type: MULTI_GPU``, like ``--multi_gpu``)
only picks accelerate's torchrun-style launcher, one process per rank; with ``use_cpu=True``
accelerate then joins them in a ``MULTI_CPU`` group on gloo. A plain ``accelerate launch --cpu``
would start a single process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl import SFTConfig  # noqa: E402

from psft_edu.data import load_split  # noqa: E402
from psft_edu.integrations import PSFTTrainer  # noqa: E402
from psft_edu.models import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--refresh-every", type=int, default=3)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--optim", default="sgd", help="a transformers optimiser name (sgd: weights compare gradients)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.global_batch % world:
        raise SystemExit(f"--global-batch {args.global_batch} is not divisible by {world} processes")
    model, tok = load_model("tiny", device="cpu")
    data = Dataset.from_list(load_split("sft_train")[: args.global_batch * args.steps])
    config = SFTConfig(
        output_dir=str(Path(args.out) / "trainer"),
        report_to=[],
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=args.global_batch // world,
        max_steps=args.steps,
        learning_rate=args.lr,
        optim=args.optim,
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        train_sampling_strategy="sequential",
        seed=0,
    )
    trainer = PSFTTrainer(
        model, config, train_dataset=data, processing_class=tok, objective="psft", refresh_every=args.refresh_every
    )
    trainer.train()

    state = trainer.accelerator.state
    params = torch.cat([p.detach().flatten() for p in trainer.model.parameters()]).cpu()
    logs = [h for h in trainer.state.log_history if "clip_fraction" in h]
    meta = {
        "rank": state.process_index,
        "world_size": state.num_processes,
        "distributed_type": str(state.distributed_type).split(".")[-1],
        "backend": state.backend,
        "checksum": hashlib.sha256(params.numpy().tobytes()).hexdigest(),
        "losses": [h["loss"] for h in logs],
        "clip_fractions": [h["clip_fraction"] for h in logs],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(params, out / f"rank{state.process_index}.pt")
    (out / f"rank{state.process_index}.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
