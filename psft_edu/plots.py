"""Figures for the comparison and the notebooks (matplotlib only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

COLOURS = {"sft": "tab:red", "psft": "tab:blue", "sft_kl": "tab:orange", "dft": "tab:green", "asft": "tab:purple", "base": "black"}


def _colour(run: dict) -> str:
    return COLOURS.get(run.get("objective", ""), "tab:gray")


def _style(run: dict, summary: dict) -> str:
    """Solid for the highest learning rate in the summary, dashed for lower ones."""
    top = max(r["lr"] for r in summary["runs"].values())
    return "-" if run.get("lr") == top else "--"


def plot_entropy_curves(summary: dict, ax=None, key: str = "entropy"):
    """Token entropy on the training demonstrations vs optimiser step, mean ± std over seeds."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for name, run in summary["runs"].items():
        curve = run["curves"][key]
        steps, mean, std = np.array(curve["step"]), np.array(curve["mean"]), np.array(curve["std"])
        ax.plot(steps, mean, _style(run, summary), color=_colour(run), label=f"{name} (lr {run['lr']:g})")
        ax.fill_between(steps, mean - std, mean + std, color=_colour(run), alpha=0.15)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("token entropy (nats)")
    ax.set_title("Entropy on the SFT demonstrations")
    ax.legend(fontsize=8)
    return ax


def plot_eval_curves(summary: dict, key: str = "eval_ood_accuracy", ax=None, ylabel: str | None = None):
    """An evaluation metric (e.g. out-of-domain accuracy) vs step."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for name, run in summary["runs"].items():
        curve = run["curves"][key]
        steps, mean, std = np.array(curve["step"]), np.array(curve["mean"]), np.array(curve["std"])
        ax.errorbar(steps, mean, yerr=std, fmt="o" + _style(run, summary), color=_colour(run), label=name, capsize=3)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(ylabel or key)
    ax.legend(fontsize=8)
    return ax


def plot_accuracy(summary: dict, ax=None):
    """Final in-domain vs out-of-domain accuracy per run (bars, with the base model)."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    names = ["base", *summary["runs"]]
    finals = [summary["base"]["final"], *(r["final"] for r in summary["runs"].values())]
    x = np.arange(len(names))
    for offset, key, label in ((-0.2, "in_domain_accuracy", "in-domain"), (0.2, "ood_accuracy", "out-of-domain")):
        ax.bar(
            x + offset,
            [100 * f[key]["mean"] for f in finals],
            0.4,
            yerr=[100 * f[key]["std"] for f in finals],
            label=label,
            capsize=3,
        )
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_ylabel("sampled accuracy (%)")
    ax.set_title("In-domain vs out-of-domain after fine-tuning")
    ax.legend(fontsize=8)
    return ax


def plot_pareto(summary: dict, axes=None):
    """Two trade-off views: in-domain vs out-of-domain accuracy, and entropy vs in-domain accuracy."""
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 3.8))[1]
    runs = {"base": {"objective": "base", **summary["base"]}, **summary["runs"]}
    for name, run in runs.items():
        f = run["final"]
        colour = _colour(run)
        marker = "*" if name == "base" else ("o" if _style(run, summary) == "-" else "s")
        axes[0].errorbar(
            100 * f["in_domain_accuracy"]["mean"], 100 * f["ood_accuracy"]["mean"],
            xerr=100 * f["in_domain_accuracy"]["std"], yerr=100 * f["ood_accuracy"]["std"],
            fmt=marker, color=colour, label=name, capsize=3,
        )
        axes[1].errorbar(
            100 * f["in_domain_accuracy"]["mean"], f["entropy"]["mean"],
            xerr=100 * f["in_domain_accuracy"]["std"], yerr=f["entropy"]["std"],
            fmt=marker, color=colour, label=name, capsize=3,
        )
    axes[0].set_xlabel("in-domain accuracy (%)")
    axes[0].set_ylabel("out-of-domain accuracy (%)")
    axes[0].set_title("Learning vs forgetting (up-right is better)")
    axes[1].set_xlabel("in-domain accuracy (%)")
    axes[1].set_ylabel("demo token entropy (nats)")
    axes[1].set_title("Entropy vs accuracy")
    axes[0].legend(fontsize=8)
    return axes


def save_compare_figures(summary: dict, out: str | Path) -> list[str]:
    """Write the comparison's three figures as PNG files; returns their paths."""
    out = Path(out)
    paths = []
    for name, draw, size in (
        ("entropy_vs_step.png", lambda fig: plot_entropy_curves(summary, fig.add_subplot(111)), (7, 4)),
        ("accuracy.png", lambda fig: plot_accuracy(summary, fig.add_subplot(111)), (7, 4)),
        ("pareto.png", lambda fig: plot_pareto(summary, fig.subplots(1, 2)), (11, 4)),
    ):
        fig = plt.figure(figsize=size)
        draw(fig)
        fig.tight_layout()
        tmp = out / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        tmp.replace(out / name)
        paths.append(str(out / name))
    return paths


def plot_clipped_surrogate(epsilon: float = 0.2, advantage: float = 1.0, ax=None, clip_high: float | None = None):
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


def legend_outside(ax, fontsize: int = 8, **kwargs):
    """Move ``ax``'s legend to the right of the axes, where it cannot cover data; returns it (None without labels)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    options = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0, "fontsize": fontsize, **kwargs}
    return ax.legend(handles, labels, **options)


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
    return fig.legend(list(seen.values()), list(seen.keys()), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                      ncol=columns, fontsize=fontsize, frameon=False)
