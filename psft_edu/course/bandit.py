"""A softmax bandit trained by SFT and by PSFT side by side: entropy collapse in isolation.

One state, ``n`` actions, a policy :math:`\\pi = \\mathrm{softmax}(z)` over free logits ``z``, and a
teacher that answers with a fixed distribution ``q`` (one answer: one-hot; two answers: a mix).
Both objectives are trained with plain full-batch gradient ascent on the logits, using the exact
expectation over the teacher's answers (no sampling), so every curve is deterministic:

* SFT maximises :math:`\\sum_a q_a \\log \\pi_a`; its gradient in ``z`` is :math:`q - \\pi`.
* PSFT maximises :math:`\\sum_a q_a \\min(r_a, 1+\\epsilon)` with :math:`r_a = \\pi_a / \\pi^{\\mathrm{old}}_a`
  (the clipped surrogate with :math:`\\hat A = 1`); its gradient is
  :math:`\\sum_a q_a\\, r_a \\mathbf{1}\\{r_a \\le 1+\\epsilon\\}\\,(\\mathbf{e}_a - \\pi)`.
  The old policy is refreshed every ``k`` steps.

With ``k = 1`` every ratio is 1 at every step and PSFT takes exactly SFT's steps. Both have the same
fixed point, :math:`\\pi = q`; the clip changes the path: it zeroes the push on an answer whose ratio passed
:math:`1+\\epsilon` until the next refresh. Here every answer has its own logit and the step has no momentum, so
with a one-answer teacher the policy then stands still; in a network, shared parameters and the optimiser's
momentum keep moving a clipped token (notebook 05, section 5).
Everything here is NumPy; :func:`collapse_widget` adds ipywidgets sliders around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..objectives import PSFT_CLIP

if TYPE_CHECKING:
    import ipywidgets

#: The base policy's probabilities: it prefers actions 2-4 (its own style); the teacher's answers 0 and 1
#: are unlikely to begin with, like the teacher's new style in the course's task world.
BASE_PROBS = (0.02, 0.08, 0.40, 0.30, 0.20)
TEACHERS = {"one answer": (1.0, 0.0, 0.0, 0.0, 0.0), "two answers (70/30)": (0.7, 0.3, 0.0, 0.0, 0.0)}
STEPS_PER_EPOCH = 8  # one epoch = 8 mini-batches = 8 optimiser steps


@dataclass
class BanditRun:
    """The per-step record of one run: ``probs`` [steps + 1, n], ``entropy`` and ``teacher_prob`` [steps + 1]
    (before each step and after the last), ``ratio_max`` and ``clip_fraction`` [steps] (seen by each step)."""

    probs: np.ndarray
    entropy: np.ndarray
    teacher_prob: np.ndarray
    ratio_max: np.ndarray
    clip_fraction: np.ndarray


def softmax(z: np.ndarray) -> np.ndarray:
    """The softmax of a vector of logits, computed stably."""
    e = np.exp(z - z.max())
    return e / e.sum()


def entropy(p: np.ndarray) -> float:
    """Entropy in nats of a probability vector (0 log 0 = 0)."""
    p = p[p > 0]
    return float(-(p * np.log(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def sft_gradient(z: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """Gradient of :math:`\\sum_a q_a \\log \\mathrm{softmax}(z)_a` with respect to ``z``: :math:`q - \\pi`
    (written as :math:`\\sum_a q_a (\\mathbf{e}_a - \\pi)`, the policy gradient with :math:`\\hat A = 1`)."""
    return teacher - softmax(z) * teacher.sum()


def psft_gradient(z: np.ndarray, old_probs: np.ndarray, teacher: np.ndarray, epsilon: float) -> np.ndarray:
    """Gradient of :math:`\\sum_a q_a \\min(r_a, 1+\\epsilon)` in ``z``, :math:`r_a = \\pi_a /
    \\pi^{\\mathrm{old}}_a`.
    """
    pi = softmax(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(old_probs > 0, pi / old_probs, 1.0)
    weight = teacher * np.where(ratio <= 1.0 + epsilon, ratio, 0.0)  # q_a * w_a
    return weight - pi * weight.sum()


def simulate(
    objective: str,
    teacher: tuple[float, ...] | np.ndarray = TEACHERS["one answer"],
    lr: float = 0.3,
    epsilon: float = PSFT_CLIP,
    k: int = 8,
    epochs: int = 60,
    base_probs: tuple[float, ...] | np.ndarray = BASE_PROBS,
) -> BanditRun:
    """Train the bandit's logits from ``base_probs`` with ``objective`` ("sft" or "psft") for
    ``epochs * STEPS_PER_EPOCH`` gradient-ascent steps of size ``lr``; PSFT refreshes its old policy
    every ``k`` steps."""
    if objective not in ("sft", "psft"):
        raise ValueError(f"objective must be 'sft' or 'psft', got {objective!r}")
    if k < 1 or epochs < 1 or lr <= 0 or epsilon <= 0:
        raise ValueError("k and epochs must be >= 1, lr and epsilon > 0")
    q = np.asarray(teacher, dtype=np.float64)
    q = q / q.sum()
    z = np.log(np.asarray(base_probs, dtype=np.float64))
    steps = epochs * STEPS_PER_EPOCH
    probs = np.empty((steps + 1, q.size))
    ratio_max, clip_fraction = np.ones(steps), np.zeros(steps)
    old = softmax(z)
    for step in range(steps):
        pi = softmax(z)
        probs[step] = pi
        if objective == "sft":
            grad = sft_gradient(z, q)
        else:
            if step % k == 0:
                old = pi  # refresh: the old policy is the current one
            ratio = pi / old
            taught = q > 0
            ratio_max[step] = ratio[taught].max()
            clip_fraction[step] = q[ratio > 1.0 + epsilon].sum()  # teacher mass with zero gradient
            grad = psft_gradient(z, old, q, epsilon)
        z = z + lr * grad
    probs[steps] = softmax(z)
    safe = np.where(probs > 0, probs, 1.0)
    ent = -(probs * np.log(safe)).sum(axis=1)
    return BanditRun(probs=probs, entropy=ent, teacher_prob=probs @ q, ratio_max=ratio_max, clip_fraction=clip_fraction)


def draw(
    axes, sft: BanditRun, psft: BanditRun, teacher: np.ndarray | tuple[float, ...], k: int, epsilon: float
) -> None:
    """Three panels: entropy, probability of the teacher's answers, and PSFT's largest ratio per step."""
    q = np.asarray(teacher, dtype=np.float64)
    q = q / q.sum()
    x = np.arange(len(sft.entropy)) / STEPS_PER_EPOCH
    target = entropy(q)
    ax = axes[0]
    ax.plot(x, sft.entropy, color="tab:red", label="SFT")
    ax.plot(x, psft.entropy, color="tab:blue", label=f"PSFT (K = {k}, ε = {epsilon:g})")
    ax.axhline(target, color="gray", ls=":", lw=1, label=f"teacher's entropy ({target:.2f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("policy entropy (nats)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="best")
    ax = axes[1]
    ax.plot(x, sft.probs[:, 0], color="tab:red", label="SFT: π(answer 0)")
    ax.plot(x, psft.probs[:, 0], color="tab:blue", label="PSFT: π(answer 0)")
    if q[1] > 0:
        ax.plot(x, sft.probs[:, 1], color="tab:red", ls="--", label="SFT: π(answer 1)")
        ax.plot(x, psft.probs[:, 1], color="tab:blue", ls="--", label="PSFT: π(answer 1)")
    for a in np.flatnonzero(q):
        ax.axhline(q[a], color="gray", ls=":", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("probability")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="best")
    ax = axes[2]
    steps = np.arange(1, len(psft.ratio_max) + 1) / STEPS_PER_EPOCH
    ax.plot(steps, psft.ratio_max, color="tab:blue", lw=0.8, label="PSFT: largest ratio r")
    ax.axhline(1 + epsilon, color="gray", ls=":", lw=1, label="1 + ε")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ratio to the old policy")
    ax.legend(fontsize=7, loc="best")


def figure(lr: float = 0.3, epsilon: float = PSFT_CLIP, k: int = 8, epochs: int = 60, teacher: str = "one answer"):
    """The side-by-side figure at these settings (a matplotlib Figure), e.g. as the static fallback of the widget."""
    import matplotlib.pyplot as plt

    q = TEACHERS[teacher]
    sft = simulate("sft", q, lr, epsilon, k, epochs)
    psft = simulate("psft", q, lr, epsilon, k, epochs)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    draw(axes, sft, psft, q, k, epsilon)
    fig.suptitle(f"{teacher}: lr = {lr:g}, ε = {epsilon:g}, K = {k}, {epochs} epochs", fontsize=10)
    fig.tight_layout()
    return fig


def _png(lr: float, epsilon: float, k: int, epochs: int, teacher: str, dpi: int = 72) -> bytes:
    from .drawing import render_png

    q = TEACHERS[teacher]

    def paint(fig) -> None:
        axes = fig.subplots(1, 3)
        draw(
            axes, simulate("sft", q, lr, epsilon, k, epochs), simulate("psft", q, lr, epsilon, k, epochs), q, k, epsilon
        )
        fig.subplots_adjust(left=0.05, right=0.99, bottom=0.15, top=0.97, wspace=0.25)  # fixed: no extra layout pass

    return render_png(paint, (12, 3.3), dpi, layout=False, pil_kwargs={"compress_level": 1})


def readout(lr: float, epsilon: float, k: int, epochs: int, teacher: str) -> str:
    """One line per objective: final entropy, probability of the teacher's answers, largest ratio."""
    q = TEACHERS[teacher]
    lines = []
    for name in ("sft", "psft"):
        run = simulate(name, q, lr, epsilon, k, epochs)
        extra = f", largest ratio {run.ratio_max.max():.3f}" if name == "psft" else ""
        lines.append(f"{name.upper():>4}: entropy {run.entropy[-1]:.3f} nats, π(answer 0) {run.probs[-1, 0]:.3f}"
                     f", π(answer 1) {run.probs[-1, 1]:.3f}{extra}")
    return "\n".join(lines)


