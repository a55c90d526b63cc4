"""Exercise checkers of notebooks 06-08: entropy collapse, RL after SFT/PSFT, neighbours and ablations."""

from __future__ import annotations

import math
from typing import Any

from .exercises_common import (
    _attempt,
    _close,
    _items,
    _judge,
    _number,
    _one_number,
    _report,
    checker,
)

# ---------------------------------------------------------------- 06 entropy collapse


def _run_names(summary: dict) -> str:
    return ", ".join(repr(n) for n in summary["runs"])


@checker
def check_best_ood_run(answer: Any, summary: dict) -> bool | None:
    """06, exercise 1: the name of the fine-tuned run with the highest final out-of-domain exact accuracy (mean over
    seeds).
    """
    hint = 'look at summary["runs"][name]["final"]["ood_exact"]["mean"] for every run name; max(..., key=...) helps.'
    _attempt(answer, hint)
    ood = {name: run["final"]["ood_exact"]["mean"] for name, run in summary["runs"].items()}
    best = max(ood, key=ood.get)
    if answer == "base":
        return _report(
            False, "the base is where every run starts, not a fine-tuned run; which of the runs forgot least?"
        )
    if answer not in ood:
        return _report(False, f"give one of the run names as a string: {_run_names(summary)}.")
    if answer == best:
        base = summary["base"]["final"]["ood_exact"]["mean"]
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


@checker
def check_entropy_drop(answer: Any, summary: dict, run: str) -> bool | None:
    """06, exercise 2: the entropy drop of ``run`` from the peak of its per-step entropy curve to its end, in percent
    of the peak.
    """
    _attempt(
        answer, 'take curve = summary["runs"][run]["curves"]["entropy"]["mean"]; compare max(curve) with curve[-1].'
    )
    value = _one_number(answer, "give one number, in percent (e.g. 25.0 for a quarter).")
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


@checker
def check_pareto_dominated(answer: Any, point: Any, summary: dict) -> bool | None:
    """06, exercise 3: is ``point`` = (in-domain, out-of-domain) accuracy dominated by the base or one of the runs?
    (True or False)
    """
    _attempt(
        answer, "a point is dominated when another one is at least as good on both axes and strictly better on one."
    )
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


@checker
def check_group_advantages(answer: Any, rewards: list[float]) -> bool | None:
    r"""07, exercise 1: GRPO's advantages :math:`(r_i - \mu) / \sigma` for one group's rewards (population σ)."""
    _attempt(
        answer,
        "subtract the group's mean reward from each reward, then divide by the group's standard deviation (over G).",
    )
    values = _items(answer, len(rewards), "advantage per sample", "a list or a tensor")
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


@checker
def check_zero_signal_fraction(answer: Any, p: float, group_size: int) -> bool | None:
    r"""07, exercise 2: expected share of groups with equal rewards, :math:`p^G + (1-p)^G`, for pass rate p and group
    size G.
    """
    _attempt(
        answer, "a group gives no signal when all G samples are right or all G are wrong; the samples are independent."
    )
    value = _one_number(answer, "give one number between 0 and 1.")
    expected = p**group_size + (1 - p) ** group_size
    return _judge(
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
    _attempt(answer, "try G = 2, 3, 4, ... and compute p^G + (1-p)^G until it drops to the target.")
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


@checker
def check_dft_weights(answer: Any, probs: list[float]) -> bool | None:
    r"""08, exercise 1: DFT's gradient weight relative to SFT's, :math:`\mathrm{sg}(\pi_\theta(a_t))`, for each token
    probability.
    """
    _attempt(
        answer, "DFT multiplies each token's log-likelihood by its own probability, held constant (stop-gradient)."
    )
    values = _items(answer, len(probs), "weight per token")
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


@checker
def check_k3_kl(answer: Any, logp: float, ref_logp: float) -> bool | None:
    r"""08, exercise 2: the per-token KL estimate :math:`e^{\delta} - 1 - \delta` with :math:`\delta =
    \log\pi_\mathrm{ref} - \log\pi`.
    """
    _attempt(answer, "compute δ = ref_logp - logp first; the estimate is exp(δ) - 1 - δ (never negative).")
    value = _one_number(answer, "give one number.")
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


@checker
def check_pareto_front(answer: Any, summary: dict, x: str = "in-domain acc (%)", y: str = "OOD acc (%)") -> bool | None:
    """08, exercise 3: the names (base included) on the Pareto front of a sweep for the metrics ``x`` and ``y``."""
    from .sweep import METRICS, final_value, pareto_front

    _attempt(
        answer,
        "keep every entry that no other entry beats on both axes at once (at least as good on both, better on one).",
    )
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
