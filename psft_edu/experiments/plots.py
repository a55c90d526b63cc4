"""Figures for the comparison and the notebooks (matplotlib only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..objectives import OBJECTIVES, PPO_CLIP

COLOURS = {**{name: o.colour for name, o in OBJECTIVES.items()}, "base": "black"}  # from the objective registry
FONT = 9  # points: readable at notebook width without zooming
DPI = 110  # saved figures and the notebooks' inline figures


def run_colour(run: dict) -> str:
    return COLOURS.get(run.get("objective", ""), "tab:gray")


def _rates(summary: dict) -> list[float]:
    return sorted({r["lr"] for r in summary["runs"].values()}, reverse=True)


def run_line_style(run: dict, summary: dict) -> str:
    """Line style by learning rate: solid for the highest rate in the summary, then dashed, dotted, dash-dot."""
    return ("-", "--", ":", "-.")[_rates(summary).index(run["lr"]) % 4] if "lr" in run else "-"


def run_shade(run: dict, summary: dict) -> tuple[float, float, float, float]:
    """The objective's colour, darker for higher learning rates: the rate is shown by shade *and* line style."""
    from matplotlib import colors

    rates = _rates(summary)
    rank = rates.index(run["lr"]) if "lr" in run else 0
    r, g, b = colors.to_rgb(run_colour(run))
    light = 0.45 * rank / max(len(rates) - 1, 1)  # 0 for the highest rate, up to 0.45 towards white
    return (r + (1 - r) * light, g + (1 - g) * light, b + (1 - b) * light, 1.0)


def run_label(run: dict) -> str:
    """``"SFT, lr 1e-3"`` (see :func:`psft_edu.experiments.report.run_label`)."""
    from .report import run_label as label

    return label(run)


