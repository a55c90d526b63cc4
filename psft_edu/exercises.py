"""Checkers for the notebooks' exercises.

Each ``check_*`` function prints a short, specific message (what is right, or what to
look at next) and returns ``True`` or ``False``. An exercise left as ``None`` gets a
hint instead of an error, so a notebook always runs top to bottom.
"""

from __future__ import annotations

import math
from typing import Any


def _report(ok: bool, message: str) -> bool:
    print(("Correct: " if ok else "Not yet: ") + message)
    return ok


def _not_attempted(answer: Any, hint: str) -> bool:
    if answer is None:
        print("Not attempted yet. Hint: " + hint)
        return True
    return False


def _close(a: float, b: float, tol: float = 1e-4) -> bool:
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)


# ---------------------------------------------------------------- 01 language modelling as an MDP

def _scalar(answer: Any) -> float | None:
    """A single number (int, float, NumPy scalar, one-element tensor) as a float; None for anything else."""
    if isinstance(answer, (str, bytes, bool)):
        return None
    try:
        value = float(answer.item() if hasattr(answer, "item") else answer)
    except (TypeError, ValueError, RuntimeError):
        return None
    return value if math.isfinite(value) else None


def _not_a_number(answer: Any) -> bool:
    return _report(False, f"the answer should be a single number, got {answer!r}.")


def check_action_space(answer: Any, tokenizer: Any) -> bool:
    """01, exercise 1: how many actions does the policy choose from at every step?"""
    if _not_attempted(answer, "an action is one token; the policy spreads its probability over the whole vocabulary."):
        return True
    size = len(tokenizer)
    specials = len(set(tokenizer.all_special_ids))
    if answer == size:
        return _report(True, f"{size} actions: every token of the vocabulary, special tokens included, at every step.")
    if answer == size - specials:
        return _report(
            False, "you counted only the characters; the policy also puts probability on the special tokens (<eos> ends the episode)."
        )
    return _report(False, f"count the tokens the model can output (hint: len(tokenizer)); you gave {answer!r}.")


def check_sequence_count(answer: Any, vocab_size: int, length: int) -> bool:
    """01, exercise 2: how many different action sequences of ``length`` steps exist?"""
    if _not_attempted(answer, "at each of the steps any of the vocab_size actions can be taken, independently of the others."):
        return True
    expected = vocab_size**length
    if answer == expected:
        return _report(True, f"{vocab_size}^{length} = {expected:,} sequences; the policy gives each a probability, and they sum to 1.")
    if answer == vocab_size * length:
        return _report(False, "that is vocab_size * length; the choices multiply: vocab_size at step 1, times vocab_size at step 2...")
    return _report(False, f"expected vocab_size ** length; you gave {answer!r}.")


def check_completion_logprob(answer: Any, model: Any, tokenizer: Any, prompt: str, completion: str) -> bool:
    """01, exercise 3: log pi(completion | prompt), summed over the completion's tokens (no <eos>)."""
    if _not_attempted(answer, "add up log pi(y_t | x, y_<t) over the completion's tokens; one forward pass gives every term."):
        return True
    import torch

    from .objectives import token_logprobs

    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c], device=next(model.parameters()).device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    logp = token_logprobs(logits[:, :-1], ids[:, 1:])[0, len(p) - 1 :]
    expected = float(logp.sum())
    value = _scalar(answer)
    if value is None:
        return _not_a_number(answer)
    if _close(value, expected, 1e-3):
        return _report(True, f"log pi = {expected:.4f}, so pi(completion | prompt) = {math.exp(expected):.4g}.")
    if _close(value, -expected, 1e-3):
        return _report(False, "right size, wrong sign: a log-probability is never positive.")
    if _close(value, math.exp(expected), 1e-3):
        return _report(False, "that is the probability itself; take its logarithm.")
    if _close(value, expected / len(c), 1e-3):
        return _report(False, "that is the mean over tokens; the joint log-probability is the sum.")
    return _report(False, f"expected about {expected:.3f}. Did you sum exactly the completion's {len(c)} tokens (no prompt tokens)?")



