"""Interactive controls for the notebooks (ipywidgets). Each function returns a widget to display."""

from __future__ import annotations

# ---------------------------------------------------------------- 01 token-by-token explorer
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: torch, transformers and ipywidgets are imported inside the functions
    import ipywidgets
    import torch
    from transformers import PreTrainedTokenizerBase


def token_label(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    """A readable name for one token: a space shows as ``␣``, special tokens keep their names."""
    text = tokenizer.convert_ids_to_tokens(int(token_id))
    return "␣" if text == " " else text


def next_token_probs(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, context: str) -> torch.Tensor:
    r"""The policy at the state ``context``: :math:`\pi_\theta(\cdot \mid s)` as a float32 ``[V]`` tensor."""
    import torch

    ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the context is empty: type at least one character")
    limit = getattr(getattr(model, "config", None), "n_positions", None)
    if limit is not None and len(ids) > limit:
        raise ValueError(f"the context has {len(ids)} tokens; this model reads at most {limit}")
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, -1]
    return torch.softmax(logits.float(), dim=-1).cpu()


def top_next_tokens(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, context: str, k: int = 5
) -> list[tuple[int, str, float]]:
    """The ``k`` most likely next tokens after ``context``: ``(token id, label, probability)``, best first."""
    import torch

    probs = next_token_probs(model, tokenizer, context)
    values, ids = torch.topk(probs, min(k, probs.numel()))
    return [(int(i), token_label(tokenizer, int(i)), float(p)) for p, i in zip(values, ids)]


def _explorer_html(rows: list[tuple[int, str, float]], prompt: str, generated: list[tuple[str, float]], note: str) -> str:
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


def token_explorer(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompt: str = "make 14 from 3 5 9 11 2:", k: int = 5, seed: int = 0
) -> ipywidgets.VBox:
    """Step through generation one action at a time.

    A text box holds the state (the context), a slider picks how many of the most likely next
    tokens to show, and the step button appends one token: the most likely one (``argmax``) or
    one drawn from the policy (``sample``). Below the table, the log-probability of everything
    appended since the prompt was typed accumulates, one term per step. Typing in the box starts
    a new prompt; a special token (``<eos>``) ends the episode.
    """
    import ipywidgets as widgets
    import torch

    generator = torch.Generator().manual_seed(seed)
    special = set(tokenizer.all_special_ids)
    box = widgets.Text(value=prompt, description="state", continuous_update=False, layout=widgets.Layout(width="32em"))
    top_k = widgets.IntSlider(value=k, min=1, max=min(15, len(tokenizer)), description="top k")
    mode = widgets.ToggleButtons(options=["argmax", "sample"], value="argmax", description="action")
    step = widgets.Button(description="step", tooltip="append one token to the state", icon="forward")
    reset = widgets.Button(description="back to prompt", tooltip="drop the appended tokens")
    view = widgets.HTML()
    state: dict = {"prompt": prompt, "generated": [], "syncing": False}  # generated: [(token id, probability)]

    def context() -> str:
        return state["prompt"] + tokenizer.decode([i for i, _ in state["generated"] if i not in special])

    def set_box(text: str) -> None:
        state["syncing"] = True
        try:
            box.value = text
        finally:
            state["syncing"] = False

    def render(note: str = "") -> None:
        try:
            rows = top_next_tokens(model, tokenizer, context(), top_k.value)
        except ValueError as err:
            rows, note = [], str(err)
        ended = bool(state["generated"]) and state["generated"][-1][0] in special
        if ended and not note:
            last = tokenizer.convert_ids_to_tokens(state["generated"][-1][0])
            note = f"The episode has ended ({last} was chosen). Edit the state or go back to the prompt."
        step.disabled = ended or not rows
        shown = [(token_label(tokenizer, i), p) for i, p in state["generated"]]
        view.value = _explorer_html(rows, state["prompt"], shown, note)

    def on_text(change) -> None:
        if not state["syncing"]:
            state["prompt"], state["generated"] = change["new"], []
            render()

    def on_step(_button=None) -> None:
        if state["generated"] and state["generated"][-1][0] in special:
            return  # the episode has ended
        try:
            probs = next_token_probs(model, tokenizer, context())
        except ValueError as err:
            render(str(err))
            return
        if mode.value == "argmax":
            action = int(probs.argmax())
        else:
            action = int(torch.multinomial(probs, 1, generator=generator))
        state["generated"].append((action, float(probs[action])))
        set_box(context())
        render()

    def on_reset(_button=None) -> None:
        state["generated"] = []
        set_box(state["prompt"])
        render()

    box.observe(on_text, names="value")
    top_k.observe(lambda _change: render(), names="value")
    step.on_click(on_step)
    reset.on_click(on_reset)
    render()
    return widgets.VBox([box, widgets.HBox([top_k, mode]), widgets.HBox([step, reset]), view])


# ---------------------------------------------------------------- 02 loss-mask viewer

