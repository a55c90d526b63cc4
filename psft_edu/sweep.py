"""Neighbours and ablations: the comparison's machinery over other sets of runs.

* ``neighbours``: SFT, PSFT, SFT-KL, DFT and ASFT at one learning rate;
* ``clip``: PSFT with epsilon 0.1, 0.28, 0.5 and no clip;
* ``refresh``: PSFT with the old policy refreshed every 1, 4, 8, 16 steps, or never;
* ``lr``: SFT and PSFT over a range of learning rates.

Each writes ``<out>/<what>/summary.json`` in the same shape as ``compare``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from .compare import SETTINGS, CompareSettings, RunSpec, evaluate_base, finetune, summarise
from .data import atomic_write_bytes, load_split
from .models import get_preset, preset_name

NO_CLIP = 1e6  # an epsilon so large that the clip never binds


def sweep_specs(what: str, settings: CompareSettings) -> list[RunSpec]:
    """The runs of one sweep."""
    lr, mini = settings.matched_lr, settings.mini_batch
    if what == "neighbours":
        return [RunSpec(o, o, lr) for o in ("sft", "psft", "sft_kl", "dft", "asft")]
    if what == "clip":
        return [RunSpec(f"psft_eps_{eps:g}", "psft", lr, clip=eps) for eps in (0.1, 0.28, 0.5)] + [
            RunSpec("psft_no_clip", "psft", lr, clip=NO_CLIP)
        ]
    if what == "refresh":
        return [RunSpec(f"psft_refresh_{k}", "psft", lr, global_batch=k * mini) for k in (1, 4, 8, 16)] + [
            RunSpec("psft_never_refreshed", "psft", lr, never_refresh=True)
        ]
    if what == "lr":
        rates = sorted({settings.matched_lr / 10, settings.matched_lr / 3, settings.matched_lr, settings.matched_lr * 3})
        return [RunSpec(f"{o}_lr_{r:g}", o, r) for o in ("sft", "psft") for r in rates]
    raise ValueError(f"unknown sweep {what!r}; choose neighbours, clip, refresh, lr or all")


def sweep(what: str, preset: str | None = None, seeds: tuple[int, ...] | None = None, out: str | Path = "runs/sweep",
          max_steps: int | None = None, progress: bool = True) -> dict:
    """Run one sweep and write its ``summary.json``; returns the summary."""
    p = get_preset(preset_name(preset))
    settings = SETTINGS[p.name]
    if seeds:
        settings = replace(settings, seeds=tuple(seeds))
    if max_steps:
        settings = replace(settings, max_steps=max_steps, eval_every=min(settings.eval_every, max_steps))
    folder = Path(out) / what
    folder.mkdir(parents=True, exist_ok=True)
    records, val = load_split("sft_train"), load_split("sft_val")
    specs = sweep_specs(what, settings)
    started = time.time()
    base = [evaluate_base(p.name, settings, seed, val) for seed in settings.seeds]
    results: dict[str, list[dict]] = {s.name: [] for s in specs}
    for seed, base_eval in zip(settings.seeds, base):
        for spec in specs:
            if progress:
                print(f"[sweep {what}] {spec.name} seed {seed}", flush=True)
            results[spec.name].append(finetune(spec, settings, p.name, seed, None, records, val, progress, base_eval))
    summary = summarise(p.name, settings, results, specs, base)
    summary["sweep"] = what
    summary["seconds"] = round(time.time() - started, 1)
    for spec in specs:
        refresh_every = (spec.global_batch or settings.global_batch) // settings.mini_batch
        summary["runs"][spec.name].update(clip=spec.clip, never_refresh=spec.never_refresh, refresh_every=refresh_every)
    atomic_write_bytes(folder / "summary.json", json.dumps(summary, indent=1).encode())
    return summary


def main(args) -> int:
    kinds = ["neighbours", "clip", "refresh", "lr"] if args.what == "all" else [args.what]
    for what in kinds:
        summary = sweep(what, args.preset, tuple(args.seeds) if args.seeds else None, args.out, args.max_steps)
        print(f"\n{what} ({summary['seconds']} s): {Path(args.out) / what / 'summary.json'}")
        print("| run | in-domain acc | OOD acc | demo entropy | distinct valid |\n| --- | --- | --- | --- | --- |")
        for name, run in summary["runs"].items():
            f = run["final"]
            print(f"| {name} | {100 * f['in_domain_accuracy']['mean']:.1f} | {100 * f['ood_accuracy']['mean']:.1f} | "
                  f"{f['entropy']['mean']:.3f} | {f['distinct_valid']['mean']:.2f} |")
    return 0
