"""Drawing (matplotlib) for the notebooks and their widgets: ratios, clipping, comparison, RL and sweep curves.

Each ``draw_*``/``plot_*`` function draws on axes it is given; :func:`render_png` is the one way
a widget turns a drawing into PNG bytes (Agg canvas, no pyplot, so nothing is shown twice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .analysis import (
    COMPARE_METRICS,
    RL_METRICS,
    as_numpy,
    clip_fractions_by_minibatch,
    compare_curve,
    completion_grid,
    label_groups,
    psft_weight,
    rl_curve,
    rl_eval_means,
    surrogate_and_slope,
    token_label,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from transformers import PreTrainedTokenizerBase


def render_png(draw: Callable[[Figure], object], figsize: tuple[float, float], dpi: int = 80, layout: bool = True,
               **savefig: object) -> bytes:
    """A new Agg-backed figure of ``figsize``, drawn by ``draw(figure)``, as PNG bytes.

    ``layout`` runs ``tight_layout`` before saving; ``savefig`` passes extra options to ``Figure.savefig``.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    draw(fig)
    if layout:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, **savefig)
    return buffer.getvalue()


# ---------------------------------------------------------------- 01-02 tokens and the loss mask, as HTML

def explorer_html(
    rows: list[tuple[int, str, float]], prompt: str, generated: list[tuple[str, float]], note: str
) -> str:
    import html
    import math

    bar = "display:inline-block;height:0.9em;background:#4c78a8;vertical-align:middle"
    lines = [
        "<table style='border-collapse:collapse;font-family:monospace'>",
        "<tr><th style='text-align:left;padding-right:1em'>next token</th>"
        "<th style='text-align:right;padding-right:1em'>probability</th><th></th></tr>",
    ]
    for _, label, p in rows:
        lines.append(
            f"<tr><td style='padding-right:1em'>{html.escape(label)}</td>"
            f"<td style='text-align:right;padding-right:1em'>{p:.3f}</td>"
            f"<td><span style='{bar};width:{max(1, round(300 * p))}px'></span></td></tr>"
        )
    lines.append("</table>")
    if generated:
        shown = "".join(html.escape(label) for label, _ in generated)
        total = sum(math.log(max(p, 1e-45)) for _, p in generated)
        lines.append(
            f"<p style='font-family:monospace'>state s = <span style='color:#777'>{html.escape(prompt)}</span>"
            f"<b>{shown}</b><br>log π(appended tokens | prompt) = {total:.3f}"
            f" &nbsp; (probability {math.exp(total):.3g}, {len(generated)} step(s))</p>"
        )
    if note:
        lines.append(f"<p style='color:#b00'>{html.escape(note)}</p>")
    return "\n".join(lines)


def loss_mask_html(tokenizer: PreTrainedTokenizerBase, record: dict[str, str]) -> str:
    """One prompt/completion pair as the loss sees it: each input token, its target, and whether it counts."""
    import html

    from ..data import collate, encode_records

    ids, prompt_lengths, _ = encode_records([record], tokenizer, max_length=10_000)
    batch = collate(ids, prompt_lengths, tokenizer.pad_token_id)
    cell = "padding:2px 4px;text-align:center;font-family:monospace"
    rows = {"input": [], "target": [], "in loss": []}
    for t in range(batch.input_ids.shape[1]):
        counted = bool(batch.mask[0, t])
        style = f"{cell};background:{'#cfe3f7' if counted else '#eeeeee'}"
        rows["input"].append(
            f"<td style='{style}'>{html.escape(token_label(tokenizer, int(batch.input_ids[0, t])))}</td>"
        )
        rows["target"].append(
            f"<td style='{style}'>{html.escape(token_label(tokenizer, int(batch.targets[0, t])))}</td>"
        )
        rows["in loss"].append(f"<td style='{style}'>{'1' if counted else '0'}</td>")
    body = "".join(
        f"<tr><th style='text-align:left;padding-right:6px'>{name}</th>{''.join(cells)}</tr>"
        for name, cells in rows.items()
    )
    n = int(batch.mask.sum())
    return (
        f"<p style='font-family:monospace'>prompt {html.escape(repr(record['prompt']))}, "
        f"completion {html.escape(repr(record['completion']))}: {n} of {batch.mask.shape[1]} targets count</p>"
        f"<table style='border-collapse:collapse'>{body}</table>"
    )


