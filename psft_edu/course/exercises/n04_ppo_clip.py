"""The exercise checkers of notebook 04_ppo_clip: PPO's clipped objective.

The clipped surrogate's value, when its gradient is zero, the share of clipped tokens, and the
implement-it exercise for PPO's clipped loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .cases import Mistakes, hand_mean, logp_cases, ratio_edge_case
from .checking import (
    attempt,
    check_implementation,
    check_prediction,
    checker,
    close_to,
    one_number,
    report,
)


def _clipped_surrogate(r: float, advantage: float, epsilon: float) -> float:
    return min(r * advantage, min(max(r, 1.0 - epsilon), 1.0 + epsilon) * advantage)


@checker
def check_clipped_value(answer: Any, r: float, advantage: float, epsilon: float) -> bool | None:
    r"""Value of :math:`\min(r \hat A, \mathrm{clip}(r, 1-\epsilon, 1+\epsilon)\hat A)`."""
    attempt(answer, "compute both r·Â and clip(r, 1-ε, 1+ε)·Â, then keep the smaller one.")
    expected = _clipped_surrogate(r, advantage, epsilon)
    answer = one_number(answer, "give one number.")
    clipped_only = min(max(r, 1.0 - epsilon), 1.0 + epsilon) * advantage
    if close_to(answer, expected):
        return report(True, f"min({r * advantage:.4g}, {clipped_only:.4g}) = {expected:.4g}.")
    if close_to(answer, max(r * advantage, clipped_only)):
        return report(False, "that is the larger of the two terms; the surrogate keeps the smaller (pessimistic) one.")
    if close_to(answer, -expected):
        return report(False, "right size, wrong sign: this is the objective (maximised), not the loss.")
    return report(
        False,
        f"with r = {r:g}, Â = {advantage:g}, ε = {epsilon:g}: r·Â = {r * advantage:.4g}; what is the clipped term?",
    )


@checker
def check_gradient_is_zero(answer: Any, r: float, advantage: float, epsilon: float) -> bool | None:
    """Whether the clipped surrogate's derivative in r is zero at (r, Â, ε) (answer True or False)."""
    attempt(
        answer,
        "the gradient is zero only where the clipped branch is the smaller one; see the plot for this sign of Â.",
    )
    if type(answer).__name__ not in ("bool", "bool_"):  # Python or NumPy booleans
        return report(False, "answer True (the gradient is zero) or False (it is not).")
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
            why = "the ratio is inside the clip interval (or on the unclipped side), so the slope is Â."
        return report(True, why)
    if zero:
        return report(
            False,
            "past the bound on the side Â pushes toward the clipped branch is the minimum, and it does not depend on "
            "r.",
        )
    return report(
        False,
        "min() keeps r·Â here, whose slope is Â; clipping only stops the gradient on one side for each sign of Â.",
    )


@checker
def check_clip_fraction(answer: Any, ratios: list[float], advantage: float, epsilon: float) -> bool | None:
    """Share of tokens whose clipped branch is active (zero gradient), for one advantage shared by every token."""
    attempt(answer, "for each ratio decide whether its gradient is zero (see the previous exercise), then count.")
    zero = [(advantage > 0 and r > 1.0 + epsilon) or (advantage < 0 and r < 1.0 - epsilon) for r in ratios]
    expected = sum(zero) / len(ratios)
    answer = one_number(answer, "give one number between 0 and 1.")
    if close_to(answer, expected):
        return report(True, f"{sum(zero)} of {len(ratios)} tokens are clipped.")
    outside = sum(r > 1.0 + epsilon or r < 1.0 - epsilon for r in ratios) / len(ratios)
    if close_to(answer, outside):
        return report(
            False, "that counts every ratio outside [1-ε, 1+ε]; with this sign of Â one side keeps its gradient."
        )
    if close_to(answer, sum(zero)):
        return report(False, "that is a count; divide by the number of tokens for a fraction.")
    side = "> 0, only ratios above 1+ε" if advantage > 0 else "< 0, only ratios below 1-ε"
    return report(False, f"with Â {side} are clipped.")


def _ppo_reference(logp, old_logp, advantages, mask, clip_low, clip_high):
    from ...objectives import ppo_clip_loss

    return ppo_clip_loss(logp, old_logp, advantages, mask, clip_low, clip_high)[0]


