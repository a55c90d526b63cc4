"""Exercise checkers of notebooks 04-05: PPO's clipped objective and proximal SFT."""

from __future__ import annotations

import math
from typing import Any

from .exercises_common import (
    _attempt,
    _close,
    _items,
    _one_number,
    _report,
    checker,
)

# ---------------------------------------------------------------- 04 PPO's clipped objective


def _clipped_surrogate(r: float, advantage: float, epsilon: float) -> float:
    return min(r * advantage, min(max(r, 1.0 - epsilon), 1.0 + epsilon) * advantage)


@checker
def check_clipped_value(answer: Any, r: float, advantage: float, epsilon: float) -> bool | None:
    r"""Value of :math:`\min(r \hat A, \mathrm{clip}(r, 1-\epsilon, 1+\epsilon)\hat A)`."""
    _attempt(answer, "compute both r·Â and clip(r, 1-ε, 1+ε)·Â, then keep the smaller one.")
    expected = _clipped_surrogate(r, advantage, epsilon)
    answer = _one_number(answer, "give one number.")
    clipped_only = min(max(r, 1.0 - epsilon), 1.0 + epsilon) * advantage
    if _close(answer, expected):
        return _report(True, f"min({r * advantage:.4g}, {clipped_only:.4g}) = {expected:.4g}.")
    if _close(answer, max(r * advantage, clipped_only)):
        return _report(False, "that is the larger of the two terms; the surrogate keeps the smaller (pessimistic) one.")
    if _close(answer, -expected):
        return _report(False, "right size, wrong sign: this is the objective (maximised), not the loss.")
    return _report(
        False,
        f"with r = {r:g}, Â = {advantage:g}, ε = {epsilon:g}: r·Â = {r * advantage:.4g}; what is the clipped term?",
    )


@checker
def check_gradient_is_zero(answer: Any, r: float, advantage: float, epsilon: float) -> bool | None:
    """Whether the clipped surrogate's derivative in r is zero at (r, Â, ε) (answer True or False)."""
    _attempt(
        answer,
        "the gradient is zero only where the clipped branch is the smaller one; see the plot for this sign of Â.",
    )
    if type(answer).__name__ not in ("bool", "bool_"):  # Python or NumPy booleans
        return _report(False, "answer True (the gradient is zero) or False (it is not).")
    answer = bool(answer)
    zero = advantage == 0 or (advantage > 0 and r > 1.0 + epsilon) or (advantage < 0 and r < 1.0 - epsilon)
    if answer == zero:
        if zero:
            why = (
                "the ratio is already past the bound the advantage pushes toward, so the flat clipped branch is the "
                "minimum."
            )
        elif (advantage > 0 and r < 1.0 - epsilon) or (advantage < 0 and r > 1.0 + epsilon):
            why = (
                "the ratio is outside the interval, but on the side the advantage pushes away from: min() keeps the "
                "unclipped term."
            )
        else:
            why = "the ratio is inside the trust region (or on the unclipped side), so the slope is Â."
        return _report(True, why)
    if zero:
        return _report(
            False,
            "past the bound on the side Â pushes toward the clipped branch is the minimum, and it does not depend on "
            "r.",
        )
    return _report(
        False,
        "min() keeps r·Â here, whose slope is Â; clipping only stops the gradient on one side for each sign of Â.",
    )


@checker
def check_clip_fraction(answer: Any, ratios: list[float], advantage: float, epsilon: float) -> bool | None:
    """Share of tokens whose clipped branch is active (zero gradient), for one advantage shared by every token."""
    _attempt(answer, "for each ratio decide whether its gradient is zero (see the previous exercise), then count.")
    zero = [(advantage > 0 and r > 1.0 + epsilon) or (advantage < 0 and r < 1.0 - epsilon) for r in ratios]
    expected = sum(zero) / len(ratios)
    answer = _one_number(answer, "give one number between 0 and 1.")
    if _close(answer, expected):
        return _report(True, f"{sum(zero)} of {len(ratios)} tokens are clipped.")
    outside = sum(r > 1.0 + epsilon or r < 1.0 - epsilon for r in ratios) / len(ratios)
    if _close(answer, outside):
        return _report(
            False, "that counts every ratio outside [1-ε, 1+ε]; with this sign of Â one side keeps its gradient."
        )
    if _close(answer, sum(zero)):
        return _report(False, "that is a count; divide by the number of tokens for a fraction.")
    side = "> 0, only ratios above 1+ε" if advantage > 0 else "< 0, only ratios below 1-ε"
    return _report(False, f"with Â {side} are clipped.")


