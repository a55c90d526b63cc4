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

def check_psft_weights(answer: Any, ratios: list[float], epsilon: float) -> bool:
    r"""05, exercise 1: PSFT's gradient weight :math:`r \cdot \mathbf{1}\{r \le 1+\epsilon\}` for each ratio (Â = 1)."""
    if _not_attempted(answer, "below 1+ε the objective is r itself, and d r / dθ = r ∇log π; above 1+ε it is a constant."):
        return True
    values = _flat_floats(answer)
    if values is None or len(values) != len(ratios):
        return _report(False, f"give one weight per ratio ({len(ratios)} in all), e.g. a list of numbers.")
    expected = [r if r <= 1.0 + epsilon else 0.0 for r in ratios]
    if all(_close(v, e) for v, e in zip(values, expected)):
        clipped = sum(r > 1.0 + epsilon for r in ratios)
        return _report(True, f"{clipped} of {len(ratios)} tokens get no gradient; the others are weighted by r, not by SFT's 1.")
    wrong = [i for i, (v, e) in enumerate(zip(values, expected)) if not _close(v, e)]
    i = wrong[0]
    r, v = ratios[i], values[i]
    if r < 1.0 - epsilon and _close(v, 0.0):
        return _report(False, f"r = {r:g} is below 1-ε, but with Â = 1 the lower bound never binds: min(r, clip(r)) = r there.")
    if _close(v, 1.0) and not _close(r, 1.0):
        return _report(False, f"weight 1 at r = {r:g} is SFT's; the ratio multiplies the gradient (∇r = r ∇log π).")
    if r > 1.0 + epsilon and _close(v, 1.0 + epsilon):
        return _report(False, f"1+ε is the clipped objective's value at r = {r:g}; its gradient (a constant's) is 0.")
    if r > 1.0 + epsilon:
        return _report(False, f"r = {r:g} is past 1+ε = {1 + epsilon:g}: the clipped branch is flat there.")
    return _report(False, f"r = {r:g} is inside the bound, so its weight is r itself; you gave {v:g}.")


def check_psft_is_sft(answer: Any, global_batch: int, mini_batch: int) -> bool:
    """05, exercise 2: with these batch sizes, is every PSFT update exactly an SFT update? (True or False)"""
    if _not_attempted(answer, "count the optimiser steps taken per frozen old policy: K = global_batch / mini_batch."):
        return True
    if type(answer).__name__ not in ("bool", "bool_"):
        return _report(False, "answer True (PSFT equals SFT here) or False (it does not).")
    k = global_batch // mini_batch
    same = k == 1
    if bool(answer) == same:
        if same:
            return _report(True, "K = 1: each old policy serves a single step, taken at r = 1, where PSFT's gradient is SFT's.")
        return _report(True, f"K = {k}: steps 2..{k} of each global batch see ratios away from 1, so the clip can act.")
    if same:
        return _report(False, "with one mini-batch per global batch the old policy is frozen just before every step: r = 1 always.")
    return _report(False, f"K = {k} steps share one old policy; after the first, the ratios move away from 1.")


