"""The exercise checkers of notebook 06_entropy_collapse: entropy collapse.

Reading the comparison's results (which run kept the most out-of-domain accuracy) and the implement-it
exercise for the exact KL divergence between two next-token distributions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .cases import Mistakes
from .checking import (
    attempt,
    check_implementation,
    check_prediction,
    checker,
    report,
    run_names,
)


@checker
def check_best_ood_run(answer: Any, summary: dict) -> bool | None:
    """06, exercise 1: the name of the fine-tuned run with the highest final out-of-domain exact accuracy (mean over
    seeds).
    """
    hint = 'look at summary["runs"][name]["final"]["ood_exact"]["mean"] for every run name; max(..., key=...) helps.'
    attempt(answer, hint)
    ood = {name: run["final"]["ood_exact"]["mean"] for name, run in summary["runs"].items()}
    best = max(ood, key=ood.get)
    if answer == "base":
        return report(
            False, "the base is where every run starts, not a fine-tuned run; which of the runs forgot least?"
        )
    if answer not in ood:
        return report(False, f"give one of the run names as a string: {run_names(summary)}.")
    if answer == best:
        base = summary["base"]["final"]["ood_exact"]["mean"]
        return report(True, f"{best} ends at {100 * ood[best]:.1f}% out of domain (the base: {100 * base:.1f}%).")
    return report(
        False,
        f"{answer} ends at {100 * ood[answer]:.1f}% out of domain; another run keeps more (compare the final means).",
    )


def _kl_cases() -> list[tuple[str, dict]]:
    gen = torch.Generator().manual_seed(6)
    p, q = torch.randn(3, 5, 44, generator=gen) * 2, torch.randn(3, 5, 44, generator=gen) * 2
    peaked = q.clone()
    peaked[..., 0] = 40.0  # a reference that is almost certain of one token
    return [
        ("random logits [3, 5, 44]", {"logits": p, "ref_logits": q}),
        ("identical distributions (the KL must be 0)", {"logits": p, "ref_logits": p.clone()}),
        ("logits shifted by a constant (the same distribution)", {"logits": p, "ref_logits": p + 3.0}),
        ("a near one-hot reference", {"logits": p, "ref_logits": peaked}),
    ]


def _exact_kl_mistakes() -> list[tuple[str, Callable]]:
    from ...objectives import exact_kl

    def swapped(logits, ref_logits):
        return exact_kl(ref_logits, logits)

    def probs_not_logs(logits, ref_logits):
        p, q = logits.float().softmax(-1), ref_logits.float().softmax(-1)
        return (p * (p - q)).sum(-1)

    def one_term(logits, ref_logits):
        p, q = logits.float().log_softmax(-1), ref_logits.float().log_softmax(-1)
        return (p - q).sum(-1)

    return [
        (
            "that is KL(base || model): the arguments of the KL are swapped; weight by the model's probabilities",
            swapped,
        ),
        ("use log-probabilities in the difference, not probabilities", probs_not_logs),
        ("each term log p - log q must be weighted by p before summing over the vocabulary", one_term),
    ]


def check_exact_kl_impl(fn: Callable | None) -> bool | None:
    """Notebook 06: ``fn(logits, ref_logits)`` must return KL(softmax(logits) || softmax(ref_logits)) per position.

    A measurement (the package's :func:`psft_edu.objectives.exact_kl` has no gradient), so values only.
    """
    from ...objectives import exact_kl

    return check_implementation(
        fn,
        exact_kl,
        _kl_cases,
        "my_exact_kl",
        _exact_kl_mistakes(),
        hint="log_softmax both, then (p.exp() * (log p - log q)).sum(-1)",
    )


MISTAKE_MODELS: dict[str, Callable[[], Mistakes]] = {
    "check_exact_kl_impl": _exact_kl_mistakes,
}

__all__ = [
    "check_best_ood_run",
    "check_exact_kl_impl",
    "check_prediction",
]
