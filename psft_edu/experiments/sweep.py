"""Neighbours, ablations and the regime map: the comparison's machinery over other sets of runs.

* ``neighbours``: SFT, PSFT, SFT-KL, DFT and ASFT at one learning rate;
* ``clip``: PSFT with epsilon 0.1, 0.28, 0.5 and no clip;
* ``refresh``: PSFT with the old policy refreshed every 1, 4, 8, 16 steps, or never;
* ``lr``: SFT and PSFT at four matched learning rates (the comparison's two and a third of each);
* ``regime``: where does PSFT differ from SFT at a matched rate? Three learning rates × {SFT, PSFT
  with K = 8, PSFT with K = 32, PSFT never refreshed}, plus the authors' arm (36 steps of SFT, then
  PSFT), a low-drift arm (a small rate for four times the steps: many refreshes, each moving little)
  and a teacher in the base's own style (no change of format to make). Every run logs what the clip
  and the optimiser did (:data:`psft_edu.engine.train.MECHANISM_KEYS`), so the map puts each arm's outcome
  against its mechanism numbers (:func:`regime_table`).

Each writes ``<out>/<what>/summary.json`` in the same shape as ``compare``; the runs go side by side
in one-thread workers, each finished run keeps ``<out>/<what>/<run>_seed<k>/result.json`` and
``resume`` reuses them. The first three run at one learning rate, ``--lr`` (default: the preset's
higher rate). Notebook 08 reads slimmed copies committed under ``notebooks/results/``, made with::

    python -m psft_edu sweep --preset small --what all --seeds 0 1 2 --lr 3e-4 --out runs/sweep
    python -m psft_edu sweep --preset small --what regime --seeds 0 1 2 --out runs/sweep
    python -c "from psft_edu import sweep; sweep.write_caches('runs/sweep')"

(3e-4, between the comparison's two rates: at 1e-3 SFT and PSFT lose almost all of the base
model's out-of-domain accuracy, at 1e-4 they barely learn the in-domain task within the budget;
in between the ablations have both to move.)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

from ..data import atomic_write_bytes
from ..objectives import OBJECTIVES, PSFT_CLIP
from ..presets import DEFAULT_PRESET, CompareSettings, get_preset, preset_name
from .compare import SETTINGS, RunSpec, View, run_views, slim
from .results import paired, summarise_view

NO_CLIP = math.inf  # 1 + inf: the clip never binds (a finite epsilon can: the ratio may reach exp(20))
DEFAULT_CLIP = PSFT_CLIP  # what finetune uses when a RunSpec gives none
AUTHORS_WARMUP = 36  # steps of SFT before PSFT in the authors' toy run
LOW_DRIFT_STEPS = 4  # the low-drift arm trains this many times the view's steps, at a third of the low rate


def _rate(lr: float) -> str:
    return f"{lr:.0e}"


def regime_specs(settings: CompareSettings) -> list[RunSpec]:
    """The regime map's arms (see the module docstring)."""
    mini, high, low = settings.mini_batch, settings.high_lr, settings.low_lr
    middle = float(f"{math.sqrt(high * low):.0e}")
    specs = []
    for lr in (low, middle, high):
        specs += [
            RunSpec(f"sft_lr{_rate(lr)}", "sft", lr),
            RunSpec(f"psft_k8_lr{_rate(lr)}", "psft", lr, global_batch=8 * mini),
            RunSpec(f"psft_k32_lr{_rate(lr)}", "psft", lr, global_batch=32 * mini),
            RunSpec(f"psft_never_lr{_rate(lr)}", "psft", lr, never_refresh=True),
            RunSpec(f"psft_warmup_lr{_rate(lr)}", "psft", lr, global_batch=8 * mini, sft_warmup=AUTHORS_WARMUP),
        ]
    slow = float(f"{low * 0.3:.0e}")
    steps, every = LOW_DRIFT_STEPS * settings.max_steps, LOW_DRIFT_STEPS * settings.eval_every
    specs += [
        RunSpec(f"sft_lowdrift_lr{_rate(slow)}", "sft", slow, max_steps=steps, eval_every=every),
        RunSpec(f"psft_lowdrift_lr{_rate(slow)}", "psft", slow, global_batch=8 * mini, max_steps=steps,
                eval_every=every),
        RunSpec(f"sft_basestyle_lr{_rate(high)}", "sft", high, teacher="base-style"),
        RunSpec(f"psft_basestyle_lr{_rate(high)}", "psft", high, global_batch=8 * mini, teacher="base-style"),
    ]
    return specs


