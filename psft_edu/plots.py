"""Figures for the comparison and the notebooks (matplotlib only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .objectives import OBJECTIVES, PPO_CLIP

COLOURS = {**{name: o.colour for name, o in OBJECTIVES.items()}, "base": "black"}  # from the objective registry


def _colour(run: dict) -> str:
    return COLOURS.get(run.get("objective", ""), "tab:gray")


def _style(run: dict, summary: dict) -> str:
    """Solid for the highest learning rate in the summary, dashed for lower ones."""
    top = max(r["lr"] for r in summary["runs"].values())
    return "-" if run.get("lr") == top else "--"


def epoch_steps(view: dict) -> int | None:
    """Optimiser steps per pass over the view's demonstrations (None when unknown)."""
    st = view.get("settings", {})
    records = st.get("dataset_size")  # recorded by compare.run_view
    if not records or not st.get("global_batch"):
        return None
    return (records // st["global_batch"]) * (st["global_batch"] // st["mini_batch"])


def mark_epochs(ax, view: dict, last_step: float) -> None:
    """Thin vertical lines at every epoch boundary of the view."""
    every = epoch_steps(view)
    if not every:
        return
    for k, x in enumerate(range(every, int(last_step) + 1, every)):
        ax.axvline(x, color="0.8", lw=0.7, zorder=0, label="epoch boundary" if k == 0 else None)


def plot_curve(view: dict, key: str, ax=None, ylabel: str | None = None, title: str | None = None, base: bool = True):
    """One curve per run (mean over seeds, shaded 95% interval), epochs marked.

    ``key`` is a per-step curve (``"entropy"``: token entropy of the training mini-batch) or an
    evaluation curve (``"eval_sample_entropy"``, ``"eval_kl_ood"``, ...); for evaluation curves
    the base model's value is drawn as a dotted line.
    """
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    last = 0
    for name, run in view["runs"].items():
        curve = run["curves"][key]
        steps, mean = np.array(curve["step"]), np.array(curve["mean"])
        low, high = (np.array(curve["ci95"])[:, i] for i in (0, 1))
        marker = "o" if key.startswith("eval_") else None
        ax.plot(steps, mean, _style(run, view), color=_colour(run), marker=marker, ms=3, label=f"{name}")
        ax.fill_between(steps, low, high, color=_colour(run), alpha=0.15, lw=0)
        last = max(last, steps[-1])
    metric = key[5:] if key.startswith("eval_") else None
    finals = view["base"]["final"]
    base_key = {"demo_entropy": "entropy"}.get(metric, metric)
    if base and base_key in finals:
        ax.axhline(finals[base_key]["mean"], color="black", ls=":", lw=1, label="base")
    mark_epochs(ax, view, last)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(ylabel or key)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_accuracy(summary: dict, ax=None):
    """Final in-domain vs out-of-domain accuracy per run (bars with 95% intervals, with the base model)."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    names = ["base", *summary["runs"]]
    finals = [summary["base"]["final"], *(r["final"] for r in summary["runs"].values())]
    x = np.arange(len(names))
    for offset, key, label in ((-0.2, "in_domain_accuracy", "in-domain"), (0.2, "ood_accuracy", "out-of-domain")):
        means = np.array([100 * f[key]["mean"] for f in finals])
        errors = np.array(
            [[means[i] - 100 * f[key]["ci95"][0], 100 * f[key]["ci95"][1] - means[i]] for i, f in enumerate(finals)]
        )
        ax.bar(x + offset, means, 0.4, yerr=errors.T, label=label, capsize=3)
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_ylabel("sampled accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("In-domain vs out-of-domain after fine-tuning")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def _errorbar(ax, x: dict, y: dict, xscale: float, yscale: float, **kwargs) -> None:
    xerr = [[xscale * (x["mean"] - x["ci95"][0])], [xscale * (x["ci95"][1] - x["mean"])]]
    yerr = [[yscale * (y["mean"] - y["ci95"][0])], [yscale * (y["ci95"][1] - y["mean"])]]
    ax.errorbar(xscale * x["mean"], yscale * y["mean"], xerr=xerr, yerr=yerr, capsize=3, **kwargs)


def plot_pareto(summary: dict, axes=None, title: str = ""):
    """Two trade-off views of one view: in-domain vs out-of-domain accuracy, and own-sample entropy vs
    in-domain accuracy (95% intervals over seeds)."""
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 3.8))[1]
    runs = {"base": {"objective": "base", **summary["base"]}, **summary["runs"]}
    for name, run in runs.items():
        f = run["final"]
        marker = "*" if name == "base" else ("o" if _style(run, summary) == "-" else "s")
        style = {"fmt": marker, "color": _colour(run), "label": name, "ms": 10 if name == "base" else 6}
        _errorbar(axes[0], f["in_domain_accuracy"], f["ood_accuracy"], 100, 100, **style)
        _errorbar(axes[1], f["in_domain_accuracy"], f["sample_entropy"], 100, 1, **style)
    axes[0].set_xlabel("in-domain accuracy (%)")
    axes[0].set_ylabel("out-of-domain accuracy (%)")
    axes[0].set_title(f"{title}Learning vs forgetting (up-right is better)", fontsize=10)
    axes[1].set_xlabel("in-domain accuracy (%)")
    axes[1].set_ylabel("own-sample entropy, in-domain (nats)")
    axes[1].set_title(f"{title}Entropy vs accuracy", fontsize=10)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return axes


def _views(summary: dict) -> list[tuple[str, dict]]:
    return [("main", summary)] + ([("prolonged", summary["long"])] if "long" in summary else [])


def _draw_curve_views(fig, summary: dict, panels: tuple[tuple[str, str, str], ...]) -> None:
    """One row per view, one column per ``(curve key, y label, title)`` panel."""
    views = _views(summary)
    axes = fig.subplots(len(views), len(panels), squeeze=False)
    for row, (label, view) in zip(axes, views):
        for ax, (key, ylabel, title) in zip(row, panels):
            plot_curve(view, key, ax, ylabel, f"{label}: {title}")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def draw_entropy_views(fig, summary: dict) -> None:
    """Entropy on the training batches and on the model's own in-domain samples, per view."""
    entropy = "token entropy (nats)"
    panels = (
        ("entropy", entropy, "entropy on demonstrations (training batch)"),
        ("eval_sample_entropy", entropy, "entropy on own samples (in-domain)"),
    )
    _draw_curve_views(fig, summary, panels)


def draw_kl_views(fig, summary: dict) -> None:
    """Exact KL to the base on own samples, in-domain and out-of-domain, per view."""
    kl = "KL(model ‖ base) per token (nats)"
    panels = (("eval_kl_in_domain", kl, "KL to base, in-domain"), ("eval_kl_ood", kl, "KL to base, out-of-domain"))
    _draw_curve_views(fig, summary, panels)


def draw_pareto_views(fig, summary: dict) -> None:
    views = _views(summary)
    axes = fig.subplots(len(views), 2, squeeze=False)
    for row, (label, view) in zip(axes, views):
        plot_pareto(view, row, title=f"{label}: ")


def save_figure(fig, path: str | Path, dpi: int = 100) -> str:
    """Save a figure as PNG atomically (temporary file, then rename) and close it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return str(path)


def save_compare_figures(summary: dict, out: str | Path) -> list[str]:
    """Write the comparison's figures (both views) as PNG files; returns their paths."""
    out = Path(out)
    rows = len(_views(summary))
    paths = []
    for name, draw, size in (
        ("entropy_vs_step.png", draw_entropy_views, (12, 3.6 * rows)),
        ("pareto.png", draw_pareto_views, (12, 3.8 * rows)),
        ("kl_vs_step.png", draw_kl_views, (12, 3.6 * rows)),
        ("accuracy.png", lambda fig, s: plot_accuracy(s, fig.add_subplot(111)), (8, 4)),
    ):
        fig = plt.figure(figsize=size)
        draw(fig, summary)
        paths.append(save_figure(fig, out / name))
    return paths


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
    ax.axvspan(1 - epsilon, 1 + high, color="tab:green", alpha=0.1, label="trust region")
    ax.set_xlabel("probability ratio r")
    ax.set_title(f"Â = {advantage:+g}, ε = {epsilon:g}")
    ax.legend(fontsize=8, loc="upper left")
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
