"""From runs to numbers: the ``summary.json`` of a comparison or sweep, and what is computed from it.

Every metric of every run becomes mean, standard deviation, 95% interval and per-seed values over
seeds (:func:`psft_edu.stats.describe`); curves get the same per evaluation point or step. On top of
that, per run: what the clip and the optimiser did (:func:`mechanism`), whether the training entropy
falls in steps at epoch boundaries (:func:`sawtooth`) and where the answer style stands
(:func:`style_status`); per SFT/PSFT pair: paired differences of the final metrics and the gap
between their learning-vs-forgetting trajectories (:func:`frontier_gap`).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict

import numpy as np

from .. import tasks
from ..engine.train import MECHANISM_KEYS
from ..presets import CompareSettings
from ..stats import describe, paired_difference

# Final metrics: name in summary.json -> key in an evaluation record (the final point's protocol).
FINAL_KEYS = {
    "in_domain_exact": "in_domain_exact",  # probability of a right answer at T = 1, exact (no sampling)
    "ood_exact": "ood_exact",  # the same, mean over the out-of-domain families
    "in_domain_accuracy": "in_domain_accuracy",  # sampled accuracy (k samples per prompt)
    "ood_accuracy": "ood_accuracy",
    "in_domain_greedy": "in_domain_greedy",
    "ood_greedy": "ood_greedy",
    "pass_at_k": "pass_at_k",
    "distinct_valid": "distinct_valid",  # distinct right answers among k samples, in-domain
    "sample_entropy": "sample_entropy",  # token entropy on own samples, in-domain prompts
    "operand_entropy": "operand_entropy",  # the same on the operand tokens only (the answer's choice)
    "ood_sample_entropy": "ood_sample_entropy",  # own samples, out-of-domain prompts (mean of families)
    "kl_in_domain": "kl_in_domain",  # exact KL(model || base) on own samples, in-domain prompts
    "operand_kl": "operand_kl",  # the same on the operand tokens only
    "kl_ood": "kl_ood",  # the same on out-of-domain prompts
    "style_teacher": "style_teacher",  # share of in-domain answers written as the teacher writes (a+b=c)
    "style_base": "style_base",  # ... as the base writes (a+b)
    "style_other": "style_other",  # ... neither (junk)
    "entropy": "demo_entropy",  # token entropy on held-out teacher demonstrations
    "demo_nll": "demo_nll",
}
EVAL_CURVES = (
    "in_domain_exact", "ood_exact", "sample_entropy", "operand_entropy", "ood_sample_entropy", "kl_in_domain",
    "operand_kl", "kl_ood", "style_teacher", "style_base", "style_other",
)  # fmt: skip
STEP_CURVES = ("loss", "entropy", "clip_fraction", "grad_norm", *MECHANISM_KEYS)
PAIRED_KEYS = (
    "in_domain_exact", "ood_exact", "in_domain_accuracy", "ood_accuracy", "sample_entropy", "operand_entropy",
    "ood_sample_entropy", "kl_in_domain", "kl_ood", "style_teacher",
)  # fmt: skip
SWITCHING = (0.1, 0.9)  # a teacher-style share strictly between these: the run is still changing style


def _curve(per_seed: list[list[float]]) -> dict:
    columns = [describe(list(c)) for c in zip(*per_seed)]
    if len(per_seed) < 2:  # one seed: no spread to show
        return {"mean": [c["mean"] for c in columns], "std": None, "ci95": None}
    nan = float("nan")  # a point undefined for some seed has no interval
    return {"mean": [c["mean"] for c in columns], "std": [nan if c["std"] is None else c["std"] for c in columns],
            "ci95": [c["ci95"] or [nan, nan] for c in columns]}


def _per_family(finals: list[dict]) -> dict:
    """Exact and sampled accuracy and own-sample entropy per family, over seeds."""
    keys = ("exact_accuracy", "sampled_accuracy", "sample_entropy")
    return {
        f: {k: describe([e["families"][f][k] for e in finals]) for k in keys if k in finals[0]["families"][f]}
        for f in tasks.FAMILIES
        if f in finals[0]["families"]
    }


def _settings_dict(settings: CompareSettings) -> dict:
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()}
    out["refresh_every"] = settings.refresh_every
    return out


def summarise_run(spec, settings: CompareSettings, per_seed: list[dict]) -> dict:
    """One run over its seeds: finals, curves, mechanism, saw-tooth and style status."""
    steps = [r["step"] for r in per_seed[0]["metrics"]]
    first = per_seed[0]["metrics"][0]
    curves = {
        key: {"step": steps, **_curve([[r[key] for r in s["metrics"]] for s in per_seed])}
        for key in STEP_CURVES
        if key in first
    }
    eval_steps = [e["step"] for e in per_seed[0]["evals"]]
    for key in EVAL_CURVES:
        values = [[e[key] for e in s["evals"]] for s in per_seed]
        curves[f"eval_{key}"] = {"step": eval_steps, **_curve(values), "per_seed": values}
    finals = [s["final"] for s in per_seed]
    run = {
        "objective": spec.objective,
        "lr": spec.lr,
        "seeds": list(settings.seeds),
        "refresh_every": spec.refresh_every(settings),
        "clip": spec.clip,
        "sft_warmup": spec.sft_warmup,
        "teacher": spec.teacher,
        "max_steps": spec.max_steps or settings.max_steps,
        "final": {k: describe([f[v] for f in finals]) for k, v in FINAL_KEYS.items() if v in finals[0]},
        "final_per_family": _per_family(finals),
        "curves": curves,
        "samples": per_seed[0]["samples"],
    }
    if "past_bound" in first:
        run["mechanism"] = mechanism([s["metrics"] for s in per_seed])
    run["sawtooth"] = sawtooth([s["metrics"] for s in per_seed], epoch_steps_of(settings, spec))
    return run


def summarise_view(
    base: str, settings: CompareSettings, results: dict[str, list[dict]], base_evals: list[dict], specs: list
) -> dict:
    """Collapse per-seed results into the documented ``summary.json`` shape, with paired differences."""
    finals = [b["eval"] for b in base_evals]
    view = {
        "preset": base,
        "settings": _settings_dict(settings),
        "base": {
            "final": {k: describe([f[v] for f in finals]) for k, v in FINAL_KEYS.items() if v in finals[0]},
            "final_per_family": _per_family(finals),
            "samples": base_evals[0]["samples"],
        },
        "runs": {spec.name: summarise_run(spec, settings, results[spec.name]) for spec in specs},
    }
    view["settings"]["dataset_size"] = settings.train_records or _dataset_size()
    for run in view["runs"].values():
        run["status"] = style_status(run["final"], view["base"]["final"])
    view["paired"] = paired_differences(view)
    return view


def _dataset_size() -> int:
    from ..data import load_split

    return len(load_split("sft_train"))


def epoch_steps_of(settings: CompareSettings, spec=None) -> int:
    """Optimiser steps per pass over the view's demonstrations."""
    global_batch = (spec.global_batch if spec is not None and spec.global_batch else None) or settings.global_batch
    records = settings.train_records or _dataset_size()
    return max(1, records // global_batch) * (global_batch // settings.mini_batch)


# ---------------------------------------------------------------- per run


def mechanism(per_seed: list[list[dict]]) -> dict:
    """What the clip and the optimiser did over a run, per seed, then described over seeds.

    ``past_bound_by_position[k]``: share of tokens past :math:`1+\\epsilon` at the k-th step after a
    refresh (for PSFT the clip fraction; for SFT the share PSFT would have clipped);
    ``ratio_max``: the largest ratio of the run; ``ratio_p99``: the median over steps of each step's
    99th percentile; ``unclippable_first``/``_last``: the unclippable share in the first and last
    refresh; ``grad_clipped``: share of steps where gradient clipping bound; ``grad_norm``: median
    pre-clip norm; ``step_size``: mean parameter distance of one step; ``refresh_distance``: mean
    distance moved over a whole refresh; ``kl_old_end``: mean exact KL to the old policy at a refresh's
    last step; ``base_distance``: distance from the base at the end.
    """
    K = int(max(r["refresh_position"] for r in per_seed[0])) + 1
    out: dict = {"refresh_every_logged": K}

    def per_run(fn) -> dict:
        return describe([fn(metrics) for metrics in per_seed])

    def at(metrics, key, k):
        return [r[key] for r in metrics if int(r["refresh_position"]) == k]

    out["past_bound_by_position"] = [per_run(lambda m, k=k: statistics.fmean(at(m, "past_bound", k)))
                                     for k in range(K)]
    out["clip_fraction"] = per_run(lambda m: statistics.fmean(r["clip_fraction"] for r in m))
    out["past_bound"] = per_run(lambda m: statistics.fmean(r["past_bound"] for r in m))
    out["ratio_max"] = per_run(lambda m: max(r["ratio_max"] for r in m))
    out["ratio_p99"] = per_run(lambda m: statistics.median(r["ratio_p99"] for r in m))
    out["unclippable_first"] = per_run(lambda m: statistics.fmean(r["unclippable"] for r in m[:K]))
    out["unclippable_last"] = per_run(lambda m: statistics.fmean(r["unclippable"] for r in m[-K:]))
    out["grad_clipped"] = per_run(lambda m: statistics.fmean(r["grad_clipped"] for r in m))
    out["grad_norm"] = per_run(lambda m: statistics.median(r["grad_norm"] for r in m))
    out["step_size"] = per_run(lambda m: statistics.fmean(r["step_size"] for r in m))
    out["refresh_distance"] = per_run(lambda m: statistics.fmean(at(m, "refresh_distance", K - 1) or [0.0]))
    if "kl_old" in per_seed[0][0]:
        out["kl_old_end"] = per_run(lambda m: statistics.fmean(at(m, "kl_old", K - 1) or [0.0]))
    out["base_distance"] = per_run(lambda m: m[-1]["base_distance"])
    return out


def sawtooth(per_seed: list[list[dict]], epoch: int, key: str = "entropy") -> dict | None:
    """Does the per-step training entropy fall in steps at epoch boundaries (the paper's saw-tooth)?

    Per seed: the mean change across an epoch boundary (first step of an epoch minus the last step
    of the one before), the mean change between two consecutive steps inside an epoch, and the
    spread (standard deviation) of those inside changes. ``excess`` = boundary change − inside
    change: clearly negative (its interval below zero, and larger than the inside spread) means a
    saw-tooth; an interval around zero means none at this resolution. None with fewer than two epochs.
    """
    values = [[r[key] for r in metrics] for metrics in per_seed]
    if len(values[0]) < 2 * epoch or epoch < 2:
        return None
    boundary, inside, spread = [], [], []
    for v in values:
        cross = [v[e] - v[e - 1] for e in range(epoch, len(v), epoch)]
        within = [v[t + 1] - v[t] for t in range(len(v) - 1) if (t + 1) % epoch != 0]
        boundary.append(statistics.fmean(cross))
        inside.append(statistics.fmean(within))
        spread.append(statistics.stdev(within))
    return {
        "epoch_steps": epoch,
        "boundaries": len(range(epoch, len(values[0]), epoch)),
        "boundary_change": describe(boundary),
        "inside_change": describe(inside),
        "inside_spread": describe(spread),
        "excess": describe([b - i for b, i in zip(boundary, inside)]),
    }


def style_status(final: dict, base_final: dict) -> str:
    """Where a run's answers stand: ``"teacher style"``, ``"base style"`` or ``"still switching"``.

    A run whose own-sample entropy is above the base's while its teacher-style share is between
    10% and 90% is mid-way through the change of format: its high entropy is mixed answers and junk,
    not retained diversity.
    """
    share = final["style_teacher"]["mean"]
    if SWITCHING[0] < share < SWITCHING[1]:
        return "still switching"
    return "teacher style" if share >= SWITCHING[1] else "base style"


# ---------------------------------------------------------------- per SFT/PSFT pair


def run_name(objective: str, lr: float) -> str:
    return f"{objective}_lr{lr:.0e}"


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


def paired(view: dict, sft: str, psft: str) -> dict:
    """Per-seed SFT - PSFT differences of the headline metrics, and the trajectories' :func:`frontier_gap`."""
    a, b = view["runs"][sft]["final"], view["runs"][psft]["final"]
    out = {"sft": sft, "psft": psft}
    out.update({k: paired_difference(a[k]["per_seed"], b[k]["per_seed"]) for k in PAIRED_KEYS if k in a and k in b})
    gap = frontier_gap(view["runs"][sft], view["runs"][psft])
    if gap is not None:
        out["frontier_gap"] = gap
    return out


def paired_differences(view: dict) -> dict:
    """:func:`paired` for every pairing of the view (:func:`pairings`)."""
    return {label: paired(view, sft, psft) for label, sft, psft in pairings(view)}


def trajectory(run: dict, seed_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One seed's learning-vs-forgetting path: (steps, in-domain exact accuracy, out-of-domain exact accuracy)."""
    ind, ood = run["curves"]["eval_in_domain_exact"], run["curves"]["eval_ood_exact"]
    return np.array(ind["step"]), np.array(ind["per_seed"][seed_index]), np.array(ood["per_seed"][seed_index])


def frontier_gap(sft: dict, psft: dict) -> dict | None:
    """Does PSFT move the learning-vs-forgetting frontier, or move along SFT's more slowly?

    For each seed, SFT's evaluation points give out-of-domain accuracy as a function of in-domain
    accuracy (its points sorted by in-domain accuracy, joined by straight lines). Every PSFT point
    after step 0 whose in-domain accuracy lies inside SFT's range is compared with SFT's line at
    the same in-domain accuracy: ``gap`` is the mean of PSFT's out-of-domain accuracy minus SFT's
    there (positive: PSFT keeps more at matched progress). ``points`` counts the compared points.
    None when a seed has no PSFT point inside SFT's range.
    """
    ind_s, ood_s = sft["curves"]["eval_in_domain_exact"], sft["curves"]["eval_ood_exact"]
    ind_p, ood_p = psft["curves"]["eval_in_domain_exact"], psft["curves"]["eval_ood_exact"]
    if "per_seed" not in ind_s or "per_seed" not in ind_p:
        return None
    gaps, counts = [], []
    for xs, ys, xp, yp in zip(ind_s["per_seed"], ood_s["per_seed"], ind_p["per_seed"], ood_p["per_seed"]):
        order = np.argsort(xs, kind="stable")
        xs, ys = np.asarray(xs)[order], np.asarray(ys)[order]
        xp, yp = np.asarray(xp[1:]), np.asarray(yp[1:])
        inside = (xp >= xs[0]) & (xp <= xs[-1])
        if not inside.any():
            return None
        gaps.append(float(np.mean(yp[inside] - np.interp(xp[inside], xs, ys))))
        counts.append(int(inside.sum()))
    return {"gap": describe(gaps), "points": counts}


__all__ = [
    "EVAL_CURVES",
    "FINAL_KEYS",
    "PAIRED_KEYS",
    "STEP_CURVES",
    "epoch_steps_of",
    "frontier_gap",
    "mechanism",
    "paired",
    "paired_differences",
    "pairings",
    "run_name",
    "sawtooth",
    "style_status",
    "summarise_run",
    "summarise_view",
]
