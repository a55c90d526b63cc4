"""``report.md`` of a comparison: tables with intervals, paired differences and findings in plain words.

Every number comes from the summary (:mod:`psft_edu.experiments.results`); every finding is computed, so it
says what the numbers say. With fewer than two seeds there is no interval: the tables show the
value alone and no finding calls a difference significant.
"""

from __future__ import annotations

from pathlib import Path

from ..data import atomic_write_bytes
from ..objectives import PSFT_CLIP
from ..stats import excludes_zero, has_interval


def fmt(stat: dict, scale: float = 1.0, digits: int = 2) -> str:
    """``mean [low, high]``, or the mean alone when there is no interval (one seed)."""
    mean = f"{stat['mean'] * scale:.{digits}f}"
    if not has_interval(stat):
        return mean
    low, high = stat["ci95"]
    return f"{mean} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"


# (header, key in final, scale, digits)
SKILL_COLUMNS = (
    ("in-domain acc %", "in_domain_exact", 100, 1),
    ("OOD acc %", "ood_exact", 100, 1),
    ("in-domain sampled %", "in_domain_accuracy", 100, 1),
    ("distinct valid", "distinct_valid", 1, 2),
    ("KL to base (OOD)", "kl_ood", 1, 3),
)
ENTROPY_COLUMNS = (
    ("own-sample entropy", "sample_entropy", 1, 3),
    ("operand entropy", "operand_entropy", 1, 3),
    ("teacher style %", "style_teacher", 100, 0),
    ("KL to base (in)", "kl_in_domain", 1, 3),
    ("operand KL", "operand_kl", 1, 3),
    ("OOD own-sample entropy", "ood_sample_entropy", 1, 3),
)
TABLE_COLUMNS = SKILL_COLUMNS + ENTROPY_COLUMNS


def run_label(run: dict) -> str:
    """How tables and legends name a run: ``"SFT, lr 1e-3"`` (the objective's label and its rate)."""
    from ..objectives import OBJECTIVES

    objective = run.get("objective", "base")
    label = OBJECTIVES[objective].label if objective in OBJECTIVES else objective
    return f"{label}, lr {run['lr']:.0e}".replace("e-0", "e-") if "lr" in run else label