def loss_mask_html(tokenizer: PreTrainedTokenizerBase, record: dict[str, str]) -> str:
    """One prompt/completion pair as the loss sees it: each input token, its target, and whether it counts."""
    import html

    from .data import collate, encode_records

    ids, prompt_lengths, _ = encode_records([record], tokenizer, max_length=10_000)
    batch = collate(ids, prompt_lengths, tokenizer.pad_token_id)
    cell = "padding:2px 4px;text-align:center;font-family:monospace"
    rows = {"input": [], "target": [], "in loss": []}
    for t in range(batch.input_ids.shape[1]):
        counted = bool(batch.mask[0, t])
        style = f"{cell};background:{'#cfe3f7' if counted else '#eeeeee'}"
        rows["input"].append(f"<td style='{style}'>{html.escape(token_label(tokenizer, int(batch.input_ids[0, t])))}</td>")
        rows["target"].append(f"<td style='{style}'>{html.escape(token_label(tokenizer, int(batch.targets[0, t])))}</td>")
        rows["in loss"].append(f"<td style='{style}'>{'1' if counted else '0'}</td>")
    body = "".join(f"<tr><th style='text-align:left;padding-right:6px'>{name}</th>{''.join(cells)}</tr>" for name, cells in rows.items())
    n = int(batch.mask.sum())
    return (
        f"<p style='font-family:monospace'>prompt {html.escape(repr(record['prompt']))}, "
        f"completion {html.escape(repr(record['completion']))}: {n} of {batch.mask.shape[1]} targets count</p>"
        f"<table style='border-collapse:collapse'>{body}</table>"
    )


def loss_mask_viewer(tokenizer: PreTrainedTokenizerBase, records: list[dict[str, str]]) -> ipywidgets.VBox:
    """A slider over ``records``; shows which targets the SFT loss counts (blue) and which it masks (grey)."""
    import ipywidgets as widgets

    if not records:
        raise ValueError("loss_mask_viewer needs at least one record")
    index = widgets.IntSlider(value=0, min=0, max=len(records) - 1, description="example")
    view = widgets.HTML(loss_mask_html(tokenizer, records[0]))
    index.observe(lambda change: setattr(view, "value", loss_mask_html(tokenizer, records[change["new"]])), names="value")
    return widgets.VBox([index, view])


# ---------------------------------------------------------------- 04 clipped surrogate explorer

def _clip_explorer_png(epsilon: float, r: float, dpi: int = 80) -> bytes:
    """Both advantage signs side by side, with the probe ratio r marked; PNG bytes (Agg, no pyplot)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plots import plot_clipped_surrogate

    fig = Figure(figsize=(10, 3.6))
    FigureCanvasAgg(fig)
    for ax, advantage in zip(fig.subplots(1, 2), (1.0, -1.0)):
        plot_clipped_surrogate(epsilon, advantage, ax)
        ax.axvline(r, color="black", lw=0.8, ls="--")
        ax.plot([r], [_surrogate_and_slope(r, advantage, epsilon)[0]], "o", color="black")
        ax.set_ylim(-2.1, 2.1)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _surrogate_and_slope(r: float, advantage: float, epsilon: float) -> tuple[float, float]:
    """min(r·Â, clip(r, 1-ε, 1+ε)·Â) and its derivative in r (Â where the unclipped term is the minimum, else 0)."""
    unclipped = r * advantage
    clipped = min(max(r, 1.0 - epsilon), 1.0 + epsilon) * advantage
    return min(unclipped, clipped), (advantage if unclipped <= clipped else 0.0)


def _clip_explorer_readout(epsilon: float, r: float) -> str:
    rows = []
    for advantage in (1.0, -1.0):
        value, slope = _surrogate_and_slope(r, advantage, epsilon)
        state = "gradient flows" if slope != 0 else "<b>clipped: zero gradient</b>"
        rows.append(f"<tr><td>Â = {advantage:+g}</td><td>{value:+.3f}</td><td>{slope:+g}</td><td>{state}</td></tr>")
    return (
        f"<p>trust region [1-ε, 1+ε] = [{1 - epsilon:.2f}, {1 + epsilon:.2f}], probe ratio r = {r:.2f}</p>"
        "<table><tr><th></th><th>surrogate&nbsp;</th><th>d/dr&nbsp;</th><th></th></tr>" + "".join(rows) + "</table>"
    )


def clip_explorer(epsilon: float = 0.2, r: float = 1.3):
    """PPO's clipped surrogate and its slope against the ratio r, for Â = +1 and Â = -1.

    Move ``ε`` to widen or narrow the trust region and ``r`` to read the surrogate and its
    derivative at one ratio. The figure is a PNG rendered with matplotlib's Agg backend and
    shown in an ``ipywidgets.Image`` (so it updates in place). Returns the widget box.
    """
    import ipywidgets as widgets

    eps_slider = widgets.FloatSlider(
        value=epsilon, min=0.02, max=0.6, step=0.01, description="ε", readout_format=".2f", continuous_update=True
    )
    r_slider = widgets.FloatSlider(value=r, min=0.0, max=2.0, step=0.01, description="r", readout_format=".2f", continuous_update=True)
    eps_slider.add_class("psft-epsilon")
    r_slider.add_class("psft-ratio")
    image = widgets.Image(value=_clip_explorer_png(epsilon, r), format="png", layout=widgets.Layout(max_width="800px"))
    image.add_class("psft-clip-plot")
    readout = widgets.HTML(_clip_explorer_readout(epsilon, r))

    def redraw(_change=None) -> None:
        image.value = _clip_explorer_png(eps_slider.value, r_slider.value)
        readout.value = _clip_explorer_readout(eps_slider.value, r_slider.value)

    eps_slider.observe(redraw, names="value")
    r_slider.observe(redraw, names="value")
    box = widgets.VBox([widgets.HBox([eps_slider, r_slider]), image, readout])
    box.add_class("psft-clip-explorer")
    return box


# ---------------------------------------------------------------- 05 PSFT: epsilon and K

def _numpy(x: object):
    """A tensor, array or nested list as a float64 NumPy array."""
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(x, dtype=float)


def psft_weight(ratio: object, epsilon: float):
    r"""PSFT's gradient weight per token, :math:`r \cdot \mathbf{1}\{r \le 1+\epsilon\}` (SFT's is 1 everywhere); a NumPy array."""
    import numpy as np

    r = _numpy(ratio)
    return np.where(r <= 1.0 + epsilon, r, 0.0)


def target_labels(tokenizer: PreTrainedTokenizerBase, targets: torch.Tensor) -> list[list[str]]:
    """Readable labels of a batch's target tokens, one list per sequence (see :func:`token_label`)."""
    return [[token_label(tokenizer, t) for t in row] for row in targets.tolist()]


