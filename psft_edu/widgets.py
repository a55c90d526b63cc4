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

# ---------------------------------------------------------------- 06-08 result selectors
