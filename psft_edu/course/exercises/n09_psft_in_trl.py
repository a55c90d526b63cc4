"""The exercise checkers of notebook 09_psft_in_trl: PSFT in TRL.

The implement-it exercise for the ratio statistics the TRL trainer logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .cases import Mistakes, generator, logp_cases
from .checking import (
    check_implementation,
    check_prediction,
)


def _ratio_stats_reference(logp, old_logp, mask, clip):
    import torch

    from ...objectives import psft_loss

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

    from ...objectives import PSFT_CLIP

    def cases() -> list[tuple[str, dict]]:
        out = [(label, {"logp": c["logp"], "old_logp": c["old_logp"], "mask": c["mask"], "clip": PSFT_CLIP})
               for label, c in logp_cases(with_old=True)[:3]]
        g = generator(5)
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


MISTAKE_MODELS: dict[str, Callable[[], Mistakes]] = {
    "check_ratio_stats_impl": _ratio_stats_mistakes,
}

__all__ = [
    "check_prediction",
    "check_ratio_stats_impl",
]
