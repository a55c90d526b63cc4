"""The exercise checkers of notebook 08_neighbours_and_ablations: neighbours and ablations.

DFT's token weights, the k3 estimate of the KL, the Pareto front of a sweep, whether a curve rises or
falls (:func:`trend`), and the implement-it exercises for the DFT loss and the k3 KL penalty.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .cases import tensors_close
from .checking import (
    as_items,
    attempt,
    check_prediction,
    checker,
    close_to,
    detached_message,
    not_attempted,
    one_number,
    report,
    run_names,
)


@checker
def check_dft_weights(answer: Any, probs: list[float]) -> bool | None:
    r"""08, exercise 1: DFT's gradient weight relative to SFT's, :math:`\mathrm{sg}(\pi_\theta(a_t))`, for each token
    probability.
    """
    attempt(
        answer, "DFT multiplies each token's log-likelihood by its own probability, held constant (stop-gradient)."
    )
    values = as_items(answer, len(probs), "weight per token")
    if all(close_to(v, p) for v, p in zip(values, probs)):
        low = min(probs)
        message = (
            f"the least likely token (p = {low:g}) gets {low:g} of SFT's push: DFT hardly teaches what the model "
            "finds unlikely."
        )
        return report(True, message)
    if all(close_to(v, 1.0) for v in values):
        return report(False, "weight 1 everywhere is SFT's; DFT scales each token by its probability.")
    if all(close_to(v, 1.0 / p) for v, p in zip(values, probs) if p > 0):
        return report(
            False, "that is the inverse; DFT multiplies by p (the opposite of the 1/p that log's derivative brings)."
        )
    if all(close_to(v, -math.log(p)) for v, p in zip(values, probs) if p > 0):
        return report(False, "-log p is each token's SFT loss, not DFT's gradient weight.")
    if all(close_to(v, p * (1 - math.log(p))) for v, p in zip(values, probs) if p > 0):
        return report(False, "without the stop-gradient the product rule adds a term; DFT treats p as a constant.")
    return report(False, "with the stop-gradient, d(-sg(p)·log p) = sg(p)·d(-log p): the weight is p itself.")


@checker
def check_k3_kl(answer: Any, logp: float, ref_logp: float) -> bool | None:
    r"""08, exercise 2: the per-token KL estimate :math:`e^{\delta} - 1 - \delta` with :math:`\delta =
    \log\pi_\mathrm{ref} - \log\pi`.
    """
    attempt(answer, "compute δ = ref_logp - logp first; the estimate is exp(δ) - 1 - δ (never negative).")
    value = one_number(answer, "give one number.")
    delta = ref_logp - logp
    expected = math.exp(delta) - 1.0 - delta
    if close_to(value, expected):
        return report(
            True, f"δ = {delta:.4g}, so exp(δ) - 1 - δ = {expected:.4g} nats; SFT-KL adds β times this to the loss."
        )
    flipped = math.exp(-delta) - 1.0 + delta
    if close_to(value, flipped):
        return report(False, "δ has the wrong sign: it is log π_ref - log π_θ (the reference's minus the model's).")
    if close_to(value, -delta) or close_to(value, delta):
        return report(False, "±δ alone is the plain log-ratio estimator, which can be negative; k3 is exp(δ) - 1 - δ.")
    return report(False, f"with logp = {logp:g} and ref_logp = {ref_logp:g}, δ = {delta:.4g}; now exp(δ) - 1 - δ.")


@checker
def check_pareto_front(answer: Any, summary: dict, x: str = "in-domain acc (%)", y: str = "OOD acc (%)") -> bool | None:
    """08, exercise 3: the names (base included) on the Pareto front of a sweep for the metrics ``x`` and ``y``."""
    from ...experiments.sweep import METRICS, final_value, pareto_front

    attempt(
        answer,
        "keep every entry that no other entry beats on both axes at once (at least as good on both, better on one).",
    )
    entries = {"base": summary["base"], **summary["runs"]}
    if not isinstance(answer, (list, tuple, set)) or not all(isinstance(a, str) for a in answer):
        return report(False, "give a list of names, e.g. ['base', 'dft'].")
    unknown = [a for a in answer if a not in entries]
    if unknown:
        return report(False, f"{unknown[0]!r} is not in this sweep; the names are: base, {run_names(summary)}.")
    points = {n: (final_value(r, x), final_value(r, y)) for n, r in entries.items()}
    front = pareto_front(points, (METRICS[x][3], METRICS[y][3]))
    if set(answer) == set(front):
        return report(
            True, f"the front is {', '.join(front)}; every other entry is beaten on both {x} and {y} by one of them."
        )
    missing = [n for n in front if n not in answer]
    extra = [n for n in answer if n not in front]
    if extra:
        name = extra[0]
        sign = [1.0 if METRICS[x][3] else -1.0, 1.0 if METRICS[y][3] else -1.0]
        a = (sign[0] * points[name][0], sign[1] * points[name][1])
        beaten_by = next(n for n in front if sign[0] * points[n][0] >= a[0] and sign[1] * points[n][1] >= a[1])
        return report(
            False,
            f"{name} ({points[name][0]:.1f}, {points[name][1]:.1f}) is beaten on both axes by {beaten_by} "
            f"({points[beaten_by][0]:.1f}, {points[beaten_by][1]:.1f}).",
        )
    name = missing[0]
    return report(
        False,
        f"{name} ({points[name][0]:.1f}, {points[name][1]:.1f}) is missing: nothing is at least as good on both axes.",
    )


RETURNED_NONE = "your function returned None: return the loss as a 0-d tensor."


def trend(values: Sequence[float]) -> str:
    """``"rises"`` if ``values`` strictly increase, ``"falls"`` if they strictly decrease, else ``"neither"``."""
    pairs = list(zip(values, values[1:]))
    if pairs and all(b > a for a, b in pairs):
        return "rises"
    if pairs and all(b < a for a, b in pairs):
        return "falls"
    return "neither"


def _token_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(name, logp, ref_logp, mask): log-probabilities of real distributions, masks with prompt and padding."""
    gen = torch.Generator().manual_seed(8)

    def logp_of(batch: int, length: int, vocab: int = 11, scale: float = 2.0) -> torch.Tensor:
        logits = scale * torch.randn(batch, length, vocab, generator=gen)
        targets = torch.randint(vocab, (batch, length), generator=gen)
        return torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)

    logp, ref = logp_of(4, 7), logp_of(4, 7)
    mask = torch.zeros(4, 7)
    for row, (start, stop) in enumerate([(2, 7), (3, 5), (1, 7), (4, 6)]):
        mask[row, start:stop] = 1.0
    padded_logp, padded_ref = logp.clone(), ref.clone()
    padded_logp[mask == 0] = float("-inf")
    padded_ref[mask == 0] = float("-inf")
    return [
        ("random log-probs, every position a completion token", logp_of(3, 5), logp_of(3, 5), torch.ones(3, 5)),
        ("completions of different lengths after a prompt (mask 0 on prompt and padding)", logp, ref, mask),
        ("identical model and reference", logp, logp.clone(), mask),
        ("padding positions that hold -inf (masked out)", padded_logp, padded_ref, mask),
    ]


