"""Measure the ranges of PSFTTrainer's logged statistics on your own model, before a long run.

Runs ``train_psft_trl.py`` (same flags, same trainer) for every model, learning rate, K and seed
asked for, logging every step, and summarises the statistics of the steps whose old policy is
stale (every step but the first after a refresh, where all ratios are 1 by construction): for each
statistic the 10th, 50th and 90th percentile over those steps, all seeds pooled, and the largest.

    python examples/measure_ranges.py --out runs/ranges --models tiny small --lrs 1e-4 1e-3 --seeds 0 1 2

Writes ``<out>/ranges.json`` (the protocol, the summaries, and every run's per-step statistics) and
one run folder per setting inside ``--out``; prints one table row per setting.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_psft_trl as example  # noqa: E402

STATS = ("clip_fraction", "ratio_median", "ratio_p99", "ratio_max", "unclippable")


def percentile(values: list[float], q: float) -> float:
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q))


def summarise(histories: list[list[dict]], refresh_every: int) -> dict:
    """Percentiles over the stale steps of every run, and the NLL at the first and the last step per run."""
    steps = [[h for h in history if "clip_fraction" in h] for history in histories]
    stale = [h for run in steps for h in run if (h["step"] - 1) % refresh_every]
    summary = {
        key: {"p10": percentile([h[key] for h in stale], 0.1), "p50": percentile([h[key] for h in stale], 0.5),
              "p90": percentile([h[key] for h in stale], 0.9), "max": max(h[key] for h in stale)}
        for key in STATS
    }
    summary["nll_first"] = [run[0]["nll"] for run in steps]
    summary["nll_last"] = [run[-1]["nll"] for run in steps]
    summary["stale_steps"] = len(stale)
    return summary


def measure(model: str, lr: float, k: int, options: argparse.Namespace, out: Path) -> dict[str, list[dict]]:
    """One run per seed; returns each run's per-step statistics by run name."""
    runs = {}
    for seed in options.seeds:
        name = f"{Path(model).name}_lr{lr:g}_K{k}_seed{seed}"
        args = example.Args(out=str(out / name), model=model, data=options.data, lr=lr, refresh_every=k, seed=seed,
                            steps=options.steps, per_device_batch=options.per_device_batch, logging_steps=1,
                            precision="fp32", cpu=True)
        Path(args.out).mkdir()
        logged = example.run(args)
        runs[name] = [{key: h[key] for key in (*STATS, "step", "nll") if key in h} for h in logged if "nll" in h]
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="new or empty folder for ranges.json and the runs")
    parser.add_argument("--models", nargs="+", default=["tiny", "small"], help="presets, folders or hf:<id>")
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-4, 1e-3], help="learning rates")
    parser.add_argument("--refresh-every", nargs="+", type=int, default=[8], help="values of K")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (data order)")
    parser.add_argument("--steps", type=int, default=160, help="optimiser steps per run")
    parser.add_argument("--per-device-batch", type=int, default=32, help="sequences per optimiser step")
    parser.add_argument("--data", default=None, help="JSONL of the examples (default: the course's demonstrations)")
    options = parser.parse_args(argv)
    try:
        example.check_out(options.out)
    except example.DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # small models: one thread is fastest, and the runs are reproducible
    rows, runs = [], {}
    for model in options.models:
        for lr in options.lrs:
            for k in options.refresh_every:
                measured = measure(model, lr, k, options, out)
                runs.update(measured)
                rows.append({"model": model, "lr": lr, "refresh_every": k, **summarise(list(measured.values()), k)})
    protocol = {
        "trainer": "PSFTTrainer through examples/train_psft_trl.py, float32 on the CPU, one thread",
        "settings": (f"AdamW, 10 warm-up steps then constant, weight decay 0.1, gradient clipping 1.0, clip 0.28, "
                     f"{options.per_device_batch} sequences per optimiser step, {options.steps} steps"),
        "data": options.data or "data/sft_train.jsonl",
        "seeds": options.seeds,
        "summary": "percentiles over the stale steps (not the first step after a refresh) of all seeds pooled; "
                   "nll_first / nll_last: the completion NLL of the first and the last step's mini-batch, per seed",
        "command": " ".join(["python", "examples/measure_ranges.py", *(sys.argv[1:] if argv is None else argv)]),
        "versions": example.versions(),
    }
    (out / "ranges.json").write_text(json.dumps({"protocol": protocol, "rows": rows, "runs": runs}, indent=1) + "\n")
    for row in rows:
        cells = "  ".join(f"{key} {row[key]['p10']:.3g}-{row[key]['p90']:.3g} (max {row[key]['max']:.3g})"
                          for key in STATS)
        print(f"{row['model']} lr {row['lr']:g} K {row['refresh_every']}: {cells}")
    print(f"wrote {out / 'ranges.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
