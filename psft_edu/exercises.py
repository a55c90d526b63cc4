"""Checkers for the notebooks' exercises.

Each ``check_*`` function prints a short, specific message (what is right, or what to
look at next) and returns ``True`` or ``False``. An exercise left as ``None`` is not an
error: the checker prints that it was not attempted (with a hint) and returns ``None``,
so a notebook always runs top to bottom and an untouched exercise never reads as passed.

Three kinds of exercise:

* recall: a number, a list or a boolean, compared with the value the checker computes;
* implement it: the learner writes a function, and :func:`check_implementation` runs it
  and the package's version on the same random tensors (edge cases included) and names
  the first case where they disagree, and the likely mistake when it recognises one;
* predict, then run: the learner writes a prediction before an experiment runs, and
  :func:`check_prediction` compares it with what the experiment measured.
"""

from __future__ import annotations

import math
from typing import Any


def _report(ok: bool, message: str) -> bool:
    print(("Correct: " if ok else "Not yet: ") + message)
    return ok


def _not_attempted(answer: Any, hint: str) -> bool:
    """True (after printing that the exercise was not attempted, with a hint) when ``answer`` is None."""
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


def check_action_space(answer: Any, tokenizer: Any) -> bool | None:
    """01, exercise 1: how many actions does the policy choose from at every step?"""
    if _not_attempted(answer, "an action is one token; the policy spreads its probability over the whole vocabulary."):
        return None
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


def check_sequence_count(answer: Any, vocab_size: int, length: int) -> bool | None:
    """01, exercise 2: how many different action sequences of ``length`` steps exist?"""
    if _not_attempted(
        answer, "at each of the steps any of the vocab_size actions can be taken, independently of the others."
    ):
        return None
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


def check_completion_logprob(answer: Any, model: Any, tokenizer: Any, prompt: str, completion: str) -> bool | None:
    """01, exercise 3: log pi(completion | prompt), summed over the completion's tokens (no <eos>)."""
    if _not_attempted(
        answer, "add up log pi(y_t | x, y_<t) over the completion's tokens; one forward pass gives every term."
    ):
        return None
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
    return _report(
        False,
        f"expected about {expected:.3f}. Did you sum exactly the completion's {len(c)} tokens (no prompt tokens)?",
    )


# ---------------------------------------------------------------- 02 the SFT loss

def check_seq_mean_loss(answer: Any, logp: Any, mask: Any) -> bool | None:
    """02, exercise 1: the sequence-mean SFT loss of a batch, by hand."""
    if _not_attempted(
        answer, "per sequence: the mean of -logp over its masked tokens; then the mean of those numbers."
    ):
        return None
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


def check_constant_prob_loss(answer: Any, p: float) -> bool | None:
    """02, exercise 2: the SFT loss when the model gives probability ``p`` to every target token."""
    if _not_attempted(answer, "every term of the mean is the same number; what is -log of a probability p?"):
        return None
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


def check_long_answer_weight(answer: Any, lengths: list[int]) -> bool | None:
    """02, exercise 3: under token-mean, the share of the loss's weight that the LAST sequence gets."""
    if _not_attempted(
        answer,
        "token-mean gives each token the weight 1 / (total number of tokens); add up the last sequence's tokens.",
    ):
        return None
    expected = lengths[-1] / sum(lengths)
    value = _scalar(answer)
    if value is None:
        return _not_a_number(answer)
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


def _per_item(answer: Any, count: int, what: str, example: str = "a list of numbers") -> list[float] | None:
    """``answer`` as ``count`` floats, or None after telling the learner to give one ``what`` per item."""
    values = _flat_floats(answer)
    if values is None or len(values) != count:
        _report(False, f"give one {what} ({count} in all), e.g. {example}.")
        return None
    return values


def _number(answer: Any) -> float | None:
    """A single number (Python, NumPy or a one-element tensor) as a float; None if it is not one."""
    values = _flat_floats(answer)
    return values[0] if values is not None and len(values) == 1 and not isinstance(answer, (str, bytes)) else None


def check_reinforce_gradient(answer: Any, probs: list[float], action: int, advantage: float = 1.0) -> bool | None:
    r"""Gradient of :math:`\hat A \log \mathrm{softmax}(z)_a` with respect to the logits z: :math:`\hat A(\mathbf{e}_a
    - \pi)`.
    """
    if _not_attempted(answer, "d log softmax(z)_a / dz_k is 1[k = a] - pi_k; multiply every entry by the advantage."):
        return None
    expected = [advantage * ((1.0 if k == action else 0.0) - p) for k, p in enumerate(probs)]
    values = _per_item(answer, len(expected), "number per action", "a list or a tensor")
    if values is None:
        return False
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


def check_advantage(advantage: Any, direction: Any, q: float, v: float) -> bool | None:
    """The advantage Q - V of an action and whether a policy-gradient step raises ("up") or lowers ("down") its
    probability.
    """
    if _not_attempted(
        advantage, "the advantage is Q(s, a) - V(s): how much better the action is than the state's average."
    ):
        return None
    expected = q - v
    advantage = _number(advantage)
    if advantage is None:
        return _report(False, "give the advantage as a number.")
    if not _close(advantage, expected):
        if _close(advantage, v - q):
            return _report(False, "the sign is reversed: it is Q minus V, not V minus Q.")
        return _report(False, f"Q(s, a) - V(s) with Q = {q:g} and V = {v:g}.")
    if _not_attempted(direction, 'the advantage is right; now set direction to "up" or "down".'):
        return None
    want = "up" if expected > 0 else "down"
    if str(direction).strip().lower() != want:
        return _report(False, f"Â = {expected:+g}: the step moves log pi(a|s) along the sign of the advantage.")
    verdict = "better" if expected > 0 else "worse"
    return _report(True, f"Â = {expected:+g}, so the action's probability goes {want}: it is {verdict} than expected.")


