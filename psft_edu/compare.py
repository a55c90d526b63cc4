"""The main experiment: base -> SFT and base -> PSFT on the same data, side by side.

SFT and PSFT each at two learning rates, over several seeds. That gives three views:

1. matched at the higher rate (the best in-domain rate of both in our scan),
2. matched at the lower rate, and
3. the paper's protocol: SFT at the higher rate, PSFT at a lower one (the paper ran
   PSFT 20x lower), which mixes the objective with the learning rate. Views 1 and 2
   answer the learners' question "is PSFT just a smaller learning rate?".

Writes ``summary.json``, ``report.md`` and PNG figures into the output folder.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import tasks
from .data import atomic_write_bytes, eval_prompts, load_split
from .evaluate import demonstration_metrics, evaluate_model, sample
from .models import get_preset, load_model
from .train import TrainConfig, Trainer


@dataclass(frozen=True)
class RunSpec:
    name: str
    objective: str
    lr: float
    never_refresh: bool = False
    clip: float | None = None
    global_batch: int | None = None


@dataclass(frozen=True)
class CompareSettings:
    """Budget of the comparison at one preset (chosen so `make compare` stays under 10 minutes)."""

    max_steps: int
    global_batch: int
    mini_batch: int
    high_lr: float  # the best in-domain rate of both objectives in a single-seed scan
    low_lr: float  # ten times lower: PSFT's rate in the paper-style pairing
    eval_every: int
    eval_prompts: int
    eval_samples: int
    final_prompts: int
    final_samples: int
    seeds: tuple[int, ...] = (0, 1, 2)


SETTINGS: dict[str, CompareSettings] = {
    "tiny": CompareSettings(64, 256, 32, 1e-3, 1e-4, 32, 16, 4, 32, 4, seeds=(0,)),
    "small": CompareSettings(192, 256, 32, 1e-3, 1e-4, 48, 24, 4, 64, 8),
    "gpt2": CompareSettings(400, 256, 32, 1e-4, 1e-5, 50, 64, 8, 128, 8),
}


def run_name(objective: str, lr: float) -> str:
    return f"{objective}_lr{lr:.0e}"


def run_specs(settings: CompareSettings) -> list[RunSpec]:
    """SFT and PSFT at the higher and the lower learning rate."""
    return [RunSpec(run_name(o, lr), o, lr) for lr in (settings.high_lr, settings.low_lr) for o in ("sft", "psft")]


SAMPLE_PROMPTS = 4  # per family, for the side-by-side generations in the report


def sample_table(model: torch.nn.Module, tokenizer, seed: int = 0, per_prompt: int = 4) -> dict[str, list[str]]:
    """A few completions (temperature 1) for the first eval prompts of each family."""
    prompts = [p for f in tasks.FAMILIES for p in eval_prompts(f, SAMPLE_PROMPTS if f == tasks.IN_DOMAIN else 1)]
    drawn = sample(model, tokenizer, prompts, per_prompt, temperature=1.0, seed=seed)
    return dict(zip(prompts, drawn.texts))


def make_eval_fn(tokenizer, val_records: list[dict], prompts: int, samples: int, seed: int) -> Callable:
    """Evaluation used during fine-tuning: verifier metrics plus entropy/KL on validation demos."""
    per_family = {f: eval_prompts(f, prompts) for f in tasks.FAMILIES}

    def evaluate(model: torch.nn.Module, step: int, reference: torch.nn.Module | None = None) -> dict:
        result = evaluate_model(model, tokenizer, per_family, samples, seed=seed)
        demo = demonstration_metrics(model, tokenizer, val_records, reference=reference)
        families = {f: r for f, r in result.items() if f != "summary"}
        return {"families": families, **result["summary"], **{f"demo_{k}": v for k, v in demo.items()}}

    return evaluate


def finetune(
    spec: RunSpec,
    settings: CompareSettings,
    preset: str,
    seed: int,
    out: Path | None,
    records: list[dict],
    val_records: list[dict],
    progress: bool = True,
    base_eval: dict | None = None,
) -> dict:
    """One fine-tuning run from the preset's base; returns its metrics, evals and final eval."""
    model, tokenizer = load_model(preset)
    cfg = TrainConfig(
        objective=spec.objective,
        lr=spec.lr,
        max_steps=settings.max_steps,
        global_batch=spec.global_batch or settings.global_batch,
        mini_batch=settings.mini_batch,
        clip=spec.clip if spec.clip is not None else 0.28,
        never_refresh=spec.never_refresh,
        seed=seed,
        eval_every=settings.eval_every,
        init=preset,
    )
    quick = make_eval_fn(tokenizer, val_records, settings.eval_prompts, settings.eval_samples, seed)
    final = make_eval_fn(tokenizer, val_records, settings.final_prompts, settings.final_samples, seed)

    def eval_fn(m, step):
        if step == 0 and base_eval is not None:
            return base_eval["quick"]  # the base was already evaluated once for this seed
        # The trainer's frozen copy of the base serves as the reference for KL to the base.
        return (final if step >= settings.max_steps else quick)(m, step, trainer.reference)

    trainer = Trainer(model, tokenizer, records, cfg, out=out, eval_fn=eval_fn, progress=progress)
    history = trainer.train()
    return {"metrics": history, "evals": trainer.evals, "final": trainer.evals[-1], "samples": sample_table(model, tokenizer, seed)}


