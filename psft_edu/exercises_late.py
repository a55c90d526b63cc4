"""Checkers for the "implement it" exercises of notebooks 06, 07 and 08 (their "predict, then run" questions use
:func:`psft_edu.exercises.check_prediction`, the one checker of predictions).

Every ``check_*`` function prints one message and returns:

* ``None`` when the exercise is left unattempted (the answer, or what the learner's function
  returns, is still ``None``): it prints
  "Not attempted yet" and a hint, never a verdict, so a notebook runs top to bottom untouched;
* ``True`` when the answer is right;
* ``False`` otherwise, with the *first* mistake named (e.g. "you divided by G - 1").

The implementation checkers call the learner's function on several random tensors, edge cases
included (a group whose rewards are all equal, padding that holds ``-inf``), and compare the result
with the package's own function (:func:`psft_edu.rl.group_advantages`, :func:`psft_edu.objectives.exact_kl`,
:func:`psft_edu.objectives.dft_loss`, :func:`psft_edu.objectives.kl_to_reference`). The two losses (DFT and the
k3 KL) are compared in value and in gradient with respect to ``logp``: a loss detached from ``logp`` fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .exercises_common import _attempt, _not_attempted, _report, check_implementation, checker, detached_message

ATOL = 1e-4
RETURNED_NONE = "your function returned None: return the loss as a 0-d tensor."


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> bool:
    return a.shape == b.shape and bool(torch.isfinite(a).all()) and torch.allclose(a, b, atol=atol, rtol=1e-4)


def _as_tensor(value: Any) -> torch.Tensor | None:
    try:
        return torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return None


# ---------------------------------------------------------------- reading a curve (08)


def trend(values: Sequence[float]) -> str:
    """``"rises"`` if ``values`` strictly increase, ``"falls"`` if they strictly decrease, else ``"neither"``."""
    pairs = list(zip(values, values[1:]))
    if pairs and all(b > a for a, b in pairs):
        return "rises"
    if pairs and all(b < a for a, b in pairs):
        return "falls"
    return "neither"


# ---------------------------------------------------------------- 07: implement group-normalised advantages


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
        if _close(got, value.float(), 1e-3):
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
    from .rl import group_advantages

    _attempt(fn, ADVANTAGE_HINT)
    if not callable(fn):
        return _report(False, f"pass the function itself (e.g. my_group_advantages), not {type(fn).__name__}.")
    for number, (name, rewards, group_size) in enumerate(_advantage_cases()):
        expected = group_advantages(rewards, group_size)
        given = rewards.clone()
        try:
            raw = fn(given, group_size)
        except Exception as err:  # noqa: BLE001 - any error of the learner's code is reported, not raised
            return _report(False, f"on {name} your function raised {type(err).__name__}: {err}")
        if raw is None and number == 0:
            _not_attempted(None, "your function still returns None: " + ADVANTAGE_HINT)
            return None
        got = None if raw is None else _as_tensor(raw)
        if not torch.equal(given, rewards):
            return _report(False, f"on {name} your function changed the rewards in place; compute new tensors instead.")
        if got is None:
            return _report(
                False, f"on {name} your function returned {type(raw).__name__}; return a tensor (or a list)."
            )
        if got.shape != rewards.shape:
            return _report(
                False,
                f"on {name} the result has shape {tuple(got.shape)}; it needs the rewards' shape "
                f"{tuple(rewards.shape)} (reshape back at the end).",
            )
        if not _close(got, expected):
            return _report(False, f"on {name}: " + _advantage_mistake(got, rewards, group_size, expected))
    return _report(
        True,
        f"your function matches rl.group_advantages on all {len(_advantage_cases())} cases, "
        "including groups whose rewards are all equal (advantage 0, no NaN).",
    )


# ---------------------------------------------------------------- 08: implement the DFT loss and the k3 KL


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
    from .objectives import dft_loss, masked_mean, sft_loss

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
    if _close(value, expected) and not _close(grad, expected_grad):
        (no_sg_grad,) = torch.autograd.grad(masked_mean(-leaf.exp() * leaf, mask), leaf)
        if _close(grad, no_sg_grad):
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
        if _close(value, candidate.detach()):
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
    from .objectives import dft_loss

    _attempt(fn, DFT_HINT)
    if not callable(fn):
        return _report(False, f"pass the function itself (e.g. my_dft_loss), not {type(fn).__name__}.")
    for number, (name, logp, _, mask) in enumerate(_token_cases()):
        value, grad, error = _leaf_grad(fn, logp, mask)
        if error == RETURNED_NONE and number == 0:
            _not_attempted(None, "your function still returns None: " + DFT_HINT)
            return None
        if error and value is None:
            return _report(False, f"on {name}: {error}")
        safe = torch.where(mask > 0, logp, torch.zeros_like(logp))
        leaf = safe.clone().requires_grad_(True)
        expected = dft_loss(leaf, mask)
        (expected_grad,) = torch.autograd.grad(expected, leaf)
        if error:
            return _report(False, f"on {name}: {error}")
        if not (_close(value, expected.detach()) and _close(grad, expected_grad)):
            return _report(False, f"on {name}: " + _dft_mistake(value, grad, logp, mask))
    return _report(
        True,
        "value and gradient match objectives.dft_loss on every case, padding with -inf included: "
        "each token's gradient is p times SFT's.",
    )


def _k3_mistake(value: torch.Tensor, logp: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> str:
    """Name the likely mistake behind a k3 estimate ``value`` that differs from the package's (raw inputs)."""
    from .objectives import kl_to_reference, masked_mean

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
        if _close(value, candidate):
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
    from .objectives import kl_to_reference

    _attempt(fn, K3_HINT)
    if not callable(fn):
        return _report(False, f"pass the function itself (e.g. my_k3_kl), not {type(fn).__name__}.")
    for number, (name, logp, ref, mask) in enumerate(_token_cases()):
        value, grad, error = _leaf_grad(fn, logp, ref, mask)
        if error == RETURNED_NONE and number == 0:
            _not_attempted(None, "your function still returns None: " + K3_HINT)
            return None
        if error and value is None:
            return _report(False, f"on {name}: {error}")
        safe_logp = torch.where(mask > 0, logp, torch.zeros_like(logp))
        safe_ref = torch.where(mask > 0, ref, torch.zeros_like(ref))
        leaf = safe_logp.clone().requires_grad_(True)
        expected = kl_to_reference(leaf, safe_ref, mask)
        (expected_grad,) = torch.autograd.grad(expected, leaf)
        if not _close(value, expected.detach()):
            return _report(False, f"on {name}: " + _k3_mistake(value, logp, ref, mask))
        if error:
            return _report(False, f"on {name}: {error}")
        if not torch.isfinite(grad).all():
            return _report(
                False,
                f"on {name}: the value is right, but the gradient holds NaN: a masked position holds -inf, and "
                "where() applied after exp() still sends 0 · NaN back. Select the completion tokens "
                "(logp[mask > 0]) before computing δ.",
            )
        if not _close(grad, expected_grad):
            return _report(
                False,
                f"on {name}: the value is right but the gradient is not: keep every term of exp(δ) - 1 - δ in the "
                "graph (no .detach()); its slope in log π_θ is 1 - exp(δ).",
            )
    return _report(
        True,
        "your estimate matches objectives.kl_to_reference on every case, in value and gradient: 0 when the two "
        "policies agree, never negative, and blind to masked positions.",
    )


# ---------------------------------------------------------------- 06: the exact KL to the base


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
    from .objectives import exact_kl

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
    from .objectives import exact_kl

    return check_implementation(
        fn,
        exact_kl,
        _kl_cases,
        "my_exact_kl",
        _exact_kl_mistakes(),
        hint="log_softmax both, then (p.exp() * (log p - log q)).sum(-1)",
    )


#: Checker name -> its mistake models (``(message, wrong implementation)`` pairs), for the checkers built on
#: :func:`psft_edu.exercises_common.check_implementation`; the others name mistakes from the wrong output itself.
MISTAKE_MODELS: dict[str, Callable[[], list[tuple[str, Callable]]]] = {"check_exact_kl_impl": _exact_kl_mistakes}
