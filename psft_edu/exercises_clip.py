"""Exercise checkers of notebooks 04-05: PPO's clipped objective and proximal SFT, and 05's exercise in which the
learner writes the PSFT training loop (:func:`check_psft_loop`, compared with :class:`psft_edu.train.Trainer`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from .exercises_common import (
    _attempt,
    _close,
    _items,
    _one_number,
    _report,
    checker,
)

# ---------------------------------------------------------------- 04 PPO's clipped objective


def _clipped_surrogate(r: float, advantage: float, epsilon: float) -> float:
    return min(r * advantage, min(max(r, 1.0 - epsilon), 1.0 + epsilon) * advantage)


@checker
def check_clipped_value(answer: Any, r: float, advantage: float, epsilon: float) -> bool | None:
    r"""Value of :math:`\min(r \hat A, \mathrm{clip}(r, 1-\epsilon, 1+\epsilon)\hat A)`."""
    _attempt(answer, "compute both r·Â and clip(r, 1-ε, 1+ε)·Â, then keep the smaller one.")
    expected = _clipped_surrogate(r, advantage, epsilon)
    answer = _one_number(answer, "give one number.")
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


@checker
def check_gradient_is_zero(answer: Any, r: float, advantage: float, epsilon: float) -> bool | None:
    """Whether the clipped surrogate's derivative in r is zero at (r, Â, ε) (answer True or False)."""
    _attempt(
        answer,
        "the gradient is zero only where the clipped branch is the smaller one; see the plot for this sign of Â.",
    )
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
            why = "the ratio is inside the clip interval (or on the unclipped side), so the slope is Â."
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


@checker
def check_clip_fraction(answer: Any, ratios: list[float], advantage: float, epsilon: float) -> bool | None:
    """Share of tokens whose clipped branch is active (zero gradient), for one advantage shared by every token."""
    _attempt(answer, "for each ratio decide whether its gradient is zero (see the previous exercise), then count.")
    zero = [(advantage > 0 and r > 1.0 + epsilon) or (advantage < 0 and r < 1.0 - epsilon) for r in ratios]
    expected = sum(zero) / len(ratios)
    answer = _one_number(answer, "give one number between 0 and 1.")
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


@checker
def check_psft_weights(answer: Any, ratios: list[float], epsilon: float) -> bool | None:
    r"""05, exercise 1: PSFT's gradient weight :math:`r \cdot \mathbf{1}\{r \le 1+\epsilon\}` for each ratio (Â = 1)."""
    _attempt(answer, "below 1+ε the objective is r itself, and d r / dθ = r ∇log π; above 1+ε it is a constant.")
    import torch

    from .objectives import psft_gradient_weight

    values = _items(answer, len(ratios), "weight per ratio")
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


@checker
def check_psft_is_sft(answer: Any, global_batch: int, mini_batch: int) -> bool | None:
    """05, exercise 2: with these batch sizes, is every PSFT update exactly an SFT update? (True or False)"""
    _attempt(answer, "count the optimiser steps taken per frozen old policy: K = global_batch / mini_batch.")
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


@checker
def check_refresh_count(answer: Any, global_batch: int, mini_batch: int, max_steps: int) -> bool | None:
    """05, exercise 3: how many times the trainer freezes the old policy in a run of ``max_steps`` optimiser steps."""
    _attempt(answer, "the old policy is frozen at the start of every global batch, and a global batch gives K steps.")
    value = _one_number(answer, "give one whole number.")
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


# ---------------------------------------------------------------- 05: the PSFT training loop
#
# The learner writes the loop that psft_edu.train.Trainer runs for objective="psft": per global batch of K
# mini-batches, freeze the old policy's log-probs on all K, take K optimiser steps against them, refresh.
# The checker runs the learner's loop and the Trainer on the same mini-batches, with the same optimiser, and
# compares the final parameters, at K = 1 and K = 8.

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
    from .objectives import psft_loss

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
    from . import data, models

    base, tokenizer = models.load_model("tiny", device="cpu")
    return base, tokenizer, data.load_split("sft_train")[:LOOP_RECORDS]


def _loop_config(k: int) -> Any:
    """The Trainer's settings for a K-step PSFT run, made so that a plain optimiser step is the Trainer's step:
    no warm-up (the learning rate is constant), and a gradient-norm limit no gradient reaches."""
    from .train import TrainConfig

    return TrainConfig(objective="psft", lr=LOOP_LR, max_steps=LOOP_STEPS, global_batch=k * LOOP_MINI_BATCH,
                       mini_batch=LOOP_MINI_BATCH, warmup_steps=0, grad_clip=1e9, log_kl=False)


def _parameters(model: Any) -> list[Any]:
    return [p.detach().clone() for p in model.parameters()]


@functools.cache
def _trainer_parameters(k: int) -> list[Any]:
    """The final parameters of ``Trainer(objective="psft")`` after :data:`LOOP_STEPS` steps at this K (computed
    once per session: the run is deterministic, on one thread)."""
    import copy

    from .train import Trainer

    base, tokenizer, records = _loop_data()
    model = copy.deepcopy(base)
    Trainer(model, tokenizer, records, _loop_config(k), progress=False).train()
    return _parameters(model)


def _loop_parameters(loop: Callable[..., Any], k: int) -> list[Any]:
    """Run ``loop`` on a copy of the base model with the Trainer's mini-batches, optimiser and forward pass."""
    import copy

    from .objectives import token_logprobs
    from .train import Trainer

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

    _attempt(user_loop, LOOP_HINT)
    if not callable(user_loop):
        return _report(False, f"pass the function itself (e.g. my_psft_loop), not {user_loop!r}.")
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
            return _report(False, f"with K = {k} your loop raised {type(error).__name__}: {text}.{advice}")
        gap = _distance(got, want)
        if gap <= LOOP_TOLERANCE * moved:
            exact = exact and gap == 0.0
            continue
        if _distance(got, start) == 0.0:
            return _report(False, f"with K = {k} your loop left the parameters where they started: take an "
                                  "optimiser step (optimiser.step()) after each backward().")
        for index, (message, _, ks) in enumerate(LOOP_MISTAKES):
            if k in ks and _distance(got, _mistake_parameters(index, k)) <= LOOP_TOLERANCE * moved:
                return _report(False, f"with K = {k}: {message}.")
        return _report(
            False,
            f"with K = {k} your final parameters are {gap / moved:.3g} of the Trainer's move away from the "
            f"Trainer's. Hint: {LOOP_HINT}",
        )
    how = "bit for bit" if exact else f"to {LOOP_TOLERANCE:g} of the distance it moved them"
    return _report(
        True,
        f"after {LOOP_STEPS} steps at K = {' and K = '.join(map(str, LOOP_K))} your loop ends with the parameters of "
        f'Trainer(objective="psft"), {how}: freeze the old policy, take K steps against it, refresh.',
    )
