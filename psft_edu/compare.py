"""The main experiment: base -> SFT and base -> PSFT on the same data, side by side.

Two views, each over several seeds, written to one ``summary.json``:

* **main**: the full demonstration set for a few epochs, SFT and PSFT each at two learning
  rates. That gives three comparisons: matched at the higher rate, matched at the lower
  rate, and the paper's pairing (SFT at the higher rate, PSFT at the lower one: the paper ran
  PSFT 20x lower), which mixes the objective with the learning rate. The matched pairs answer
  the learners' question "is PSFT just a smaller learning rate?".
* **long** (prolonged training, the paper's toy regime): a small demonstration set seen for
  many epochs, where SFT's fixed point on a one-answer teacher (a one-hot policy) shows.

Every evaluation point of a view uses one protocol (the same prompts and samples per family).
Each metric is reported as mean, standard deviation, 95% interval and per-seed values; SFT - PSFT
differences are paired by seed (:mod:`psft_edu.stats`). Writes ``summary.json``, ``report.md``
and PNG figures into the output folder.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from . import tasks
from .data import atomic_write_bytes, eval_prompts, load_split
from .evaluate import make_eval_fn, sample
from .models import get_preset, load_model
from .objectives import PSFT_CLIP
from .presets import DEFAULT_PRESET, PRESETS, CompareSettings
from .stats import describe, excludes_zero, paired_difference
from .train import TrainConfig, Trainer


@dataclass(frozen=True)
class RunSpec:
    name: str
    objective: str
    lr: float
    never_refresh: bool = False
    clip: float | None = None
    global_batch: int | None = None


# The main view and the prolonged view of each preset: their budgets live with the preset (presets.py).
SETTINGS: dict[str, CompareSettings] = {name: p.compare for name, p in PRESETS.items()}
LONG_SETTINGS: dict[str, CompareSettings] = {name: p.long for name, p in PRESETS.items()}


def run_name(objective: str, lr: float) -> str:
    return f"{objective}_lr{lr:.0e}"


def run_specs(settings: CompareSettings) -> list[RunSpec]:
    """SFT and PSFT at the higher and the lower learning rate."""
    return [RunSpec(run_name(o, lr), o, lr) for lr in (settings.high_lr, settings.low_lr) for o in ("sft", "psft")]


def long_specs(settings: CompareSettings) -> list[RunSpec]:
    """The prolonged view: SFT at the higher rate, PSFT at both (matched pair and paper pairing)."""
    return [
        RunSpec(run_name("sft", settings.high_lr), "sft", settings.high_lr),
        RunSpec(run_name("psft", settings.high_lr), "psft", settings.high_lr),
        RunSpec(run_name("psft", settings.low_lr), "psft", settings.low_lr),
    ]


SAMPLE_PROMPTS = 4  # per family, for the side-by-side generations in the report


def sample_table(model: torch.nn.Module, tokenizer, seed: int = 0, per_prompt: int = 4) -> dict[str, list[str]]:
    """A few completions (temperature 1) for the first eval prompts of each family."""
    prompts = [p for f in tasks.FAMILIES for p in eval_prompts(f, SAMPLE_PROMPTS if f == tasks.IN_DOMAIN else 1)]
    drawn = sample(model, tokenizer, prompts, per_prompt, temperature=1.0, seed=seed)
    return dict(zip(prompts, drawn.texts))


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
    base_model = copy.deepcopy(model).requires_grad_(False)  # the frozen base, for the KL evaluations
    cfg = TrainConfig(
        objective=spec.objective,
        lr=spec.lr,
        max_steps=settings.max_steps,
        global_batch=spec.global_batch or settings.global_batch,
        mini_batch=settings.mini_batch,
        clip=spec.clip if spec.clip is not None else PSFT_CLIP,
        never_refresh=spec.never_refresh,
        seed=seed,
        eval_every=settings.eval_every,
        log_kl=False,  # drift is measured exactly at the evaluation points instead
        init=preset,
    )
    evaluate = make_eval_fn(tokenizer, val_records, settings.eval_prompts, settings.eval_samples, seed, base_model)

    def eval_fn(m, step):
        if step == 0 and base_eval is not None:
            return base_eval["eval"]  # the base was already evaluated once for this seed, same protocol
        return evaluate(m, step)

    trainer = Trainer(model, tokenizer, records, cfg, out=out, eval_fn=eval_fn, progress=progress)
    history = trainer.train()
    return {
        "metrics": history,
        "evals": trainer.evals,
        "final": trainer.evals[-1],
        "samples": sample_table(model, tokenizer, seed),
    }


def evaluate_base(preset: str, settings: CompareSettings, seed: int, val_records: list[dict]) -> dict:
    model, tokenizer = load_model(preset)
    # The base's KL to itself is zero: passing itself as the reference keeps every key present.
    evaluate = make_eval_fn(tokenizer, val_records, settings.eval_prompts, settings.eval_samples, seed, model)
    return {"eval": evaluate(model, 0), "samples": sample_table(model, tokenizer, seed)}


def run_grid(
    specs: list[RunSpec], settings: CompareSettings, preset: str, tag: str, out: Path | None, progress: bool
) -> tuple[dict[str, list[dict]], list[dict]]:
    """Every spec for every seed of ``settings``, from the preset's base; ``(results, base evals)``.

    With ``out``, each run keeps its folder ``<out>/<name>_seed<k>`` (metrics, checkpoint, model).
    """
    records, val = load_split("sft_train"), load_split("sft_val")
    if settings.train_records:
        records = records[: settings.train_records]
    base = [evaluate_base(preset, settings, seed, val) for seed in settings.seeds]
    results: dict[str, list[dict]] = {s.name: [] for s in specs}
    for seed, base_eval in zip(settings.seeds, base):
        for spec in specs:
            if progress:
                print(f"[{tag}] {spec.name} (lr {spec.lr:g}) seed {seed}", flush=True)
            folder = out / f"{spec.name}_seed{seed}" if out is not None else None
            results[spec.name].append(finetune(spec, settings, preset, seed, folder, records, val, progress, base_eval))
    return results, base


# Final metrics: name in summary.json -> key in an evaluation record.
FINAL_KEYS = {
    "entropy": "demo_entropy",  # token entropy on held-out teacher demonstrations
    "sample_entropy": "sample_entropy",  # token entropy on own samples, in-domain prompts
    "ood_sample_entropy": "ood_sample_entropy",  # the same on out-of-domain prompts (mean of families)
    "in_domain_accuracy": "in_domain_accuracy",
    "in_domain_greedy": "in_domain_greedy",
    "ood_accuracy": "ood_accuracy",
    "ood_greedy": "ood_greedy",
    "distinct_valid": "distinct_valid",
    "kl_in_domain": "kl_in_domain",  # exact KL(model || base) on own samples, in-domain prompts
    "kl_ood": "kl_ood",  # the same on out-of-domain prompts
}
EVAL_CURVES = (
    "in_domain_accuracy", "ood_accuracy", "sample_entropy", "ood_sample_entropy", "demo_entropy", "distinct_valid",
    "kl_in_domain", "kl_ood",
)  # fmt: skip
STEP_CURVES = ("loss", "entropy", "clip_fraction", "grad_norm")


def _curve(per_seed: list[list[float]]) -> dict:
    columns = [describe(list(c)) for c in zip(*per_seed)]
    return {key: [c[key] for c in columns] for key in ("mean", "std", "ci95")}


def summarise(
    preset: str, settings: CompareSettings, results: dict[str, list[dict]], specs: list[RunSpec], base: list[dict]
) -> dict:
    """Collapse per-seed results into the documented ``summary.json`` shape."""
    runs = {}
    for spec in specs:
        per_seed = results[spec.name]
        steps = [r["step"] for r in per_seed[0]["metrics"]]
        curves = {
            key: {"step": steps, **_curve([[r[key] for r in s["metrics"]] for s in per_seed])}
            for key in STEP_CURVES
            if key in per_seed[0]["metrics"][0]
        }
        eval_steps = [e["step"] for e in per_seed[0]["evals"]]
        for key in EVAL_CURVES:
            curves[f"eval_{key}"] = {"step": eval_steps, **_curve([[e[key] for e in s["evals"]] for s in per_seed])}
        runs[spec.name] = {
            "objective": spec.objective,
            "lr": spec.lr,
            "seeds": list(settings.seeds),
            "final": {k: describe([s["final"][v] for s in per_seed]) for k, v in FINAL_KEYS.items()},
            "final_per_family": _per_family([s["final"] for s in per_seed]),
            "curves": curves,
            "samples": per_seed[0]["samples"],
        }
    finals = [b["eval"] for b in base]
    settings_dict = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()}
    settings_dict["refresh_every"] = settings.refresh_every
    return {
        "preset": preset,
        "settings": settings_dict,
        "base": {
            "final": {k: describe([f[v] for f in finals]) for k, v in FINAL_KEYS.items()},
            "final_per_family": _per_family(finals),
            "samples": base[0]["samples"],
        },
        "runs": runs,
    }


def _per_family(finals: list[dict]) -> dict:
    """Sampled accuracy and own-sample entropy per family, over seeds."""
    return {
        f: {
            "sampled_accuracy": describe([e["families"][f]["sampled_accuracy"] for e in finals]),
            "sample_entropy": describe([e["families"][f]["sample_entropy"] for e in finals]),
        }
        for f in tasks.FAMILIES
    }


PAIRED_KEYS = ("in_domain_accuracy", "ood_accuracy", "sample_entropy", "ood_sample_entropy", "kl_in_domain", "kl_ood")


def pairings(view: dict) -> list[tuple[str, str, str]]:
    """``(label, sft run, psft run)`` for every SFT/PSFT pair present in a view."""
    st, runs = view["settings"], view["runs"]
    hi, lo = st["high_lr"], st["low_lr"]
    candidates = [
        (f"matched at lr {hi:g}", run_name("sft", hi), run_name("psft", hi)),
        (f"matched at lr {lo:g}", run_name("sft", lo), run_name("psft", lo)),
        (f"paper pairing (SFT {hi:g}, PSFT {lo:g})", run_name("sft", hi), run_name("psft", lo)),
    ]
    return [c for c in candidates if c[1] in runs and c[2] in runs]


def paired_differences(view: dict) -> dict:
    """Per-seed SFT - PSFT differences of the headline metrics for every pairing, with 95% intervals."""
    out = {}
    for label, sft, psft in pairings(view):
        a, b = view["runs"][sft]["final"], view["runs"][psft]["final"]
        out[label] = {
            "sft": sft,
            "psft": psft,
            **{k: paired_difference(a[k]["per_seed"], b[k]["per_seed"]) for k in PAIRED_KEYS},
        }
    return out


def run_view(
    preset: str, settings: CompareSettings, specs: list[RunSpec], tag: str, out: Path | None, progress: bool
) -> dict:
    """One view: every run over every seed, summarised, with paired differences and its time."""
    started = time.time()
    results, base = run_grid(specs, settings, preset, tag, out, progress)
    view = summarise(preset, settings, results, specs, base)
    view["settings"]["dataset_size"] = len(load_split("sft_train")[: settings.train_records or None])
    view["paired"] = paired_differences(view)
    view["seconds"] = round(time.time() - started, 1)
    return view


def compare(
    preset: str = DEFAULT_PRESET,
    seeds: tuple[int, ...] | None = None,
    out: str | Path = "runs/compare",
    settings: CompareSettings | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    long: bool = True,
    long_settings: CompareSettings | None = None,
    model: str | None = None,
    midtrain_steps: int | None = None,
) -> dict:
    """Run both views and write ``summary.json``, ``report.md`` and figures to ``out``.

    ``seeds`` and ``max_steps`` override the main view's budget (for quick runs); the prolonged
    view keeps its own unless ``long_settings`` is given, and ``long=False`` skips it.
    ``model`` (a folder or ``hf:<id>`` with its own tokenizer) replaces the preset's base: it is
    mid-trained on the task world first (``midtrain_steps``) and perplexity on held-out English
    is reported too (:mod:`psft_edu.pretrained`); the preset then only sets the budgets.
    """
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
    base = p.name
    if model:  # a pretrained model, taught the task world first, is the base of every run
        from .pretrained import midtrain

        base = str(midtrain(model, out / "base", steps=midtrain_steps, progress=progress))
    summary = run_view(base, settings, run_specs(settings), "compare", out / "main", progress)
    summary["threads"] = torch.get_num_threads()
    if long:
        long_settings = long_settings or LONG_SETTINGS[p.name]
        summary["long"] = run_view(base, long_settings, long_specs(long_settings), "long", out / "long", progress)
    summary["seconds"] = round(time.time() - started, 1)
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=1).encode())
    figures = save_compare_figures(summary, out)
    write_report(summary, out / "report.md", figures)
    if model:
        from .pretrained import report_lm_retention

        # Perplexity on English, added to summary.json and report.md.
        report_lm_retention(summary, model, base, out, pairings)
    return summary


# ---------------------------------------------------------------- committed caches

CACHE_CURVES = ("entropy", "clip_fraction", "grad_norm")  # per-step curves kept by :func:`slim`


def slim(summary: dict, keep: tuple[str, ...] = CACHE_CURVES, digits: int = 6, step_intervals: bool = True) -> dict:
    """A smaller copy of a summary for committing: only the per-step curves named in ``keep``.

    Evaluation curves (``eval_*``), finals, per-family finals, paired differences and samples
    stay (in the prolonged view ``long`` too); every float is rounded to ``digits`` significant
    digits (the notebooks print 3 or 4). ``step_intervals=False`` also drops the 95% intervals
    of the per-step curves (with one seed they repeat the mean).
    """

    def rounded(x):
        if isinstance(x, float):
            return float(f"{x:.{digits}g}")
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        if isinstance(x, list):
            return [rounded(v) for v in x]
        return x

    out = copy.deepcopy(summary)
    for view in (out, out.get("long", {})):
        for run in view.get("runs", {}).values():
            run["curves"] = {k: c for k, c in run["curves"].items() if k.startswith("eval_") or k in keep}
            if not step_intervals:
                for key, curve in run["curves"].items():
                    if not key.startswith("eval_"):
                        curve.pop("ci95", None)
    return rounded(out)


def write_cache(summary: dict, path: str | Path) -> Path:
    """:func:`slim` a comparison's summary and write it (compact JSON) to ``path``, e.g. the
    committed ``notebooks/results/compare_small.json`` that notebook 06 reads."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(slim(summary, digits=5), separators=(",", ":")) + "\n").encode())
    return path