# ---------------------------------------------------------------- 02 the SFT loss

def check_seq_mean_loss(answer: Any, logp: Any, mask: Any) -> bool:
    """02, exercise 1: the sequence-mean SFT loss of a batch, by hand."""
    if _not_attempted(answer, "per sequence: the mean of -logp over its masked tokens; then the mean of those numbers."):
        return True
    from .objectives import sft_loss

    expected = float(sft_loss(logp, mask, "seq-mean"))
    token_mean = float(sft_loss(logp, mask, "token-mean"))
    value = _scalar(answer)
    if value is None:
        return _not_a_number(answer)
    if _close(value, expected):
        return _report(True, f"seq-mean loss = {expected:.4f} (token-mean would give {token_mean:.4f}).")
    if _close(value, token_mean):
        return _report(False, "that is the token-mean: all tokens pooled. Average within each sequence first.")
    if _close(value, -expected):
        return _report(False, "check the sign: the loss is the negative log-probability.")
    return _report(False, f"expected about {expected:.3f}. Remember to skip masked positions (mask == 0).")


def check_constant_prob_loss(answer: Any, p: float) -> bool:
    """02, exercise 2: the SFT loss when the model gives probability ``p`` to every target token."""
    if _not_attempted(answer, "every term of the mean is the same number; what is -log of a probability p?"):
        return True
    expected = -math.log(p)
    value = _scalar(answer)
    if value is None:
        return _not_a_number(answer)
    if _close(value, expected):
        return _report(True, f"-log({p}) = {expected:.4f}, whatever the lengths and whichever mean you take.")
    if _close(value, -math.log10(p)):
        return _report(False, "that is the base-10 logarithm; the loss uses the natural logarithm.")
    if _close(value, math.log(p)):
        return _report(False, "wrong sign: the loss is minus the log-probability.")
    if _close(value, 1 - p):
        return _report(False, "the loss is not 1 - p; it is the negative log-likelihood.")
    return _report(False, f"expected -log(p); you gave {answer!r}.")


def check_long_answer_weight(answer: Any, lengths: list[int]) -> bool:
    """02, exercise 3: under token-mean, the share of the loss's weight that the LAST sequence gets."""
    if _not_attempted(answer, "token-mean gives each token the weight 1 / (total number of tokens); add up the last sequence's tokens."):
        return True
    expected = lengths[-1] / sum(lengths)
    value = _scalar(answer)
    if value is None:
        return _not_a_number(answer)
    if _close(value, expected):
        share = 1 / len(lengths)
        return _report(True, f"{lengths[-1]} / {sum(lengths)} = {expected:.4f}; under seq-mean it would be 1/{len(lengths)} = {share:.4f}.")
    if _close(value, 1 / len(lengths)):
        return _report(False, "that is its share under seq-mean; token-mean weighs sequences by their length.")
    return _report(False, f"expected the last length divided by the total number of tokens; you gave {answer!r}.")



# ---------------------------------------------------------------- 03 SFT is a policy gradient

def _flat_floats(answer: Any) -> list[float] | None:
    """A list, tuple, NumPy array or tensor of numbers as a flat list of floats (None if it is not one)."""
    if hasattr(answer, "detach"):
        answer = answer.detach().cpu()
    if hasattr(answer, "tolist"):
        answer = answer.tolist()
    if isinstance(answer, (int, float)):
        return [float(answer)]
    try:
        return [float(x) for x in answer]
    except (TypeError, ValueError):
        return None


def _number(answer: Any) -> float | None:
    """A single number (Python, NumPy or a one-element tensor) as a float; None if it is not one."""
    values = _flat_floats(answer)
    return values[0] if values is not None and len(values) == 1 and not isinstance(answer, (str, bytes)) else None


