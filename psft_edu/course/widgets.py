"""Interactive controls for the notebooks (ipywidgets). Each ``*_explorer``/``*_viewer`` returns a widget to display.

Only the wiring lives here: readers and analysis are in :mod:`psft_edu.course.analysis`, drawing in
:mod:`psft_edu.course.drawing`, and the equations in :mod:`psft_edu.objectives`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..objectives import PPO_CLIP, PSFT_CLIP
from .analysis import (
    COMPARE_METRICS,
    RL_METRICS,
    as_numpy,
    clip_fractions_by_minibatch,
    compare_curve,
    compare_metrics,
    next_token_probs,
    rl_eval_at,
    rl_shown_runs,
    surrogate_and_slope,
    token_label,
    top_next_tokens,
)
from .drawing import (
    clip_explorer_png,
    compare_png,
    explorer_html,
    loss_mask_html,
    psft_explorer_png,
    rl_png,
    sweep_png,
    token_ratio_html,
)

if TYPE_CHECKING:  # for annotations only: torch, transformers and ipywidgets are imported inside the functions
    import ipywidgets
    import torch
    from transformers import PreTrainedTokenizerBase


# ---------------------------------------------------------------- 01 token-by-token explorer

def token_explorer(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str = "make 12 from 3 9 5:",
    k: int = 5,
    seed: int = 0,
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

    def set_box_and_render(text: str) -> None:
        state["syncing"] = True
        try:
            box.value = text
        finally:
            state["syncing"] = False
        render()

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
        view.value = explorer_html(rows, state["prompt"], shown, note)

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
        drawn = probs.argmax() if mode.value == "argmax" else torch.multinomial(probs, 1, generator=generator)
        action = int(drawn)
        state["generated"].append((action, float(probs[action])))
        set_box_and_render(context())

    def on_reset(_button=None) -> None:
        state["generated"] = []
        set_box_and_render(state["prompt"])

    box.observe(on_text, names="value")
    top_k.observe(lambda _change: render(), names="value")
    step.on_click(on_step)
    reset.on_click(on_reset)
    render()
    return widgets.VBox([box, widgets.HBox([top_k, mode]), widgets.HBox([step, reset]), view])



# ---------------------------------------------------------------- 02 loss-mask viewer

def loss_mask_viewer(tokenizer: PreTrainedTokenizerBase, records: list[dict[str, str]]) -> ipywidgets.VBox:
    """A slider over ``records``; shows which targets the SFT loss counts (blue) and which it masks (grey)."""
    import ipywidgets as widgets

    if not records:
        raise ValueError("loss_mask_viewer needs at least one record")
    index = widgets.IntSlider(value=0, min=0, max=len(records) - 1, description="example")
    view = widgets.HTML(loss_mask_html(tokenizer, records[0]))
    index.observe(
        lambda change: setattr(view, "value", loss_mask_html(tokenizer, records[change["new"]])), names="value"
    )
    return widgets.VBox([index, view])



# ---------------------------------------------------------------- 04 clipped surrogate explorer

def _clip_explorer_readout(epsilon: float, r: float) -> str:
    rows = []
    for advantage in (1.0, -1.0):
        value, slope = surrogate_and_slope(r, advantage, epsilon)
        state = "gradient flows" if slope != 0 else "<b>clipped: zero gradient</b>"
        rows.append(f"<tr><td>Â = {advantage:+g}</td><td>{value:+.3f}</td><td>{slope:+g}</td><td>{state}</td></tr>")
    return (
        f"<p>clip interval [1-ε, 1+ε] = [{1 - epsilon:.2f}, {1 + epsilon:.2f}], probe ratio r = {r:.2f}</p>"
        "<table><tr><th></th><th>surrogate&nbsp;</th><th>d/dr&nbsp;</th><th></th></tr>" + "".join(rows) + "</table>"
    )


def clip_explorer(epsilon: float = PPO_CLIP, r: float = 1.3):
    """PPO's clipped surrogate and its slope against the ratio r, for Â = +1 and Â = -1.

    Move ``ε`` to widen or narrow the clip interval [1-ε, 1+ε] and ``r`` to read the surrogate and its
    derivative at one ratio. The figure is a PNG rendered with matplotlib's Agg backend and
    shown in an ``ipywidgets.Image`` (so it updates in place). Returns the widget box.
    """
    import ipywidgets as widgets

    eps_slider = widgets.FloatSlider(
        value=epsilon, min=0.02, max=0.6, step=0.01, description="ε", readout_format=".2f", continuous_update=True
    )
    r_slider = widgets.FloatSlider(
        value=r, min=0.0, max=2.0, step=0.01, description="r", readout_format=".2f", continuous_update=True
    )
    eps_slider.add_class("psft-epsilon")
    r_slider.add_class("psft-ratio")
    image = widgets.Image(value=clip_explorer_png(epsilon, r), format="png", layout=widgets.Layout(max_width="800px"))
    image.add_class("psft-clip-plot")
    readout = widgets.HTML(_clip_explorer_readout(epsilon, r))

    def redraw(_change=None) -> None:
        image.value = clip_explorer_png(eps_slider.value, r_slider.value)
        readout.value = _clip_explorer_readout(eps_slider.value, r_slider.value)

    eps_slider.observe(redraw, names="value")
    r_slider.observe(redraw, names="value")
    box = widgets.VBox([widgets.HBox([eps_slider, r_slider]), image, readout])
    box.add_class("psft-clip-explorer")
    return box



# ---------------------------------------------------------------- 05 PSFT: epsilon and K

def psft_explorer(
    ratios: object | dict[str, object],
    mask: object,
    labels: list[list[str]],
    epsilon: float = PSFT_CLIP,
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

    runs = (
        {name: as_numpy(value) for name, value in ratios.items()}
        if isinstance(ratios, dict)
        else {"ratios": as_numpy(ratios)}
    )
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
        image.value = psft_explorer_png(r, mask, eps, k)
        fractions = clip_fractions_by_minibatch(r, mask, eps, k)
        if k == 1:
            refresh = (
                "K = 1: the old policy is refreshed before every step, so every ratio is 1 and PSFT is exactly SFT"
            )
        else:
            refresh = f"K = {k}: the old policy is refreshed every {k} optimiser steps"
        readout.value = (
            f"<p>{refresh}. Mean clip fraction over the global batch: <b>{sum(fractions) / k:.3f}</b>. "
            f"Tokens of mini-batch {k} (after {k - 1} step(s) since the freeze), framed when r &gt; 1 + ε = "
            f"{1 + eps:.2f}:</p>"
            + token_ratio_html(r[k - 1], mask, labels, eps, rows)
        )

    for control in (eps_slider, k_buttons, run_buttons):
        control.observe(redraw, names="value")
    redraw()
    controls = [eps_slider, k_buttons] + ([run_buttons] if len(runs) > 1 else [])
    box = widgets.VBox([widgets.HBox(controls[:2]), *controls[2:], image, readout])
    box.add_class("psft-explorer")
    return box



# ---------------------------------------------------------------- 06 SFT vs PSFT comparison (reads a compare() summary)

def _compare_readout(summary: dict, metric: str, runs: list[str]) -> str:
    """HTML table: each chosen run's first and last value of the metric (mean ± std over seeds)."""
    key, _ = COMPARE_METRICS[metric]
    rows = []
    for name in runs:
        _, mean, std = compare_curve(summary, name, key)
        rows.append(
            f"<tr><td>{name}</td><td>{mean[0]:.3f}</td><td>{mean.max():.3f}</td><td>{mean[-1]:.3f} ± "
            f"{std[-1]:.3f}</td></tr>"
        )
    seeds = len(summary["settings"]["seeds"])
    return (
        f"<p>{metric}: mean over {seeds} seed(s), unsmoothed.</p>"
        "<table><tr><th>run&nbsp;</th><th>first&nbsp;</th><th>highest&nbsp;</th><th>last (± std)</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def compare_explorer(
    summary: dict, metric: str = "token entropy on demonstrations (per step)", runs: list[str] | None = None
):
    """Pick a metric and the runs of a comparison summary; the figure redraws in place.

    ``summary`` is the dict that :func:`psft_edu.experiments.compare.compare` returns (or its ``summary.json``).
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
        image.value = compare_png(summary, dropdown.value, chosen, smooth.value, log_y.value)
        readout.value = _compare_readout(summary, dropdown.value, chosen)

    for control in (dropdown, smooth, log_y, *boxes.values()):
        control.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([dropdown, widgets.HBox(list(boxes.values())), widgets.HBox([smooth, log_y]), image, readout])
    box.add_class("psft-compare-explorer")
    return box



# ---------------------------------------------------------------- 07 RL after SFT vs PSFT (reads rl_after_finetuning())

def _rl_readout(result: dict, step: int) -> str:
    import html

    from .. import tasks

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
            colours = ["#2ca02c" if tasks.verify(prompt, t) else "#d62728" for t in shown]
            words = [f"<span style='color:{c}'>{html.escape(t.strip() or '∅')}</span>" for c, t in zip(colours, shown)]
            cells.append("<td style='padding-right:1.5em'>" + " ".join(words) + "</td>")
        samples.append(
            f"<tr><td style='padding-right:1em'><code>{html.escape(prompt)}</code></td>{''.join(cells)}</tr>"
        )
    evaluated = rl_eval_at(result, runs[0], step)["step"]
    return (
        f"<p>Evaluation at step {evaluated} (the last one at or before the slider):</p>"
        f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"
        "<p>Samples at temperature 1 (green: correct, red: wrong):</p>"
        f"<table style='font-family:monospace'><tr><th>prompt</th>{head}</tr>{''.join(samples)}</table>"
    )


def rl_explorer(result: dict, metric: str = "reward (share of correct samples)", smooth: int = 5):
    """Pick a GRPO metric and move along the RL steps; the samples and evaluations follow the slider.

    ``result`` is what :func:`psft_edu.experiments.rl_experiment.rl_after_finetuning` returns (or its JSON file). The
    figure shows the chosen metric for every run with the slider's step marked; below it, each
    run's evaluation at that point and the completions it sampled for a few in-domain prompts.
    """
    import ipywidgets as widgets

    steps = sorted({e["step"] for run in result["runs"].values() for e in run["evals"]})
    dropdown = widgets.Dropdown(
        options=list(RL_METRICS), value=metric if metric in RL_METRICS else next(iter(RL_METRICS)), description="metric"
    )
    dropdown.layout.width = "420px"
    smoother = widgets.IntSlider(value=smooth, min=1, max=15, description="smooth", continuous_update=False)
    step_slider = widgets.SelectionSlider(options=steps, value=steps[0], description="RL step", continuous_update=False)
    dropdown.add_class("psft-rl-metric")
    step_slider.add_class("psft-rl-step")
    image = widgets.Image(format="png", layout=widgets.Layout(max_width="700px"))
    image.add_class("psft-rl-plot")
    readout = widgets.HTML()

    def redraw(_change=None) -> None:
        image.value = rl_png(result, dropdown.value, smoother.value, step_slider.value)
        readout.value = _rl_readout(result, step_slider.value)

    for control in (dropdown, smoother, step_slider):
        control.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([dropdown, widgets.HBox([step_slider, smoother]), image, readout])
    box.add_class("psft-rl-explorer")
    return box



# ---------------------------------------------------------------- 08 neighbours and ablations (reads sweep summaries)

def _sweep_readout(summary: dict, x: str, y: str) -> str:
    import html

    from ..experiments.sweep import METRICS, final_value, pareto_front

    entries = {"base": summary["base"], **summary["runs"]}
    points = {n: (final_value(r, x), final_value(r, y)) for n, r in entries.items()}
    front = set(pareto_front(points, (METRICS[x][3], METRICS[y][3])))
    dx, dy = METRICS[x][2], METRICS[y][2]
    rows = "".join(
        f"<tr><td>{'★ ' if n in front else ''}{html.escape(n)}&nbsp;</td><td>{px:.{dx}f}</td><td>{py:.{dy}f}</td></tr>"
        for n, (px, py) in points.items()
    )
    return (
        "<p>One seed, final evaluation. ★: on the Pareto front (no other entry is at least as good on both axes and "
        "better on one).</p>"
        f"<table><tr><th>run&nbsp;</th><th>{html.escape(x)}&nbsp;</th><th>{html.escape(y)}</th></tr>{rows}</table>"
    )


def sweep_explorer(
    summaries: dict[str, dict], what: str | None = None, x: str = "in-domain acc (%)", y: str = "OOD acc (%)"
):
    """Choose a sweep (neighbours, clip, refresh, lr) and two final metrics; the scatter redraws in place.

    ``summaries`` maps a sweep's name to its summary (:func:`psft_edu.experiments.sweep.load_results`). Below the
    figure a table lists each run's two values, with the Pareto-optimal ones starred.
    """
    import ipywidgets as widgets

    from ..experiments.sweep import METRICS

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
        image.value = sweep_png(summary, x_menu.value, y_menu.value)
        readout.value = _sweep_readout(summary, x_menu.value, y_menu.value)

    for control in (sweep_menu, x_menu, y_menu):
        control.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([sweep_menu, x_menu, y_menu]), image, readout])
    box.add_class("psft-sweep-explorer")
    return box