def collapse_widget(lr: float = 0.3, epsilon: float = PSFT_CLIP, k: int = 8, epochs: int = 60,
                    teacher: str = "one answer") -> ipywidgets.VBox:
    """Sliders for lr, ε, K and epochs and a teacher switch; the three panels of :func:`draw` redraw on every change."""
    import ipywidgets as widgets

    controls = {
        "lr": widgets.FloatLogSlider(value=lr, base=10, min=-1.5, max=1, step=0.05, description="lr"),
        "epsilon": widgets.FloatSlider(value=epsilon, min=0.02, max=1.0, step=0.02, description="ε"),
        "k": widgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32], value=k, description="K"),
        "epochs": widgets.IntSlider(value=epochs, min=1, max=200, step=1, description="epochs"),
        "teacher": widgets.ToggleButtons(options=list(TEACHERS), value=teacher, description="teacher"),
    }
    image = widgets.Image(
        value=_png(lr, epsilon, k, epochs, teacher), format="png", layout=widgets.Layout(max_width="900px")
    )
    text = widgets.HTML(f"<pre>{readout(lr, epsilon, k, epochs, teacher)}</pre>")

    def redraw(_change=None) -> None:
        values = {name: control.value for name, control in controls.items()}
        image.value = _png(**values)
        text.value = f"<pre>{readout(**values)}</pre>"

    for control in controls.values():
        control.observe(redraw, names="value")
    box = widgets.VBox([widgets.HBox([controls["lr"], controls["epsilon"], controls["k"]]),
                        widgets.HBox([controls["epochs"], controls["teacher"]]), image, text])
    box.add_class("psft-bandit")
    return box


