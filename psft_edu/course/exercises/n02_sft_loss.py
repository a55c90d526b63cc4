"""The exercise checkers of notebook 02_sft_loss: the SFT loss.

The mean of a sequence's token losses, the loss when every token has the same probability, how much a
long answer weighs in a token-mean, and the implement-it exercise for the SFT loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .cases import Mistakes, generator, logp_cases
from .checking import (
    attempt,
    check_implementation,
    check_prediction,
    checker,
    close_to,
    one_scalar,
    report,
)


@checker
def check_seq_mean_loss(answer: Any, logp: Any, mask: Any) -> bool | None:
    """02, exercise 1: the sequence-mean SFT loss of a batch, by hand."""
    attempt(answer, "per sequence: the mean of -logp over its masked tokens; then the mean of those numbers.")
    from ...objectives import sft_loss

    expected = float(sft_loss(logp, mask, "seq-mean"))
    token_mean = float(sft_loss(logp, mask, "token-mean"))
    value = one_scalar(answer)
    if close_to(value, expected):
        return report(True, f"seq-mean loss = {expected:.4f} (token-mean would give {token_mean:.4f}).")
    if close_to(value, token_mean):
        return report(False, "that is the token-mean: all tokens pooled. Average within each sequence first.")
    if close_to(value, -expected):
        return report(False, "check the sign: the loss is the negative log-probability.")
    return report(False, f"expected about {expected:.3f}. Remember to skip masked positions (mask == 0).")


@checker
def check_constant_prob_loss(answer: Any, p: float) -> bool | None:
    """02, exercise 2: the SFT loss when the model gives probability ``p`` to every target token."""
    attempt(answer, "every term of the mean is the same number; what is -log of a probability p?")
    expected = -math.log(p)
    value = one_scalar(answer)
    if close_to(value, expected):
        return report(True, f"-log({p}) = {expected:.4f}, whatever the lengths and whichever mean you take.")
    if close_to(value, -math.log10(p)):
        return report(False, "that is the base-10 logarithm; the loss uses the natural logarithm.")
    if close_to(value, math.log(p)):
        return report(False, "wrong sign: the loss is minus the log-probability.")
    if close_to(value, 1 - p):
        return report(False, "the loss is not 1 - p; it is the negative log-likelihood.")
    return report(False, f"expected -log(p); you gave {answer!r}.")


@checker
def check_long_answer_weight(answer: Any, lengths: list[int]) -> bool | None:
    """02, exercise 3: under token-mean, the share of the loss's weight that the LAST sequence gets."""
    attempt(
        answer,
        "token-mean gives each token the weight 1 / (total number of tokens); add up the last sequence's tokens.",
    )
    expected = lengths[-1] / sum(lengths)
    value = one_scalar(answer)
    if close_to(value, expected):
        share = 1 / len(lengths)
        return report(
            True,
            f"{lengths[-1]} / {sum(lengths)} = {expected:.4f}; under seq-mean it would be 1/{len(lengths)} = "
            f"{share:.4f}.",
        )
    if close_to(value, 1 / len(lengths)):
        return report(False, "that is its share under seq-mean; token-mean weighs sequences by their length.")
    return report(False, f"expected the last length divided by the total number of tokens; you gave {answer!r}.")


def _sft_loss_mistakes() -> Mistakes:
    import torch

    from ...objectives import sft_loss

    def flipped(logp, mask, agg):
        return -sft_loss(logp, mask, agg)

    def no_mask(logp, mask, agg):
        return -logp.mean()

    def token_always(logp, mask, agg):
        return sft_loss(logp, mask, "token-mean")

    def seq_mean_all_rows(logp, mask, agg):
        if agg == "token-mean":
            return sft_loss(logp, mask, agg)
        per_row = (torch.where(mask > 0, -logp, torch.zeros_like(logp))).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_row.mean()

    return [
        ("the sign is flipped: the loss is MINUS the mean log-probability", flipped),
        ("the mask is ignored: padding and prompt positions must not count", no_mask),
        ("seq-mean gives the token-mean: average within each sequence first, then over sequences", token_always),
        ("seq-mean divides by every row, also the rows without a completion token; skip those", seq_mean_all_rows),
    ]


def check_sft_loss_impl(user_fn: Any) -> bool | None:
    """02, implement it: ``sft_loss(logp, mask, agg)`` for agg "token-mean" and "seq-mean", in value and gradient."""
    import torch

    from ...objectives import sft_loss

    def cases() -> list[tuple[str, dict]]:
        out = []
        for agg in ("token-mean", "seq-mean"):
            out += [(f"{label}, agg={agg!r}", {**case, "agg": agg}) for label, case in logp_cases()]
        g = generator(4)
        logp = -torch.rand(3, 4, generator=g)
        mask = torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
        out.append(
            (
                "seq-mean with a fully masked row (a prompt-only sequence)",
                {"logp": logp, "mask": mask, "agg": "seq-mean"},
            )
        )
        return out

    hint = (
        "token-mean: sum of -logp * mask / mask.sum(); seq-mean: the same per row, then the mean over rows with tokens."
    )
    return check_implementation(
        user_fn,
        sft_loss,
        cases,
        "sft_loss",
        mistakes=_sft_loss_mistakes(),
        hint=hint,
        nonfinite_hint="masked positions may hold -inf; select with torch.where before multiplying.",
        grad_of="logp",
    )


MISTAKE_MODELS: dict[str, Callable[[], Mistakes]] = {
    "check_sft_loss_impl": _sft_loss_mistakes,
}

__all__ = [
    "check_constant_prob_loss",
    "check_long_answer_weight",
    "check_prediction",
    "check_seq_mean_loss",
    "check_sft_loss_impl",
]