def evaluate_base(preset: str, settings: CompareSettings, seed: int, val_records: list[dict]) -> dict:
    model, tokenizer = load_model(preset)
    quick = make_eval_fn(tokenizer, val_records, settings.eval_prompts, settings.eval_samples, seed)
    final = make_eval_fn(tokenizer, val_records, settings.final_prompts, settings.final_samples, seed)
    # No reference: the base's KL to itself is zero (summarise() records it as such).
    return {"quick": quick(model, 0), "final": final(model, 0), "samples": sample_table(model, tokenizer, seed)}


def run_grid(
    specs: list[RunSpec], settings: CompareSettings, preset: str, tag: str, out: Path | None, progress: bool
) -> tuple[dict[str, list[dict]], list[dict]]:
    """Every spec for every seed of ``settings``, from the preset's base; ``(results, base evals)``.

    With ``out``, each run keeps its folder ``<out>/<name>_seed<k>`` (metrics, checkpoint, model).
    """
    records, val = load_split("sft_train"), load_split("sft_val")
    base = [evaluate_base(preset, settings, seed, val) for seed in settings.seeds]
    results: dict[str, list[dict]] = {s.name: [] for s in specs}
    for seed, base_eval in zip(settings.seeds, base):
        for spec in specs:
            if progress:
                print(f"[{tag}] {spec.name} (lr {spec.lr:g}) seed {seed}", flush=True)
            folder = out / f"{spec.name}_seed{seed}" if out is not None else None
            results[spec.name].append(finetune(spec, settings, preset, seed, folder, records, val, progress, base_eval))
    return results, base


def _stats(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "per_seed": values,
    }


FINAL_KEYS = {
    "entropy": "demo_entropy",
    "sample_entropy": "sample_entropy",
    "in_domain_accuracy": "in_domain_accuracy",
    "in_domain_greedy": "in_domain_greedy",
    "ood_accuracy": "ood_accuracy",
    "ood_greedy": "ood_greedy",
    "distinct_valid": "distinct_valid",
    "kl_to_base": "demo_kl_to_base",
}


def summarise(preset: str, settings: CompareSettings, results: dict[str, list[dict]], specs: list[RunSpec], base: list[dict]) -> dict:
    """Collapse per-seed results into the documented ``summary.json`` shape."""
    runs = {}
    for spec in specs:
        per_seed = results[spec.name]
        steps = [r["step"] for r in per_seed[0]["metrics"]]
        curves = {
            key: {"step": steps, **_curve([[r[key] for r in s["metrics"]] for s in per_seed])}
            for key in ("loss", "entropy", "clip_fraction", "grad_norm", "kl_to_base")
            if key in per_seed[0]["metrics"][0]
        }
        eval_steps = [e["step"] for e in per_seed[0]["evals"]]
        for key in ("in_domain_accuracy", "ood_accuracy", "sample_entropy", "demo_entropy", "distinct_valid"):
            curves[f"eval_{key}"] = {"step": eval_steps, **_curve([[e[key] for e in s["evals"]] for s in per_seed])}
        runs[spec.name] = {
            "objective": spec.objective,
            "lr": spec.lr,
            "seeds": list(settings.seeds),
            "final": {k: _stats([s["final"][v] for s in per_seed]) for k, v in FINAL_KEYS.items()},
            "final_per_family": {
                f: _stats([s["final"]["families"][f]["sampled_accuracy"] for s in per_seed]) for f in tasks.FAMILIES
            },
            "curves": curves,
            "samples": per_seed[0]["samples"],
        }
    base_final = {k: _stats([b["final"][v] for b in base]) for k, v in FINAL_KEYS.items() if v in base[0]["final"]}
    base_final["kl_to_base"] = _stats([0.0 for _ in base])
    return {
        "preset": preset,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()},
        "base": {
            "final": base_final,
            "final_per_family": {f: _stats([b["final"]["families"][f]["sampled_accuracy"] for b in base]) for f in tasks.FAMILIES},
            "samples": base[0]["samples"],
        },
        "runs": runs,
    }


def _curve(per_seed: list[list[float]]) -> dict:
    columns = list(zip(*per_seed))
    return {
        "mean": [statistics.fmean(c) for c in columns],
        "std": [statistics.stdev(c) if len(c) > 1 else 0.0 for c in columns],
    }