def check_sft_logit_gradient(answer: Any, p: float) -> bool | None:
    r"""Derivative of :math:`\log \pi(a^*)` with respect to the demonstration token's own logit when :math:`\pi(a^*) =
    p`.
    """
    if _not_attempted(
        answer, "use the REINFORCE gradient with Â = 1 and only look at the entry of the demonstrated token."
    ):
        return None
    expected = 1.0 - p
    answer = _number(answer)
    if answer is None:
        return _report(False, "give one number.")
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


# ---------------------------------------------------------------- 04 PPO's clipped objective

def _clipped_surrogate(r: float, advantage: float, epsilon: float) -> float:
    return min(r * advantage, min(max(r, 1.0 - epsilon), 1.0 + epsilon) * advantage)


def check_clipped_value(answer: Any, r: float, advantage: float, epsilon: float) -> bool | None:
    r"""Value of :math:`\min(r \hat A, \mathrm{clip}(r, 1-\epsilon, 1+\epsilon)\hat A)`."""
    if _not_attempted(answer, "compute both r·Â and clip(r, 1-ε, 1+ε)·Â, then keep the smaller one."):
        return None
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
    return _report(
        False,
        f"with r = {r:g}, Â = {advantage:g}, ε = {epsilon:g}: r·Â = {r * advantage:.4g}; what is the clipped term?",
    )


def check_gradient_is_zero(answer: Any, r: float, advantage: float, epsilon: float) -> bool | None:
    """Whether the clipped surrogate's derivative in r is zero at (r, Â, ε) (answer True or False)."""
    if _not_attempted(
        answer,
        "the gradient is zero only where the clipped branch is the smaller one; see the plot for this sign of Â.",
    ):
        return None
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


def check_clip_fraction(answer: Any, ratios: list[float], advantage: float, epsilon: float) -> bool | None:
    """Share of tokens whose clipped branch is active (zero gradient), for one advantage shared by every token."""
    if _not_attempted(
        answer, "for each ratio decide whether its gradient is zero (see the previous exercise), then count."
    ):
        return None
    zero = [(advantage > 0 and r > 1.0 + epsilon) or (advantage < 0 and r < 1.0 - epsilon) for r in ratios]
    expected = sum(zero) / len(ratios)
    answer = _number(answer)
    if answer is None:
        return _report(False, "give one number between 0 and 1.")
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

def check_psft_weights(answer: Any, ratios: list[float], epsilon: float) -> bool | None:
    r"""05, exercise 1: PSFT's gradient weight :math:`r \cdot \mathbf{1}\{r \le 1+\epsilon\}` for each ratio (Â = 1)."""
    if _not_attempted(
        answer, "below 1+ε the objective is r itself, and d r / dθ = r ∇log π; above 1+ε it is a constant."
    ):
        return None
    import torch

    from .objectives import psft_gradient_weight

    values = _per_item(answer, len(ratios), "weight per ratio")
    if values is None:
        return False
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


def check_psft_is_sft(answer: Any, global_batch: int, mini_batch: int) -> bool | None:
    """05, exercise 2: with these batch sizes, is every PSFT update exactly an SFT update? (True or False)"""
    if _not_attempted(answer, "count the optimiser steps taken per frozen old policy: K = global_batch / mini_batch."):
        return None
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


def check_refresh_count(answer: Any, global_batch: int, mini_batch: int, max_steps: int) -> bool | None:
    """05, exercise 3: how many times the trainer freezes the old policy in a run of ``max_steps`` optimiser steps."""
    if _not_attempted(
        answer, "the old policy is frozen at the start of every global batch, and a global batch gives K steps."
    ):
        return None
    value = _number(answer)
    if value is None:
        return _report(False, "give one whole number.")
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


# ---------------------------------------------------------------- 06 entropy collapse

def _run_names(summary: dict) -> str:
    return ", ".join(repr(n) for n in summary["runs"])


def check_best_ood_run(answer: Any, summary: dict) -> bool | None:
    """06, exercise 1: the name of the fine-tuned run with the highest final out-of-domain accuracy (mean over
    seeds).
    """
    hint = 'look at summary["runs"][name]["final"]["ood_accuracy"]["mean"] for every run name; max(..., key=...) helps.'
    if _not_attempted(answer, hint):
        return None
    ood = {name: run["final"]["ood_accuracy"]["mean"] for name, run in summary["runs"].items()}
    best = max(ood, key=ood.get)
    if answer == "base":
        return _report(
            False, "the base is where every run starts, not a fine-tuned run; which of the runs forgot least?"
        )
    if answer not in ood:
        return _report(False, f"give one of the run names as a string: {_run_names(summary)}.")
    if answer == best:
        base = summary["base"]["final"]["ood_accuracy"]["mean"]
        return _report(True, f"{best} ends at {100 * ood[best]:.1f}% out of domain (the base: {100 * base:.1f}%).")
    return _report(
        False,
        f"{answer} ends at {100 * ood[answer]:.1f}% out of domain; another run keeps more (compare the final means).",
    )


def entropy_drop_percent(summary: dict, run: str) -> float:
    """How far the per-step demonstration entropy (mean over seeds) falls from its highest value to its last, in % of
    the highest.
    """
    mean = summary["runs"][run]["curves"]["entropy"]["mean"]
    peak = max(mean)
    return 100.0 * (peak - mean[-1]) / peak