# ---------------------------------------------------------------- the report


def _fmt(stat: dict, scale: float = 1.0, digits: int = 2) -> str:
    low, high = stat["ci95"]
    return f"{stat['mean'] * scale:.{digits}f} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"


TABLE_COLUMNS = (
    ("in-domain acc %", "in_domain_accuracy", 100, 1),
    ("OOD acc %", "ood_accuracy", 100, 1),
    ("own-sample entropy (in)", "sample_entropy", 1, 3),
    ("own-sample entropy (OOD)", "ood_sample_entropy", 1, 3),
    ("demo entropy", "entropy", 1, 3),
    ("distinct valid", "distinct_valid", 1, 2),
    ("KL to base (in)", "kl_in_domain", 1, 3),
    ("KL to base (OOD)", "kl_ood", 1, 3),
)


def view_table(view: dict) -> list[str]:
    """Markdown rows: one per run (base first), mean [95% interval] of each headline metric."""
    rows = [("base", None, view["base"])] + [(n, r["lr"], r) for n, r in view["runs"].items()]
    lines = [
        "| run | lr | " + " | ".join(c[0] for c in TABLE_COLUMNS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in TABLE_COLUMNS) + " |",
    ]
    for name, lr, run in rows:
        cells = [_fmt(run["final"][key], scale, digits) for _, key, scale, digits in TABLE_COLUMNS]
        lines.append(f"| {name} | {'-' if lr is None else f'{lr:g}'} | " + " | ".join(cells) + " |")
    return lines