def clip_fractions_by_minibatch(ratios: object, mask: object, epsilon: float, k_updates: int) -> list[float]:
    """Share of completion tokens past ``1+ε`` met by each mini-batch of one global batch.

    ``ratios[k]`` holds the ratios after ``k`` optimiser steps since the old policy was frozen.
    With ``k_updates`` (K) mini-batches per global batch, mini-batch ``k`` is trained after ``k``
    steps, so it meets ``ratios[k]``; the list has K entries (the first is always 0).
    """
    r, m = _numpy(ratios), _numpy(mask) > 0
    if not 1 <= k_updates <= len(r):
        raise ValueError(f"K must be between 1 and {len(r)} (the number of ratio snapshots), got {k_updates}")
    return [float((r[k][m] > 1.0 + epsilon).mean()) for k in range(k_updates)]


def _completion_grid(ratio: object, mask: object, labels: list[list[str]], rows: int):
    """The completion tokens of the first ``rows`` sequences, left-aligned: (ratio grid with NaN padding, label grid)."""
    import numpy as np

    r, m = _numpy(ratio), _numpy(mask) > 0
    picked = [np.flatnonzero(m[i]) for i in range(min(rows, len(r)))]
    width = max((len(p) for p in picked), default=0)
    grid = np.full((len(picked), width), np.nan)
    names = [[""] * width for _ in picked]
    for i, positions in enumerate(picked):
        grid[i, : len(positions)] = r[i, positions]
        for j, t in enumerate(positions):
            names[i][j] = labels[i][t]
    return grid, names


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
    grid, names = _completion_grid(ratio, mask, labels, rows)
    log2 = np.log2(np.clip(grid, 2.0**-3, 2.0**6))
    image = ax.imshow(log2, cmap="RdBu_r", norm=TwoSlopeNorm(vcenter=0.0, vmin=-3.0, vmax=6.0), aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isnan(grid[i, j]):
                continue
            dark = abs(log2[i, j]) > 2.5
            ax.text(j, i, names[i][j], ha="center", va="center", fontsize=9, family="monospace", color="white" if dark else "black")
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
    """The same picture as :func:`plot_token_ratios` as HTML: coloured characters, clipped ones framed (hover shows r)."""
    import html

    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm, to_hex

    grid, names = _completion_grid(ratio, mask, labels, rows)
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
                f"background:{to_hex(cmap(norm(level)))};color:{colour};border:{frame}'>{html.escape(names[i][j])}</span>"
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

    r_all, m = _numpy(ratios), _numpy(mask) > 0
    last = r_all[k_updates - 1][m]
    right = max(4.0, 1.5 * float(r_all[:, m].max()), 2 * (1 + epsilon))  # fixed while K changes
    grid = np.geomspace(0.125, right, 400)
    ax = axes[0]
    ax.plot(grid, np.ones_like(grid), "--", color="tab:red", label="SFT: weight 1")
    ax.plot(grid, psft_weight(grid, epsilon), color="tab:blue", label="PSFT: r·1{r ≤ 1+ε}")
    jitter = np.random.default_rng(0).uniform(-0.04, 0.04, size=last.shape)
    ax.plot(last, psft_weight(last, epsilon) + jitter, "o", ms=3, alpha=0.35, color="black", label=f"tokens after {k_updates - 1} step(s)")
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


def _psft_explorer_png(ratios: object, mask: object, epsilon: float, k_updates: int, dpi: int = 80) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4))
    FigureCanvasAgg(fig)
    draw_psft_explorer(fig.subplots(1, 2), ratios, mask, epsilon, k_updates)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def psft_explorer(
    ratios: object | dict[str, object],
    mask: object,
    labels: list[list[str]],
    epsilon: float = 0.28,
    k_updates: int = 8,
    rows: int = 6,
) -> ipywidgets.VBox:
    """Move ε and K over precomputed ratios; nothing is retrained.

    ``ratios[k]`` (shape ``[steps, batch, length]``) holds the ratios of one mini-batch after ``k``
    optimiser steps since the old policy was frozen; ``ratios`` may also be a dict of such arrays
    (for example one per objective), chosen with a toggle. ``mask`` marks the completion tokens and
    ``labels`` names each target token (:func:`target_labels`). The widget shows the gradient
    weight against r, the clip fraction of each mini-batch of a global batch of K, and the tokens of
    the last mini-batch coloured by r, clipped ones framed.
    """
    import ipywidgets as widgets

    runs = {name: _numpy(value) for name, value in ratios.items()} if isinstance(ratios, dict) else {"ratios": _numpy(ratios)}
    steps = min(len(r) for r in runs.values())
    if not 1 <= k_updates <= steps:
        raise ValueError(f"k_updates must be between 1 and {steps} (the number of ratio snapshots), got {k_updates}")
    choices = sorted({k for k in (1, 2, 4, 8, 16, 32) if k <= steps} | {k_updates})
    # Redrawing takes a few tenths of a second: update when the slider is released, not on every pixel.
    eps_slider = widgets.FloatSlider(
        value=epsilon, min=0.02, max=1.0, step=0.01, description="ε", readout_format=".2f", continuous_update=False
    )
    k_buttons = widgets.ToggleButtons(options=choices, value=k_updates, description="K")
    k_buttons.style.button_width = "3em"
    run_buttons = widgets.ToggleButtons(options=list(runs), description="updates")
    eps_slider.add_class("psft-epsilon")
    image = widgets.Image(format="png", layout=widgets.Layout(max_width="800px"))
    image.add_class("psft-explorer-plot")
    readout = widgets.HTML()

    def redraw(_change=None) -> None:
        r, eps, k = runs[run_buttons.value], eps_slider.value, k_buttons.value
        image.value = _psft_explorer_png(r, mask, eps, k)
        fractions = clip_fractions_by_minibatch(r, mask, eps, k)
        if k == 1:
            refresh = "K = 1: the old policy is refreshed before every step, so every ratio is 1 and PSFT is exactly SFT"
        else:
            refresh = f"K = {k}: the old policy is refreshed every {k} optimiser steps"
        readout.value = (
            f"<p>{refresh}. Mean clip fraction over the global batch: <b>{sum(fractions) / k:.3f}</b>. "
            f"Tokens of mini-batch {k} (after {k - 1} step(s) since the freeze), framed when r &gt; 1 + ε = {1 + eps:.2f}:</p>"
            + token_ratio_html(r[k - 1], mask, labels, eps, rows)
        )

    for control in (eps_slider, k_buttons, run_buttons):
        control.observe(redraw, names="value")
    redraw()
    controls = [eps_slider, k_buttons] + ([run_buttons] if len(runs) > 1 else [])
    box = widgets.VBox([widgets.HBox(controls[:2]), *controls[2:], image, readout])
    box.add_class("psft-explorer")
    return box


