"""Exercise checkers of notebooks 01-03: language modelling as an MDP, the SFT loss, SFT as a policy gradient."""

from __future__ import annotations

import math
from typing import Any

from .exercises_common import (
    _attempt,
    _close,
    _items,
    _judge,
    _one_number,
    _one_scalar,
    _report,
    checker,
)

# ---------------------------------------------------------------- 01 language modelling as an MDP


@checker
def check_action_space(answer: Any, tokenizer: Any) -> bool | None:
    """01, exercise 1: how many actions does the policy choose from at every step?"""
    _attempt(answer, "an action is one token; the policy spreads its probability over the whole vocabulary.")
    size = len(tokenizer)
    specials = len(set(tokenizer.all_special_ids))
    if answer == size:
        return _report(True, f"{size} actions: every token of the vocabulary, special tokens included, at every step.")
    if answer == size - specials:
        return _report(
            False,
            "you counted only the characters; the policy also puts probability on the special tokens (<eos> ends the "
            "episode).",
        )
    return _report(False, f"count the tokens the model can output (hint: len(tokenizer)); you gave {answer!r}.")


@checker
def check_sequence_count(answer: Any, vocab_size: int, length: int) -> bool | None:
    """01, exercise 2: how many different action sequences of ``length`` steps exist?"""
    _attempt(answer, "at each of the steps any of the vocab_size actions can be taken, independently of the others.")
    expected = vocab_size**length
    if answer == expected:
        return _report(
            True,
            f"{vocab_size}^{length} = {expected:,} sequences; the policy gives each a probability, and they sum to 1.",
        )
    if answer == vocab_size * length:
        return _report(
            False,
            "that is vocab_size * length; the choices multiply: vocab_size at step 1, times vocab_size at step 2...",
        )
    return _report(False, f"expected vocab_size ** length; you gave {answer!r}.")