def view_table(view: dict, columns: tuple = TABLE_COLUMNS) -> list[str]:
    """Markdown rows: one per run (base first), mean [95% interval] of each column's final metric."""
    rows = [("base", view["base"])] + [(run_label(r), r) for r in view["runs"].values()]
    lines = ["| run | " + " | ".join(c[0] for c in columns) + " |", "| --- |" + " --- |" * len(columns)]
    for label, run in rows:
        final = run["final"]
        cells = [fmt(final[key], scale, digits) if key in final else "–" for _, key, scale, digits in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def paired_table(view: dict) -> list[str]:
    """Markdown rows of the paired SFT − PSFT differences."""
    lines = [
        "| pairing | Δ in-domain (points) | Δ OOD (points) | Δ own-sample entropy | Δ operand entropy | Δ KL (OOD) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, d in view["paired"].items():
        lines.append(
            f"| {label} | {fmt(d['in_domain_exact'], 100, 1)} | {fmt(d['ood_exact'], 100, 1)} | "
            f"{fmt(d['sample_entropy'], 1, 3)} | {fmt(d['operand_entropy'], 1, 3)} | {fmt(d['kl_ood'], 1, 3)} |"
        )
    return lines


def protocol_text(view: dict) -> str:
    """One sentence stating the evaluation protocol of a view."""
    st = view["settings"]
    ev = st["eval"]
    return (
        f"Every evaluation point: exact accuracy (the probability mass on the answers the verifier accepts) on "
        f"{ev['prompts']} held-out prompts per family, drawn afresh for each seed, so the intervals cover the "
        f"choice of prompts as well as training; entropy, exact KL to the base and answer style on "
        f"{ev['samples']} own samples at T = 1 per in-domain prompt and for {ev['ood_prompts']} prompts per "
        f"out-of-domain family; the final point adds sampled accuracy from {ev['final_samples']} samples per prompt."
    )


def _view_header(view: dict, what: str) -> str:
    st = view["settings"]
    data = f"the first {st['train_records']} demonstrations" if st["train_records"] else "all demonstrations"
    seeds = st["seeds"]
    spread = "Mean [95% interval over seeds]." if len(seeds) > 1 else "One seed: values without intervals."
    return (
        f"{what}: {data}, {st['max_steps']} optimiser steps, global batch {st['global_batch']}, mini-batch "
        f"{st['mini_batch']} (old policy refreshed every {st['refresh_every']} steps), PSFT ε {PSFT_CLIP:g}; "
        f"evaluated every {st['eval_every']} steps; seeds {', '.join(map(str, seeds))}. {spread}"
    )


def _verdict(stat: dict) -> str:
    if not has_interval(stat):
        return "one seed: no interval"
    return "interval excludes 0" if excludes_zero(stat) else "interval includes 0"


def findings(view: dict) -> list[str]:
    """Plain-language statements computed from one view: the paired differences, the runs still changing
    style, the saw-tooth test and the trajectories' gap. True or false as measured."""
    base = view["base"]["final"]
    out = [
        f"Base model: in-domain {100 * base['in_domain_exact']['mean']:.1f}%, out-of-domain "
        f"{100 * base['ood_exact']['mean']:.1f}% (exact accuracy), own-sample entropy "
        f"{base['sample_entropy']['mean']:.3f}."
    ]
    for label, diff in view["paired"].items():
        verdict = []
        for key, what, scale, unit in (
            ("sample_entropy", "own-sample entropy", 1, ""),
            ("ood_exact", "out-of-domain accuracy", 100, " points"),
            ("in_domain_exact", "in-domain accuracy", 100, " points"),
        ):
            d = diff[key]
            side = "SFT higher" if d["mean"] > 0 else "PSFT higher"
            verdict.append(f"{what}: {side} by {abs(d['mean']) * scale:.2f}{unit} ({_verdict(d)})")
        line = f"**{label}** (SFT − PSFT): " + "; ".join(verdict) + "."
        if "frontier_gap" in diff:
            gap = diff["frontier_gap"]["gap"]
            line += (f" At matched in-domain progress PSFT keeps {100 * gap['mean']:+.1f} points out of domain "
                     f"relative to SFT's path ({_verdict(gap)}).")
        out.append(line)
    h0 = base["sample_entropy"]["mean"]
    for run in view["runs"].values():
        f = run["final"]
        if run.get("status") == "still switching" and f["sample_entropy"]["mean"] > h0:
            out.append(
                f"{run_label(run)} is still switching style ({100 * f['style_teacher']['mean']:.0f}% of its answers "
                f"in the teacher's format): its own-sample entropy {f['sample_entropy']['mean']:.3f} (base {h0:.3f}) "
                f"mixes two formats and junk; it is not retained diversity."
            )
    out += [line for line in (_sawtooth_line(run) for run in view["runs"].values()) if line]
    return out


def _sawtooth_line(run: dict) -> str | None:
    saw = run.get("sawtooth")
    if not saw:
        return None
    excess, spread = saw["excess"], saw["inside_spread"]["mean"]
    if not has_interval(excess):
        verdict = "one seed: no verdict"
    elif excess["ci95"][1] < 0 and -excess["mean"] > spread:
        verdict = "a saw-tooth: the drop at boundaries exceeds the step-to-step noise"
    else:
        verdict = "no saw-tooth beyond the step-to-step noise"
    return (
        f"Training entropy of {run_label(run)} across {saw['boundaries']} epoch boundaries: "
        f"{fmt(saw['boundary_change'], 1, 3)} per boundary vs {fmt(saw['inside_change'], 1, 4)} per step inside an "
        f"epoch (spread {spread:.3f}); excess {fmt(excess, 1, 3)}: {verdict}."
    )


def write_report(summary: dict, path: str | Path, figures: list[str]) -> None:
    """A Markdown report: both views' tables with intervals, paired differences, findings, figures."""
    lines = [f"# SFT vs PSFT on the `{summary['preset']}` preset", ""]
    timing = summary.get("timing", {})
    if timing.get("phases"):
        phase = timing["phases"][-1]
        lines += [
            f"{summary.get('seconds', '?')} s in all; runs side by side in {phase['workers']} worker process(es), "
            f"one torch thread each (largest worker: {phase['peak_worker_mib']} MiB).",
            "",
        ]
    views = [("Main view", summary)] + ([("Prolonged view", summary["long"])] if "long" in summary else [])
    for title, view in views:
        lines += [f"## {title}", "", _view_header(view, title), "", protocol_text(view), ""]
        lines += ["Skill and forgetting:", "", *view_table(view, SKILL_COLUMNS), ""]
        lines += ["Entropy, drift and answer style:", "", *view_table(view, ENTROPY_COLUMNS), ""]
        lines += ["Paired differences SFT − PSFT (per seed: same data order and evaluation prompts):", ""]
        lines += [*paired_table(view), ""]
        lines += [f"- {c}" for c in findings(view)] + [""]
    lines += ["## Figures", ""] + [f"![{Path(fig).stem}]({Path(fig).name})" for fig in figures]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


__all__ = ["findings", "fmt", "paired_table", "protocol_text", "run_label", "view_table", "write_report"]