def check_reinforce_gradient(answer: Any, probs: list[float], action: int, advantage: float = 1.0) -> bool:
    r"""Gradient of :math:`\hat A \log \mathrm{softmax}(z)_a` with respect to the logits z: :math:`\hat A(\mathbf{e}_a - \pi)`."""
    if _not_attempted(answer, "d log softmax(z)_a / dz_k is 1[k = a] - pi_k; multiply every entry by the advantage."):
        return True
    values = _flat_floats(answer)
    expected = [advantage * ((1.0 if k == action else 0.0) - p) for k, p in enumerate(probs)]
    if values is None or len(values) != len(expected):
        return _report(False, f"give one number per action ({len(expected)} in all), e.g. a list or a tensor.")
    if all(_close(v, e) for v, e in zip(values, expected)):
        return _report(True, "the chosen action's logit goes up by A(1 - p_a), every other logit down by A p_k; the entries sum to 0.")
    if all(_close(v, -e) for v, e in zip(values, expected)):
        return _report(False, "the sign is flipped: that is the gradient of the loss (-A log pi), not of the objective.")
    if all(_close(v, e / advantage) for v, e in zip(values, expected)) and advantage != 1.0:
        return _report(False, f"right shape, but the advantage ({advantage:g}) scales every entry.")
    if _close(sum(values), 0.0) is False:
        return _report(False, "the entries of this gradient always sum to zero (the probabilities sum to one); check each 1[k = a] - pi_k.")
    return _report(False, "compute 1[k = a] - pi_k for every action k, then multiply by the advantage.")


def check_advantage(advantage: Any, direction: Any, q: float, v: float) -> bool:
    """The advantage Q - V of an action and whether a policy-gradient step raises ("up") or lowers ("down") its probability."""
    if _not_attempted(advantage, "the advantage is Q(s, a) - V(s): how much better the action is than the state's average."):
        return True
    expected = q - v
    advantage = _number(advantage)
    if advantage is None:
        return _report(False, "give the advantage as a number.")
    if not _close(advantage, expected):
        if _close(advantage, v - q):
            return _report(False, "the sign is reversed: it is Q minus V, not V minus Q.")
        return _report(False, f"Q(s, a) - V(s) with Q = {q:g} and V = {v:g}.")
    if _not_attempted(direction, 'the advantage is right; now set direction to "up" or "down".'):
        return True
    want = "up" if expected > 0 else "down"
    if str(direction).strip().lower() != want:
        return _report(False, f"Â = {expected:+g}: the step moves log pi(a|s) along the sign of the advantage.")
    verdict = "better" if expected > 0 else "worse"
    return _report(True, f"Â = {expected:+g}, so the action's probability goes {want}: it is {verdict} than expected.")


def check_sft_logit_gradient(answer: Any, p: float) -> bool:
    r"""Derivative of :math:`\log \pi(a^*)` with respect to the demonstration token's own logit when :math:`\pi(a^*) = p`."""
    if _not_attempted(answer, "use the REINFORCE gradient with Â = 1 and only look at the entry of the demonstrated token."):
        return True
    expected = 1.0 - p
    answer = _number(answer)
    if answer is None:
        return _report(False, "give one number.")
    if _close(answer, expected, tol=1e-6):
        return _report(
            True,
            f"1 - p = {expected:.3g} > 0: SFT keeps pushing the token up however likely it already is; only p = 1 stops it.",
        )
    if _close(answer, -p, tol=1e-6) or _close(answer, p - 1.0, tol=1e-6):
        return _report(False, "mind the sign: for the demonstrated token the entry of e_a - pi is positive.")
    if _close(answer, 0.0, tol=1e-6):
        return _report(False, "not quite zero: with a constant advantage of 1 the push only vanishes at p = 1.")
    return _report(False, "the entry of e_a - pi for the demonstrated token a is 1 - pi(a).")


# ---------------------------------------------------------------- 04 PPO's clipped objective

def _clipped_surrogate(r: float, advantage: float, epsilon: float) -> float:
    return min(r * advantage, min(max(r, 1.0 - epsilon), 1.0 + epsilon) * advantage)


