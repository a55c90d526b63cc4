"""The exercise checkers of notebook 07_rl_after_sft: RL after SFT.

Group-normalised advantages, the share of GRPO groups with no learning signal and the group size that
keeps it low, and the implement-it exercise for group advantages (mistakes named from the output).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .cases import tensors_close
from .checking import (
    as_items,
    as_number,
    attempt,
    check_prediction,
    checker,
    close_to,
    judge,
    not_attempted,
    one_number,
    report,
)


def _group_stats(rewards: list[float]) -> tuple[float, float]:
    mean = sum(rewards) / len(rewards)
    return mean, math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))


@checker
def check_group_advantages(answer: Any, rewards: list[float]) -> bool | None:
    r"""07, exercise 1: GRPO's advantages :math:`(r_i - \mu) / \sigma` for one group's rewards (population σ)."""
    attempt(
        answer,
        "subtract the group's mean reward from each reward, then divide by the group's standard deviation (over G).",
    )
    values = as_items(answer, len(rewards), "advantage per sample", "a list or a tensor")
    mean, std = _group_stats(rewards)
    if std == 0:
        expected = [0.0] * len(rewards)
    else:
        expected = [(r - mean) / std for r in rewards]
    if all(close_to(v, e, 1e-3) for v, e in zip(values, expected)):
        if std == 0:
            return report(True, "every reward is equal, so every advantage is 0: this group teaches nothing.")
        return report(
            True, f"mean {mean:.4g}, σ {std:.4g}; the advantages sum to zero: winners go up as much as losers go down."
        )
    if all(close_to(v, r - mean, 1e-3) for v, r in zip(values, rewards)):
        return report(False, "centred but not scaled: divide by the group's standard deviation too.")
    n = len(rewards)
    if n > 1 and std > 0:
        unbiased = std * math.sqrt(n / (n - 1))
        if all(close_to(v, (r - mean) / unbiased, 1e-3) for v, r in zip(values, rewards)):
            return report(False, "you used the sample standard deviation (divide by G-1); GRPO here divides by G.")
    if all(close_to(v, -e, 1e-3) for v, e in zip(values, expected)):
        return report(
            False, "the signs are flipped: a correct sample (reward above the mean) gets a positive advantage."
        )
    return report(
        False, f"the group's mean reward is {mean:.4g}; check the standard deviation and each (r - mean) / σ."
    )


@checker
def check_zero_signal_fraction(answer: Any, p: float, group_size: int) -> bool | None:
    r"""07, exercise 2: expected share of groups with equal rewards, :math:`p^G + (1-p)^G`, for pass rate p and group
    size G.
    """
    attempt(
        answer, "a group gives no signal when all G samples are right or all G are wrong; the samples are independent."
    )
    value = one_number(answer, "give one number between 0 and 1.")
    expected = p**group_size + (1 - p) ** group_size
    return judge(
        value,
        expected,
        f"{p:g}^{group_size} + {1 - p:g}^{group_size} = {expected:.4g}: that share of the batch is wasted on average.",
        [
            ((1 - p) ** group_size, "that counts the all-wrong groups; all-right groups have equal rewards too."),
            (
                p**group_size,
                "that counts the all-right groups; all-wrong groups have equal rewards too (and are far "
                "more common here).",
            ),
            (1 - expected, "that is the share of groups that DO carry a signal; the question asks for the others."),
        ],
        f"with p = {p:g} and G = {group_size}: the chance that all G are wrong is (1-p)^G; add the all-right case.",
    )


@checker
def check_group_size_needed(answer: Any, p: float, max_zero_fraction: float) -> bool | None:
    """07, exercise 3: the smallest group size G >= 2 with p^G + (1-p)^G <= ``max_zero_fraction``."""
    attempt(answer, "try G = 2, 3, 4, ... and compute p^G + (1-p)^G until it drops to the target.")
    value = as_number(answer)
    if value is None or value != int(value):
        return report(False, "give a whole number of samples per prompt.")
    g = 2
    while p**g + (1 - p) ** g > max_zero_fraction:
        g += 1
        if g > 100_000:
            return report(False, "no reasonable group size reaches that target.")
    value = int(value)
    if value == g:
        return report(
            True,
            f"G = {g} gives {p**g + (1 - p) ** g:.3f}; G = {g - 1} would give {p ** (g - 1) + (1 - p) ** (g - 1):.3f}.",
        )
    if value == g - 1:
        return report(
            False, f"G = {value} gives {p**value + (1 - p) ** value:.3f}, still above {max_zero_fraction:g}; one more."
        )
    if value > g:
        return report(False, f"G = {value} works, but a smaller group already does (each extra sample costs compute).")
    return report(
        False,
        f"G = {value} gives {p**value + (1 - p) ** value:.3f}, above {max_zero_fraction:g}: a larger group is needed.",
    )


def _as_tensor(value: Any) -> torch.Tensor | None:
    try:
        return torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return None


def _advantage_cases() -> list[tuple[str, torch.Tensor, int]]:
    gen = torch.Generator().manual_seed(7)
    return [
        ("the three groups of section 1 (G = 4)", torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1]), 4),
        ("random 0/1 rewards, 6 groups of G = 8", (torch.rand(48, generator=gen) < 0.4).float(), 8),
        ("real-valued rewards, 5 groups of G = 5", torch.randn(25, generator=gen), 5),
        ("groups of G = 2", torch.tensor([1.0, 0.0, 0.0, 1.0, 0.3, 0.9]), 2),
        ("a batch where every group's rewards are equal", torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1]), 4),
    ]


def _advantage_mistake(got: torch.Tensor, rewards: torch.Tensor, group_size: int, expected: torch.Tensor) -> str:
    """Name the most likely mistake behind ``got`` (which differs from ``expected``)."""
    groups = rewards.reshape(-1, group_size)
    mean = groups.mean(-1, keepdim=True)
    if not torch.isfinite(got).all():
        return (
            "NaN or inf where a group's rewards are all equal: its standard deviation is 0, so divide by "
            "(σ + δ) with δ = 1e-6 (the result is then 0/δ = 0: no signal)."
        )
    candidates = [
        ((groups - mean).reshape(-1), "centred but not scaled: divide each group by its standard deviation too."),
        (
            ((groups - mean) / (groups.std(-1, unbiased=True, keepdim=True) + 1e-6)).reshape(-1),
            "you divided by the sample standard deviation (G - 1); the population one divides by G (unbiased=False).",
        ),
        (
            (rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-6),
            "you normalised over the whole batch; normalise each group of G consecutive samples on its own.",
        ),
        (
            (rewards - rewards.mean()) / (rewards.std(unbiased=True) + 1e-6),
            "you normalised over the whole batch; normalise each group of G consecutive samples on its own.",
        ),
        (-expected, "the signs are flipped: a reward above its group's mean gets a positive advantage."),
    ]
    if rewards.numel() // group_size > 1 and group_size > 1:
        strided = rewards.reshape(group_size, -1)
        wrong = (strided - strided.mean(0, keepdim=True)) / (strided.std(0, unbiased=False, keepdim=True) + 1e-6)
        candidates.append(
            (wrong.reshape(-1), "your groups are strided; a group is G *consecutive* samples: reshape(-1, G).")
        )
    for value, message in candidates:
        if tensors_close(got, value.float(), 1e-3):
            return message
    first = int((got - expected).abs().argmax())
    return (
        f"sample {first} (group {first // group_size}) gets {got[first].item():.4f}, expected "
        f"{expected[first].item():.4f}: check the mean and σ of that group."
    )


ADVANTAGE_HINT = (
    "within each group of G consecutive rewards compute (R - mean) / (std + 1e-6), std over G "
    "(torch: reshape(-1, G), .mean(-1), .std(-1, unbiased=False))."
)


@checker
def check_group_advantages_impl(fn: Callable | None) -> bool | None:
    r"""07: a learner's ``fn(rewards, group_size)`` against :func:`psft_edu.rl.group_advantages`.

    :math:`\hat A_i = (R_i - \mu)/(\sigma + \delta)` within each group of ``group_size`` consecutive
    rewards, population σ, δ = 1e-6; the output has the shape of ``rewards``.
    """
    from ...objectives import group_advantages

    attempt(fn, ADVANTAGE_HINT)
    if not callable(fn):
        return report(False, f"pass the function itself (e.g. my_group_advantages), not {type(fn).__name__}.")
    for number, (name, rewards, group_size) in enumerate(_advantage_cases()):
        expected = group_advantages(rewards, group_size)
        given = rewards.clone()
        try:
            raw = fn(given, group_size)
        except Exception as err:  # noqa: BLE001 - any error of the learner's code is reported, not raised
            return report(False, f"on {name} your function raised {type(err).__name__}: {err}")
        if raw is None and number == 0:
            not_attempted(None, "your function still returns None: " + ADVANTAGE_HINT)
            return None
        got = None if raw is None else _as_tensor(raw)
        if not torch.equal(given, rewards):
            return report(False, f"on {name} your function changed the rewards in place; compute new tensors instead.")
        if got is None:
            return report(
                False, f"on {name} your function returned {type(raw).__name__}; return a tensor (or a list)."
            )
        if got.shape != rewards.shape:
            return report(
                False,
                f"on {name} the result has shape {tuple(got.shape)}; it needs the rewards' shape "
                f"{tuple(rewards.shape)} (reshape back at the end).",
            )
        if not tensors_close(got, expected):
            return report(False, f"on {name}: " + _advantage_mistake(got, rewards, group_size, expected))
    return report(
        True,
        f"your function matches rl.group_advantages on all {len(_advantage_cases())} cases, "
        "including groups whose rewards are all equal (advantage 0, no NaN).",
    )

__all__ = [
    "check_group_advantages",
    "check_group_advantages_impl",
    "check_group_size_needed",
    "check_prediction",
    "check_zero_signal_fraction",
]