def check_refresh_count(answer: Any, global_batch: int, mini_batch: int, max_steps: int) -> bool:
    """05, exercise 3: how many times the trainer freezes the old policy in a run of ``max_steps`` optimiser steps."""
    if _not_attempted(answer, "the old policy is frozen at the start of every global batch, and a global batch gives K steps."):
        return True
    value = _number(answer)
    if value is None:
        return _report(False, "give one whole number.")
    k = global_batch // mini_batch
    expected = math.ceil(max_steps / k)
    if _close(value, expected):
        return _report(True, f"K = {k}, so {max_steps} steps start {expected} global batches (the last one may be cut short).")
    if _close(value, max_steps / k) or _close(value, max_steps // k):
        return _report(False, f"{max_steps} / {k} is not a whole number of global batches; the last, partial one is frozen too.")
    if _close(value, max_steps):
        return _report(False, "that is one freeze per step, i.e. K = 1; here several steps share each old policy.")
    if _close(value, k):
        return _report(False, "that is K, the steps per freeze; how many freezes does the whole run need?")
    return _report(False, f"divide the number of steps by K = global_batch / mini_batch and round up; you gave {answer!r}.")


# ---------------------------------------------------------------- 06 entropy collapse

def _run_names(summary: dict) -> str:
    return ", ".join(repr(n) for n in summary["runs"])


def check_best_ood_run(answer: Any, summary: dict) -> bool:
    """06, exercise 1: the name of the fine-tuned run with the highest final out-of-domain accuracy (mean over seeds)."""
    hint = 'look at summary["runs"][name]["final"]["ood_accuracy"]["mean"] for every run name; max(..., key=...) helps.'
    if _not_attempted(answer, hint):
        return True
    ood = {name: run["final"]["ood_accuracy"]["mean"] for name, run in summary["runs"].items()}
    best = max(ood, key=ood.get)
    if answer == "base":
        return _report(False, "the base is where every run starts, not a fine-tuned run; which of the runs forgot least?")
    if answer not in ood:
        return _report(False, f"give one of the run names as a string: {_run_names(summary)}.")
    if answer == best:
        base = summary["base"]["final"]["ood_accuracy"]["mean"]
        return _report(True, f"{best} ends at {100 * ood[best]:.1f}% out of domain (the base: {100 * base:.1f}%).")
    return _report(False, f"{answer} ends at {100 * ood[answer]:.1f}% out of domain; another run keeps more (compare the final means).")


def entropy_drop_percent(summary: dict, run: str) -> float:
    """How far the per-step demonstration entropy (mean over seeds) falls from its highest value to its last, in % of the highest."""
    mean = summary["runs"][run]["curves"]["entropy"]["mean"]
    peak = max(mean)
    return 100.0 * (peak - mean[-1]) / peak


def check_entropy_drop(answer: Any, summary: dict, run: str) -> bool:
    """06, exercise 2: the entropy drop of ``run`` from the peak of its per-step entropy curve to its end, in percent of the peak."""
    if _not_attempted(answer, 'take curve = summary["runs"][run]["curves"]["entropy"]["mean"]; compare max(curve) with curve[-1].'):
        return True
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
        return _report(False, "that compares the last value with the first one; measure from the highest value of the curve.")
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


def check_pareto_dominated(answer: Any, point: Any, summary: dict) -> bool:
    """06, exercise 3: is ``point`` = (in-domain, out-of-domain) accuracy dominated by the base or one of the runs? (True or False)"""
    if _not_attempted(answer, "a point is dominated when another one is at least as good on both axes and strictly better on one."):
        return True
    if type(answer).__name__ not in ("bool", "bool_"):
        return _report(False, "answer True (dominated) or False (on the front).")
    x, y = (float(v) for v in point)
    dominators = pareto_dominators((x, y), summary)
    where = f"({100 * x:.1f}% in domain, {100 * y:.1f}% out of domain)"
    if bool(answer) == bool(dominators):
        if dominators:
            return _report(True, f"{where} is dominated by {', '.join(dominators)}: no reason to pick it on these two axes.")
        return _report(True, f"nothing is at least as good on both axes as {where}: it sits on the front.")
    if dominators:
        return _report(False, f"look again at {dominators[0]} in the left Pareto panel: compare both of its coordinates with {where}.")
    return _report(False, f"nothing beats {where} on both axes at once: whatever is better on one axis is worse on the other.")


# ---------------------------------------------------------------- 07 RL after SFT / PSFT

def _group_stats(rewards: list[float]) -> tuple[float, float]:
    mean = sum(rewards) / len(rewards)
    return mean, math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))


