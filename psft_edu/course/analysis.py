"""Reading and analysing what the notebooks show: next-token policies, ratios, and saved results.

Nothing here draws or builds a widget: :mod:`psft_edu.course.drawing` draws these quantities and
:mod:`psft_edu.course.widgets` wires them to controls. The equations themselves (PSFT's gradient
weight, the clipped surrogate, the clip fraction per mini-batch) live in
:mod:`psft_edu.objectives`; the functions here accept NumPy arrays, lists or tensors and
return NumPy values for plotting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: torch and transformers are imported inside the functions
    import torch
    from transformers import PreTrainedTokenizerBase


# ---------------------------------------------------------------- 01-02 the policy at a state

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


def target_labels(tokenizer: PreTrainedTokenizerBase, targets: torch.Tensor) -> list[list[str]]:
    """Readable labels of a batch's target tokens, one list per sequence (see :func:`token_label`)."""
    return [[token_label(tokenizer, t) for t in row] for row in targets.tolist()]



# ---------------------------------------------------------------- 04-05 ratios and clipping

def as_numpy(x: object):
    """A tensor, array or nested list as a float64 NumPy array."""
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(x, dtype=float)


def psft_weight(ratio: object, epsilon: float):
    r"""PSFT's gradient weight per token, :math:`r \cdot \mathbf{1}\{r \le 1+\epsilon\}` (SFT's is 1 everywhere).

    :func:`psft_edu.objectives.psft_gradient_weight` on any array-like; returns a float64 NumPy array.
    """
    import torch

    from ..objectives import psft_gradient_weight

    return psft_gradient_weight(torch.from_numpy(as_numpy(ratio)), epsilon).numpy()


def surrogate_and_slope(r: float, advantage: float, epsilon: float) -> tuple[float, float]:
    """min(r·Â, clip(r, 1-ε, 1+ε)·Â) and its derivative in r: :func:`psft_edu.objectives.clipped_surrogate` at one
    ratio.
    """
    import torch

    from ..objectives import clipped_surrogate

    value, slope = clipped_surrogate(torch.tensor(float(r), dtype=torch.float64), advantage, epsilon)
    return value.item(), slope.item()


def clip_fractions_by_minibatch(ratios: object, mask: object, epsilon: float, k_updates: int) -> list[float]:
    """Share of completion tokens past ``1+ε`` met by each mini-batch of one global batch.

    ``ratios[k]`` holds the ratios after ``k`` optimiser steps since the old policy was frozen.
    With ``k_updates`` (K) mini-batches per global batch, mini-batch ``k`` is trained after ``k``
    steps, so it meets ``ratios[k]``; the list has K entries (the first is always 0).
    """
    import torch

    from ..objectives import clip_fraction_by_minibatch

    r, m = torch.from_numpy(as_numpy(ratios)), torch.from_numpy(as_numpy(mask))
    return clip_fraction_by_minibatch(r, m, epsilon, k_updates).tolist()


def completion_grid(ratio: object, mask: object, labels: list[list[str]], rows: int):
    """The completion tokens of the first ``rows`` sequences, left-aligned: (ratio grid with NaN padding, label
    grid).
    """
    import numpy as np

    r, m = as_numpy(ratio), as_numpy(mask) > 0
    picked = [np.flatnonzero(m[i]) for i in range(min(rows, len(r)))]
    width = max((len(p) for p in picked), default=0)
    grid = np.full((len(picked), width), np.nan)
    names = [[""] * width for _ in picked]
    for i, positions in enumerate(picked):
        grid[i, : len(positions)] = r[i, positions]
        for j, t in enumerate(positions):
            names[i][j] = labels[i][t]
    return grid, names



# ---------------------------------------------------------------- 06 comparison summaries

COMPARE_METRICS: dict[str, tuple[str, str]] = {
    "in-domain accuracy (evaluations)": ("eval_in_domain_exact", "exact accuracy"),
    "out-of-domain accuracy (evaluations)": ("eval_ood_exact", "exact accuracy"),
    "entropy of own samples (evaluations)": ("eval_sample_entropy", "token entropy (nats)"),
    "entropy on the operand tokens (evaluations)": ("eval_operand_entropy", "token entropy (nats)"),
    "answers in the teacher's format (evaluations)": ("eval_style_teacher", "share of answers"),
    "KL to the base on own samples, in-domain (evaluations)": ("eval_kl_in_domain", "exact KL per token (nats)"),
    "KL to the base on own samples, out-of-domain (evaluations)": ("eval_kl_ood", "exact KL per token (nats)"),
    "entropy of own samples, out-of-domain (evaluations)": ("eval_ood_sample_entropy", "token entropy (nats)"),
    "token entropy on demonstrations (per step)": ("entropy", "token entropy (nats)"),
    "share of tokens past 1 + ε (per step)": ("past_bound", "share of tokens"),
    "largest ratio π / π_old (per step)": ("ratio_max", "ratio"),
    "share of unclippable tokens (per step)": ("unclippable", "share of tokens"),
    "gradient norm (per step)": ("grad_norm", "gradient norm before clipping"),
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
    steps, mean = (np.asarray(curve[k], dtype=float) for k in ("step", "mean"))
    std = np.zeros_like(mean) if curve.get("std") is None else np.asarray(curve["std"], dtype=float)  # one seed
    _, first = np.unique(steps, return_index=True)
    steps, mean, std = steps[first], mean[first], std[first]
    if smooth > 1 and len(mean) >= smooth:
        kernel = np.ones(smooth) / smooth
        steps = steps[smooth - 1 :]
        mean, std = np.convolve(mean, kernel, "valid"), np.convolve(std, kernel, "valid")
    return steps, mean, std



# ---------------------------------------------------------------- 07 RL results

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


def rl_eval_means(result: dict, names: list[str], value) -> tuple[list[int], list[float], list[list[float]]]:
    """``value(evaluation)`` at every evaluation step: (steps, mean over ``names``, per-run values)."""
    per_run = [[value(e) for e in result["runs"][n]["evals"]] for n in names]
    steps = [e["step"] for e in result["runs"][names[0]]["evals"]]
    return steps, [sum(col) / len(col) for col in zip(*per_run)], per_run


def rl_shown_runs(result: dict) -> list[str]:
    """The first run of every condition (e.g. seed 0): the runs whose samples the widget shows."""
    from ..experiments.rl_experiment import conditions

    return [names[0] for names in conditions(result).values()]


def rl_eval_at(result: dict, run: str, step: int) -> dict:
    """The evaluation of ``run`` at the last evaluated step not after ``step``."""
    evals = result["runs"][run]["evals"]
    return max((e for e in evals if e["step"] <= step), key=lambda e: e["step"], default=evals[0])


def rl_samples_text(result: dict, step: int, runs: list[str] | None = None) -> str:
    """The kept completions at evaluation step ``step`` as plain text (✓ correct, ✗ wrong).

    One line per run of ``runs`` (default: the first run of each condition, :func:`rl_shown_runs`).
    """
    from .. import tasks

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



# ---------------------------------------------------------------- 08 sweeps

def label_groups(
    points: dict[str, tuple[float, float]], tol: float = 0.04
) -> list[tuple[list[str], tuple[float, float]]]:
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