def sweep_specs(what: str, settings: CompareSettings, lr: float | None = None) -> list[RunSpec]:
    """The runs of one sweep; ``lr`` (default ``settings.high_lr``) is the rate of the neighbours, clip and
    refresh sweeps (``lr`` and ``regime`` have their own rates)."""
    lr, mini = lr or settings.high_lr, settings.mini_batch
    if what == "neighbours":
        return [RunSpec(o, o, lr) for o in OBJECTIVES]
    if what == "clip":
        return [RunSpec(f"psft_eps_{eps:g}", "psft", lr, clip=eps) for eps in (0.1, PSFT_CLIP, 0.5)] + [
            RunSpec("psft_no_clip", "psft", lr, clip=NO_CLIP)
        ]
    if what == "refresh":
        return [RunSpec(f"psft_refresh_{k}", "psft", lr, global_batch=k * mini) for k in (1, 4, 8, 16)] + [
            RunSpec("psft_never_refreshed", "psft", lr, never_refresh=True)
        ]
    if what == "lr":
        # Both of the comparison's rates and a rate a third of each: 3e-5, 1e-4, 3e-4, 1e-3 at tiny and small.
        rates = sorted({settings.low_lr * 0.3, settings.low_lr, settings.high_lr * 0.3, settings.high_lr})
        return [RunSpec(f"{o}_lr_{r:.0e}", o, r) for o in ("sft", "psft") for r in rates]
    if what == "regime":
        return regime_specs(settings)
    raise ValueError(f"unknown sweep {what!r}; choose {', '.join(KINDS)}, regime or all")


def sweep(what: str, preset: str | None = None, seeds: tuple[int, ...] | None = None, out: str | Path = "runs/sweep",
          max_steps: int | None = None, progress: bool = True, lr: float | None = None,
          only: tuple[str, ...] | None = None, settings: CompareSettings | None = None, workers: int | None = None,
          resume: bool = False) -> dict:
    """Run one sweep and write its ``summary.json``; returns the summary.

    ``lr`` sets the learning rate of the neighbours, clip and refresh sweeps (the ``lr`` and ``regime``
    sweeps have their own rates); ``only`` keeps just the runs with these names (a quick partial sweep);
    ``settings`` replaces the preset's budget (``compare.SETTINGS``), e.g. with fewer eval prompts;
    ``workers`` and ``resume`` as in :func:`psft_edu.experiments.compare.compare`.
    """
    p = get_preset(preset_name(preset))
    settings = settings or SETTINGS[p.name]
    if seeds:
        settings = replace(settings, seeds=tuple(seeds))
    if max_steps:
        settings = replace(settings, max_steps=max_steps, eval_every=min(settings.eval_every, max_steps))
    specs = sweep_specs(what, settings, lr)
    if only:
        unknown = set(only) - {s.name for s in specs}
        if unknown:
            raise ValueError(f"no run named {', '.join(sorted(unknown))} in the {what} sweep")
        specs = [s for s in specs if s.name in only]
    folder = Path(out) / what
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    view = View(f"sweep {what}", settings, tuple(specs), folder, keep_models=False)
    results, timing = run_views([view], p.name, workers, progress, resume)
    summary = summarise_view(p.name, settings, *results[view.tag], specs)
    summary["sweep"] = what
    summary["seconds"] = round(time.time() - started, 1)
    summary["timing"] = timing
    summary["sweep_lr"] = lr or settings.high_lr
    for spec in specs:
        clip = (
            None
            if spec.objective != "psft" or spec.clip == NO_CLIP
            else (spec.clip if spec.clip is not None else DEFAULT_CLIP)
        )
        summary["runs"][spec.name].update(clip=clip, never_refresh=spec.never_refresh)
    if what == "regime":
        summary["regime"] = regime_table(summary)
    atomic_write_bytes(folder / "summary.json", json.dumps(summary, indent=1).encode())
    return summary