# ---------------------------------------------------------------- 06-08 result selectors

# 06: SFT vs PSFT comparison explorer (reads a compare() summary; nothing is retrained)

COMPARE_METRICS: dict[str, tuple[str, str]] = {
    "token entropy on demonstrations (per step)": ("entropy", "token entropy (nats)"),
    "entropy of own samples (evaluations)": ("eval_sample_entropy", "token entropy (nats)"),
    "out-of-domain accuracy (evaluations)": ("eval_ood_accuracy", "sampled accuracy"),
    "in-domain accuracy (evaluations)": ("eval_in_domain_accuracy", "sampled accuracy"),
    "KL to the base on own samples, in-domain (evaluations)": ("eval_kl_in_domain", "exact KL per token (nats)"),
    "KL to the base on own samples, out-of-domain (evaluations)": ("eval_kl_ood", "exact KL per token (nats)"),
    "entropy of own samples, out-of-domain (evaluations)": ("eval_ood_sample_entropy", "token entropy (nats)"),
    "clip fraction (per step)": ("clip_fraction", "share of tokens past 1 + ε"),
    "gradient norm (per step)": ("grad_norm", "gradient norm before clipping"),
    "distinct valid answers (evaluations)": ("eval_distinct_valid", "distinct correct answers per prompt"),
}