def check_entropy_drop(answer: Any, summary: dict, run: str) -> bool | None:
    """06, exercise 2: the entropy drop of ``run`` from the peak of its per-step entropy curve to its end, in percent
    of the peak.
    """
    if _not_attempted(
        answer, 'take curve = summary["runs"][run]["curves"]["entropy"]["mean"]; compare max(curve) with curve[-1].'
    ):
        return None
    value = _number(answer)
    if value is None:
        return _report(False, "give one number, in percent (e.g. 25.0 for a quarter).")
    mean = summary["runs"][run]["curves"]["entropy"]["mean"]
    peak, last, first = max(mean), mean[-1], mean[0]
    expected = entropy_drop_percent(summary, run)
    if abs(value - expected) <= 0.5:
        rise = f"climbs from {first:.3f} to {peak:.3f} nats, then falls"
        path = rise if peak > first else f"starts at its peak, {peak:.3f} nats, and falls"
        return _report(True, f"the entropy {path} to {last:.3f}: {expected:.1f}% below its peak.")
    if abs(100 * value - expected) <= 0.5:
        return _report(False, "that is a fraction; multiply by 100 for percent.")
    if abs(value + expected) <= 0.5:
        return _report(False, "right size, wrong sign: report the drop as a positive number.")
    if abs(value - 100.0 * (peak - last) / last) <= 0.5:
        return _report(False, "divide by the peak, not by the last value.")
    if abs(value - 100.0 * (first - last) / first) <= 0.5 or abs(value - 100.0 * (last - first) / first) <= 0.5:
        return _report(
            False, "that compares the last value with the first one; measure from the highest value of the curve."
        )
    return _report(False, f"expected 100 * (peak - last) / peak; you gave {answer!r}.")


def pareto_dominators(point: tuple[float, float], summary: dict) -> list[str]:
    """The base and runs of ``summary`` whose final (in-domain, out-of-domain) accuracy means dominate ``point``.

    A dominates B when A is at least as good on both and strictly better on one. Accuracies are fractions.
    """
    entries = {"base": summary["base"]["final"], **{n: r["final"] for n, r in summary["runs"].items()}}
    x, y = point
    out = []
    for name, final in entries.items():
        a, b = final["in_domain_accuracy"]["mean"], final["ood_accuracy"]["mean"]
        if a >= x and b >= y and (a > x or b > y):
            out.append(name)
    return out


def check_pareto_dominated(answer: Any, point: Any, summary: dict) -> bool | None:
    """06, exercise 3: is ``point`` = (in-domain, out-of-domain) accuracy dominated by the base or one of the runs?
    (True or False)
    """
    if _not_attempted(
        answer, "a point is dominated when another one is at least as good on both axes and strictly better on one."
    ):
        return None
    if type(answer).__name__ not in ("bool", "bool_"):
        return _report(False, "answer True (dominated) or False (on the front).")
    x, y = (float(v) for v in point)
    dominators = pareto_dominators((x, y), summary)
    where = f"({100 * x:.1f}% in domain, {100 * y:.1f}% out of domain)"
    if bool(answer) == bool(dominators):
        if dominators:
            return _report(
                True, f"{where} is dominated by {', '.join(dominators)}: no reason to pick it on these two axes."
            )
        return _report(True, f"nothing is at least as good on both axes as {where}: it sits on the front.")
    if dominators:
        return _report(
            False,
            f"look again at {dominators[0]} in the left Pareto panel: compare both of its coordinates with {where}.",
        )
    return _report(
        False, f"nothing beats {where} on both axes at once: whatever is better on one axis is worse on the other."
    )


# ---------------------------------------------------------------- 07 RL after SFT / PSFT

def _group_stats(rewards: list[float]) -> tuple[float, float]:
    mean = sum(rewards) / len(rewards)
    return mean, math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))


def check_group_advantages(answer: Any, rewards: list[float]) -> bool | None:
    r"""07, exercise 1: GRPO's advantages :math:`(r_i - \mu) / \sigma` for one group's rewards (population σ)."""
    if _not_attempted(
        answer,
        "subtract the group's mean reward from each reward, then divide by the group's standard deviation (over G).",
    ):
        return None
    values = _per_item(answer, len(rewards), "advantage per sample", "a list or a tensor")
    if values is None:
        return False
    mean, std = _group_stats(rewards)
    if std == 0:
        expected = [0.0] * len(rewards)
    else:
        expected = [(r - mean) / std for r in rewards]
    if all(_close(v, e, 1e-3) for v, e in zip(values, expected)):
        if std == 0:
            return _report(True, "every reward is equal, so every advantage is 0: this group teaches nothing.")
        return _report(
            True, f"mean {mean:.4g}, σ {std:.4g}; the advantages sum to zero: winners go up as much as losers go down."
        )
    if all(_close(v, r - mean, 1e-3) for v, r in zip(values, rewards)):
        return _report(False, "centred but not scaled: divide by the group's standard deviation too.")
    n = len(rewards)
    if n > 1 and std > 0:
        unbiased = std * math.sqrt(n / (n - 1))
        if all(_close(v, (r - mean) / unbiased, 1e-3) for v, r in zip(values, rewards)):
            return _report(False, "you used the sample standard deviation (divide by G-1); GRPO here divides by G.")
    if all(_close(v, -e, 1e-3) for v, e in zip(values, expected)):
        return _report(
            False, "the signs are flipped: a correct sample (reward above the mean) gets a positive advantage."
        )
    return _report(
        False, f"the group's mean reward is {mean:.4g}; check the standard deviation and each (r - mean) / σ."
    )