def regime_pairs(summary: dict) -> list[tuple[str, str]]:
    """``(sft run, psft run)``: every PSFT arm with the SFT arm of the same rate, steps and teacher."""
    runs = summary["runs"]
    pairs = []
    for name, run in runs.items():
        if run["objective"] != "psft":
            continue
        twin = [n for n, r in runs.items() if r["objective"] == "sft" and r["lr"] == run["lr"]
                and r["max_steps"] == run["max_steps"] and r["teacher"] == run["teacher"]]
        if twin:
            pairs.append((twin[0], name))
    return pairs


def regime_markdown(summary: dict) -> str:
    """The regime map as a Markdown table: per PSFT arm, PSFT − SFT (paired, 95% interval) and what the clip did."""
    from .report import fmt

    lines = ["| PSFT arm | SFT twin | PSFT − SFT: OOD (points) | in-domain (points) | entropy | clipped | ratio p99 | "
             "KL to old at refresh end | PSFT/SFT distance from base |", "| --- |" + " --- |" * 8]
    for name, entry in summary["regime"].items():
        d, m, ms = entry["diff"], entry["mechanism"], entry["sft_mechanism"]
        flip = {k: {**v, "mean": -v["mean"], "ci95": None if v["ci95"] is None else [-v["ci95"][1], -v["ci95"][0]]}
                for k, v in d.items() if isinstance(v, dict) and "mean" in v}
        ratio = m["base_distance"]["mean"] / ms["base_distance"]["mean"]
        lines.append(f"| {name} | {entry['sft']} | {fmt(flip['ood_exact'], 100, 1)} | "
                     f"{fmt(flip['in_domain_exact'], 100, 1)} | {fmt(flip['sample_entropy'], 1, 3)} | "
                     f"{m['clip_fraction']['mean']:.3f} | {m['ratio_p99']['mean']:.3g} | "
                     f"{m.get('kl_old_end', {'mean': float('nan')})['mean']:.3f} | {ratio:.2f} |")
    return "\n".join(lines)


def regime_table(summary: dict) -> dict:
    """Per PSFT arm: its paired difference from the matching SFT arm (SFT − PSFT, per seed) and the
    mechanism numbers of both, the rows of the regime map."""
    table = {}
    for sft, psft in regime_pairs(summary):
        diff = paired(summary, sft, psft)
        table[psft] = {"sft": sft, "diff": diff,
                       "mechanism": summary["runs"][psft].get("mechanism"),
                       "sft_mechanism": summary["runs"][sft].get("mechanism")}
    return table


# ---------------------------------------------------------------- reading results (notebook 08)

SWEEPS = ("neighbours", "clip", "refresh", "lr", "regime")

# Final metrics shown in the tables and offered by the notebook's selector:
# label -> (key in ``final``, scale, digits, True when higher is better).
METRICS: dict[str, tuple[str, float, int, bool]] = {
    "in-domain acc (%)": ("in_domain_exact", 100.0, 1, True),
    "OOD acc (%)": ("ood_exact", 100.0, 1, True),
    "sample entropy": ("sample_entropy", 1.0, 3, True),
    "demo entropy": ("entropy", 1.0, 3, True),
    "distinct valid": ("distinct_valid", 1.0, 2, True),
    "KL to base": ("kl_ood", 1.0, 3, False),  # exact KL on own out-of-domain samples
}