def _leaf_grad(
    fn: Callable, logp: torch.Tensor, *args: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None, str]:
    """Call ``fn(leaf, *args)``; return (value, gradient in the leaf, error message or "").

    A value without a gradient (a Python number, a detached tensor) comes back with the detached message."""
    leaf = logp.clone().requires_grad_(True)
    try:
        value = fn(leaf, *(a.clone() for a in args))
    except Exception as err:  # noqa: BLE001
        return None, None, f"your function raised {type(err).__name__}: {err}"
    if value is None:
        return None, None, RETURNED_NONE
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value)), None, detached_message("loss", "logp") + "."
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        return None, None, f"return one number as a 0-d tensor (got {type(value).__name__})."
    grad = torch.autograd.grad(value.reshape(()), leaf, allow_unused=True)[0] if value.requires_grad else None
    if grad is None:
        return value.detach().reshape(()), None, detached_message("loss", "logp") + "."
    return value.detach().reshape(()), grad, ""


def _dft_mistake(value: torch.Tensor, grad: torch.Tensor, logp: torch.Tensor, mask: torch.Tensor) -> str:
    from ...objectives import dft_loss, masked_mean, sft_loss

    safe = torch.where(mask > 0, logp, torch.zeros_like(logp))
    leaf = safe.clone().requires_grad_(True)
    expected = dft_loss(leaf, mask)
    (expected_grad,) = torch.autograd.grad(expected, leaf)
    if not torch.isfinite(value) or not torch.isfinite(grad).all():
        return (
            "NaN: a masked position holds -inf, and 0 · (-inf) is NaN, in the value or in the gradient. "
            "Select the completion tokens (logp[mask > 0]) or zero them with torch.where before any product."
        )
    p = safe.exp()
    if tensors_close(value, expected) and not tensors_close(grad, expected_grad):
        (no_sg_grad,) = torch.autograd.grad(masked_mean(-leaf.exp() * leaf, mask), leaf)
        if tensors_close(grad, no_sg_grad):
            return (
                "the value is right but the gradient is not: the weight p must be a constant (stop-gradient), "
                "e.g. logp.exp().detach(); without it the product rule adds a term."
            )
        return "the value is right but the gradient is not: only log p should carry the gradient, weighted by p."
    candidates = [
        (sft_loss(safe, mask), "that is the SFT loss: weight each token's -log p by its probability p."),
        (-masked_mean(-p * safe, mask), "the sign is flipped: the loss is -p · log p (a minimised loss, positive)."),
        (
            (-logp.exp() * logp).mean(),
            "you averaged over every position; average only over completion tokens (mask = 1).",
        ),
        (
            masked_mean(-p * safe, mask, "seq-mean"),
            "you averaged per sequence first (seq-mean); the package uses "
            "token-mean: sum over all completion tokens / their count.",
        ),
        (masked_mean(-torch.exp(-safe) * safe, mask), "you weighted by 1/p; DFT weights by p = exp(log p)."),
    ]
    for candidate, message in candidates:
        if tensors_close(value, candidate.detach()):
            return message
    return f"your loss is {value.item():.5f}, the package's {expected.item():.5f}: check the weight p and the average."


