"""The exercise checkers of notebook 05_proximal_sft: proximal SFT.

PSFT's gradient weight per ratio, when PSFT is plain SFT, how many refreshes a run makes, the
implement-it exercise for the PSFT loss, and the exercise in which the learner writes the whole PSFT
training loop (:func:`check_psft_loop`, run against :class:`psft_edu.engine.train.Trainer`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from .cases import Mistakes, hand_mean, logp_cases, ratio_edge_case
from .checking import (
    as_items,
    attempt,
    check_implementation,
    check_prediction,
    checker,
    close_to,
    one_number,
    report,
)


@checker
def check_psft_weights(answer: Any, ratios: list[float], epsilon: float) -> bool | None:
    r"""05, exercise 1: PSFT's gradient weight :math:`r \cdot \mathbf{1}\{r \le 1+\epsilon\}` for each ratio (Â = 1)."""
    attempt(answer, "below 1+ε the objective is r itself, and d r / dθ = r ∇log π; above 1+ε it is a constant.")
    import torch

    from ...objectives import psft_gradient_weight

    values = as_items(answer, len(ratios), "weight per ratio")
    expected = psft_gradient_weight(torch.tensor(ratios, dtype=torch.float64), epsilon).tolist()
    if all(close_to(v, e) for v, e in zip(values, expected)):
        clipped = sum(r > 1.0 + epsilon for r in ratios)
        return report(
            True, f"{clipped} of {len(ratios)} tokens get no gradient; the others are weighted by r, not by SFT's 1."
        )
    wrong = [i for i, (v, e) in enumerate(zip(values, expected)) if not close_to(v, e)]
    i = wrong[0]
    r, v = ratios[i], values[i]
    if r < 1.0 - epsilon and close_to(v, 0.0):
        return report(
            False, f"r = {r:g} is below 1-ε, but with Â = 1 the lower bound never binds: min(r, clip(r)) = r there."
        )
    if close_to(v, 1.0) and not close_to(r, 1.0):
        return report(False, f"weight 1 at r = {r:g} is SFT's; the ratio multiplies the gradient (∇r = r ∇log π).")
    if r > 1.0 + epsilon and close_to(v, 1.0 + epsilon):
        return report(False, f"1+ε is the clipped objective's value at r = {r:g}; its gradient (a constant's) is 0.")
    if r > 1.0 + epsilon:
        return report(False, f"r = {r:g} is past 1+ε = {1 + epsilon:g}: the clipped branch is flat there.")
    return report(False, f"r = {r:g} is inside the bound, so its weight is r itself; you gave {v:g}.")


@checker
def check_psft_is_sft(answer: Any, global_batch: int, mini_batch: int) -> bool | None:
    """05, exercise 2: with these batch sizes, is every PSFT update exactly an SFT update? (True or False)"""
    attempt(answer, "count the optimiser steps taken per frozen old policy: K = global_batch / mini_batch.")
    if type(answer).__name__ not in ("bool", "bool_"):
        return report(False, "answer True (PSFT equals SFT here) or False (it does not).")
    k = global_batch // mini_batch
    same = k == 1
    if bool(answer) == same:
        if same:
            return report(
                True, "K = 1: each old policy serves a single step, taken at r = 1, where PSFT's gradient is SFT's."
            )
        return report(True, f"K = {k}: steps 2..{k} of each global batch see ratios away from 1, so the clip can act.")
    if same:
        return report(
            False, "with one mini-batch per global batch the old policy is frozen just before every step: r = 1 always."
        )
    return report(False, f"K = {k} steps share one old policy; after the first, the ratios move away from 1.")


