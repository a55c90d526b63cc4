"""The exercise checkers of notebook 03_sft_is_policy_gradient: SFT as a policy gradient.

The REINFORCE gradient of a bandit, the advantage and its sign, the SFT gradient on a logit, and the
implement-it exercise for the policy-gradient loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .cases import Mistakes, logp_cases
from .checking import (
    as_items,
    attempt,
    check_implementation,
    check_prediction,
    checker,
    close_to,
    one_number,
    report,
)


@checker
def check_reinforce_gradient(answer: Any, probs: list[float], action: int, advantage: float = 1.0) -> bool | None:
    r"""Gradient of :math:`\hat A \log \mathrm{softmax}(z)_a` with respect to the logits z: :math:`\hat A(\mathbf{e}_a
    - \pi)`.
    """
    attempt(answer, "d log softmax(z)_a / dz_k is 1[k = a] - pi_k; multiply every entry by the advantage.")
    expected = [advantage * ((1.0 if k == action else 0.0) - p) for k, p in enumerate(probs)]
    values = as_items(answer, len(expected), "number per action", "a list or a tensor")
    if all(close_to(v, e) for v, e in zip(values, expected)):
        return report(
            True,
            "the chosen action's logit goes up by A(1 - p_a), every other logit down by A p_k; the entries sum to 0.",
        )
    if all(close_to(v, -e) for v, e in zip(values, expected)):
        return report(
            False, "the sign is flipped: that is the gradient of the loss (-A log pi), not of the objective."
        )
    if all(close_to(v, e / advantage) for v, e in zip(values, expected)) and advantage != 1.0:
        return report(False, f"right shape, but the advantage ({advantage:g}) scales every entry.")
    if close_to(sum(values), 0.0) is False:
        return report(
            False,
            "the entries of this gradient always sum to zero (the probabilities sum to one); check each 1[k = a] - "
            "pi_k.",
        )
    return report(False, "compute 1[k = a] - pi_k for every action k, then multiply by the advantage.")


@checker
def check_advantage(advantage: Any, direction: Any, q: float, v: float) -> bool | None:
    """The advantage Q - V of an action and whether a policy-gradient step raises ("up") or lowers ("down") its
    probability.
    """
    attempt(advantage, "the advantage is Q(s, a) - V(s): how much better the action is than the state's average.")
    expected = q - v
    advantage = one_number(advantage, "give the advantage as a number.")
    if not close_to(advantage, expected):
        if close_to(advantage, v - q):
            return report(False, "the sign is reversed: it is Q minus V, not V minus Q.")
        return report(False, f"Q(s, a) - V(s) with Q = {q:g} and V = {v:g}.")
    attempt(direction, 'the advantage is right; now set direction to "up" or "down".')
    want = "up" if expected > 0 else "down"
    if str(direction).strip().lower() != want:
        return report(False, f"Â = {expected:+g}: the step moves log pi(a|s) along the sign of the advantage.")
    verdict = "better" if expected > 0 else "worse"
    return report(True, f"Â = {expected:+g}, so the action's probability goes {want}: it is {verdict} than expected.")


@checker
def check_sft_logit_gradient(answer: Any, p: float) -> bool | None:
    r"""Derivative of :math:`\log \pi(a^*)` with respect to the demonstration token's own logit when :math:`\pi(a^*) =
    p`.
    """
    attempt(answer, "use the REINFORCE gradient with Â = 1 and only look at the entry of the demonstrated token.")
    expected = 1.0 - p
    answer = one_number(answer, "give one number.")
    if close_to(answer, expected, tol=1e-6):
        return report(
            True,
            f"1 - p = {expected:.3g} > 0: SFT keeps pushing the token up however likely it already is; only p = 1 "
            "stops it.",
        )
    if close_to(answer, -p, tol=1e-6) or close_to(answer, p - 1.0, tol=1e-6):
        return report(False, "mind the sign: for the demonstrated token the entry of e_a - pi is positive.")
    if close_to(answer, 0.0, tol=1e-6):
        return report(False, "not quite zero: with a constant advantage of 1 the push only vanishes at p = 1.")
    return report(False, "the entry of e_a - pi for the demonstrated token a is 1 - pi(a).")


def _pg_loss_mistakes() -> Mistakes:
    import torch

    from ...objectives import policy_gradient_loss

    def flipped(logp, advantages, mask):
        return -policy_gradient_loss(logp, advantages, mask)

    def no_advantages(logp, advantages, mask):
        return policy_gradient_loss(logp, torch.ones_like(logp), mask)

    def no_mask(logp, advantages, mask):
        return -(advantages * logp).mean()

    def probabilities(logp, advantages, mask):
        return policy_gradient_loss(logp.exp(), advantages, mask)

    return [
        ("the sign is flipped: this is the objective E[A log pi]; the loss is its negative", flipped),
        ("the advantages are missing: that is the SFT loss", no_advantages),
        ("the mask is ignored", no_mask),
        ("that weights probabilities, not log-probabilities", probabilities),
    ]


def check_pg_loss_impl(user_fn: Any) -> bool | None:
    """03, implement it: ``pg_loss(logp, advantages, mask)``, the token-mean REINFORCE loss -E[A log pi], in value and
    gradient with respect to ``logp``."""
    from ...objectives import policy_gradient_loss

    def reference(logp, advantages, mask):
        return policy_gradient_loss(logp, advantages, mask)

    hint = "-(advantages * logp) averaged over the positions where mask is 1 (token-mean)."
    return check_implementation(user_fn, reference, lambda: logp_cases(with_adv=True), "pg_loss",
                                mistakes=_pg_loss_mistakes(), hint=hint, grad_of="logp",
                                nonfinite_hint="masked positions may hold -inf; select with torch.where.")


MISTAKE_MODELS: dict[str, Callable[[], Mistakes]] = {
    "check_pg_loss_impl": _pg_loss_mistakes,
}

__all__ = [
    "check_advantage",
    "check_pg_loss_impl",
    "check_prediction",
    "check_reinforce_gradient",
    "check_sft_logit_gradient",
]