DFT_HINT = (
    "weight each completion token's -log p by p = exp(log p) held constant (.detach()), "
    "then average over the tokens where mask is 1."
)


@checker
def check_dft_loss_impl(fn: Callable | None) -> bool | None:
    r"""08: a learner's ``fn(logp, mask)`` against :func:`psft_edu.objectives.dft_loss`, in value and gradient.

    :math:`\mathcal{L}_{\mathrm{DFT}} = -\frac{1}{N}\sum_{t:\, m_t = 1} \mathrm{sg}(p_t) \log p_t`, token-mean over
    the completion tokens.
    """
    from ...objectives import dft_loss

    attempt(fn, DFT_HINT)
    if not callable(fn):
        return report(False, f"pass the function itself (e.g. my_dft_loss), not {type(fn).__name__}.")
    for number, (name, logp, _, mask) in enumerate(_token_cases()):
        value, grad, error = _leaf_grad(fn, logp, mask)
        if error == RETURNED_NONE and number == 0:
            not_attempted(None, "your function still returns None: " + DFT_HINT)
            return None
        if error and value is None:
            return report(False, f"on {name}: {error}")
        safe = torch.where(mask > 0, logp, torch.zeros_like(logp))
        leaf = safe.clone().requires_grad_(True)
        expected = dft_loss(leaf, mask)
        (expected_grad,) = torch.autograd.grad(expected, leaf)
        if error:
            return report(False, f"on {name}: {error}")
        if not (tensors_close(value, expected.detach()) and tensors_close(grad, expected_grad)):
            return report(False, f"on {name}: " + _dft_mistake(value, grad, logp, mask))
    return report(
        True,
        "value and gradient match objectives.dft_loss on every case, padding with -inf included: "
        "each token's gradient is p times SFT's.",
    )