def compare_metrics(summary: dict) -> dict[str, tuple[str, str]]:
    """The entries of :data:`COMPARE_METRICS` whose curve every run of ``summary`` has."""
    runs = summary["runs"].values()
    return {label: spec for label, spec in COMPARE_METRICS.items() if all(spec[0] in run["curves"] for run in runs)}


def compare_curve(summary: dict, run: str, key: str, smooth: int = 1):
    """One curve of a run as NumPy arrays ``(step, mean, std)``.

    Repeated steps keep their first entry (a curve may log one evaluation several times), and
    ``smooth > 1`` replaces mean and std by their running average over that many points.
    """
    import numpy as np

    curve = summary["runs"][run]["curves"][key]
    steps, mean, std = (np.asarray(curve[k], dtype=float) for k in ("step", "mean", "std"))
    _, first = np.unique(steps, return_index=True)
    steps, mean, std = steps[first], mean[first], std[first]
    if smooth > 1 and len(mean) >= smooth:
        kernel = np.ones(smooth) / smooth
        steps = steps[smooth - 1 :]
        mean, std = np.convolve(mean, kernel, "valid"), np.convolve(std, kernel, "valid")
    return steps, mean, std


def draw_compare_curves(ax, summary: dict, metric: str, runs: list[str] | None = None, smooth: int = 1, log_y: bool = False) -> None:
    """Mean ± std over seeds of one :data:`COMPARE_METRICS` entry for the chosen runs, on ``ax``.

    Colours follow the objective (SFT red, PSFT blue); solid lines are the higher learning rate,
    dashed the lower one. Evaluation curves are drawn with markers (they have few points).
    """
    from .plots import _colour, _style

    key, ylabel = COMPARE_METRICS[metric]
    chosen = list(summary["runs"]) if runs is None else list(runs)
    for name in chosen:
        run = summary["runs"][name]
        steps, mean, std = compare_curve(summary, name, key, 1 if key.startswith("eval_") else smooth)
        marker = "o" if key.startswith("eval_") else ""
        ax.plot(steps, mean, marker + _style(run, summary), color=_colour(run), label=f"{name} (lr {run['lr']:g})", ms=4)
        ax.fill_between(steps, mean - std, mean + std, color=_colour(run), alpha=0.15)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(ylabel)
    ax.set_title(metric, fontsize=10)
    if chosen:
        ax.legend(fontsize=8)


def _compare_png(summary: dict, metric: str, runs: list[str], smooth: int, log_y: bool, dpi: int = 80) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.8))
    FigureCanvasAgg(fig)
    draw_compare_curves(fig.add_subplot(111), summary, metric, runs, smooth, log_y)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _compare_readout(summary: dict, metric: str, runs: list[str]) -> str:
    """HTML table: each chosen run's first and last value of the metric (mean ± std over seeds)."""
    key, _ = COMPARE_METRICS[metric]
    rows = []
    for name in runs:
        _, mean, std = compare_curve(summary, name, key)
        rows.append(
            f"<tr><td>{name}</td><td>{mean[0]:.3f}</td><td>{mean.max():.3f}</td><td>{mean[-1]:.3f} ± {std[-1]:.3f}</td></tr>"
        )
    seeds = len(summary["settings"]["seeds"])
    return (
        f"<p>{metric}: mean over {seeds} seed(s), unsmoothed.</p>"
        "<table><tr><th>run&nbsp;</th><th>first&nbsp;</th><th>highest&nbsp;</th><th>last (± std)</th></tr>" + "".join(rows) + "</table>"
    )


def compare_explorer(summary: dict, metric: str = "token entropy on demonstrations (per step)", runs: list[str] | None = None):
    """Pick a metric and the runs of a comparison summary; the figure redraws in place.

    ``summary`` is the dict that :func:`psft_edu.compare.compare` returns (or its ``summary.json``).
    A drop-down chooses the curve, one checkbox per run shows or hides it, a slider smooths the
    noisy per-step curves (running mean) and a checkbox switches to a log scale (useful for the KL
    estimate, which has rare huge values). Returns the widget box.
    """
    import ipywidgets as widgets

    available = compare_metrics(summary)
    if not available:
        raise ValueError("the summary has none of the curves in COMPARE_METRICS")
    names = list(summary["runs"])
    shown = set(names if runs is None else runs)
    first = metric if metric in available else next(iter(available))
    dropdown = widgets.Dropdown(options=list(available), value=first, description="metric")
    dropdown.layout.width = "460px"
    boxes = {name: widgets.Checkbox(value=name in shown, description=name, indent=False) for name in names}
    for box in boxes.values():
        box.layout.width = "140px"
    smooth = widgets.IntSlider(value=1, min=1, max=16, description="smooth")
    log_y = widgets.Checkbox(value=False, description="log scale", indent=False)
    dropdown.add_class("psft-compare-metric")
    image = widgets.Image(format="png", layout=widgets.Layout(max_width="700px"))
    image.add_class("psft-compare-plot")
    readout = widgets.HTML()

    def redraw(_change=None) -> None:
        chosen = [n for n in names if boxes[n].value]
        image.value = _compare_png(summary, dropdown.value, chosen, smooth.value, log_y.value)
        readout.value = _compare_readout(summary, dropdown.value, chosen)

    for control in (dropdown, smooth, log_y, *boxes.values()):
        control.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([dropdown, widgets.HBox(list(boxes.values())), widgets.HBox([smooth, log_y]), image, readout])
    box.add_class("psft-compare-explorer")
    return box


