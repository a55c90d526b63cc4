"""The exercise checkers of notebook 01_lm_as_mdp: language modelling as an MDP.

How many actions a policy picks from, how many action sequences exist, a completion's log-probability,
and the implement-it exercise for per-token log-probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .cases import Mistakes, generator
from .checking import (
    attempt,
    check_implementation,
    check_prediction,
    checker,
    judge,
    one_scalar,
    report,
)


@checker
def check_action_space(answer: Any, tokenizer: Any) -> bool | None:
    """01, exercise 1: how many actions does the policy choose from at every step?"""
    attempt(answer, "an action is one token; the policy spreads its probability over the whole vocabulary.")
    size = len(tokenizer)
    specials = len(set(tokenizer.all_special_ids))
    if answer == size:
        return report(True, f"{size} actions: every token of the vocabulary, special tokens included, at every step.")
    if answer == size - specials:
        return report(
            False,
            "you counted only the characters; the policy also puts probability on the special tokens (<eos> ends the "
            "episode).",
        )
    return report(False, f"count the tokens the model can output (hint: len(tokenizer)); you gave {answer!r}.")


@checker
def check_sequence_count(answer: Any, vocab_size: int, length: int) -> bool | None:
    """01, exercise 2: how many different action sequences of ``length`` steps exist?"""
    attempt(answer, "at each of the steps any of the vocab_size actions can be taken, independently of the others.")
    expected = vocab_size**length
    if answer == expected:
        return report(
            True,
            f"{vocab_size}^{length} = {expected:,} sequences; the policy gives each a probability, and they sum to 1.",
        )
    if answer == vocab_size * length:
        return report(
            False,
            "that is vocab_size * length; the choices multiply: vocab_size at step 1, times vocab_size at step 2...",
        )
    return report(False, f"expected vocab_size ** length; you gave {answer!r}.")


@checker
def check_completion_logprob(answer: Any, model: Any, tokenizer: Any, prompt: str, completion: str) -> bool | None:
    """01, exercise 3: log pi(completion | prompt), summed over the completion's tokens (no <eos>)."""
    attempt(answer, "add up log pi(y_t | x, y_<t) over the completion's tokens; one forward pass gives every term.")
    import torch

    from ...objectives import token_logprobs

    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c], device=next(model.parameters()).device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    logp = token_logprobs(logits[:, :-1], ids[:, 1:])[0, len(p) - 1 :]
    expected = float(logp.sum())
    return judge(
        one_scalar(answer),
        expected,
        f"log pi = {expected:.4f}, so pi(completion | prompt) = {math.exp(expected):.4g}.",
        [
            (-expected, "right size, wrong sign: a log-probability is never positive."),
            (math.exp(expected), "that is the probability itself; take its logarithm."),
            (expected / len(c), "that is the mean over tokens; the joint log-probability is the sum."),
        ],
        f"expected about {expected:.3f}. Did you sum exactly the completion's {len(c)} tokens (no prompt tokens)?",
        tol=1e-3,
    )


def _token_logprobs_mistakes() -> Mistakes:
    import torch

    from ...objectives import token_logprobs

    def probabilities(logits, targets):
        return token_logprobs(logits, targets).exp()

    def raw_logits(logits, targets):
        return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    def flipped(logits, targets):
        return -token_logprobs(logits, targets)

    def constant_normaliser(logits, targets):
        return raw_logits(logits, targets) - torch.logsumexp(logits, dim=-1).detach()

    return [
        ("that is the probability, not its logarithm", probabilities),
        ("those are the raw logits of the targets: normalise with log_softmax first", raw_logits),
        ("the sign is flipped: a log-probability is never positive", flipped),
        (
            "the value is right but the gradient is not: the normaliser log Σ exp(z) is detached, so the gradient is "
            "e_y alone instead of e_y - π; keep the normaliser in the graph (log_softmax does)",
            constant_normaliser,
        ),
    ]


def check_token_logprobs_impl(user_fn: Any) -> bool | None:
    """01, implement it: ``token_logprobs(logits [B, T, V], targets [B, T]) -> [B, T]``, log pi of each target.

    Value and gradient with respect to ``logits`` (a vector-Jacobian product) are compared with the package's.
    """
    import torch

    from ...objectives import token_logprobs

    def cases() -> list[tuple[str, dict]]:
        out = []
        for seed, (b, t, v) in ((0, (2, 4, 6)), (1, (3, 5, 11))):
            g = generator(seed)
            out.append((f"random logits {b}x{t}x{v}", {
                "logits": torch.randn(b, t, v, generator=g) * 2, "targets": torch.randint(0, v, (b, t), generator=g)}))
        g = generator(2)
        out.append(("large logits (around ±100)", {
            "logits": torch.randn(2, 3, 5, generator=g) * 100, "targets": torch.randint(0, 5, (2, 3), generator=g)}))
        return out

    hint = "log_softmax over the last (vocabulary) dimension, then pick each target's entry with gather."
    return check_implementation(user_fn, token_logprobs, cases, "token_logprobs", mistakes=_token_logprobs_mistakes(),
                                hint=hint, nonfinite_hint="log(softmax(...)) underflows for large logits; use "
                                "log_softmax.", grad_of="logits", what="output")


MISTAKE_MODELS: dict[str, Callable[[], Mistakes]] = {
    "check_token_logprobs_impl": _token_logprobs_mistakes,
}

__all__ = [
    "check_action_space",
    "check_completion_logprob",
    "check_prediction",
    "check_sequence_count",
    "check_token_logprobs_impl",
]
