"""Implement-it checkers (notebooks 01-05 and 09): the learner's function against the package's.

Each checker compares the learner's function with the package's through
:func:`psft_edu.exercises_common.check_implementation`, on random tensors plus edge cases; the checkers of a loss
or of log-probabilities compare the gradient too. The known wrong implementations each one recognises (its
"mistake models") are listed in :data:`MISTAKE_MODELS`, so that a test can feed every one of them to its checker.
(Notebook 05's training-loop exercise, :func:`psft_edu.exercises_clip.check_psft_loop`, lives with 05's checkers.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .exercises_common import check_implementation

Mistakes = list[tuple[str, Callable[..., Any]]]

# ================================================================ implement it: checkers for 01-05 and 09
#
# Each takes the learner's function (None: not attempted) and compares it with the package's function
# on random tensors plus edge cases, through check_implementation.


def _gen(seed: int) -> Any:
    import torch

    return torch.Generator().manual_seed(seed)


def _masked(x: Any, mask: Any) -> Any:
    """Token-mean of ``x`` over ``mask``, written out (what a learner writes; the mistake models use it)."""
    import torch

    return torch.where(mask > 0, x, torch.zeros_like(x)).sum() / mask.sum()


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


# ---------------------------------------------------------------- 01 token_logprobs


def _token_logprobs_mistakes() -> Mistakes:
    import torch

    from .objectives import token_logprobs

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

    hint = "log_softmax over the last (vocabulary) dimension, then pick each target's entry with gather."
    return check_implementation(user_fn, token_logprobs, cases, "token_logprobs", mistakes=_token_logprobs_mistakes(),
                                hint=hint, nonfinite_hint="log(softmax(...)) underflows for large logits; use "
                                "log_softmax.", grad_of="logits", what="output")


# ---------------------------------------------------------------- 02 sft_loss


def _sft_loss_mistakes() -> Mistakes:
    import torch

    from .objectives import sft_loss

    def flipped(logp, mask, agg):
        return -sft_loss(logp, mask, agg)

    def no_mask(logp, mask, agg):
        return -logp.mean()

    def token_always(logp, mask, agg):
        return sft_loss(logp, mask, "token-mean")

    def seq_mean_all_rows(logp, mask, agg):
        if agg == "token-mean":
            return sft_loss(logp, mask, agg)
        per_row = (torch.where(mask > 0, -logp, torch.zeros_like(logp))).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_row.mean()

    return [
        ("the sign is flipped: the loss is MINUS the mean log-probability", flipped),
        ("the mask is ignored: padding and prompt positions must not count", no_mask),
        ("seq-mean gives the token-mean: average within each sequence first, then over sequences", token_always),
        ("seq-mean divides by every row, also the rows without a completion token; skip those", seq_mean_all_rows),
    ]


def check_sft_loss_impl(user_fn: Any) -> bool | None:
    """02, implement it: ``sft_loss(logp, mask, agg)`` for agg "token-mean" and "seq-mean", in value and gradient."""
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

    hint = (
        "token-mean: sum of -logp * mask / mask.sum(); seq-mean: the same per row, then the mean over rows with tokens."
    )
    return check_implementation(
        user_fn,
        sft_loss,
        cases,
        "sft_loss",
        mistakes=_sft_loss_mistakes(),
        hint=hint,
        nonfinite_hint="masked positions may hold -inf; select with torch.where before multiplying.",
        grad_of="logp",
    )


# ---------------------------------------------------------------- 03 pg_loss


def _pg_loss_mistakes() -> Mistakes:
    import torch

    from .objectives import policy_gradient_loss

    def flipped(logp, advantages, mask):
        return -policy_gradient_loss(logp, advantages, mask)

    def no_advantages(logp, advantages, mask):
        return policy_gradient_loss(logp, torch.ones_like(logp), mask)

    def no_mask(logp, advantages, mask):
        return -(advantages * logp).mean()

    def probabilities(logp, advantages, mask):
        return policy_gradient_loss(logp.exp(), advantages, mask)

    return [
        ("the sign is flipped: this is the objective E[A log pi]; the loss is its negative", flipped),
        ("the advantages are missing: that is the SFT loss", no_advantages),
        ("the mask is ignored", no_mask),
        ("that weights probabilities, not log-probabilities", probabilities),
    ]


def check_pg_loss_impl(user_fn: Any) -> bool | None:
    """03, implement it: ``pg_loss(logp, advantages, mask)``, the token-mean REINFORCE loss -E[A log pi], in value and
    gradient with respect to ``logp``."""
    from .objectives import policy_gradient_loss

    def reference(logp, advantages, mask):
        return policy_gradient_loss(logp, advantages, mask)

    hint = "-(advantages * logp) averaged over the positions where mask is 1 (token-mean)."
    return check_implementation(user_fn, reference, lambda: _logp_cases(with_adv=True), "pg_loss",
                                mistakes=_pg_loss_mistakes(), hint=hint, grad_of="logp",
                                nonfinite_hint="masked positions may hold -inf; select with torch.where.")


# ---------------------------------------------------------------- 04 ppo_clip


def _ratio_edge_case(clip_low: float, clip_high: float, advantages: list[float]) -> dict:
    """Ratios exactly at 1 - clip_low, 1, 1 + clip_high and beyond, one row per advantage."""
    import torch

    ratios = torch.tensor([0.5, 1.0 - clip_low, 0.9, 1.0, 1.1, 1.0 + clip_high, 2.0], dtype=torch.float64)
    rows = len(advantages)
    old = torch.full((rows, ratios.numel()), -1.5, dtype=torch.float64)
    return {"logp": old + ratios.log(), "old_logp": old, "mask": torch.ones_like(old),
            "advantages": torch.tensor(advantages, dtype=torch.float64)[:, None].expand_as(old).clone()}


def _ppo_reference(logp, old_logp, advantages, mask, clip_low, clip_high):
    from .objectives import ppo_clip_loss

    return ppo_clip_loss(logp, old_logp, advantages, mask, clip_low, clip_high)[0]


def _ppo_clip_mistakes() -> Mistakes:
    import torch

    def clip_only(logp, old_logp, advantages, mask, clip_low, clip_high):
        ratio = torch.exp(logp - old_logp)
        return -_masked(ratio.clamp(1 - clip_low, 1 + clip_high) * advantages, mask)

    def optimistic(logp, old_logp, advantages, mask, clip_low, clip_high):
        ratio = torch.exp(logp - old_logp)
        return -_masked(torch.maximum(ratio * advantages, ratio.clamp(1 - clip_low, 1 + clip_high) * advantages), mask)

    def swapped(logp, old_logp, advantages, mask, clip_low, clip_high):
        return _ppo_reference(logp, old_logp, advantages, mask, clip_high, clip_low)

    def flipped(logp, old_logp, advantages, mask, clip_low, clip_high):
        return -_ppo_reference(logp, old_logp, advantages, mask, clip_low, clip_high)

    def no_mask(logp, old_logp, advantages, mask, clip_low, clip_high):
        return _ppo_reference(logp, old_logp, advantages, torch.ones_like(mask), clip_low, clip_high)

    def detached_clip(logp, old_logp, advantages, mask, clip_low, clip_high):
        ratio = torch.exp(logp - old_logp)
        clipped = ratio.detach().clamp(1 - clip_low, 1 + clip_high) * advantages
        return -_masked(torch.minimum(ratio * advantages, clipped), mask)

    return [
        (
            "the clipped term alone: clip(r)·Â without the min with r·Â. Where the policy moved against the "
            "advantage (r < 1-ε with Â > 0, r > 1+ε with Â < 0) that gives the wrong value and no gradient, so a "
            "step in the wrong direction is never undone; take min(r·Â, clip(r)·Â)",
            clip_only,
        ),
        ("max() instead of min(): the surrogate must keep the SMALLER (pessimistic) term", optimistic),
        ("clip_low and clip_high are swapped: the lower bound is 1 - clip_low, the upper 1 + clip_high", swapped),
        ("the sign is flipped: return the loss, minus the objective", flipped),
        ("the mask is ignored", no_mask),
        (
            "the value is right but the gradient is not: the clipped term is detached, so inside [1-ε, 1+ε], where "
            "the two terms are equal, min() sends only half of the gradient through r·Â; clamp() needs no "
            ".detach(), it already has zero slope outside the interval",
            detached_clip,
        ),
    ]


def check_ppo_clip_impl(user_fn: Any) -> bool | None:
    """04, implement it: ``ppo_clip(logp, old_logp, advantages, mask, clip_low, clip_high)``, the loss -L^CLIP.

    Value and gradient with respect to ``logp`` on random batches; the value only where ratios sit exactly on the
    bounds, where the surrogate has a kink and either one-sided slope would be right.
    """
    from .objectives import PPO_CLIP, PSFT_CLIP

    def cases() -> list[tuple]:
        out: list[tuple] = [(f"{label}, clip 0.2/0.28", {**c, "clip_low": PPO_CLIP, "clip_high": PSFT_CLIP})
                            for label, c in _logp_cases(with_old=True, with_adv=True)]
        for adv in (1.0, -1.0):
            out.append((f"ratios exactly at 1-ε, 1, 1+ε and beyond, Â = {adv:+g}",
                        {**_ratio_edge_case(0.2, 0.2, [adv]), "clip_low": 0.2, "clip_high": 0.2}, False))
        out.append(("ratios at both bounds, Â = ±2, clip_low 0.1, clip_high 0.3",
                    {**_ratio_edge_case(0.1, 0.3, [2.0, -2.0]), "clip_low": 0.1, "clip_high": 0.3}, False))
        return out

    hint = "r = exp(logp - old_logp); loss = -masked mean of min(r * A, clamp(r, 1 - clip_low, 1 + clip_high) * A)."
    return check_implementation(user_fn, _ppo_reference, cases, "ppo_clip", mistakes=_ppo_clip_mistakes(), hint=hint,
                                nonfinite_hint="masked positions may hold -inf; select with torch.where.",
                                grad_of="logp")


# ---------------------------------------------------------------- 05 psft


def _psft_reference(logp, old_logp, mask, clip):
    from .objectives import psft_loss

    return psft_loss(logp, old_logp, mask, clip)[0]


def _psft_loss_mistakes() -> Mistakes:
    import torch

    from .objectives import sft_loss

    def two_sided(logp, old_logp, mask, clip):
        return -_masked(torch.exp(logp - old_logp).clamp(1 - clip, 1 + clip), mask)

    def sft(logp, old_logp, mask, clip):
        return sft_loss(logp, mask)

    def flipped(logp, old_logp, mask, clip):
        return -_psft_reference(logp, old_logp, mask, clip)

    def no_mask(logp, old_logp, mask, clip):
        return _psft_reference(logp, old_logp, torch.ones_like(mask), clip)

    def detached_clip(logp, old_logp, mask, clip):
        ratio = torch.exp(logp - old_logp)
        return -_masked(torch.minimum(ratio, ratio.detach().clamp(1 - clip, 1 + clip)), mask)

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
    from .objectives import PSFT_CLIP

    def cases() -> list[tuple]:
        out: list[tuple] = [(label, {"logp": c["logp"], "old_logp": c["old_logp"], "mask": c["mask"],
                                     "clip": PSFT_CLIP}) for label, c in _logp_cases(with_old=True)]
        edge = _ratio_edge_case(PSFT_CLIP, PSFT_CLIP, [1.0])
        out.append(("ratios exactly at 1-ε, 1 and 1+ε, and beyond both", {
            "logp": edge["logp"], "old_logp": edge["old_logp"], "mask": edge["mask"], "clip": PSFT_CLIP}, False))
        return out

    hint = ("each token's ratio comes from the two log-probabilities; apply PPO's clipped surrogate with an "
            "advantage of one, average over the positions the mask keeps, and return a loss to minimise.")
    return check_implementation(user_fn, _psft_reference, cases, "psft", mistakes=_psft_loss_mistakes(), hint=hint,
                                nonfinite_hint="masked positions may hold -inf; select with torch.where.",
                                grad_of="logp")


# ---------------------------------------------------------------- 09 ratio_stats


def _ratio_stats_reference(logp, old_logp, mask, clip):
    import torch

    from .objectives import psft_loss

    stats = psft_loss(logp, old_logp, mask, clip)[1]
    return torch.stack([stats["clip_fraction"], stats["ratio_mean"], stats["ratio_max"]]).double()


def _ratio_stats_mistakes() -> Mistakes:
    import torch

    def unmasked(logp, old_logp, mask, clip):
        return _ratio_stats_reference(logp, old_logp, torch.ones_like(mask), clip)

    def two_sided(logp, old_logp, mask, clip):
        r = torch.exp(logp - old_logp)[mask > 0]
        return torch.stack([((r > 1 + clip) | (r < 1 - clip)).float().mean(), r.mean(), r.max()]).double()

    def inclusive(logp, old_logp, mask, clip):
        r = torch.exp(logp - old_logp)[mask > 0]
        return torch.stack([(r >= 1 + clip).float().mean(), r.mean(), r.max()]).double()

    return [
        ("masked positions were counted: statistics run over completion tokens only", unmasked),
        ("ratios below 1-ε were counted as clipped: with Â = 1 only r > 1+ε loses its gradient", two_sided),
        ("r = 1+ε exactly is not clipped yet (both terms are equal, the gradient still flows): use >", inclusive),
    ]


def check_ratio_stats_impl(user_fn: Any) -> bool | None:
    """09, implement it: ``ratio_stats(logp, old_logp, mask, clip) -> (clip_fraction, ratio_mean, ratio_max)``.

    The numbers ``PSFTTrainer`` logs: over the unmasked tokens, the share with r > 1 + clip (zero gradient),
    the mean ratio and the largest ratio. Statistics for a log, so no gradient is compared.
    """
    import torch

    from .objectives import PSFT_CLIP

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

    hint = "r = exp(logp - old_logp)[mask > 0]; return ((r > 1 + clip).float().mean(), r.mean(), r.max())."
    return check_implementation(user_fn, _ratio_stats_reference, cases, "ratio_stats",
                                mistakes=_ratio_stats_mistakes(), hint=hint)


#: Checker name -> its mistake models, ``(message, wrong implementation)`` pairs (the tests feed each one to its
#: checker and expect its message).
MISTAKE_MODELS: dict[str, Callable[[], Mistakes]] = {
    "check_token_logprobs_impl": _token_logprobs_mistakes,
    "check_sft_loss_impl": _sft_loss_mistakes,
    "check_pg_loss_impl": _pg_loss_mistakes,
    "check_ppo_clip_impl": _ppo_clip_mistakes,
    "check_psft_loss_impl": _psft_loss_mistakes,
    "check_ratio_stats_impl": _ratio_stats_mistakes,
}