def check_group_advantages(answer: Any, rewards: list[float]) -> bool:
    r"""07, exercise 1: GRPO's advantages :math:`(r_i - \mu) / \sigma` for one group's rewards (population σ)."""
    if _not_attempted(answer, "subtract the group's mean reward from each reward, then divide by the group's standard deviation (over G)."):
        return True
    values = _flat_floats(answer)
    if values is None or len(values) != len(rewards):
        return _report(False, f"give one advantage per sample ({len(rewards)} in all), e.g. a list or a tensor.")
    mean, std = _group_stats(rewards)
    if std == 0:
        expected = [0.0] * len(rewards)
    else:
        expected = [(r - mean) / std for r in rewards]
    if all(_close(v, e, 1e-3) for v, e in zip(values, expected)):
        if std == 0:
            return _report(True, "every reward is equal, so every advantage is 0: this group teaches nothing.")
        return _report(True, f"mean {mean:.4g}, σ {std:.4g}; the advantages sum to zero: winners go up as much as losers go down.")
    if all(_close(v, r - mean, 1e-3) for v, r in zip(values, rewards)):
        return _report(False, "centred but not scaled: divide by the group's standard deviation too.")
    n = len(rewards)
    if n > 1 and std > 0:
        unbiased = std * math.sqrt(n / (n - 1))
        if all(_close(v, (r - mean) / unbiased, 1e-3) for v, r in zip(values, rewards)):
            return _report(False, "you used the sample standard deviation (divide by G-1); GRPO here divides by G.")
    if all(_close(v, -e, 1e-3) for v, e in zip(values, expected)):
        return _report(False, "the signs are flipped: a correct sample (reward above the mean) gets a positive advantage.")
    return _report(False, f"the group's mean reward is {mean:.4g}; check the standard deviation and each (r - mean) / σ.")


def check_zero_signal_fraction(answer: Any, p: float, group_size: int) -> bool:
    r"""07, exercise 2: expected share of groups with equal rewards, :math:`p^G + (1-p)^G`, for pass rate p and group size G."""
    if _not_attempted(answer, "a group gives no signal when all G samples are right or all G are wrong; the samples are independent."):
        return True
    value = _number(answer)
    if value is None:
        return _report(False, "give one number between 0 and 1.")
    expected = p**group_size + (1 - p) ** group_size
    if _close(value, expected):
        return _report(True, f"{p:g}^{group_size} + {1 - p:g}^{group_size} = {expected:.4g}: that share of the batch is wasted on average.")
    if _close(value, (1 - p) ** group_size):
        return _report(False, "that counts the all-wrong groups; all-right groups have equal rewards too.")
    if _close(value, p**group_size):
        return _report(False, "that counts the all-right groups; all-wrong groups have equal rewards too (and are far more common here).")
    if _close(value, 1 - expected):
        return _report(False, "that is the share of groups that DO carry a signal; the question asks for the others.")
    return _report(False, f"with p = {p:g} and G = {group_size}: the chance that all G are wrong is (1-p)^G; add the all-right case.")


def check_group_size_needed(answer: Any, p: float, max_zero_fraction: float) -> bool:
    """07, exercise 3: the smallest group size G >= 2 with p^G + (1-p)^G <= ``max_zero_fraction``."""
    if _not_attempted(answer, "try G = 2, 3, 4, ... and compute p^G + (1-p)^G until it drops to the target."):
        return True
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
        return _report(True, f"G = {g} gives {p**g + (1 - p) ** g:.3f}; G = {g - 1} would give {p ** (g - 1) + (1 - p) ** (g - 1):.3f}.")
    if value == g - 1:
        return _report(False, f"G = {value} gives {p**value + (1 - p) ** value:.3f}, still above {max_zero_fraction:g}; one more.")
    if value > g:
        return _report(False, f"G = {value} works, but a smaller group already does (each extra sample costs compute).")
    return _report(False, f"G = {value} gives {p**value + (1 - p) ** value:.3f}, above {max_zero_fraction:g}: a larger group is needed.")


# ---------------------------------------------------------------- 08 neighbours and ablations

def check_dft_weights(answer: Any, probs: list[float]) -> bool:
    r"""08, exercise 1: DFT's gradient weight relative to SFT's, :math:`\mathrm{sg}(\pi_\theta(a_t))`, for each token probability."""
    if _not_attempted(answer, "DFT multiplies each token's log-likelihood by its own probability, held constant (stop-gradient)."):
        return True
    values = _flat_floats(answer)
    if values is None or len(values) != len(probs):
        return _report(False, f"give one weight per token ({len(probs)} in all), e.g. a list of numbers.")
    if all(_close(v, p) for v, p in zip(values, probs)):
        low = min(probs)
        message = f"the least likely token (p = {low:g}) gets {low:g} of SFT's push: DFT hardly teaches what the model finds unlikely."
        return _report(True, message)
    if all(_close(v, 1.0) for v in values):
        return _report(False, "weight 1 everywhere is SFT's; DFT scales each token by its probability.")
    if all(_close(v, 1.0 / p) for v, p in zip(values, probs) if p > 0):
        return _report(False, "that is the inverse; DFT multiplies by p (the opposite of the 1/p that log's derivative brings).")
    if all(_close(v, -math.log(p)) for v, p in zip(values, probs) if p > 0):
        return _report(False, "-log p is each token's SFT loss, not DFT's gradient weight.")
    if all(_close(v, p * (1 - math.log(p))) for v, p in zip(values, probs) if p > 0):
        return _report(False, "without the stop-gradient the product rule adds a term; DFT treats p as a constant.")
    return _report(False, "with the stop-gradient, d(-sg(p)·log p) = sg(p)·d(-log p): the weight is p itself.")