def _k3_mistake(value: torch.Tensor, logp: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> str:
    """Name the likely mistake behind a k3 estimate ``value`` that differs from the package's (raw inputs)."""
    from ...objectives import kl_to_reference, masked_mean

    if not torch.isfinite(value):
        return (
            "NaN or inf: a masked position holds -inf; compute δ only on the completion tokens "
            "(or replace masked positions with torch.where) before exp."
        )
    sel = mask > 0
    delta = torch.where(sel, ref - logp, torch.zeros_like(logp))
    raw = ref - logp  # every position, masked ones included
    candidates = [
        (
            masked_mean(torch.exp(-delta) - 1 + delta, mask),
            "δ has the wrong sign: δ = log π_ref - log π_θ (the reference's minus the model's).",
        ),
        (masked_mean(delta, mask), "that is the mean of δ, the plain log-ratio estimate; k3 is exp(δ) - 1 - δ."),
        (masked_mean(-delta, mask), "that is the mean of -δ, the plain log-ratio estimate; k3 is exp(δ) - 1 - δ."),
        (
            (torch.exp(raw) - 1 - raw).mean(),
            "you averaged over every position; average only over completion tokens (mask = 1).",
        ),
        (
            masked_mean(torch.exp(delta) - 1 - delta, mask, "seq-mean"),
            "you averaged per sequence first (seq-mean); use token-mean: sum over completion tokens / their count.",
        ),
    ]
    for candidate, message in candidates:
        if tensors_close(value, candidate):
            return message
    zero = torch.zeros_like(logp)
    expected = kl_to_reference(torch.where(sel, logp, zero), torch.where(sel, ref, zero), mask)
    return (
        f"your estimate is {value.item():.5f}, the package's {expected.item():.5f}: check exp(δ) - 1 - δ token by "
        "token."
    )


K3_HINT = "δ = ref_logp - logp on the completion tokens; average exp(δ) - 1 - δ over the tokens where mask is 1."


@checker
def check_k3_kl_impl(fn: Callable | None) -> bool | None:
    r"""08: a learner's ``fn(logp, ref_logp, mask)`` against :func:`psft_edu.objectives.kl_to_reference` (token-mean
    k3), in value and in gradient with respect to ``logp`` (SFT-KL trains on this term).
    """
    from ...objectives import kl_to_reference

    attempt(fn, K3_HINT)
    if not callable(fn):
        return report(False, f"pass the function itself (e.g. my_k3_kl), not {type(fn).__name__}.")
    for number, (name, logp, ref, mask) in enumerate(_token_cases()):
        value, grad, error = _leaf_grad(fn, logp, ref, mask)
        if error == RETURNED_NONE and number == 0:
            not_attempted(None, "your function still returns None: " + K3_HINT)
            return None
        if error and value is None:
            return report(False, f"on {name}: {error}")
        safe_logp = torch.where(mask > 0, logp, torch.zeros_like(logp))
        safe_ref = torch.where(mask > 0, ref, torch.zeros_like(ref))
        leaf = safe_logp.clone().requires_grad_(True)
        expected = kl_to_reference(leaf, safe_ref, mask)
        (expected_grad,) = torch.autograd.grad(expected, leaf)
        if not tensors_close(value, expected.detach()):
            return report(False, f"on {name}: " + _k3_mistake(value, logp, ref, mask))
        if error:
            return report(False, f"on {name}: {error}")
        if not torch.isfinite(grad).all():
            return report(
                False,
                f"on {name}: the value is right, but the gradient holds NaN: a masked position holds -inf, and "
                "where() applied after exp() still sends 0 · NaN back. Select the completion tokens "
                "(logp[mask > 0]) before computing δ.",
            )
        if not tensors_close(grad, expected_grad):
            return report(
                False,
                f"on {name}: the value is right but the gradient is not: keep every term of exp(δ) - 1 - δ in the "
                "graph (no .detach()); its slope in log π_θ is 1 - exp(δ).",
            )
    return report(
        True,
        "your estimate matches objectives.kl_to_reference on every case, in value and gradient: 0 when the two "
        "policies agree, never negative, and blind to masked positions.",
    )

__all__ = [
    "check_dft_loss_impl",
    "check_dft_weights",
    "check_k3_kl",
    "check_k3_kl_impl",
    "check_pareto_front",
    "check_prediction",
    "trend",
]