# ---------------------------------------------------------------- 04 clipped surrogate

def clip_explorer_png(epsilon: float, r: float, dpi: int = 80) -> bytes:
    """Both advantage signs side by side, with the probe ratio r marked; PNG bytes."""
    from ..experiments.plots import plot_clipped_surrogate

    def draw(fig: Figure) -> None:
        for ax, advantage in zip(fig.subplots(1, 2), (1.0, -1.0)):
            plot_clipped_surrogate(epsilon, advantage, ax)
            ax.axvline(r, color="black", lw=0.8, ls="--")
            ax.plot([r], [surrogate_and_slope(r, advantage, epsilon)[0]], "o", color="black")
            ax.set_ylim(-2.1, 2.1)

    return render_png(draw, (10, 3.6), dpi)



# ---------------------------------------------------------------- 05 PSFT: epsilon and K

def plot_token_ratios(
    ratio: object,
    mask: object,
    labels: list[list[str]],
    epsilon: float,
    ax=None,
    rows: int = 8,
    title: str | None = None,
    colorbar: bool = True,
):
    """Heat-map of the ratios r of the completion tokens of the first ``rows`` sequences.

    Each cell is one target token, labelled with its character; the colour is r on a log scale
    (blue: the token became less likely, red: more likely). A black frame marks the tokens past
    ``1+ε``, whose PSFT gradient is zero. Returns the axes.
    """
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.subplots(figsize=(7, 0.45 * rows + 1.2))[1]
    grid, names = completion_grid(ratio, mask, labels, rows)
    log2 = np.log2(np.clip(grid, 2.0**-3, 2.0**6))
    image = ax.imshow(log2, cmap="RdBu_r", norm=TwoSlopeNorm(vcenter=0.0, vmin=-3.0, vmax=6.0), aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isnan(grid[i, j]):
                continue
            dark = abs(log2[i, j]) > 2.5
            ax.text(
                j,
                i,
                names[i][j],
                ha="center",
                va="center",
                fontsize=9,
                family="monospace",
                color="white" if dark else "black",
            )
            if grid[i, j] > 1.0 + epsilon:
                ax.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False, lw=1.6, edgecolor="black"))
    ax.set_xticks([])
    ax.set_yticks(range(grid.shape[0]), [f"seq {i}" for i in range(grid.shape[0])], fontsize=8)
    ax.set_title(title or f"ratio r per completion token (framed: r > 1 + ε = {1 + epsilon:.2f})", fontsize=10)
    if colorbar:
        bar = ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
        ticks = [-3, -2, -1, 0, 1, 2, 4, 6]
        bar.set_ticks(ticks, labels=[f"{2.0**t:g}" for t in ticks])
        bar.set_label("r (log scale)", fontsize=8)
    return ax


def token_ratio_html(ratio: object, mask: object, labels: list[list[str]], epsilon: float, rows: int = 8) -> str:
    """The same picture as :func:`plot_token_ratios` as HTML: coloured characters, clipped ones framed (hover shows
    r).
    """
    import html

    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm, to_hex

    grid, names = completion_grid(ratio, mask, labels, rows)
    norm, cmap = TwoSlopeNorm(vcenter=0.0, vmin=-3.0, vmax=6.0), colormaps["RdBu_r"]
    lines = []
    for i in range(grid.shape[0]):
        cells = []
        for j in range(grid.shape[1]):
            r = grid[i, j]
            if np.isnan(r):
                continue
            level = float(np.log2(np.clip(r, 2.0**-3, 2.0**6)))
            frame = "2px solid black" if r > 1.0 + epsilon else "2px solid transparent"
            colour = "white" if abs(level) > 2.5 else "black"
            cells.append(
                f"<span title='r = {r:.3g}' style='display:inline-block;min-width:1.6em;text-align:center;margin:1px;"
                f"background:{to_hex(cmap(norm(level)))};color:{colour};border:{frame}'>"
                f"{html.escape(names[i][j])}</span>"
            )
        lines.append(f"<div style='font-family:monospace'>{''.join(cells)}</div>")
    return "".join(lines)