def check_k3_kl(answer: Any, logp: float, ref_logp: float) -> bool:
    r"""08, exercise 2: the per-token KL estimate :math:`e^{\delta} - 1 - \delta` with :math:`\delta = \log\pi_\mathrm{ref} - \log\pi`."""
    if _not_attempted(answer, "compute δ = ref_logp - logp first; the estimate is exp(δ) - 1 - δ (never negative)."):
        return True
    value = _number(answer)
    if value is None:
        return _report(False, "give one number.")
    delta = ref_logp - logp
    expected = math.exp(delta) - 1.0 - delta
    if _close(value, expected):
        return _report(True, f"δ = {delta:.4g}, so exp(δ) - 1 - δ = {expected:.4g} nats; SFT-KL adds β times this to the loss.")
    flipped = math.exp(-delta) - 1.0 + delta
    if _close(value, flipped):
        return _report(False, "δ has the wrong sign: it is log π_ref - log π_θ (the reference's minus the model's).")
    if _close(value, -delta) or _close(value, delta):
        return _report(False, "±δ alone is the plain log-ratio estimator, which can be negative; k3 is exp(δ) - 1 - δ.")
    return _report(False, f"with logp = {logp:g} and ref_logp = {ref_logp:g}, δ = {delta:.4g}; now exp(δ) - 1 - δ.")


def check_pareto_front(answer: Any, summary: dict, x: str = "in-domain acc (%)", y: str = "OOD acc (%)") -> bool:
    """08, exercise 3: the names (base included) on the Pareto front of a sweep for the metrics ``x`` and ``y``."""
    from .sweep import METRICS, final_value, pareto_front

    if _not_attempted(answer, "keep every entry that no other entry beats on both axes at once (at least as good on both, better on one)."):
        return True
    entries = {"base": summary["base"], **summary["runs"]}
    if not isinstance(answer, (list, tuple, set)) or not all(isinstance(a, str) for a in answer):
        return _report(False, "give a list of names, e.g. ['base', 'dft'].")
    unknown = [a for a in answer if a not in entries]
    if unknown:
        return _report(False, f"{unknown[0]!r} is not in this sweep; the names are: base, {_run_names(summary)}.")
    points = {n: (final_value(r, x), final_value(r, y)) for n, r in entries.items()}
    front = pareto_front(points, (METRICS[x][3], METRICS[y][3]))
    if set(answer) == set(front):
        return _report(True, f"the front is {', '.join(front)}; every other entry is beaten on both {x} and {y} by one of them.")
    missing = [n for n in front if n not in answer]
    extra = [n for n in answer if n not in front]
    if extra:
        name = extra[0]
        sign = [1.0 if METRICS[x][3] else -1.0, 1.0 if METRICS[y][3] else -1.0]
        a = (sign[0] * points[name][0], sign[1] * points[name][1])
        beaten_by = next(n for n in front if sign[0] * points[n][0] >= a[0] and sign[1] * points[n][1] >= a[1])
        return _report(False, f"{name} ({points[name][0]:.1f}, {points[name][1]:.1f}) is beaten on both axes by {beaten_by} "
                              f"({points[beaten_by][0]:.1f}, {points[beaten_by][1]:.1f}).")
    name = missing[0]
    return _report(False, f"{name} ({points[name][0]:.1f}, {points[name][1]:.1f}) is missing: nothing is at least as good on both axes.")