def check_clipped_value(answer: Any, r: float, advantage: float, epsilon: float) -> bool:
    r"""Value of :math:`\min(r \hat A, \mathrm{clip}(r, 1-\epsilon, 1+\epsilon)\hat A)`."""
    if _not_attempted(answer, "compute both r·Â and clip(r, 1-ε, 1+ε)·Â, then keep the smaller one."):
        return True
    expected = _clipped_surrogate(r, advantage, epsilon)
    answer = _number(answer)
    if answer is None:
        return _report(False, "give one number.")
    clipped_only = min(max(r, 1.0 - epsilon), 1.0 + epsilon) * advantage
    if _close(answer, expected):
        return _report(True, f"min({r * advantage:.4g}, {clipped_only:.4g}) = {expected:.4g}.")
    if _close(answer, max(r * advantage, clipped_only)):
        return _report(False, "that is the larger of the two terms; the surrogate keeps the smaller (pessimistic) one.")
    if _close(answer, -expected):
        return _report(False, "right size, wrong sign: this is the objective (maximised), not the loss.")
    return _report(False, f"with r = {r:g}, Â = {advantage:g}, ε = {epsilon:g}: r·Â = {r * advantage:.4g}; what is the clipped term?")


def check_gradient_is_zero(answer: Any, r: float, advantage: float, epsilon: float) -> bool:
    """Whether the clipped surrogate's derivative in r is zero at (r, Â, ε) (answer True or False)."""
    if _not_attempted(answer, "the gradient is zero only where the clipped branch is the smaller one; see the plot for this sign of Â."):
        return True
    if type(answer).__name__ not in ("bool", "bool_"):  # Python or NumPy booleans
        return _report(False, "answer True (the gradient is zero) or False (it is not).")
    answer = bool(answer)
    zero = advantage == 0 or (advantage > 0 and r > 1.0 + epsilon) or (advantage < 0 and r < 1.0 - epsilon)
    if answer == zero:
        if zero:
            why = "the ratio is already past the bound the advantage pushes toward, so the flat clipped branch is the minimum."
        elif (advantage > 0 and r < 1.0 - epsilon) or (advantage < 0 and r > 1.0 + epsilon):
            why = "the ratio is outside the interval, but on the side the advantage pushes away from: min() keeps the unclipped term."
        else:
            why = "the ratio is inside the trust region (or on the unclipped side), so the slope is Â."
        return _report(True, why)
    if zero:
        return _report(False, "past the bound on the side Â pushes toward the clipped branch is the minimum, and it does not depend on r.")
    return _report(False, "min() keeps r·Â here, whose slope is Â; clipping only stops the gradient on one side for each sign of Â.")


def check_clip_fraction(answer: Any, ratios: list[float], advantage: float, epsilon: float) -> bool:
    """Share of tokens whose clipped branch is active (zero gradient), for one advantage shared by every token."""
    if _not_attempted(answer, "for each ratio decide whether its gradient is zero (see the previous exercise), then count."):
        return True
    zero = [(advantage > 0 and r > 1.0 + epsilon) or (advantage < 0 and r < 1.0 - epsilon) for r in ratios]
    expected = sum(zero) / len(ratios)
    answer = _number(answer)
    if answer is None:
        return _report(False, "give one number between 0 and 1.")
    if _close(answer, expected):
        return _report(True, f"{sum(zero)} of {len(ratios)} tokens are clipped.")
    outside = sum(r > 1.0 + epsilon or r < 1.0 - epsilon for r in ratios) / len(ratios)
    if _close(answer, outside):
        return _report(False, "that counts every ratio outside [1-ε, 1+ε]; with this sign of Â one side keeps its gradient.")
    if _close(answer, sum(zero)):
        return _report(False, "that is a count; divide by the number of tokens for a fraction.")
    side = "> 0, only ratios above 1+ε" if advantage > 0 else "< 0, only ratios below 1-ε"
    return _report(False, f"with Â {side} are clipped.")


# ---------------------------------------------------------------- 05 proximal SFT

# ---------------------------------------------------------------- 06 entropy collapse

# ---------------------------------------------------------------- 07 RL after SFT / PSFT

# ---------------------------------------------------------------- 08 neighbours and ablations