# 07: RL after SFT vs after PSFT (reads a psft_edu.rl.rl_after_finetuning() result; nothing is retrained)

RL_METRICS: dict[str, tuple[str, str]] = {
    "reward (share of correct samples)": ("reward", "mean reward"),
    "pass@k (prompts with a correct sample)": ("pass@k", "share of prompts"),
    "token entropy of the samples": ("entropy", "token entropy (nats)"),
    "distinct valid answers per prompt": ("distinct_valid", "distinct correct answers"),
    "zero-signal groups": ("zero_signal_groups", "share of groups with equal rewards"),
    "clip fraction": ("clip_fraction", "share of tokens clipped"),
    "completion length": ("completion_length", "tokens"),
}


def _rl_key(result: dict, key: str) -> str:
    """``"pass@k"`` becomes the run's actual key (``"pass@8"`` for groups of 8); other keys stay."""
    if key != "pass@k":
        return key
    first = next(iter(result["runs"].values()))["metrics"][0]
    return next(k for k in first if k.startswith("pass@") and k != "pass@1")


def rl_curve(result: dict, run: str, key: str, smooth: int = 1):
    """Per-step values of one metric of one run as NumPy arrays ``(step, value)``; ``smooth > 1``: running mean."""
    import numpy as np

    metrics = result["runs"][run]["metrics"]
    key = _rl_key(result, key)
    steps = np.asarray([r["step"] for r in metrics], dtype=float)
    values = np.asarray([r[key] for r in metrics], dtype=float)
    if smooth > 1 and len(values) >= smooth:
        values = np.convolve(values, np.ones(smooth) / smooth, "valid")
        steps = steps[smooth - 1 :]
    return steps, values


def rl_run_style(result: dict, run: str) -> tuple[str | None, str]:
    """Colour and line style of a run or condition (see :func:`psft_edu.rl.conditions`).

    The colour follows the objective (the name's part before ``_``: SFT red, PSFT blue, base grey);
    the first condition of an objective is solid, the next dashed, then dotted.
    """
    from .plots import COLOURS
    from .rl import condition_of, conditions

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

    from .rl import conditions

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
                    ax.plot(steps[smooth - 1 :], np.convolve(rl_curve(result, n, key)[1], kernel, "valid"), style, color=colour,
                            alpha=0.35, lw=0.6)
            ax.plot(steps[smooth - 1 :], np.convolve(mean, kernel, "valid"), style, color=colour, lw=2, label=label)
        else:
            ax.plot(steps, mean, style, color=colour, lw=1.2, label=label)
    if step is not None:
        ax.axvline(step, color="black", lw=0.8, ls="--")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel(ylabel)
    ax.set_title(metric if smooth <= 1 else f"{metric} (running mean of {smooth})", fontsize=10)
    ax.legend(fontsize=7)


def rl_eval_means(result: dict, names: list[str], value) -> tuple[list[int], list[float], list[list[float]]]:
    """``value(evaluation)`` at every evaluation step: (steps, mean over ``names``, per-run values)."""
    per_run = [[value(e) for e in result["runs"][n]["evals"]] for n in names]
    steps = [e["step"] for e in result["runs"][names[0]]["evals"]]
    return steps, [sum(col) / len(col) for col in zip(*per_run)], per_run


def draw_rl_evals(axes, result: dict) -> None:
    """Three panels: in-domain and out-of-domain sampled accuracy during RL, and each family before/after RL.

    One line (or bar group) per condition, averaged over its seeds; single seeds are marked.
    """
    from . import tasks
    from .rl import conditions

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
        after = [sum(result["runs"][n]["after"][f]["sampled_accuracy"] for n in names) / len(names) for f in tasks.FAMILIES]
        before = [sum(result["runs"][n]["before"][f]["sampled_accuracy"] for n in names) / len(names) for f in tasks.FAMILIES]
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


def rl_shown_runs(result: dict) -> list[str]:
    """The first run of every condition (e.g. seed 0): the runs whose samples the widget shows."""
    from .rl import conditions

    return [names[0] for names in conditions(result).values()]


def rl_eval_at(result: dict, run: str, step: int) -> dict:
    """The evaluation of ``run`` at the last evaluated step not after ``step``."""
    evals = result["runs"][run]["evals"]
    return max((e for e in evals if e["step"] <= step), key=lambda e: e["step"], default=evals[0])