def paired_table(view: dict) -> list[str]:
    """Markdown rows of the paired SFT - PSFT differences."""
    lines = [
        "| pairing | Δ in-domain (points) | Δ OOD (points) | Δ entropy (in) | Δ KL (OOD) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, diff in view["paired"].items():
        lines.append(
            f"| {label} | {_fmt(diff['in_domain_accuracy'], 100, 1)} | {_fmt(diff['ood_accuracy'], 100, 1)} | "
            f"{_fmt(diff['sample_entropy'], 1, 3)} | {_fmt(diff['kl_ood'], 1, 3)} |"
        )
    return lines


def _view_header(view: dict, what: str) -> str:
    st = view["settings"]
    data = f"the first {st['train_records']} demonstrations" if st["train_records"] else "all demonstrations"
    return (
        f"{what}: {data}, {st['max_steps']} optimiser steps, global batch {st['global_batch']}, mini-batch "
        f"{st['mini_batch']} (old policy refreshed every {st['refresh_every']} steps), PSFT ε {PSFT_CLIP:g}; seeds "
        f"{', '.join(map(str, st['seeds']))}; every evaluation {st['eval_prompts']} prompts per family × "
        f"{st['eval_samples']} samples at T = 1. Mean [95% interval over seeds]."
    )


def write_report(summary: dict, path: str | Path, figures: list[str]) -> None:
    """A Markdown report: both views' tables with intervals, paired differences, findings, figures."""
    lines = [
        f"# SFT vs PSFT on the `{summary['preset']}` preset",
        "",
        f"torch threads: {summary.get('threads', '?')}",
        "",
    ]
    views = [("Main view", summary)] + ([("Prolonged view", summary["long"])] if "long" in summary else [])
    for title, view in views:
        lines += [f"## {title}", "", _view_header(view, title), "", *view_table(view), ""]
        lines += ["Paired differences SFT − PSFT (per seed, same data order):", "", *paired_table(view), ""]
        lines += [f"- {c}" for c in findings(view)] + [""]
    lines += ["## Figures", ""] + [f"![{Path(fig).stem}]({Path(fig).name})" for fig in figures]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def findings(view: dict) -> list[str]:
    """Plain-language checks of the paper's claims on one view, true or false as measured."""
    base = view["base"]["final"]
    out = [
        f"Base model: in-domain {100 * base['in_domain_accuracy']['mean']:.1f}%, out-of-domain "
        f"{100 * base['ood_accuracy']['mean']:.1f}%, own-sample entropy {base['sample_entropy']['mean']:.3f}."
    ]
    for label, diff in view["paired"].items():
        verdict = []
        for key, what, scale, unit in (
            ("sample_entropy", "own-sample entropy", 1, ""),
            ("ood_accuracy", "out-of-domain accuracy", 100, " points"),
            ("in_domain_accuracy", "in-domain accuracy", 100, " points"),
        ):
            d = diff[key]
            side = "SFT higher" if d["mean"] > 0 else "PSFT higher"
            sure = "interval excludes 0" if excludes_zero(d) else "interval includes 0"
            verdict.append(f"{what}: {side} by {abs(d['mean']) * scale:.2f}{unit} ({sure})")
        out.append(f"**{label}** (SFT − PSFT): " + "; ".join(verdict) + ".")
    return out