def check_zero_signal_fraction(answer: Any, p: float, group_size: int) -> bool | None:
    r"""07, exercise 2: expected share of groups with equal rewards, :math:`p^G + (1-p)^G`, for pass rate p and group
    size G.
    """
    if _not_attempted(
        answer, "a group gives no signal when all G samples are right or all G are wrong; the samples are independent."
    ):
        return None
    value = _number(answer)
    if value is None:
        return _report(False, "give one number between 0 and 1.")
    expected = p**group_size + (1 - p) ** group_size
    if _close(value, expected):
        return _report(
            True,
            f"{p:g}^{group_size} + {1 - p:g}^{group_size} = {expected:.4g}: that share of the batch is wasted on "
            "average.",
        )
    if _close(value, (1 - p) ** group_size):
        return _report(False, "that counts the all-wrong groups; all-right groups have equal rewards too.")
    if _close(value, p**group_size):
        return _report(
            False,
            "that counts the all-right groups; all-wrong groups have equal rewards too (and are far more common here).",
        )
    if _close(value, 1 - expected):
        return _report(False, "that is the share of groups that DO carry a signal; the question asks for the others.")
    return _report(
        False,
        f"with p = {p:g} and G = {group_size}: the chance that all G are wrong is (1-p)^G; add the all-right case.",
    )


def check_group_size_needed(answer: Any, p: float, max_zero_fraction: float) -> bool | None:
    """07, exercise 3: the smallest group size G >= 2 with p^G + (1-p)^G <= ``max_zero_fraction``."""
    if _not_attempted(answer, "try G = 2, 3, 4, ... and compute p^G + (1-p)^G until it drops to the target."):
        return None
    value = _number(answer)
    if value is None or value != int(value):
        return _report(False, "give a whole number of samples per prompt.")
    g = 2
    while p**g + (1 - p) ** g > max_zero_fraction:
        g += 1
        if g > 100_000:
            return _report(False, "no reasonable group size reaches that target.")
    value = int(value)
    if value == g:
        return _report(
            True,
            f"G = {g} gives {p**g + (1 - p) ** g:.3f}; G = {g - 1} would give {p ** (g - 1) + (1 - p) ** (g - 1):.3f}.",
        )
    if value == g - 1:
        return _report(
            False, f"G = {value} gives {p**value + (1 - p) ** value:.3f}, still above {max_zero_fraction:g}; one more."
        )
    if value > g:
        return _report(False, f"G = {value} works, but a smaller group already does (each extra sample costs compute).")
    return _report(
        False,
        f"G = {value} gives {p**value + (1 - p) ** value:.3f}, above {max_zero_fraction:g}: a larger group is needed.",
    )


# ---------------------------------------------------------------- 08 neighbours and ablations

def check_dft_weights(answer: Any, probs: list[float]) -> bool | None:
    r"""08, exercise 1: DFT's gradient weight relative to SFT's, :math:`\mathrm{sg}(\pi_\theta(a_t))`, for each token
    probability.
    """
    if _not_attempted(
        answer, "DFT multiplies each token's log-likelihood by its own probability, held constant (stop-gradient)."
    ):
        return None
    values = _per_item(answer, len(probs), "weight per token")
    if values is None:
        return False
    if all(_close(v, p) for v, p in zip(values, probs)):
        low = min(probs)
        message = (
            f"the least likely token (p = {low:g}) gets {low:g} of SFT's push: DFT hardly teaches what the model "
            "finds unlikely."
        )
        return _report(True, message)
    if all(_close(v, 1.0) for v in values):
        return _report(False, "weight 1 everywhere is SFT's; DFT scales each token by its probability.")
    if all(_close(v, 1.0 / p) for v, p in zip(values, probs) if p > 0):
        return _report(
            False, "that is the inverse; DFT multiplies by p (the opposite of the 1/p that log's derivative brings)."
        )
    if all(_close(v, -math.log(p)) for v, p in zip(values, probs) if p > 0):
        return _report(False, "-log p is each token's SFT loss, not DFT's gradient weight.")
    if all(_close(v, p * (1 - math.log(p))) for v, p in zip(values, probs) if p > 0):
        return _report(False, "without the stop-gradient the product rule adds a term; DFT treats p as a constant.")
    return _report(False, "with the stop-gradient, d(-sg(p)·log p) = sg(p)·d(-log p): the weight is p itself.")


def check_k3_kl(answer: Any, logp: float, ref_logp: float) -> bool | None:
    r"""08, exercise 2: the per-token KL estimate :math:`e^{\delta} - 1 - \delta` with :math:`\delta =
    \log\pi_\mathrm{ref} - \log\pi`.
    """
    if _not_attempted(answer, "compute δ = ref_logp - logp first; the estimate is exp(δ) - 1 - δ (never negative)."):
        return None
    value = _number(answer)
    if value is None:
        return _report(False, "give one number.")
    delta = ref_logp - logp
    expected = math.exp(delta) - 1.0 - delta
    if _close(value, expected):
        return _report(
            True, f"δ = {delta:.4g}, so exp(δ) - 1 - δ = {expected:.4g} nats; SFT-KL adds β times this to the loss."
        )
    flipped = math.exp(-delta) - 1.0 + delta
    if _close(value, flipped):
        return _report(False, "δ has the wrong sign: it is log π_ref - log π_θ (the reference's minus the model's).")
    if _close(value, -delta) or _close(value, delta):
        return _report(False, "±δ alone is the plain log-ratio estimator, which can be negative; k3 is exp(δ) - 1 - δ.")
    return _report(False, f"with logp = {logp:g} and ref_logp = {ref_logp:g}, δ = {delta:.4g}; now exp(δ) - 1 - δ.")