def compare(
    preset: str = "small",
    seeds: tuple[int, ...] | None = None,
    out: str | Path = "runs/compare",
    settings: CompareSettings | None = None,
    progress: bool = True,
    max_steps: int | None = None,
) -> dict:
    """Run the comparison and write ``summary.json``, ``report.md`` and figures to ``out``."""
    from .plots import save_compare_figures

    p = get_preset(preset)
    settings = settings or SETTINGS[p.name]
    if seeds:
        settings = replace(settings, seeds=tuple(seeds))
    if max_steps:
        settings = replace(settings, max_steps=max_steps, eval_every=min(settings.eval_every, max_steps))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results, base = run_grid(run_specs(settings), settings, p.name, "compare", out, progress)
    summary = summarise(p.name, settings, results, run_specs(settings), base)
    summary["seconds"] = round(time.time() - started, 1)
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=1).encode())
    figures = save_compare_figures(summary, out)
    write_report(summary, out / "report.md", figures)
    return summary


def _fmt(stat: dict, scale: float = 1.0, digits: int = 2) -> str:
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def write_report(summary: dict, path: str | Path, figures: list[str]) -> None:
    """A Markdown report: the final table (mean ± std over seeds), figures, and plain findings."""
    rows = [("base", {"objective": "-", "lr": None, **summary["base"]})] + list(summary["runs"].items())
    lines = [
        f"# SFT vs PSFT on the `{summary['preset']}` preset",
        "",
        f"Seeds: {', '.join(map(str, summary['settings']['seeds']))}; {summary['settings']['max_steps']} optimiser steps;"
        f" global batch {summary['settings']['global_batch']}, mini-batch {summary['settings']['mini_batch']}"
        f" (old policy refreshed every {summary['settings']['global_batch'] // summary['settings']['mini_batch']} steps);"
        f" PSFT clip epsilon 0.28."
        f" Mean ± standard deviation over seeds. Accuracies in %, entropies in nats.",
        "",
        "| run | lr | demo entropy | sample entropy | in-domain acc | OOD acc | distinct valid | KL to base |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in rows:
        f = run["final"]
        lr = "-" if run["lr"] is None else f"{run['lr']:g}"
        lines.append(
            f"| {name} | {lr} | {_fmt(f['entropy'], digits=3)} | {_fmt(f['sample_entropy'], digits=3)} | "
            f"{_fmt(f['in_domain_accuracy'], 100, 1)} | {_fmt(f['ood_accuracy'], 100, 1)} | "
            f"{_fmt(f['distinct_valid'])} | {_fmt(f['kl_to_base'], digits=3)} |"
        )
    lines += ["", "## Findings", ""] + [f"- {c}" for c in findings(summary)] + ["", "## Figures", ""]
    lines += [f"![{Path(fig).stem}]({Path(fig).name})" for fig in figures]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def findings(summary: dict) -> list[str]:
    """Plain-language checks of the paper's claims on this run, true or false as measured."""
    runs, st = summary["runs"], summary["settings"]
    base = summary["base"]["final"]
    pairs = [
        (f"matched at lr {st['high_lr']:g}", run_name("sft", st["high_lr"]), run_name("psft", st["high_lr"])),
        (f"matched at lr {st['low_lr']:g}", run_name("sft", st["low_lr"]), run_name("psft", st["low_lr"])),
        (
            f"paper protocol (SFT at {st['high_lr']:g}, PSFT at {st['low_lr']:g})",
            run_name("sft", st["high_lr"]),
            run_name("psft", st["low_lr"]),
        ),
    ]
    out = [
        f"Base model: in-domain {100 * base['in_domain_accuracy']['mean']:.1f}%, out-of-domain {100 * base['ood_accuracy']['mean']:.1f}%, "
        f"demo entropy {base['entropy']['mean']:.3f}, sample entropy {base['sample_entropy']['mean']:.3f}."
    ]
    for label, sft_name, psft_name in pairs:
        sft, psft = runs[sft_name]["final"], runs[psft_name]["final"]
        s_h, p_h = sft["sample_entropy"]["mean"], psft["sample_entropy"]["mean"]
        s_o, p_o = sft["ood_accuracy"]["mean"], psft["ood_accuracy"]["mean"]
        s_i, p_i = sft["in_domain_accuracy"]["mean"], psft["in_domain_accuracy"]["mean"]
        out.append(
            f"**{label}**: entropy on own samples SFT {s_h:.3f} vs PSFT {p_h:.3f} "
            + ("(PSFT higher)" if p_h > s_h else "(PSFT NOT higher)")
            + f"; out-of-domain accuracy SFT {100 * s_o:.1f}% vs PSFT {100 * p_o:.1f}% "
            + ("(PSFT keeps at least as much)" if p_o >= s_o else "(PSFT keeps LESS)")
            + f"; in-domain accuracy SFT {100 * s_i:.1f}% vs PSFT {100 * p_i:.1f}% ({100 * (p_i - s_i):+.1f} points)."
        )
    return out