@checker
def check_completion_logprob(answer: Any, model: Any, tokenizer: Any, prompt: str, completion: str) -> bool | None:
    """01, exercise 3: log pi(completion | prompt), summed over the completion's tokens (no <eos>)."""
    _attempt(answer, "add up log pi(y_t | x, y_<t) over the completion's tokens; one forward pass gives every term.")
    import torch

    from .objectives import token_logprobs

    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c], device=next(model.parameters()).device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    logp = token_logprobs(logits[:, :-1], ids[:, 1:])[0, len(p) - 1 :]
    expected = float(logp.sum())
    return _judge(
        _one_scalar(answer),
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


# ---------------------------------------------------------------- 02 the SFT loss


@checker
def check_seq_mean_loss(answer: Any, logp: Any, mask: Any) -> bool | None:
    """02, exercise 1: the sequence-mean SFT loss of a batch, by hand."""
    _attempt(answer, "per sequence: the mean of -logp over its masked tokens; then the mean of those numbers.")
    from .objectives import sft_loss

    expected = float(sft_loss(logp, mask, "seq-mean"))
    token_mean = float(sft_loss(logp, mask, "token-mean"))
    value = _one_scalar(answer)
    if _close(value, expected):
        return _report(True, f"seq-mean loss = {expected:.4f} (token-mean would give {token_mean:.4f}).")
    if _close(value, token_mean):
        return _report(False, "that is the token-mean: all tokens pooled. Average within each sequence first.")
    if _close(value, -expected):
        return _report(False, "check the sign: the loss is the negative log-probability.")
    return _report(False, f"expected about {expected:.3f}. Remember to skip masked positions (mask == 0).")


@checker
def check_constant_prob_loss(answer: Any, p: float) -> bool | None:
    """02, exercise 2: the SFT loss when the model gives probability ``p`` to every target token."""
    _attempt(answer, "every term of the mean is the same number; what is -log of a probability p?")
    expected = -math.log(p)
    value = _one_scalar(answer)
    if _close(value, expected):
        return _report(True, f"-log({p}) = {expected:.4f}, whatever the lengths and whichever mean you take.")
    if _close(value, -math.log10(p)):
        return _report(False, "that is the base-10 logarithm; the loss uses the natural logarithm.")
    if _close(value, math.log(p)):
        return _report(False, "wrong sign: the loss is minus the log-probability.")
    if _close(value, 1 - p):
        return _report(False, "the loss is not 1 - p; it is the negative log-likelihood.")
    return _report(False, f"expected -log(p); you gave {answer!r}.")


@checker
def check_long_answer_weight(answer: Any, lengths: list[int]) -> bool | None:
    """02, exercise 3: under token-mean, the share of the loss's weight that the LAST sequence gets."""
    _attempt(
        answer,
        "token-mean gives each token the weight 1 / (total number of tokens); add up the last sequence's tokens.",
    )
    expected = lengths[-1] / sum(lengths)
    value = _one_scalar(answer)
    if _close(value, expected):
        share = 1 / len(lengths)
        return _report(
            True,
            f"{lengths[-1]} / {sum(lengths)} = {expected:.4f}; under seq-mean it would be 1/{len(lengths)} = "
            f"{share:.4f}.",
        )
    if _close(value, 1 / len(lengths)):
        return _report(False, "that is its share under seq-mean; token-mean weighs sequences by their length.")
    return _report(False, f"expected the last length divided by the total number of tokens; you gave {answer!r}.")


# ---------------------------------------------------------------- 03 SFT is a policy gradient


@checker
def check_reinforce_gradient(answer: Any, probs: list[float], action: int, advantage: float = 1.0) -> bool | None:
    r"""Gradient of :math:`\hat A \log \mathrm{softmax}(z)_a` with respect to the logits z: :math:`\hat A(\mathbf{e}_a
    - \pi)`.
    """
    _attempt(answer, "d log softmax(z)_a / dz_k is 1[k = a] - pi_k; multiply every entry by the advantage.")
    expected = [advantage * ((1.0 if k == action else 0.0) - p) for k, p in enumerate(probs)]
    values = _items(answer, len(expected), "number per action", "a list or a tensor")
    if all(_close(v, e) for v, e in zip(values, expected)):
        return _report(
            True,
            "the chosen action's logit goes up by A(1 - p_a), every other logit down by A p_k; the entries sum to 0.",
        )
    if all(_close(v, -e) for v, e in zip(values, expected)):
        return _report(
            False, "the sign is flipped: that is the gradient of the loss (-A log pi), not of the objective."
        )
    if all(_close(v, e / advantage) for v, e in zip(values, expected)) and advantage != 1.0:
        return _report(False, f"right shape, but the advantage ({advantage:g}) scales every entry.")
    if _close(sum(values), 0.0) is False:
        return _report(
            False,
            "the entries of this gradient always sum to zero (the probabilities sum to one); check each 1[k = a] - "
            "pi_k.",
        )
    return _report(False, "compute 1[k = a] - pi_k for every action k, then multiply by the advantage.")


@checker
def check_advantage(advantage: Any, direction: Any, q: float, v: float) -> bool | None:
    """The advantage Q - V of an action and whether a policy-gradient step raises ("up") or lowers ("down") its
    probability.
    """
    _attempt(advantage, "the advantage is Q(s, a) - V(s): how much better the action is than the state's average.")
    expected = q - v
    advantage = _one_number(advantage, "give the advantage as a number.")
    if not _close(advantage, expected):
        if _close(advantage, v - q):
            return _report(False, "the sign is reversed: it is Q minus V, not V minus Q.")
        return _report(False, f"Q(s, a) - V(s) with Q = {q:g} and V = {v:g}.")
    _attempt(direction, 'the advantage is right; now set direction to "up" or "down".')
    want = "up" if expected > 0 else "down"
    if str(direction).strip().lower() != want:
        return _report(False, f"Â = {expected:+g}: the step moves log pi(a|s) along the sign of the advantage.")
    verdict = "better" if expected > 0 else "worse"
    return _report(True, f"Â = {expected:+g}, so the action's probability goes {want}: it is {verdict} than expected.")


@checker
def check_sft_logit_gradient(answer: Any, p: float) -> bool | None:
    r"""Derivative of :math:`\log \pi(a^*)` with respect to the demonstration token's own logit when :math:`\pi(a^*) =
    p`.
    """
    _attempt(answer, "use the REINFORCE gradient with Â = 1 and only look at the entry of the demonstrated token.")
    expected = 1.0 - p
    answer = _one_number(answer, "give one number.")
    if _close(answer, expected, tol=1e-6):
        return _report(
            True,
            f"1 - p = {expected:.3g} > 0: SFT keeps pushing the token up however likely it already is; only p = 1 "
            "stops it.",
        )
    if _close(answer, -p, tol=1e-6) or _close(answer, p - 1.0, tol=1e-6):
        return _report(False, "mind the sign: for the demonstrated token the entry of e_a - pi is positive.")
    if _close(answer, 0.0, tol=1e-6):
        return _report(False, "not quite zero: with a constant advantage of 1 the push only vanishes at p = 1.")
    return _report(False, "the entry of e_a - pi for the demonstrated token a is 1 - pi(a).")