def check_pareto_front(answer: Any, summary: dict, x: str = "in-domain acc (%)", y: str = "OOD acc (%)") -> bool | None:
    """08, exercise 3: the names (base included) on the Pareto front of a sweep for the metrics ``x`` and ``y``."""
    from .sweep import METRICS, final_value, pareto_front

    if _not_attempted(
        answer,
        "keep every entry that no other entry beats on both axes at once (at least as good on both, better on one).",
    ):
        return None
    entries = {"base": summary["base"], **summary["runs"]}
    if not isinstance(answer, (list, tuple, set)) or not all(isinstance(a, str) for a in answer):
        return _report(False, "give a list of names, e.g. ['base', 'dft'].")
    unknown = [a for a in answer if a not in entries]
    if unknown:
        return _report(False, f"{unknown[0]!r} is not in this sweep; the names are: base, {_run_names(summary)}.")
    points = {n: (final_value(r, x), final_value(r, y)) for n, r in entries.items()}
    front = pareto_front(points, (METRICS[x][3], METRICS[y][3]))
    if set(answer) == set(front):
        return _report(
            True, f"the front is {', '.join(front)}; every other entry is beaten on both {x} and {y} by one of them."
        )
    missing = [n for n in front if n not in answer]
    extra = [n for n in answer if n not in front]
    if extra:
        name = extra[0]
        sign = [1.0 if METRICS[x][3] else -1.0, 1.0 if METRICS[y][3] else -1.0]
        a = (sign[0] * points[name][0], sign[1] * points[name][1])
        beaten_by = next(n for n in front if sign[0] * points[n][0] >= a[0] and sign[1] * points[n][1] >= a[1])
        return _report(
            False,
            f"{name} ({points[name][0]:.1f}, {points[name][1]:.1f}) is beaten on both axes by {beaten_by} "
            f"({points[beaten_by][0]:.1f}, {points[beaten_by][1]:.1f}).",
        )
    name = missing[0]
    return _report(
        False,
        f"{name} ({points[name][0]:.1f}, {points[name][1]:.1f}) is missing: nothing is at least as good on both axes.",
    )


# ================================================================ implement it: checkers for 01-05 and 09
#
# Each takes the learner's function (None: not attempted) and compares it with the package's function
# on random tensors plus edge cases, through check_implementation (in the generic section at the end).


def _gen(seed: int) -> Any:
    import torch

    return torch.Generator().manual_seed(seed)