# ---------------------------------------------------------------- a two-step tree: exact returns, Q, V and A

#: Terminal rewards R(a, b) of the two-step tree: first action a in {0, 1} leads to state s_a, second action b ends
#: the episode with reward R[a][b] (the verifier's 0/1, like the course's tasks, plus one partial-credit leaf).
TREE_REWARDS = ((1.0, 0.0), (0.0, 0.5))


def tree_values(root: np.ndarray, leaves: np.ndarray, rewards: tuple = TREE_REWARDS) -> dict[str, np.ndarray | float]:
    """Exact values of the two-step tree under a tabular policy.

    ``root`` [2]: pi(a | s_root); ``leaves`` [2, 2]: pi(b | s_a). Returns ``J`` (expected return),
    ``V_root``, ``Q_root`` [2], ``V_leaf`` [2], ``Q_leaf`` [2, 2] (= R), ``A_root`` = Q_root - V_root and
    ``A_leaf`` = Q_leaf - V_leaf[:, None]. Rewards arrive only at the end (horizon 2, no discount).
    """
    r = np.asarray(rewards, dtype=np.float64)
    q_leaf = r
    v_leaf = (leaves * q_leaf).sum(-1)
    q_root = v_leaf  # taking a at the root leads to s_a with certainty, no reward yet
    v_root = float(root @ q_root)
    return {"J": v_root, "V_root": v_root, "Q_root": q_root, "V_leaf": v_leaf, "Q_leaf": q_leaf,
            "A_root": q_root - v_root, "A_leaf": q_leaf - v_leaf[:, None]}


def tree_return_by_enumeration(root: np.ndarray, leaves: np.ndarray, rewards: tuple = TREE_REWARDS) -> float:
    """J = sum over the four trajectories of pi(trajectory) * G(trajectory), the definition of the expected return."""
    return float(sum(root[a] * leaves[a, b] * rewards[a][b] for a in range(2) for b in range(2)))