def rl_samples_text(result: dict, step: int, runs: list[str] | None = None) -> str:
    """The kept completions at evaluation step ``step`` as plain text (✓ correct, ✗ wrong).

    One line per run of ``runs`` (default: the first run of each condition, :func:`rl_shown_runs`).
    """
    from . import tasks

    runs = runs or rl_shown_runs(result)
    width = max(len(n) for n in runs)
    lines = []
    for prompt in result["settings"].get("show_prompts", []):
        lines.append(prompt)
        for name in runs:
            shown = rl_eval_at(result, name, step)["samples"].get(prompt, [])
            marks = "  ".join(f"{t.strip() or '(empty)'}{'✓' if tasks.verify(prompt, t) else '✗'}" for t in shown)
            lines.append(f"  {name:>{width}s}: {marks}")
    return "\n".join(lines)


def _rl_png(result: dict, metric: str, smooth: int, step: int, dpi: int = 72) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6))
    FigureCanvasAgg(fig)
    draw_rl_curves(fig.add_subplot(111), result, metric, smooth, step, per_seed=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _rl_readout(result: dict, step: int) -> str:
    import html

    from . import tasks

    runs = rl_shown_runs(result)
    head = "".join(f"<th>{html.escape(n)}&nbsp;</th>" for n in runs)
    rows = []
    for label, key in (("in-domain accuracy", "in_domain_accuracy"), ("out-of-domain accuracy", "ood_accuracy"),
                       ("distinct valid answers", "distinct_valid"), ("sample entropy", "sample_entropy")):
        cells = "".join(f"<td>{rl_eval_at(result, n, step)['summary'][key]:.3f}</td>" for n in runs)
        rows.append(f"<tr><td>{label}&nbsp;</td>{cells}</tr>")
    samples = []
    for prompt in result["settings"].get("show_prompts", []):
        cells = []
        for name in runs:
            shown = rl_eval_at(result, name, step)["samples"].get(prompt, [])
            words = [
                f"<span style='color:{'#2ca02c' if tasks.verify(prompt, t) else '#d62728'}'>{html.escape(t.strip() or '∅')}</span>"
                for t in shown
            ]
            cells.append("<td style='padding-right:1.5em'>" + " ".join(words) + "</td>")
        samples.append(f"<tr><td style='padding-right:1em'><code>{html.escape(prompt)}</code></td>{''.join(cells)}</tr>")
    evaluated = rl_eval_at(result, runs[0], step)["step"]
    return (
        f"<p>Evaluation at step {evaluated} (the last one at or before the slider):</p>"
        f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"
        "<p>Samples at temperature 1 (green: correct, red: wrong):</p>"
        f"<table style='font-family:monospace'><tr><th>prompt</th>{head}</tr>{''.join(samples)}</table>"
    )


def rl_explorer(result: dict, metric: str = "reward (share of correct samples)", smooth: int = 5):
    """Pick a GRPO metric and move along the RL steps; the samples and evaluations follow the slider.

    ``result`` is what :func:`psft_edu.rl.rl_after_finetuning` returns (or its JSON file). The
    figure shows the chosen metric for every run with the slider's step marked; below it, each
    run's evaluation at that point and the completions it sampled for a few in-domain prompts.
    """
    import ipywidgets as widgets

    steps = sorted({e["step"] for run in result["runs"].values() for e in run["evals"]})
    dropdown = widgets.Dropdown(options=list(RL_METRICS), value=metric if metric in RL_METRICS else next(iter(RL_METRICS)),
                                description="metric")
    dropdown.layout.width = "420px"
    smoother = widgets.IntSlider(value=smooth, min=1, max=15, description="smooth", continuous_update=False)
    step_slider = widgets.SelectionSlider(options=steps, value=steps[0], description="RL step", continuous_update=False)
    dropdown.add_class("psft-rl-metric")
    step_slider.add_class("psft-rl-step")
    image = widgets.Image(format="png", layout=widgets.Layout(max_width="700px"))
    image.add_class("psft-rl-plot")
    readout = widgets.HTML()

    def redraw(_change=None) -> None:
        image.value = _rl_png(result, dropdown.value, smoother.value, step_slider.value)
        readout.value = _rl_readout(result, step_slider.value)

    for control in (dropdown, smoother, step_slider):
        control.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([dropdown, widgets.HBox([step_slider, smoother]), image, readout])
    box.add_class("psft-rl-explorer")
    return box


# 08: neighbours and ablations explorer (reads psft_edu.sweep summaries; nothing is retrained)

def draw_sweep_scatter(ax, summary: dict, x: str = "in-domain acc (%)", y: str = "OOD acc (%)", base: bool = True) -> list[str]:
    """Every run of a sweep (and the base model, a black star) as a labelled point on two final metrics.

    ``x`` and ``y`` are labels of :data:`psft_edu.sweep.METRICS`. The runs on the Pareto front for
    these two axes (each axis in its own "better" direction) are ringed and joined by a dashed line.
    Returns the names on the front.
    """
    from .plots import _colour
    from .sweep import METRICS, final_value, pareto_front

    entries = {**({"base": {"objective": "base", **summary["base"]}} if base else {}), **summary["runs"]}
    points = {name: (final_value(run, x), final_value(run, y)) for name, run in entries.items()}
    front = pareto_front(points, (METRICS[x][3], METRICS[y][3]))
    for name, (px, py) in points.items():
        ax.plot(px, py, "*" if name == "base" else "o", color=_colour(entries[name]), ms=12 if name == "base" else 7)
        if name in front:
            ax.plot(px, py, "o", mfc="none", mec="black", ms=13)
    xs, ys = [p[0] for p in points.values()], [p[1] for p in points.values()]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    placed: list[tuple[float, float]] = []
    for names, (px, py) in sorted(_label_groups(points), key=lambda g: g[1][0]):
        # A label right of a point would run into the label of a neighbour just to its left: put it below.
        crowded = any(abs(py - qy) < 0.06 * span_y and 0 <= px - qx < 0.35 * span_x for qx, qy in placed)
        ax.annotate(" / ".join(names), (px, py), textcoords="offset points", xytext=(5, -11 if crowded else 4), fontsize=8)
        placed.append((px, py))
    line = sorted(points[n] for n in front)
    if len(line) > 1:
        ax.plot(*zip(*line), "--", color="grey", lw=0.8, zorder=0)
    ax.set_xlabel(x + ("" if METRICS[x][3] else "  (lower is better)"))
    ax.set_ylabel(y + ("" if METRICS[y][3] else "  (lower is better)"))
    ax.set_title(f"{summary.get('sweep', 'sweep')} ({summary['preset']} preset): ringed = Pareto front", fontsize=10)
    ax.margins(0.15)
    return front


def _label_groups(points: dict[str, tuple[float, float]], tol: float = 0.04) -> list[tuple[list[str], tuple[float, float]]]:
    """Points closer than ``tol`` of the axis ranges share one label (their names joined), so labels do not overlap."""
    xs, ys = [p[0] for p in points.values()], [p[1] for p in points.values()]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    groups: list[tuple[list[str], tuple[float, float]]] = []
    for name, (px, py) in sorted(points.items(), key=lambda item: -item[1][1]):
        for names, (gx, gy) in groups:
            if abs(px - gx) < tol * span_x and abs(py - gy) < tol * span_y:
                names.append(name)
                break
        else:
            groups.append(([name], (px, py)))
    return groups


def _sweep_png(summary: dict, x: str, y: str, dpi: int = 80) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    draw_sweep_scatter(fig.add_subplot(111), summary, x, y)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _sweep_readout(summary: dict, x: str, y: str) -> str:
    import html

    from .sweep import METRICS, final_value, pareto_front

    entries = {"base": summary["base"], **summary["runs"]}
    points = {n: (final_value(r, x), final_value(r, y)) for n, r in entries.items()}
    front = set(pareto_front(points, (METRICS[x][3], METRICS[y][3])))
    dx, dy = METRICS[x][2], METRICS[y][2]
    rows = "".join(
        f"<tr><td>{'★ ' if n in front else ''}{html.escape(n)}&nbsp;</td><td>{px:.{dx}f}</td><td>{py:.{dy}f}</td></tr>"
        for n, (px, py) in points.items()
    )
    return (
        f"<p>One seed, final evaluation. ★: on the Pareto front (no other entry is at least as good on both axes and better on one).</p>"
        f"<table><tr><th>run&nbsp;</th><th>{html.escape(x)}&nbsp;</th><th>{html.escape(y)}</th></tr>{rows}</table>"
    )


def sweep_explorer(summaries: dict[str, dict], what: str | None = None, x: str = "in-domain acc (%)", y: str = "OOD acc (%)"):
    """Choose a sweep (neighbours, clip, refresh, lr) and two final metrics; the scatter redraws in place.

    ``summaries`` maps a sweep's name to its summary (:func:`psft_edu.sweep.load_results`). Below the
    figure a table lists each run's two values, with the Pareto-optimal ones starred.
    """
    import ipywidgets as widgets

    from .sweep import METRICS

    kinds = list(summaries)
    sweep_menu = widgets.Dropdown(options=kinds, value=what if what in summaries else kinds[0], description="sweep")
    x_menu = widgets.Dropdown(options=list(METRICS), value=x, description="x")
    y_menu = widgets.Dropdown(options=list(METRICS), value=y, description="y")
    for menu in (sweep_menu, x_menu, y_menu):
        menu.layout.width = "250px"
    sweep_menu.add_class("psft-sweep-kind")
    image = widgets.Image(format="png", layout=widgets.Layout(max_width="700px"))
    image.add_class("psft-sweep-plot")
    readout = widgets.HTML()

    def redraw(_change=None) -> None:
        summary = summaries[sweep_menu.value]
        image.value = _sweep_png(summary, x_menu.value, y_menu.value)
        readout.value = _sweep_readout(summary, x_menu.value, y_menu.value)

    for control in (sweep_menu, x_menu, y_menu):
        control.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([sweep_menu, x_menu, y_menu]), image, readout])
    box.add_class("psft-sweep-explorer")
    return box