def _logp_cases(with_old: bool = False, with_adv: bool = False) -> list[tuple[str, dict]]:
    """Random [batch, time] log-probs and masks; the masked positions hold junk (-inf, NaN) like padding may."""
    import torch

    cases = []
    for seed, shape in ((0, (3, 5)), (1, (4, 7)), (2, (1, 6))):
        g = _gen(seed)
        logp = -torch.rand(shape, generator=g) * 3
        mask = (torch.rand(shape, generator=g) > 0.3).float()
        mask[:, 0] = 1.0
        case = {"logp": logp, "mask": mask}
        if with_old:
            case["old_logp"] = logp - 0.5 * torch.randn(shape, generator=g)
        if with_adv:
            case["advantages"] = torch.randn(shape, generator=g)
        cases.append((f"random {shape[0]}x{shape[1]} batch", case))
    g = _gen(3)
    logp = -torch.rand(2, 6, generator=g) * 2
    mask = torch.tensor([[1.0, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    junk = logp.clone()
    junk[0, 3:] = float("-inf")  # what a padded position can hold
    case = {"logp": junk, "mask": mask}
    if with_old:
        case["old_logp"] = logp - 0.3
    if with_adv:
        case["advantages"] = torch.ones_like(logp)
    cases.append(("a padded batch whose masked positions hold -inf", case))
    return cases


def check_token_logprobs_impl(user_fn: Any) -> bool | None:
    """01, implement it: ``token_logprobs(logits [B, T, V], targets [B, T]) -> [B, T]``, log pi of each target."""
    import torch

    from .objectives import token_logprobs

    def cases() -> list[tuple[str, dict]]:
        out = []
        for seed, (b, t, v) in ((0, (2, 4, 6)), (1, (3, 5, 11))):
            g = _gen(seed)
            out.append((f"random logits {b}x{t}x{v}", {
                "logits": torch.randn(b, t, v, generator=g) * 2, "targets": torch.randint(0, v, (b, t), generator=g)}))
        g = _gen(2)
        out.append(("large logits (around ±100)", {
            "logits": torch.randn(2, 3, 5, generator=g) * 100, "targets": torch.randint(0, 5, (2, 3), generator=g)}))
        return out

    mistakes = [
        ("that is the probability, not its logarithm", lambda logits, targets: token_logprobs(logits, targets).exp()),
        (
            "those are the raw logits of the targets: normalise with log_softmax first",
            lambda logits, targets: logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1),
        ),
        (
            "the sign is flipped: a log-probability is never positive",
            lambda logits, targets: -token_logprobs(logits, targets),
        ),
    ]
    hint = "log_softmax over the last (vocabulary) dimension, then pick each target's entry with gather."
    return check_implementation(user_fn, token_logprobs, cases, "token_logprobs", mistakes=mistakes, hint=hint,
                                nonfinite_hint="log(softmax(...)) underflows for large logits; use log_softmax.")


def check_sft_loss_impl(user_fn: Any) -> bool | None:
    """02, implement it: ``sft_loss(logp, mask, agg)`` for agg "token-mean" and "seq-mean"."""
    import torch

    from .objectives import sft_loss

    def cases() -> list[tuple[str, dict]]:
        out = []
        for agg in ("token-mean", "seq-mean"):
            out += [(f"{label}, agg={agg!r}", {**case, "agg": agg}) for label, case in _logp_cases()]
        g = _gen(4)
        logp = -torch.rand(3, 4, generator=g)
        mask = torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
        out.append(
            (
                "seq-mean with a fully masked row (a prompt-only sequence)",
                {"logp": logp, "mask": mask, "agg": "seq-mean"},
            )
        )
        return out

    def no_mask(logp, mask, agg):
        return -logp.mean()

    def token_always(logp, mask, agg):
        return sft_loss(logp, mask, "token-mean")

    def seq_mean_all_rows(logp, mask, agg):
        if agg == "token-mean":
            return sft_loss(logp, mask, agg)
        per_row = (torch.where(mask > 0, -logp, torch.zeros_like(logp))).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_row.mean()

    mistakes = [
        (
            "the sign is flipped: the loss is MINUS the mean log-probability",
            lambda logp, mask, agg: -sft_loss(logp, mask, agg),
        ),
        ("the mask is ignored: padding and prompt positions must not count", no_mask),
        ("seq-mean gives the token-mean: average within each sequence first, then over sequences", token_always),
        ("seq-mean divides by every row, also the rows without a completion token; skip those", seq_mean_all_rows),
    ]
    hint = (
        "token-mean: sum of -logp * mask / mask.sum(); seq-mean: the same per row, then the mean over rows with tokens."
    )
    return check_implementation(
        user_fn,
        sft_loss,
        cases,
        "sft_loss",
        mistakes=mistakes,
        hint=hint,
        nonfinite_hint="masked positions may hold -inf; select with torch.where before multiplying.",
    )


def check_pg_loss_impl(user_fn: Any) -> bool | None:
    """03, implement it: ``pg_loss(logp, advantages, mask)``, the token-mean REINFORCE loss -E[A log pi]."""
    import torch

    from .objectives import policy_gradient_loss

    def reference(logp, advantages, mask):
        return policy_gradient_loss(logp, advantages, mask)

    mistakes = [
        ("the sign is flipped: this is the objective E[A log pi]; the loss is its negative",
         lambda logp, advantages, mask: -policy_gradient_loss(logp, advantages, mask)),
        ("the advantages are missing: that is the SFT loss", lambda logp, advantages, mask: policy_gradient_loss(
            logp, torch.ones_like(logp), mask)),
        ("the mask is ignored", lambda logp, advantages, mask: -(advantages * logp).mean()),
        ("that weights probabilities, not log-probabilities", lambda logp, advantages, mask: policy_gradient_loss(
            logp.exp(), advantages, mask)),
    ]
    hint = "-(advantages * logp) averaged over the positions where mask is 1 (token-mean)."
    return check_implementation(user_fn, reference, lambda: _logp_cases(with_adv=True), "pg_loss", mistakes=mistakes,
                                hint=hint, nonfinite_hint="masked positions may hold -inf; select with torch.where.")


def _ratio_edge_case(clip_low: float, clip_high: float, advantages: list[float]) -> dict:
    """Ratios exactly at 1 - clip_low, 1, 1 + clip_high and beyond, one row per advantage."""
    import torch

    ratios = torch.tensor([0.5, 1.0 - clip_low, 0.9, 1.0, 1.1, 1.0 + clip_high, 2.0], dtype=torch.float64)
    rows = len(advantages)
    old = torch.full((rows, ratios.numel()), -1.5, dtype=torch.float64)
    return {"logp": old + ratios.log(), "old_logp": old, "mask": torch.ones_like(old),
            "advantages": torch.tensor(advantages, dtype=torch.float64)[:, None].expand_as(old).clone()}


def check_ppo_clip_impl(user_fn: Any) -> bool | None:
    """04, implement it: ``ppo_clip(logp, old_logp, advantages, mask, clip_low, clip_high)``, the loss -L^CLIP."""
    import torch

    from .objectives import PPO_CLIP, PSFT_CLIP, ppo_clip_loss

    def reference(logp, old_logp, advantages, mask, clip_low, clip_high):
        return ppo_clip_loss(logp, old_logp, advantages, mask, clip_low, clip_high)[0]

    def cases() -> list[tuple[str, dict]]:
        out = [(f"{label}, clip 0.2/0.28", {**c, "clip_low": PPO_CLIP, "clip_high": PSFT_CLIP})
               for label, c in _logp_cases(with_old=True, with_adv=True)]
        for adv in (1.0, -1.0):
            out.append((f"ratios exactly at 1-ε, 1, 1+ε and beyond, Â = {adv:+g}",
                        {**_ratio_edge_case(0.2, 0.2, [adv]), "clip_low": 0.2, "clip_high": 0.2}))
        out.append(("ratios at both bounds, Â = ±2, clip_low 0.1, clip_high 0.3",
                    {**_ratio_edge_case(0.1, 0.3, [2.0, -2.0]), "clip_low": 0.1, "clip_high": 0.3}))
        return out

    def ratio_of(logp, old_logp):
        return torch.exp(logp - old_logp)

    def masked(x, mask):
        return torch.where(mask > 0, x, torch.zeros_like(x)).sum() / mask.sum()

    def optimistic(logp, old_logp, advantages, mask, clip_low, clip_high):
        r = ratio_of(logp, old_logp)
        return -masked(torch.maximum(r * advantages, r.clamp(1 - clip_low, 1 + clip_high) * advantages), mask)

    def clip_only(logp, old_logp, advantages, mask, clip_low, clip_high):
        return -masked(ratio_of(logp, old_logp).clamp(1 - clip_low, 1 + clip_high) * advantages, mask)

    def swapped(logp, old_logp, advantages, mask, clip_low, clip_high):
        return reference(logp, old_logp, advantages, mask, clip_high, clip_low)

    mistakes = [
        ("max() instead of min(): the surrogate must keep the SMALLER (pessimistic) term", optimistic),
        ("the clipped term alone: without min(r·Â, ...) the gradient also vanishes on the side that should undo a step",
         clip_only),
        ("clip_low and clip_high are swapped: the lower bound is 1 - clip_low, the upper 1 + clip_high", swapped),
        ("the sign is flipped: return the loss, minus the objective",
         lambda *a: -reference(*a)),
        ("the mask is ignored", lambda logp, old_logp, advantages, mask, clip_low, clip_high: reference(
            logp, old_logp, advantages, torch.ones_like(mask), clip_low, clip_high)),
    ]
    hint = "r = exp(logp - old_logp); loss = -masked mean of min(r * A, clamp(r, 1 - clip_low, 1 + clip_high) * A)."
    return check_implementation(user_fn, reference, cases, "ppo_clip", mistakes=mistakes, hint=hint,
                                nonfinite_hint="masked positions may hold -inf; select with torch.where.")


def check_psft_loss_impl(user_fn: Any) -> bool | None:
    """05, implement it: ``psft(logp, old_logp, mask, clip)``, the loss -E[min(r, clip(r, 1-ε, 1+ε))]."""
    import torch

    from .objectives import PSFT_CLIP, psft_loss, sft_loss

    def reference(logp, old_logp, mask, clip):
        return psft_loss(logp, old_logp, mask, clip)[0]

    def cases() -> list[tuple[str, dict]]:
        out = [(label, {"logp": c["logp"], "old_logp": c["old_logp"], "mask": c["mask"], "clip": PSFT_CLIP})
               for label, c in _logp_cases(with_old=True)]
        edge = _ratio_edge_case(PSFT_CLIP, PSFT_CLIP, [1.0])
        out.append(("ratios exactly at 1-ε, 1 and 1+ε, and beyond both", {
            "logp": edge["logp"], "old_logp": edge["old_logp"], "mask": edge["mask"], "clip": PSFT_CLIP}))
        return out

    def masked(x, mask):
        return torch.where(mask > 0, x, torch.zeros_like(x)).sum() / mask.sum()

    mistakes = [
        (
            "clamp(r, 1-ε, 1+ε) alone also clips from below: with Â = 1 the objective is min(r, 1+ε); below 1-ε it is "
            "r",
            lambda logp, old_logp, mask, clip: -masked(torch.exp(logp - old_logp).clamp(1 - clip, 1 + clip), mask),
        ),
        (
            "that is the SFT loss: PSFT works with the ratio r = exp(logp - old_logp)",
            lambda logp, old_logp, mask, clip: sft_loss(logp, mask),
        ),
        ("the sign is flipped: the loss is minus the clipped objective", lambda *a: -reference(*a)),
        (
            "the mask is ignored",
            lambda logp, old_logp, mask, clip: reference(logp, old_logp, torch.ones_like(mask), clip),
        ),
    ]
    hint = "r = exp(logp - old_logp); loss = -masked mean of min(r, clamp(r, 1 - clip, 1 + clip))."
    return check_implementation(user_fn, reference, cases, "psft", mistakes=mistakes, hint=hint,
                                nonfinite_hint="masked positions may hold -inf; select with torch.where.")


def check_ratio_stats_impl(user_fn: Any) -> bool | None:
    """09, implement it: ``ratio_stats(logp, old_logp, mask, clip) -> (clip_fraction, ratio_mean, ratio_max)``.

    The numbers ``PSFTTrainer`` logs: over the unmasked tokens, the share with r > 1 + clip (zero gradient),
    the mean ratio and the largest ratio.
    """
    import torch

    from .objectives import PSFT_CLIP, psft_loss

    def reference(logp, old_logp, mask, clip):
        stats = psft_loss(logp, old_logp, mask, clip)[1]
        return torch.stack([stats["clip_fraction"], stats["ratio_mean"], stats["ratio_max"]]).double()

    def cases() -> list[tuple[str, dict]]:
        out = [(label, {"logp": c["logp"], "old_logp": c["old_logp"], "mask": c["mask"], "clip": PSFT_CLIP})
               for label, c in _logp_cases(with_old=True)[:3]]
        g = _gen(5)
        logp = -torch.rand(2, 6, generator=g)
        old = logp - torch.tensor([[0.0, 0.9, 0.1, 0.0, 1.5, 0.2], [0.3, 0.0, 0.0, 0.0, 0.0, 0.0]])
        out.append(
            (
                "padding with huge ratios on masked positions",
                {
                    "logp": logp,
                    "old_logp": old,
                    "mask": torch.tensor([[1.0, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]]),
                    "clip": PSFT_CLIP,
                },
            )
        )
        ratios = torch.tensor([[0.5, 1.0, 1.25, 1.25, 2.0, 0.9]])  # 1.25 = 1 + clip survives exp(log(.)) exactly
        old = torch.full_like(ratios, -1.5)
        out.append(("ratios exactly at 1+ε (clip 0.25)", {"logp": old + ratios.log(), "old_logp": old,
                                                          "mask": torch.ones_like(ratios), "clip": 0.25}))
        return out

    def unmasked(logp, old_logp, mask, clip):
        return reference(logp, old_logp, torch.ones_like(mask), clip)

    def two_sided(logp, old_logp, mask, clip):
        r = torch.exp(logp - old_logp)[mask > 0]
        return torch.stack([((r > 1 + clip) | (r < 1 - clip)).float().mean(), r.mean(), r.max()]).double()

    def inclusive(logp, old_logp, mask, clip):
        r = torch.exp(logp - old_logp)[mask > 0]
        return torch.stack([(r >= 1 + clip).float().mean(), r.mean(), r.max()]).double()

    mistakes = [
        ("masked positions were counted: statistics run over completion tokens only", unmasked),
        ("ratios below 1-ε were counted as clipped: with Â = 1 only r > 1+ε loses its gradient", two_sided),
        ("r = 1+ε exactly is not clipped yet (both terms are equal, the gradient still flows): use >", inclusive),
    ]
    hint = "r = exp(logp - old_logp)[mask > 0]; return ((r > 1 + clip).float().mean(), r.mean(), r.max())."
    return check_implementation(user_fn, reference, cases, "ratio_stats", mistakes=mistakes, hint=hint)


# ================================================================ generic machinery (01-05, 09; reusable in 06-08)
#
# Notebook-specific checkers for 06-08 belong next to these: build them on check_implementation and
# check_prediction so that every exercise behaves the same (None: "not attempted", returns None).


def _as_tensor(value: Any) -> Any:
    import torch

    if isinstance(value, (tuple, list)):
        parts = [_as_tensor(v) for v in value]
        if all(isinstance(p, torch.Tensor) for p in parts):
            return torch.stack([p.reshape(()) if p.numel() == 1 else p for p in parts]) if all(
                p.numel() == 1 for p in parts) else parts
        return parts
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.as_tensor(value)


def _same(a: Any, b: Any, atol: float, rtol: float) -> bool:
    import torch

    a, b = _as_tensor(a), _as_tensor(b)
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
            _same(x, y, atol, rtol) for x, y in zip(a, b))
    if a.shape != b.shape and not (a.numel() == b.numel() == 1):
        return False
    a, b = a.double().reshape(b.shape), b.double()
    return bool(torch.allclose(a, b, atol=atol, rtol=rtol, equal_nan=False))


def _short(value: Any) -> str:
    try:
        t = _as_tensor(value)
        if isinstance(t, list):
            return "[" + ", ".join(_short(v) for v in t) + "]"
        if t.numel() == 1:
            return f"{t.item():.5g}"
        return f"a tensor of shape {tuple(t.shape)}"
    except (TypeError, ValueError, RuntimeError):
        return repr(value)[:60]


def check_implementation(
    user_fn: Any,
    reference_fn: Any,
    make_inputs: Any,
    name: str,
    mistakes: list[tuple[str, Any]] | None = None,
    hint: str = "",
    nonfinite_hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> bool | None:
    """Compare a learner's function with the package's on the same inputs; name the first mismatch.

    ``make_inputs()`` returns a list of ``(description, kwargs)`` cases (random tensors first, edge cases
    after). Each case's tensors are cloned before each call, so an in-place change cannot leak. On the
    first case where ``user_fn(**kwargs)`` differs from ``reference_fn(**kwargs)`` (shape, value within
    ``atol``/``rtol``, non-finite output, or an exception), the checker says which case it was, and if the
    output matches one of ``mistakes`` (``(message, wrong_fn)`` pairs) it prints that message.
    Returns None when ``user_fn`` is None (not attempted), True when every case agrees, else False.
    """
    import torch

    if _not_attempted(user_fn, hint or f"write the function {name} and pass it (the function itself, not a call)."):
        return None
    if not callable(user_fn):
        return _report(False, f"pass a function: {name} itself (no parentheses), not {user_fn!r}.")

    def clone(kwargs: dict) -> dict:
        return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}

    cases = list(make_inputs())
    for description, kwargs in cases:
        expected = reference_fn(**clone(kwargs))
        try:
            got = user_fn(**clone(kwargs))
        except Exception as error:  # the learner's code: report whatever it raised
            return _report(False, f"{name} raised {type(error).__name__}: {error} (case: {description}).")
        if got is None and expected is not None:  # the template's body is still `return None`
            _not_attempted(None, hint or f"fill in the body of {name} so that it returns its result.")
            return None
        try:
            got_t = _as_tensor(got)
        except (TypeError, ValueError, RuntimeError):
            return _report(
                False, f"{name} should return a number or a tensor; got {type(got).__name__} (case: {description})."
            )
        if isinstance(got_t, torch.Tensor) and got_t.is_floating_point() and not torch.isfinite(got_t).all():
            finite_expected = (
                torch.isfinite(_as_tensor(expected)).all() if isinstance(_as_tensor(expected), torch.Tensor) else True
            )
            if finite_expected:
                return _report(False, f"{name} returns inf or NaN on {description}. {nonfinite_hint}".rstrip())
        if _same(got, expected, atol, rtol):
            continue
        for message, wrong_fn in mistakes or []:
            try:
                if _same(got, wrong_fn(**clone(kwargs)), atol, rtol):
                    return _report(False, f"{message} (first seen on: {description}).")
            except Exception:  # a mistake model that does not apply to this case
                continue
        got_shape = getattr(got_t, "shape", None)
        want_shape = getattr(_as_tensor(expected), "shape", None)
        if got_shape is not None and want_shape is not None and tuple(got_shape) != tuple(want_shape) and not (
                got_t.numel() == 1 and _as_tensor(expected).numel() == 1):
            return _report(
                False, f"{name} returns shape {tuple(got_shape)}, expected {tuple(want_shape)} (case: {description})."
            )
        return _report(
            False,
            f"on {description}, {name} gives {_short(got)} where the package gives {_short(expected)}. "
            + (f"Hint: {hint}" if hint else ""),
        )
    return _report(True, f"{name} agrees with the package on all {len(cases)} cases, edge cases included.")


def check_prediction(
    prediction: Any,
    measured: Any,
    name: str,
    tolerance: float | None = None,
    explanation: str = "",
) -> bool | None:
    """Compare a prediction written BEFORE an experiment with what the experiment measured.

    ``measured`` is a number (then ``tolerance``, absolute, says how close counts as right), a string
    choice (compared case-insensitively), or a boolean. Returns None when ``prediction`` is None.
    """
    if _not_attempted(prediction, f"write down your prediction for {name} before running the experiment."):
        return None
    if isinstance(measured, bool) or type(measured).__name__ == "bool_":
        if type(prediction).__name__ not in ("bool", "bool_"):
            return _report(False, f"predict True or False for {name}.")
        ok = bool(prediction) == bool(measured)
        shown = str(bool(measured))
    elif isinstance(measured, str):
        ok = str(prediction).strip().lower() == measured.strip().lower()
        shown = repr(measured)
    else:
        value = _scalar(prediction)
        if value is None:
            return _not_a_number(prediction)
        tol = 1e-6 if tolerance is None else tolerance
        ok = abs(value - float(measured)) <= tol
        shown = f"{float(measured):.4g} (within ±{tol:g} counts)"
    lead = f"you predicted {prediction!r}; the experiment gave {shown}."
    return _report(ok, lead + (" " + explanation if explanation else ""))