def _ppo_clip_mistakes() -> Mistakes:
    import torch

    def clip_only(logp, old_logp, advantages, mask, clip_low, clip_high):
        ratio = torch.exp(logp - old_logp)
        return -hand_mean(ratio.clamp(1 - clip_low, 1 + clip_high) * advantages, mask)

    def optimistic(logp, old_logp, advantages, mask, clip_low, clip_high):
        ratio = torch.exp(logp - old_logp)
        clipped = ratio.clamp(1 - clip_low, 1 + clip_high) * advantages
        return -hand_mean(torch.maximum(ratio * advantages, clipped), mask)

    def swapped(logp, old_logp, advantages, mask, clip_low, clip_high):
        return _ppo_reference(logp, old_logp, advantages, mask, clip_high, clip_low)

    def flipped(logp, old_logp, advantages, mask, clip_low, clip_high):
        return -_ppo_reference(logp, old_logp, advantages, mask, clip_low, clip_high)

    def no_mask(logp, old_logp, advantages, mask, clip_low, clip_high):
        return _ppo_reference(logp, old_logp, advantages, torch.ones_like(mask), clip_low, clip_high)

    def detached_clip(logp, old_logp, advantages, mask, clip_low, clip_high):
        ratio = torch.exp(logp - old_logp)
        clipped = ratio.detach().clamp(1 - clip_low, 1 + clip_high) * advantages
        return -hand_mean(torch.minimum(ratio * advantages, clipped), mask)

    return [
        (
            "the clipped term alone: clip(r)·Â without the min with r·Â. Where the policy moved against the "
            "advantage (r < 1-ε with Â > 0, r > 1+ε with Â < 0) that gives the wrong value and no gradient, so a "
            "step in the wrong direction is never undone; take min(r·Â, clip(r)·Â)",
            clip_only,
        ),
        ("max() instead of min(): the surrogate must keep the SMALLER (pessimistic) term", optimistic),
        ("clip_low and clip_high are swapped: the lower bound is 1 - clip_low, the upper 1 + clip_high", swapped),
        ("the sign is flipped: return the loss, minus the objective", flipped),
        ("the mask is ignored", no_mask),
        (
            "the value is right but the gradient is not: the clipped term is detached, so inside [1-ε, 1+ε], where "
            "the two terms are equal, min() sends only half of the gradient through r·Â; clamp() needs no "
            ".detach(), it already has zero slope outside the interval",
            detached_clip,
        ),
    ]


def check_ppo_clip_impl(user_fn: Any) -> bool | None:
    """04, implement it: ``ppo_clip(logp, old_logp, advantages, mask, clip_low, clip_high)``, the loss -L^CLIP.

    Value and gradient with respect to ``logp`` on random batches; the value only where ratios sit exactly on the
    bounds, where the surrogate has a kink and either one-sided slope would be right.
    """
    from ...objectives import PPO_CLIP, PSFT_CLIP

    def cases() -> list[tuple]:
        out: list[tuple] = [(f"{label}, clip 0.2/0.28", {**c, "clip_low": PPO_CLIP, "clip_high": PSFT_CLIP})
                            for label, c in logp_cases(with_old=True, with_adv=True)]
        for adv in (1.0, -1.0):
            out.append((f"ratios exactly at 1-ε, 1, 1+ε and beyond, Â = {adv:+g}",
                        {**ratio_edge_case(0.2, 0.2, [adv]), "clip_low": 0.2, "clip_high": 0.2}, False))
        out.append(("ratios at both bounds, Â = ±2, clip_low 0.1, clip_high 0.3",
                    {**ratio_edge_case(0.1, 0.3, [2.0, -2.0]), "clip_low": 0.1, "clip_high": 0.3}, False))
        return out

    hint = "r = exp(logp - old_logp); loss = -masked mean of min(r * A, clamp(r, 1 - clip_low, 1 + clip_high) * A)."
    return check_implementation(user_fn, _ppo_reference, cases, "ppo_clip", mistakes=_ppo_clip_mistakes(), hint=hint,
                                nonfinite_hint="masked positions may hold -inf; select with torch.where.",
                                grad_of="logp")


MISTAKE_MODELS: dict[str, Callable[[], Mistakes]] = {
    "check_ppo_clip_impl": _ppo_clip_mistakes,
}

__all__ = [
    "check_clip_fraction",
    "check_clipped_value",
    "check_gradient_is_zero",
    "check_ppo_clip_impl",
    "check_prediction",
]