# ---------------------------------------------------------------- 05 proximal SFT


@checker
def check_psft_weights(answer: Any, ratios: list[float], epsilon: float) -> bool | None:
    r"""05, exercise 1: PSFT's gradient weight :math:`r \cdot \mathbf{1}\{r \le 1+\epsilon\}` for each ratio (Â = 1)."""
    _attempt(answer, "below 1+ε the objective is r itself, and d r / dθ = r ∇log π; above 1+ε it is a constant.")
    import torch

    from .objectives import psft_gradient_weight

    values = _items(answer, len(ratios), "weight per ratio")
    expected = psft_gradient_weight(torch.tensor(ratios, dtype=torch.float64), epsilon).tolist()
    if all(_close(v, e) for v, e in zip(values, expected)):
        clipped = sum(r > 1.0 + epsilon for r in ratios)
        return _report(
            True, f"{clipped} of {len(ratios)} tokens get no gradient; the others are weighted by r, not by SFT's 1."
        )
    wrong = [i for i, (v, e) in enumerate(zip(values, expected)) if not _close(v, e)]
    i = wrong[0]
    r, v = ratios[i], values[i]
    if r < 1.0 - epsilon and _close(v, 0.0):
        return _report(
            False, f"r = {r:g} is below 1-ε, but with Â = 1 the lower bound never binds: min(r, clip(r)) = r there."
        )
    if _close(v, 1.0) and not _close(r, 1.0):
        return _report(False, f"weight 1 at r = {r:g} is SFT's; the ratio multiplies the gradient (∇r = r ∇log π).")
    if r > 1.0 + epsilon and _close(v, 1.0 + epsilon):
        return _report(False, f"1+ε is the clipped objective's value at r = {r:g}; its gradient (a constant's) is 0.")
    if r > 1.0 + epsilon:
        return _report(False, f"r = {r:g} is past 1+ε = {1 + epsilon:g}: the clipped branch is flat there.")
    return _report(False, f"r = {r:g} is inside the bound, so its weight is r itself; you gave {v:g}.")


@checker
def check_psft_is_sft(answer: Any, global_batch: int, mini_batch: int) -> bool | None:
    """05, exercise 2: with these batch sizes, is every PSFT update exactly an SFT update? (True or False)"""
    _attempt(answer, "count the optimiser steps taken per frozen old policy: K = global_batch / mini_batch.")
    if type(answer).__name__ not in ("bool", "bool_"):
        return _report(False, "answer True (PSFT equals SFT here) or False (it does not).")
    k = global_batch // mini_batch
    same = k == 1
    if bool(answer) == same:
        if same:
            return _report(
                True, "K = 1: each old policy serves a single step, taken at r = 1, where PSFT's gradient is SFT's."
            )
        return _report(True, f"K = {k}: steps 2..{k} of each global batch see ratios away from 1, so the clip can act.")
    if same:
        return _report(
            False, "with one mini-batch per global batch the old policy is frozen just before every step: r = 1 always."
        )
    return _report(False, f"K = {k} steps share one old policy; after the first, the ratios move away from 1.")


@checker
def check_refresh_count(answer: Any, global_batch: int, mini_batch: int, max_steps: int) -> bool | None:
    """05, exercise 3: how many times the trainer freezes the old policy in a run of ``max_steps`` optimiser steps."""
    _attempt(answer, "the old policy is frozen at the start of every global batch, and a global batch gives K steps.")
    value = _one_number(answer, "give one whole number.")
    k = global_batch // mini_batch
    expected = math.ceil(max_steps / k)
    if _close(value, expected):
        return _report(
            True, f"K = {k}, so {max_steps} steps start {expected} global batches (the last one may be cut short)."
        )
    if _close(value, max_steps / k) or _close(value, max_steps // k):
        return _report(
            False, f"{max_steps} / {k} is not a whole number of global batches; the last, partial one is frozen too."
        )
    if _close(value, max_steps):
        return _report(False, "that is one freeze per step, i.e. K = 1; here several steps share each old policy.")
    if _close(value, k):
        return _report(False, "that is K, the steps per freeze; how many freezes does the whole run need?")
    return _report(
        False, f"divide the number of steps by K = global_batch / mini_batch and round up; you gave {answer!r}."
    )