@checker
def check_refresh_count(answer: Any, global_batch: int, mini_batch: int, max_steps: int) -> bool | None:
    """05, exercise 3: how many times the trainer freezes the old policy in a run of ``max_steps`` optimiser steps."""
    attempt(answer, "the old policy is frozen at the start of every global batch, and a global batch gives K steps.")
    value = one_number(answer, "give one whole number.")
    k = global_batch // mini_batch
    expected = math.ceil(max_steps / k)
    if close_to(value, expected):
        return report(
            True, f"K = {k}, so {max_steps} steps start {expected} global batches (the last one may be cut short)."
        )
    if close_to(value, max_steps / k) or close_to(value, max_steps // k):
        return report(
            False, f"{max_steps} / {k} is not a whole number of global batches; the last, partial one is frozen too."
        )
    if close_to(value, max_steps):
        return report(False, "that is one freeze per step, i.e. K = 1; here several steps share each old policy.")
    if close_to(value, k):
        return report(False, "that is K, the steps per freeze; how many freezes does the whole run need?")
    return report(
        False, f"divide the number of steps by K = global_batch / mini_batch and round up; you gave {answer!r}."
    )


LOOP_K = (1, 8)  # K values the loop is checked at


LOOP_MINI_BATCH = 8  # sequences per mini-batch (and optimiser step)


LOOP_STEPS = 16  # optimiser steps per run: two global batches at K = 8, so a refresh happens


LOOP_LR = 1e-3  # large enough for the tiny model's ratios to pass 1 + ε within a global batch


LOOP_RECORDS = 128  # the first demonstrations of sft_train


LOOP_TOLERANCE = 1e-4  # allowed distance to the Trainer's parameters, relative to how far the Trainer moved them


LOOP_HINT = (
    "for each global batch (K consecutive mini-batches): under torch.no_grad() compute logprobs(model, mini) for all "
    "K of them (the frozen old policy), then one optimiser step per mini-batch on obj.psft_loss(logprobs(model, "
    "mini), old_logp, mini.mask, clip)[0]."
)


def _psft_step(model: Any, mini: Any, old_logp: Any, optimiser: Any, logprobs: Callable, clip: float,
               zero_grad: bool = True) -> None:
    from ...objectives import psft_loss

    loss, _ = psft_loss(logprobs(model, mini), old_logp, mini.mask, clip)
    if zero_grad:
        optimiser.zero_grad()
    loss.backward()
    optimiser.step()


def _loop_refresh_every_step(model, minibatches, K, optimiser, logprobs, clip):
    import torch

    for mini in minibatches:
        with torch.no_grad():
            old_logp = logprobs(model, mini)
        _psft_step(model, mini, old_logp, optimiser, logprobs, clip)


def _loop_never_refresh(model, minibatches, K, optimiser, logprobs, clip):
    import torch

    with torch.no_grad():
        frozen = [logprobs(model, mini) for mini in minibatches]
    for mini, old_logp in zip(minibatches, frozen):
        _psft_step(model, mini, old_logp, optimiser, logprobs, clip)


def _loop_without_zero_grad(model, minibatches, K, optimiser, logprobs, clip):
    import torch

    for start in range(0, len(minibatches), K):
        group = minibatches[start : start + K]
        with torch.no_grad():
            frozen = [logprobs(model, mini) for mini in group]
        for mini, old_logp in zip(group, frozen):
            _psft_step(model, mini, old_logp, optimiser, logprobs, clip, zero_grad=False)


def _loop_old_with_gradient(model, minibatches, K, optimiser, logprobs, clip):
    for start in range(0, len(minibatches), K):
        group = minibatches[start : start + K]
        frozen = [logprobs(model, mini) for mini in group]  # no torch.no_grad(): the old log-probs keep a graph
        for mini, old_logp in zip(group, frozen):
            _psft_step(model, mini, old_logp, optimiser, logprobs, clip)


OLD_WITH_GRADIENT = (
    "the old log-probs carry a gradient: the ratio's gradient r·(∇log π - ∇log π_old) is then zero when both come "
    "from the same model, and the steps do nothing useful. Compute them under torch.no_grad() (or .detach() them): "
    "the old policy is a constant"
)


#: The PSFT loop's mistake models: ``(message, wrong loop, the K values it is looked for at)``. With K = 8 the
#: loop whose old log-probs keep a graph raises instead (the graph needs parameters that a step has changed);
#: :func:`check_psft_loop` names that from the error.
LOOP_MISTAKES: list[tuple[str, Callable[..., Any], tuple[int, ...]]] = [
    (
        "the old policy is refreshed before every step, so every ratio is 1, nothing is ever clipped and PSFT takes "
        "SFT's steps (the SFT loss in place of psft_loss gives the same). Freeze the log-probs of all K mini-batches "
        "once, at the start of each global batch, then take the K steps against them",
        _loop_refresh_every_step,
        LOOP_K,
    ),
    (
        "the old policy is frozen once, before the first step, and never refreshed: after the first global batch "
        "the ratios still compare with the starting model and drift ever further from 1. Freeze anew at the start "
        "of every global batch of K mini-batches",
        _loop_never_refresh,
        LOOP_K,
    ),
    (
        "the gradients pile up from step to step: call optimiser.zero_grad() before each backward()",
        _loop_without_zero_grad,
        LOOP_K,
    ),
    (OLD_WITH_GRADIENT, _loop_old_with_gradient, (1,)),
]


@functools.cache
def _loop_data() -> tuple[Any, Any, list[dict[str, str]]]:
    """The tiny preset's shipped base model (on the CPU), its tokenizer and the first demonstrations."""
    from ... import data, models

    base, tokenizer = models.load_model("tiny", device="cpu")
    return base, tokenizer, data.load_split("sft_train")[:LOOP_RECORDS]


def _loop_config(k: int) -> Any:
    """The Trainer's settings for a K-step PSFT run, made so that a plain optimiser step is the Trainer's step:
    no warm-up (the learning rate is constant), and a gradient-norm limit no gradient reaches."""
    from ...engine.train import TrainConfig

    return TrainConfig(objective="psft", lr=LOOP_LR, max_steps=LOOP_STEPS, global_batch=k * LOOP_MINI_BATCH,
                       mini_batch=LOOP_MINI_BATCH, warmup_steps=0, grad_clip=1e9, log_kl=False)


def _parameters(model: Any) -> list[Any]:
    return [p.detach().clone() for p in model.parameters()]


@functools.cache
def _trainer_parameters(k: int) -> list[Any]:
    """The final parameters of ``Trainer(objective="psft")`` after :data:`LOOP_STEPS` steps at this K (computed
    once per session: the run is deterministic, on one thread)."""
    import copy

    from ...engine.train import Trainer

    base, tokenizer, records = _loop_data()
    model = copy.deepcopy(base)
    Trainer(model, tokenizer, records, _loop_config(k), progress=False).train()
    return _parameters(model)


def _loop_parameters(loop: Callable[..., Any], k: int) -> list[Any]:
    """Run ``loop`` on a copy of the base model with the Trainer's mini-batches, optimiser and forward pass."""
    import copy

    from ...engine.train import Trainer
    from ...objectives import token_logprobs

    base, tokenizer, records = _loop_data()
    model = copy.deepcopy(base)
    cfg = _loop_config(k)
    trainer = Trainer(model, tokenizer, records, cfg, progress=False)
    minibatches = []
    while len(minibatches) < cfg.max_steps:  # the Trainer's data order and padding (one width per global batch)
        batch = trainer._batch(trainer._next_global_batch())
        minibatches += [batch[i * cfg.mini_batch : (i + 1) * cfg.mini_batch] for i in range(k)]

    def logprobs(m: Any, mini: Any) -> Any:
        return token_logprobs(trainer._logits(m, mini), mini.targets)

    loop(model, minibatches[: cfg.max_steps], k, trainer.optimizer, logprobs, cfg.clip)
    return _parameters(model)


@functools.cache
def _mistake_parameters(index: int, k: int) -> list[Any]:
    """The final parameters of the mistake model ``LOOP_MISTAKES[index]`` at this K (computed once per session)."""
    return _loop_parameters(LOOP_MISTAKES[index][1], k)


def _distance(a: list[Any], b: list[Any]) -> float:
    return float(sum(((p.double() - q.double()) ** 2).sum() for p, q in zip(a, b))) ** 0.5


@checker
def check_psft_loop(user_loop: Any) -> bool | None:
    """05, implement it: the PSFT training loop, ``my_psft_loop(model, minibatches, K, optimiser, logprobs, clip)``.

    ``minibatches`` is a list of :class:`psft_edu.data.Batch` in training order, a whole number of global batches of
    ``K`` consecutive mini-batches; ``optimiser`` is a ``torch.optim`` optimiser over ``model``'s parameters;
    ``logprobs(model, mini)`` returns the ``[B, T]`` log-probabilities of ``mini.targets`` (with a gradient unless
    called under ``torch.no_grad()``); ``clip`` is PSFT's ε. The loop trains ``model`` in place, one optimiser step
    per mini-batch: at the start of every global batch it freezes the old policy (the log-probs of all K
    mini-batches, without gradient), then takes the K steps on ``objectives.psft_loss`` against them.

    The checker runs the learner's loop and ``Trainer(TrainConfig(objective="psft", ...))`` from the same base
    model (the tiny preset's, on the CPU, whatever the notebook's preset: the loop does not depend on the model), on
    the same mini-batches, with the Trainer's own AdamW, for :data:`LOOP_STEPS` steps, first with K = 1, then
    K = 8, and compares the final parameters: they must agree to :data:`LOOP_TOLERANCE` of the distance the Trainer
    moved them (on the CPU a right loop agrees bit for bit). A mismatch is named when it is one of
    :data:`LOOP_MISTAKES`. Returns None when ``user_loop`` is None, True when both runs agree, else False.
    """
    import torch

    attempt(user_loop, LOOP_HINT)
    if not callable(user_loop):
        return report(False, f"pass the function itself (e.g. my_psft_loop), not {user_loop!r}.")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from threads, and one count makes runs comparable
    try:
        with torch.random.fork_rng(devices=[]):  # the notebook's random state is left as it was
            return _compare_loop(user_loop)
    finally:
        torch.set_num_threads(threads)


def _compare_loop(user_loop: Callable[..., Any]) -> bool:
    start = _parameters(_loop_data()[0])
    exact = True
    for k in LOOP_K:
        want = _trainer_parameters(k)
        moved = _distance(want, start)
        try:
            got = _loop_parameters(user_loop, k)
        except Exception as error:  # the learner's code: report whatever it raised
            text = (str(error).strip().splitlines() or [""])[0].split(" Hint:")[0]  # torch's own hint is long
            advice = f" {OLD_WITH_GRADIENT}." if "inplace operation" in text else ""
            return report(False, f"with K = {k} your loop raised {type(error).__name__}: {text}.{advice}")
        gap = _distance(got, want)
        if gap <= LOOP_TOLERANCE * moved:
            exact = exact and gap == 0.0
            continue
        if _distance(got, start) == 0.0:
            return report(False, f"with K = {k} your loop left the parameters where they started: take an "
                                  "optimiser step (optimiser.step()) after each backward().")
        for index, (message, _, ks) in enumerate(LOOP_MISTAKES):
            if k in ks and _distance(got, _mistake_parameters(index, k)) <= LOOP_TOLERANCE * moved:
                return report(False, f"with K = {k}: {message}.")
        return report(
            False,
            f"with K = {k} your final parameters are {gap / moved:.3g} of the Trainer's move away from the "
            f"Trainer's. Hint: {LOOP_HINT}",
        )
    how = "bit for bit" if exact else f"to {LOOP_TOLERANCE:g} of the distance it moved them"
    return report(
        True,
        f"after {LOOP_STEPS} steps at K = {' and K = '.join(map(str, LOOP_K))} your loop ends with the parameters of "
        f'Trainer(objective="psft"), {how}: freeze the old policy, take K steps against it, refresh.',
    )


def _psft_reference(logp, old_logp, mask, clip):
    from ...objectives import psft_loss

    return psft_loss(logp, old_logp, mask, clip)[0]


def _psft_loss_mistakes() -> Mistakes:
    import torch

    from ...objectives import sft_loss

    def two_sided(logp, old_logp, mask, clip):
        return -hand_mean(torch.exp(logp - old_logp).clamp(1 - clip, 1 + clip), mask)

    def sft(logp, old_logp, mask, clip):
        return sft_loss(logp, mask)

    def flipped(logp, old_logp, mask, clip):
        return -_psft_reference(logp, old_logp, mask, clip)

    def no_mask(logp, old_logp, mask, clip):
        return _psft_reference(logp, old_logp, torch.ones_like(mask), clip)

    def detached_clip(logp, old_logp, mask, clip):
        ratio = torch.exp(logp - old_logp)
        return -hand_mean(torch.minimum(ratio, ratio.detach().clamp(1 - clip, 1 + clip)), mask)

    return [
        (
            "clamp(r, 1-ε, 1+ε) alone also clips from below: with Â = 1 the objective is min(r, 1+ε); below 1-ε it is "
            "r",
            two_sided,
        ),
        ("that is the SFT loss: PSFT works with the ratio r = exp(logp - old_logp)", sft),
        ("the sign is flipped: the loss is minus the clipped objective", flipped),
        ("the mask is ignored", no_mask),
        (
            "the value is right but the gradient is not: the clipped term is detached, so inside the bound, where "
            "r and clip(r) are equal, min() sends only half of the gradient through r; clamp() needs no .detach()",
            detached_clip,
        ),
    ]


def check_psft_loss_impl(user_fn: Any) -> bool | None:
    """05, implement it: ``psft(logp, old_logp, mask, clip)``, the loss -E[min(r, clip(r, 1-ε, 1+ε))].

    Value and gradient with respect to ``logp``; the value only for the ratios exactly on the bounds.
    """
    from ...objectives import PSFT_CLIP

    def cases() -> list[tuple]:
        out: list[tuple] = [(label, {"logp": c["logp"], "old_logp": c["old_logp"], "mask": c["mask"],
                                     "clip": PSFT_CLIP}) for label, c in logp_cases(with_old=True)]
        edge = ratio_edge_case(PSFT_CLIP, PSFT_CLIP, [1.0])
        out.append(("ratios exactly at 1-ε, 1 and 1+ε, and beyond both", {
            "logp": edge["logp"], "old_logp": edge["old_logp"], "mask": edge["mask"], "clip": PSFT_CLIP}, False))
        return out

    hint = ("each token's ratio comes from the two log-probabilities; apply PPO's clipped surrogate with an "
            "advantage of one, average over the positions the mask keeps, and return a loss to minimise.")
    return check_implementation(user_fn, _psft_reference, cases, "psft", mistakes=_psft_loss_mistakes(), hint=hint,
                                nonfinite_hint="masked positions may hold -inf; select with torch.where.",
                                grad_of="logp")


MISTAKE_MODELS: dict[str, Callable[[], Mistakes]] = {
    "check_psft_loss_impl": _psft_loss_mistakes,
}

__all__ = [
    "check_prediction",
    "check_psft_is_sft",
    "check_psft_loop",
    "check_psft_loss_impl",
    "check_psft_weights",
    "check_refresh_count",
]