def epoch_steps(view: dict) -> int | None:
    """Optimiser steps per pass over the view's demonstrations (None when unknown)."""
    st = view.get("settings", {})
    records = st.get("dataset_size")  # recorded by results.summarise_view
    if not records or not st.get("global_batch"):
        return None
    return (records // st["global_batch"]) * (st["global_batch"] // st["mini_batch"])


def mark_epochs(ax, view: dict, last_step: float) -> None:
    """Thin vertical lines at every epoch boundary of the view."""
    every = epoch_steps(view)
    if not every:
        return
    for k, x in enumerate(range(every, int(last_step) + 1, every)):
        ax.axvline(x, color="0.85", lw=0.7, zorder=0, label="epoch boundary" if k == 0 else None)


def plot_curve(view: dict, key: str, ax=None, ylabel: str | None = None, title: str | None = None, base: bool = True,
               scale: float = 1.0, log: bool = False):
    """One curve per run (mean over seeds, shaded 95% interval when there are several seeds), epochs marked.

    ``key`` is a per-step curve (``"entropy"``: token entropy of the training mini-batch; ``"ratio_max"``,
    ...) or an evaluation curve (``"eval_sample_entropy"``, ``"eval_in_domain_exact"``, ...); for evaluation
    curves the base model's value is drawn as a dotted line. Runs are labelled ``"SFT, lr 1e-3"``.
    """
    ax = ax or plt.subplots(figsize=(6, 3.5), dpi=DPI)[1]
    last = 0
    for run in view["runs"].values():
        if key not in run["curves"]:
            continue
        curve = run["curves"][key]
        steps, mean = np.array(curve["step"]), scale * np.array(curve["mean"], dtype=float)
        marker = "o" if key.startswith("eval_") else None
        ax.plot(steps, mean, run_line_style(run, view), color=run_shade(run, view), marker=marker, ms=3, lw=1.4,
                label=run_label(run))
        if curve.get("ci95") is not None:
            low, high = (scale * np.array(curve["ci95"], dtype=float)[:, i] for i in (0, 1))
            ax.fill_between(steps, low, high, color=run_shade(run, view), alpha=0.15, lw=0)
        last = max(last, steps[-1])
    metric = key[5:] if key.startswith("eval_") else None
    finals = view["base"]["final"]
    base_key = {"demo_entropy": "entropy"}.get(metric, metric)
    if base and base_key in finals:
        ax.axhline(scale * finals[base_key]["mean"], color="black", ls=":", lw=1, label="base")
    mark_epochs(ax, view, last)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("optimiser step", fontsize=FONT)
    ax.set_ylabel(ylabel or key, fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    if title:
        ax.set_title(title, fontsize=FONT + 1)
    return ax


def plot_accuracy(summary: dict, ax=None):
    """Final in-domain vs out-of-domain exact accuracy per run (bars with 95% intervals, with the base model)."""
    ax = ax or plt.subplots(figsize=(6, 3.5), dpi=DPI)[1]
    runs = [summary["base"], *summary["runs"].values()]
    names = ["base", *(run_label(r) for r in summary["runs"].values())]
    x = np.arange(len(names))
    for offset, key, label in ((-0.2, "in_domain_exact", "in-domain"), (0.2, "ood_exact", "out-of-domain")):
        stats = [r["final"][key] for r in runs]
        means = np.array([100 * s["mean"] for s in stats])
        errors = np.array([[m - 100 * s["ci95"][0], 100 * s["ci95"][1] - m] if s.get("ci95") else [0.0, 0.0]
                           for m, s in zip(means, stats)])
        ax.bar(x + offset, means, 0.4, yerr=errors.T, label=label, capsize=3)
    ax.set_xticks(x, names, rotation=20, fontsize=FONT - 1)
    ax.set_ylabel("exact accuracy (%)", fontsize=FONT)
    ax.set_ylim(0, 105)
    ax.set_title("In-domain vs out-of-domain after fine-tuning", fontsize=FONT + 1)
    ax.legend(fontsize=FONT - 1, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def _errorbar(ax, x: dict, y: dict, xscale: float, yscale: float, **kwargs) -> None:
    def err(s, scale):
        return [[scale * (s["mean"] - s["ci95"][0])], [scale * (s["ci95"][1] - s["mean"])]] if s.get("ci95") else None

    ax.errorbar(xscale * x["mean"], yscale * y["mean"], xerr=err(x, xscale), yerr=err(y, yscale), capsize=3,
                **kwargs)


def plot_pareto(summary: dict, axes=None, title: str = ""):
    """Two trade-off views of one view's final point: in-domain vs out-of-domain exact accuracy, and
    own-sample entropy vs in-domain accuracy (95% intervals over seeds)."""
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=DPI)[1]
    runs = {"base": {"objective": "base", **summary["base"]}, **summary["runs"]}
    for name, run in runs.items():
        f = run["final"]
        marker = "*" if name == "base" else ("o", "s", "^", "D")[_rates(summary).index(run["lr"]) % 4]
        colour = "black" if name == "base" else run_shade(run, summary)
        style = {"fmt": marker, "color": colour, "label": "base" if name == "base" else run_label(run),
                 "ms": 11 if name == "base" else 6}
        _errorbar(axes[0], f["in_domain_exact"], f["ood_exact"], 100, 100, **style)
        _errorbar(axes[1], f["in_domain_exact"], f["sample_entropy"], 100, 1, **style)
    for ax, ylabel, what in ((axes[0], "out-of-domain accuracy (%)", "Learning vs forgetting (up-right is better)"),
                             (axes[1], "own-sample entropy, in-domain (nats)", "Entropy vs accuracy")):
        ax.set_xlabel("in-domain accuracy (%)", fontsize=FONT)
        ax.set_ylabel(ylabel, fontsize=FONT)
        ax.set_title(f"{title}{what}", fontsize=FONT + 1)
        ax.tick_params(labelsize=FONT - 1)
    axes[1].legend(fontsize=FONT - 1, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return axes


def plot_trajectories(view: dict, ax=None, title: str = ""):
    """Learning vs forgetting *along training*: in-domain against out-of-domain exact accuracy at every
    evaluation point (mean over seeds; the first point is the base, the last is marked)."""
    ax = ax or plt.subplots(figsize=(5, 4), dpi=DPI)[1]
    for run in view["runs"].values():
        x = 100 * np.array(run["curves"]["eval_in_domain_exact"]["mean"], dtype=float)
        y = 100 * np.array(run["curves"]["eval_ood_exact"]["mean"], dtype=float)
        ax.plot(x, y, run_line_style(run, view), color=run_shade(run, view), marker="o", ms=2.5, lw=1.3,
                label=run_label(run))
        ax.plot(x[-1], y[-1], "o", color=run_shade(run, view), ms=7, mfc="white", mew=1.5)
    b = view["base"]["final"]
    ax.plot(100 * b["in_domain_exact"]["mean"], 100 * b["ood_exact"]["mean"], "*", color="black", ms=11, label="base")
    ax.set_xlabel("in-domain accuracy (%)", fontsize=FONT)
    ax.set_ylabel("out-of-domain accuracy (%)", fontsize=FONT)
    ax.set_title(f"{title}Paths during training (open circle: the end)", fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT - 1)
    return ax


def _views(summary: dict) -> list[tuple[str, dict]]:
    return [("main", summary)] + ([("prolonged", summary["long"])] if "long" in summary else [])


def _draw_curve_views(fig, summary: dict, panels: tuple) -> None:
    """One row per view, one column per ``(curve key, y label, title[, scale[, log]])`` panel; one legend."""
    views = _views(summary)
    axes = fig.subplots(len(views), len(panels), squeeze=False)
    for row, (label, view) in zip(axes, views):
        for ax, (key, ylabel, title, *extra) in zip(row, panels):
            plot_curve(view, key, ax, ylabel, f"{label}: {title}", *([True] + extra if extra else []))
    fig.tight_layout()
    figure_legend(fig, axes, ncol=4, fontsize=FONT)


ENTROPY_PANELS = (
    ("entropy", "token entropy (nats)", "entropy on the training batch"),
    ("eval_sample_entropy", "token entropy (nats)", "entropy on own answers"),
    ("eval_operand_entropy", "token entropy (nats)", "entropy on the operand tokens"),
    ("eval_style_teacher", "share of answers (%)", "answers in the teacher's format", 100),
)
ACCURACY_PANELS = (
    ("eval_in_domain_exact", "exact accuracy (%)", "in-domain accuracy", 100),
    ("eval_ood_exact", "exact accuracy (%)", "out-of-domain accuracy", 100),
)
KL_PANELS = (
    ("eval_kl_in_domain", "KL(model ‖ base) per token (nats)", "KL to base, in-domain"),
    ("eval_operand_kl", "KL(model ‖ base) per token (nats)", "KL to base, operand tokens"),
    ("eval_kl_ood", "KL(model ‖ base) per token (nats)", "KL to base, out-of-domain"),
)
MECHANISM_PANELS = (
    ("past_bound", "share of tokens", "ratio past 1 + ε (PSFT: clipped)"),
    ("ratio_max", "ratio π / π_old (log scale)", "largest ratio in the mini-batch", 1.0, True),
    ("unclippable", "share of tokens", "old probability above 1/(1+ε)"),
    ("grad_norm", "norm before clipping (log scale)", "gradient norm", 1.0, True),
)


def draw_entropy_views(fig, summary: dict) -> None:
    """Entropy on the training batches, on the model's own answers and on their operand tokens, and the
    share of answers in the teacher's format, per view."""
    _draw_curve_views(fig, summary, ENTROPY_PANELS)


def draw_accuracy_views(fig, summary: dict) -> None:
    """Exact in-domain and out-of-domain accuracy at every evaluation point, per view."""
    _draw_curve_views(fig, summary, ACCURACY_PANELS)


def draw_kl_views(fig, summary: dict) -> None:
    """Exact KL to the base on own samples: in-domain, operand tokens only, out-of-domain, per view."""
    _draw_curve_views(fig, summary, KL_PANELS)


def draw_mechanism_views(fig, summary: dict) -> None:
    """What the clip and the optimiser did, per step: share past the bound, largest ratio, unclippable
    share and gradient norm, per view."""
    _draw_curve_views(fig, summary, MECHANISM_PANELS)


def draw_pareto_views(fig, summary: dict) -> None:
    """Per view: the final trade-off (two panels) and the paths during training."""
    views = _views(summary)
    axes = fig.subplots(len(views), 3, squeeze=False)
    for row, (label, view) in zip(axes, views):
        plot_pareto(view, row[:2], title=f"{label}: ")
        plot_trajectories(view, row[2], title=f"{label}: ")
    fig.tight_layout()
    figure_legend(fig, axes, ncol=5, fontsize=FONT)


def save_figure(fig, path: str | Path, dpi: int = DPI) -> str:
    """Save a figure as PNG atomically (temporary file, then rename) and close it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return str(path)


COMPARE_FIGURES = (
    ("entropy_vs_step.png", draw_entropy_views, 4),
    ("accuracy_vs_step.png", draw_accuracy_views, 2),
    ("kl_vs_step.png", draw_kl_views, 3),
    ("mechanism_vs_step.png", draw_mechanism_views, 4),
    ("pareto.png", draw_pareto_views, 3),
)


def save_compare_figures(summary: dict, out: str | Path) -> list[str]:
    """Write the comparison's figures (both views) as PNG files; returns their paths."""
    out = Path(out)
    rows = len(_views(summary))
    paths = []
    for name, draw, columns in COMPARE_FIGURES:
        if draw is draw_mechanism_views and not all("past_bound" in r["curves"] for r in summary["runs"].values()):
            continue
        fig = plt.figure(figsize=(3.6 * columns, 3.2 * rows + 0.6), dpi=DPI)
        draw(fig, summary)
        paths.append(save_figure(fig, out / name))
    return paths


ARM_MARKERS = {"k8": "o", "k32": "s", "never": "X", "warmup": "^", "lowdrift": "D", "basestyle": "P"}
ARM_LABELS = {"k8": "PSFT, K = 8", "k32": "PSFT, K = 32", "never": "PSFT, never refreshed",
              "warmup": "SFT warm-up, then PSFT (K = 8)", "lowdrift": "low drift: lr 3e-5, 4x steps (K = 8)",
              "basestyle": "teacher in the base's style (K = 8)"}


def arm_of(name: str) -> str:
    """The kind of a regime-map arm from its run name (``psft_k32_lr1e-03`` -> ``"k32"``)."""
    return next((arm for arm in ARM_MARKERS if f"_{arm}_" in name), "k8")


def plot_regime(summary: dict, axes=None):
    """The regime map: for every PSFT arm, its paired difference from the matching SFT arm (PSFT − SFT, mean
    and 95% interval over seeds) against what the clip did in it.

    Columns: out-of-domain accuracy kept, in-domain accuracy gained, own-sample entropy. Rows: the share of
    tokens PSFT clipped (mean over steps), and the drift per refresh (exact KL to the old policy at the last
    step of a refresh). Marker: the arm; shade: the learning rate (darker is higher).
    """
    table = summary["regime"]
    if axes is None:
        axes = plt.subplots(2, 3, figsize=(13, 7), dpi=DPI)[1]
    outcomes = (("ood_exact", "Δ out-of-domain accuracy (points)", 100), ("in_domain_exact",
                "Δ in-domain accuracy (points)", 100), ("sample_entropy", "Δ own-sample entropy (nats)", 1))
    mechanisms = (("clip_fraction", "share of tokens clipped (mean over steps)"),
                  ("kl_old_end", "KL to the old policy at a refresh's end (nats)"))
    for row, (mkey, mlabel) in zip(axes, mechanisms):
        for ax, (okey, olabel, scale) in zip(row, outcomes):
            for name, entry in table.items():
                run, mech = summary["runs"][name], entry["mechanism"]
                if mech is None or mkey not in mech:
                    continue
                d = entry["diff"][okey]  # SFT - PSFT per seed: flip the sign to read "PSFT - SFT"
                y = -scale * d["mean"]
                yerr = None if not d.get("ci95") else [[y + scale * d["ci95"][1]], [-scale * d["ci95"][0] - y]]
                x = max(mech[mkey]["mean"], 1e-4)  # log axis: nothing clipped is drawn at 1e-4
                ax.errorbar(x, y, yerr=yerr, fmt=ARM_MARKERS[arm_of(name)], color=run_shade(run, summary), ms=6,
                            capsize=2, label=ARM_LABELS[arm_of(name)])
            ax.axhline(0, color="0.6", lw=0.8)
            ax.set_xscale("log")
            ax.margins(x=0.15, y=0.1)
            ax.set_xlabel(mlabel, fontsize=FONT)
            ax.set_ylabel(olabel, fontsize=FONT)
            ax.tick_params(labelsize=FONT - 1)
    axes[0][0].set_title("PSFT − SFT at a matched rate: above 0, PSFT has more", fontsize=FONT + 1, loc="left")
    fig = axes[0][0].figure
    fig.tight_layout()
    figure_legend(fig, axes, ncol=3, fontsize=FONT)
    return axes


def plot_matched_progress(summary: dict, pairs: list[tuple[str, str]], axes=None):
    """Learning vs forgetting along training for SFT/PSFT pairs: in-domain against out-of-domain exact accuracy
    at every evaluation point (mean over seeds, bars: 95% intervals), one panel per pair, with the paired
    frontier gap (:func:`psft_edu.experiments.results.frontier_gap`) in the title."""
    from .results import frontier_gap

    if axes is None:
        axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.8), dpi=DPI, squeeze=False)[1][0]
    for ax, (sft, psft) in zip(axes, pairs):
        for name in (sft, psft):
            run = summary["runs"][name]
            ind, ood = run["curves"]["eval_in_domain_exact"], run["curves"]["eval_ood_exact"]
            x, y = 100 * np.array(ind["mean"], dtype=float), 100 * np.array(ood["mean"], dtype=float)
            err = {}
            if ind.get("ci95") is not None:
                err = {"xerr": 100 * np.abs(np.array(ind["ci95"], dtype=float).T - x / 100),
                       "yerr": 100 * np.abs(np.array(ood["ci95"], dtype=float).T - y / 100)}
            ax.errorbar(x, y, fmt="o" + run_line_style(run, summary), color=run_colour(run), ms=3, lw=1.2, capsize=0,
                        elinewidth=0.6, label=f"{run_label(run)}{' (' + arm_of(name) + ')' if name == psft else ''}",
                        **err)
        gap = frontier_gap(summary["runs"][sft], summary["runs"][psft])
        title = f"lr {summary['runs'][sft]['lr']:.0e}"
        if gap is not None:
            g = gap["gap"]
            interval = f" [{100 * g['ci95'][0]:+.1f}, {100 * g['ci95'][1]:+.1f}]" if g.get("ci95") else ""
            title += f": PSFT − SFT at matched progress {100 * g['mean']:+.1f}{interval}"
        ax.set_title(title, fontsize=FONT)
        ax.set_xlabel("in-domain accuracy (%)", fontsize=FONT)
        ax.set_ylabel("out-of-domain accuracy (%)", fontsize=FONT)
        ax.tick_params(labelsize=FONT - 1)
        ax.legend(fontsize=FONT - 2, loc="lower left")
    return axes


def plot_clipped_surrogate(epsilon: float = PPO_CLIP, advantage: float = 1.0, ax=None, clip_high: float | None = None):
    """The PPO surrogate min(r·A, clip(r)·A) and its derivative in r, for one advantage sign."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    high = epsilon if clip_high is None else clip_high
    r = np.linspace(0.0, 2.0, 401)
    unclipped = r * advantage
    surrogate = np.minimum(unclipped, np.clip(r, 1 - epsilon, 1 + high) * advantage)
    slope = np.where(np.isclose(surrogate, unclipped), advantage, 0.0)
    ax.plot(r, unclipped, ":", color="gray", label="r·Â (unclipped)")
    ax.plot(r, surrogate, color="tab:blue", label="min(r·Â, clip(r)·Â)")
    ax.plot(r, slope, color="tab:red", alpha=0.6, label="d/dr of the surrogate")
    ax.axvspan(1 - epsilon, 1 + high, color="tab:green", alpha=0.1, label="clip interval [1-ε, 1+ε]")
    ax.set_xlabel("probability ratio r")
    ax.set_ylabel("surrogate value and its slope")
    ax.set_title(f"Â = {advantage:+g}, ε = {epsilon:g}")
    # Keep the legend off the flat (zero-slope) stretch the panel exists to show: that stretch lies right of
    # 1 + ε for Â > 0, where the upper left is empty, and left of 1 - ε for Â < 0, where the curves sit near
    # zero and the lower left is empty.
    ax.legend(fontsize=8, loc="upper left" if advantage >= 0 else "lower left")
    return ax


def figure_legend(fig, axes=None, ncol: int | None = None, fontsize: int = 8, extra: tuple[list, list] | None = None):
    """One legend for the whole figure, below its axes; the axes' own legends are removed.

    Entries with the same label on several axes appear once. ``extra`` adds ``(handles, labels)``
    (e.g. a proxy artist for a marker that carries no label). Call it after ``fig.tight_layout()``;
    the notebooks' inline figures are saved with a tight bounding box, so the legend is kept.
    """
    axes = list(np.ravel(axes if axes is not None else fig.axes))
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                seen.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if extra is not None:
        for handle, label in zip(*extra):
            seen.setdefault(label, handle)
    if not seen:
        return None
    columns = ncol or min(len(seen), 4)
    return fig.legend(
        list(seen.values()),
        list(seen.keys()),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=columns,
        fontsize=fontsize,
        frameon=False,
    )