def cache_path(what: str, preset: str = DEFAULT_PRESET) -> Path:
    """Where the committed results of one sweep live: ``notebooks/results/sweep_<preset>_<what>.json``."""
    from ..paths import REPO_ROOT

    return REPO_ROOT / "notebooks" / "results" / f"sweep_{preset}_{what}.json"


CACHE_POINTS = 60  # per-step curves in a committed sweep cache are thinned to about this many points


def write_cache(summary: dict, path: str | Path | None = None) -> Path:
    """Slim a sweep's summary (:func:`slim`; per-step curves thinned to about :data:`CACHE_POINTS` points,
    evaluation curves whole) and write it to ``path`` (default :func:`cache_path`)."""
    path = Path(path) if path else cache_path(summary["sweep"], summary["preset"])
    path.parent.mkdir(parents=True, exist_ok=True)
    small = slim(summary, digits=5, step_intervals=False, max_points=CACHE_POINTS)
    atomic_write_bytes(path, (json.dumps(small, separators=(",", ":")) + "\n").encode())
    return path


def write_caches(out: str | Path = "runs/sweep") -> list[Path]:
    """:func:`write_cache` for every sweep with a ``<out>/<what>/summary.json``; returns the files written."""
    found = [Path(out) / what / "summary.json" for what in SWEEPS]
    return [write_cache(json.loads(path.read_text())) for path in found if path.exists()]


def load_results(
    what: str, preset: str = DEFAULT_PRESET, live: bool = False, out: str | Path = "runs/sweep", lr: float | None = None
) -> dict:
    """A sweep's summary: the committed cache, or (``live=True``) a fresh run of the sweep, slimmed the same way."""
    if live:
        return slim(sweep(what, preset, (0,), out, progress=False, lr=lr), step_intervals=False)
    return json.loads(cache_path(what, preset).read_text())


def final_value(run: dict, label: str) -> float:
    """One of :data:`METRICS` for a run (or the summary's ``base``), scaled for display."""
    key, scale, _, _ = METRICS[label]
    return run["final"][key]["mean"] * scale


def results_table(summary: dict, metrics: tuple[str, ...] = tuple(METRICS), base: bool = True) -> str:
    """The final metrics of every run (and the base model) as an aligned plain-text table."""
    rows = ([("base", summary["base"])] if base else []) + list(summary["runs"].items())
    header = ["run"] + list(metrics)
    body = [[name] + [f"{final_value(run, m):.{METRICS[m][2]}f}" for m in metrics] for name, run in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in [header] + body
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def pareto_front(
    points: dict[str, tuple[float, float]], higher_is_better: tuple[bool, bool] = (True, True)
) -> list[str]:
    """Names of the points no other point dominates (at least as good on both axes, better on one)."""
    sign = [1.0 if h else -1.0 for h in higher_is_better]
    score = {n: (sign[0] * x, sign[1] * y) for n, (x, y) in points.items()}

    def dominated(a: tuple[float, float]) -> bool:
        return any(b[0] >= a[0] and b[1] >= a[1] and b != a for b in score.values())

    return [n for n, a in score.items() if not dominated(a)]


KINDS = ("neighbours", "clip", "refresh", "lr")  # what `--what all` runs, in order (the regime map is separate)


def markdown_table(summary: dict) -> str:
    """Final metrics of every run of a sweep's summary, as a Markdown table."""
    lines = ["| run | in-domain acc | OOD acc | own-sample entropy | teacher style | distinct valid |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, run in summary["runs"].items():
        f = run["final"]
        lines.append(f"| {name} | {100 * f['in_domain_exact']['mean']:.1f} | {100 * f['ood_exact']['mean']:.1f} "
                     f"| {f['sample_entropy']['mean']:.3f} | {100 * f['style_teacher']['mean']:.0f}% "
                     f"| {f['distinct_valid']['mean']:.2f} |")
    return "\n".join(lines)