def draw_psft_explorer(axes, ratios: object, mask: object, epsilon: float, k_updates: int) -> None:
    """The explorer's two panels on ``axes`` (two matplotlib axes).

    Left: the gradient weight per token against r, SFT (1) and PSFT (r below ``1+ε``, 0 above), with the
    tokens of the last mini-batch of a global batch (after K-1 steps) as dots. Right: the clip fraction
    each of the K mini-batches meets, and their mean.
    """
    import numpy as np

    r_all, m = as_numpy(ratios), as_numpy(mask) > 0
    last = r_all[k_updates - 1][m]
    right = max(4.0, 1.5 * float(r_all[:, m].max()), 2 * (1 + epsilon))  # fixed while K changes
    grid = np.geomspace(0.125, right, 400)
    ax = axes[0]
    ax.plot(grid, np.ones_like(grid), "--", color="tab:red", label="SFT: weight 1")
    ax.plot(grid, psft_weight(grid, epsilon), color="tab:blue", label="PSFT: r·1{r ≤ 1+ε}")
    jitter = np.random.default_rng(0).uniform(-0.04, 0.04, size=last.shape)
    ax.plot(
        last,
        psft_weight(last, epsilon) + jitter,
        "o",
        ms=3,
        alpha=0.35,
        color="black",
        label=f"tokens after {k_updates - 1} step(s)",
    )
    ax.axvline(1.0 + epsilon, color="gray", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlim(grid[0], grid[-1])
    ax.set_ylim(-0.1, max(1.5, 1.0 + epsilon + 0.25))
    ax.set_xlabel("ratio r = π_θ / π_old (log scale)")
    ax.set_ylabel("gradient weight on ∇log π")
    ax.legend(fontsize=8, loc="upper left")
    fractions = clip_fractions_by_minibatch(r_all, m, epsilon, k_updates)
    ax = axes[1]
    ax.bar(np.arange(1, k_updates + 1), fractions, color="tab:blue", alpha=0.8)
    ax.axhline(float(np.mean(fractions)), color="black", lw=1, ls="--", label=f"mean {np.mean(fractions):.3f}")
    ax.set_xlim(0.4, len(r_all) + 0.6)
    ax.set_ylim(0, 1)
    ax.set_xticks(range(1, len(r_all) + 1))
    ax.set_xlabel("mini-batch within the global batch")
    ax.set_ylabel("share of tokens clipped")
    ax.set_title(f"K = {k_updates}, ε = {epsilon:.2f}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")


def psft_explorer_png(ratios: object, mask: object, epsilon: float, k_updates: int, dpi: int = 80) -> bytes:
    return render_png(
        lambda fig: draw_psft_explorer(fig.subplots(1, 2), ratios, mask, epsilon, k_updates), (10, 3.4), dpi
    )


def draw_psft_loop(ax, k: int = 8, mini_batch: int = 32, trl: bool = False):
    """The PSFT training loop as a diagram on ``ax``: global batch, freeze, K steps, refresh; returns ``ax``.

    One global batch of ``k * mini_batch`` sequences; one no-grad forward freezes the old policy's
    log-probs for all of it; K optimiser steps, one per mini-batch, each against those frozen
    log-probs (the first sees ratio 1); then the old policy is refreshed with the next global batch.
    ``trl=True`` adds the names of the same quantities in TRL (``PSFTTrainer``/``SFTConfig``).
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    ax.set_xlim(0, 12)
    ax.set_ylim(0, 6.2)
    ax.axis("off")

    def box(x, y, w, h, text, colour, size=9):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="black", lw=0.8))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(start, end, **style):
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, lw=1.0, color="black", **style))

    # 1. the global batch: K stripes, one per mini-batch
    shown = min(k, 8)
    height = 3.2 / shown
    for i in range(shown):
        ax.add_patch(Rectangle((0.3, 1.2 + i * height), 1.8, height, fc="#dbe7f3", ec="#4c78a8", lw=0.8))
    ax.text(1.2, 4.75, f"global batch\n{k} × {mini_batch} = {k * mini_batch} sequences", ha="center", fontsize=9)
    ax.text(1.2, 0.75, f"{k} mini-batches", ha="center", fontsize=8, color="#4c78a8")
    # 2. freeze the old policy
    box(3.0, 2.2, 2.5, 1.6, "1. freeze π_old\none no-grad forward:\nlog π_old(a_t | s_t)\nfor every token", "#fde9c8")
    arrow((2.15, 3.0), (2.95, 3.0))
    # 3. K optimiser steps against the frozen log-probs
    labels = ["step 1\nr = 1", "step 2", "…", f"step {k}"] if k > 3 else [f"step {i + 1}" for i in range(k)]
    labels[0] = "step 1\nr = 1"
    width = 4.6 / len(labels)
    for i, label in enumerate(labels):
        box(6.3 + i * width, 2.4, width - 0.25, 1.2, label, "#d9f0d3" if label != "…" else "white", size=8)
    ax.text(6.3 + 2.3, 4.05, f"2. {k} optimiser steps, one per mini-batch,\neach against the frozen log π_old:\n"
            "r = π_θ / π_old,  loss = −mean min(r, clip(r, 1−ε, 1+ε))", ha="center", fontsize=8.5)
    arrow((5.55, 3.0), (6.25, 3.0))
    # 4. refresh: back to a new global batch
    arrow((10.9, 2.35), (1.2, 1.15), connectionstyle="arc3,rad=-0.2")
    ax.text(6.0, 0.55, "3. refresh: π_old ← π_θ, take the next global batch", ha="center", fontsize=9,
            bbox={"fc": "white", "ec": "none", "pad": 1.5})
    if trl:
        ax.text(6.0, 5.55, f"TRL: refresh_every = K = {k};  mini-batch = per_device_train_batch_size × "
                "gradient_accumulation_steps × processes", ha="center", fontsize=8.5, color="#444444")
    return ax


# ---------------------------------------------------------------- 06 comparison

def draw_compare_curves(
    ax, summary: dict, metric: str, runs: list[str] | None = None, smooth: int = 1, log_y: bool = False
) -> None:
    """Mean ± std over seeds of one :data:`COMPARE_METRICS` entry for the chosen runs, on ``ax``.

    Colours follow the objective (SFT red, PSFT blue); solid lines are the higher learning rate,
    dashed the lower one. Evaluation curves are drawn with markers (they have few points).
    """
    from ..experiments.plots import run_label, run_line_style, run_shade

    key, ylabel = COMPARE_METRICS[metric]
    chosen = list(summary["runs"]) if runs is None else list(runs)
    for name in chosen:
        run = summary["runs"][name]
        steps, mean, std = compare_curve(summary, name, key, 1 if key.startswith("eval_") else smooth)
        marker = "o" if key.startswith("eval_") else ""
        ax.plot(steps, mean, marker + run_line_style(run, summary), color=run_shade(run, summary),
                label=run_label(run), ms=4)
        ax.fill_between(steps, mean - std, mean + std, color=run_shade(run, summary), alpha=0.15)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(ylabel)
    ax.set_title(metric, fontsize=10)
    if chosen:
        ax.legend(fontsize=8)


def compare_png(summary: dict, metric: str, runs: list[str], smooth: int, log_y: bool, dpi: int = 80) -> bytes:
    draw = lambda fig: draw_compare_curves(fig.add_subplot(111), summary, metric, runs, smooth, log_y)
    return render_png(draw, (7, 3.8), dpi)



# ---------------------------------------------------------------- 07 RL

def rl_run_style(result: dict, run: str) -> tuple[str | None, str]:
    """Colour and line style of a run or condition (see :func:`psft_edu.experiments.rl_experiment.conditions`).

    The colour follows the objective (the name's part before ``_``: SFT red, PSFT blue, base grey);
    the first condition of an objective is solid, the next dashed, then dotted.
    """
    from ..experiments.plots import COLOURS
    from ..experiments.rl_experiment import condition_of, conditions

    prefix = run.split("_")[0]
    same = [c for c in conditions(result) if c.split("_")[0] == prefix]
    return {**COLOURS, "base": "tab:gray"}.get(prefix), ("-", "--", ":", "-.")[same.index(condition_of(run)) % 4]


def draw_rl_curves(
    ax,
    result: dict,
    metric: str,
    smooth: int = 1,
    step: int | None = None,
    runs: list[str] | None = None,
    raw: bool = True,
    per_seed: bool = True,
) -> None:
    """One :data:`RL_METRICS` entry over GRPO steps, one line per condition, on ``ax``.

    A condition is a set of runs that differ only by their ``_seed<k>`` suffix; its line is the
    mean over those seeds (with ``per_seed``, each seed thin and faint beside it). With ``smooth > 1``
    the bold line is the running mean over that many steps and (with ``raw``) the per-step mean is
    drawn faintly. ``step`` adds a vertical marker; ``runs`` restricts the plot to these run names.
    """
    import numpy as np

    from ..experiments.rl_experiment import conditions

    key, ylabel = RL_METRICS[metric] if metric in RL_METRICS else (metric, metric)
    for condition, names in conditions(result).items():
        names = [n for n in names if runs is None or n in runs]
        if not names:
            continue
        colour, style = rl_run_style(result, condition)
        steps = rl_curve(result, names[0], key)[0]
        mean = np.mean([rl_curve(result, n, key)[1] for n in names], axis=0)
        label = condition if len(names) == 1 else f"{condition} (mean of {len(names)})"
        if smooth > 1 and len(mean) >= smooth:
            if raw:
                ax.plot(steps, mean, style, color=colour, alpha=0.2, lw=0.8)
            kernel = np.ones(smooth) / smooth
            if per_seed and len(names) > 1:
                for n in names:
                    ax.plot(
                        steps[smooth - 1 :],
                        np.convolve(rl_curve(result, n, key)[1], kernel, "valid"),
                        style,
                        color=colour,
                        alpha=0.35,
                        lw=0.6,
                    )
            ax.plot(steps[smooth - 1 :], np.convolve(mean, kernel, "valid"), style, color=colour, lw=2, label=label)
        else:
            ax.plot(steps, mean, style, color=colour, lw=1.2, label=label)
    if step is not None:
        ax.axvline(step, color="black", lw=0.8, ls="--")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel(ylabel)
    ax.set_title(metric if smooth <= 1 else f"{metric} (running mean of {smooth})", fontsize=10)
    ax.legend(fontsize=7)


def draw_rl_evals(axes, result: dict) -> None:
    """Three panels: in-domain and out-of-domain sampled accuracy during RL, and each family before/after RL.

    One line (or bar group) per condition, averaged over its seeds; single seeds are marked.
    """
    from .. import tasks
    from ..experiments.rl_experiment import conditions

    groups = conditions(result)
    width = 0.8 / len(groups)
    for i, (condition, names) in enumerate(groups.items()):
        colour, style = rl_run_style(result, condition)
        label = condition if len(names) == 1 else f"{condition} (mean of {len(names)})"
        for ax, key in zip(axes[:2], ("in_domain_accuracy", "ood_accuracy")):
            steps, mean, per_run = rl_eval_means(result, names, lambda e, key=key: e["summary"][key])
            ax.plot(steps, mean, "o" + style, color=colour, label=label, ms=4)
            if len(names) > 1:
                for values in per_run:
                    ax.plot(steps, values, ".", color=colour, alpha=0.4)
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(tasks.FAMILIES))]
        after = [
            sum(result["runs"][n]["after"][f]["sampled_accuracy"] for n in names) / len(names) for f in tasks.FAMILIES
        ]
        before = [
            sum(result["runs"][n]["before"][f]["sampled_accuracy"] for n in names) / len(names) for f in tasks.FAMILIES
        ]
        axes[2].bar(xs, after, width, color=colour, hatch="" if style == "-" else "//", edgecolor="white", label=label)
        axes[2].scatter(xs, before, color="black", marker="_", s=60, zorder=3)
    for ax, title in zip(axes[:2], ("in-domain (make_sum) during RL", "out-of-domain (mean of 4 families) during RL")):
        ax.set_xlabel("GRPO step")
        ax.set_ylabel("sampled accuracy")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    axes[2].set_xticks(range(len(tasks.FAMILIES)), tasks.FAMILIES)
    axes[2].set_ylabel("sampled accuracy")
    axes[2].set_title("per family after RL (black ticks: before RL)", fontsize=10)


def rl_png(result: dict, metric: str, smooth: int, step: int, dpi: int = 72) -> bytes:
    draw = lambda fig: draw_rl_curves(fig.add_subplot(111), result, metric, smooth, step, per_seed=False)
    return render_png(draw, (7, 3.6), dpi)



# ---------------------------------------------------------------- 08 sweeps

def draw_sweep_scatter(
    ax, summary: dict, x: str = "in-domain acc (%)", y: str = "OOD acc (%)", base: bool = True
) -> list[str]:
    """Every run of a sweep (and the base model, a black star) as a labelled point on two final metrics.

    ``x`` and ``y`` are labels of :data:`psft_edu.experiments.sweep.METRICS`. The runs on the Pareto front for
    these two axes (each axis in its own "better" direction) are ringed and joined by a dashed line.
    Returns the names on the front.
    """
    from ..experiments.plots import run_colour
    from ..experiments.sweep import METRICS, final_value, pareto_front

    entries = {**({"base": {"objective": "base", **summary["base"]}} if base else {}), **summary["runs"]}
    points = {name: (final_value(run, x), final_value(run, y)) for name, run in entries.items()}
    front = pareto_front(points, (METRICS[x][3], METRICS[y][3]))
    for name, (px, py) in points.items():
        ax.plot(px, py, "*" if name == "base" else "o", color=run_colour(entries[name]), ms=12 if name == "base" else 7)
        if name in front:
            ax.plot(px, py, "o", mfc="none", mec="black", ms=13)
    xs, ys = [p[0] for p in points.values()], [p[1] for p in points.values()]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    placed: list[tuple[float, float]] = []
    for names, (px, py) in sorted(label_groups(points), key=lambda g: g[1][0]):
        # A label right of a point would run into the label of a neighbour just to its left: put it below.
        crowded = any(abs(py - qy) < 0.06 * span_y and 0 <= px - qx < 0.35 * span_x for qx, qy in placed)
        ax.annotate(
            " / ".join(names), (px, py), textcoords="offset points", xytext=(5, -11 if crowded else 4), fontsize=8
        )
        placed.append((px, py))
    line = sorted(points[n] for n in front)
    if len(line) > 1:
        ax.plot(*zip(*line), "--", color="grey", lw=0.8, zorder=0)
    ax.set_xlabel(x + ("" if METRICS[x][3] else "  (lower is better)"))
    ax.set_ylabel(y + ("" if METRICS[y][3] else "  (lower is better)"))
    ax.set_title(f"{summary.get('sweep', 'sweep')} ({summary['preset']} preset): ringed = Pareto front", fontsize=10)
    ax.margins(0.15)
    return front


def sweep_png(summary: dict, x: str, y: str, dpi: int = 80) -> bytes:
    return render_png(lambda fig: draw_sweep_scatter(fig.add_subplot(111), summary, x, y), (7, 4.2), dpi)
