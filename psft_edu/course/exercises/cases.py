"""Inputs for the implement-it checkers: seeded random log-probabilities and masks with junk in the padding,
edge cases on the clip bounds, and a token-mean written out the way a learner writes it (the mistake models of
several notebooks use it). One home for what notebooks 01-09 share; each notebook's checkers live in its own module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Mistakes = list[tuple[str, Callable[..., Any]]]


def generator(seed: int) -> Any:
    return torch.Generator().manual_seed(seed)


def hand_mean(x: Any, mask: Any) -> Any:
    """Token-mean of ``x`` over ``mask``, written out (what a learner writes; the mistake models use it)."""
    return torch.where(mask > 0, x, torch.zeros_like(x)).sum() / mask.sum()


def logp_cases(with_old: bool = False, with_adv: bool = False) -> list[tuple[str, dict]]:
    """Random [batch, time] log-probs and masks; the masked positions hold junk (-inf, NaN) like padding may."""
    cases = []
    for seed, shape in ((0, (3, 5)), (1, (4, 7)), (2, (1, 6))):
        g = generator(seed)
        logp = -torch.rand(shape, generator=g) * 3
        mask = (torch.rand(shape, generator=g) > 0.3).float()
        mask[:, 0] = 1.0
        case = {"logp": logp, "mask": mask}
        if with_old:
            case["old_logp"] = logp - 0.5 * torch.randn(shape, generator=g)
        if with_adv:
            case["advantages"] = torch.randn(shape, generator=g)
        cases.append((f"random {shape[0]}x{shape[1]} batch", case))
    g = generator(3)
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


def ratio_edge_case(clip_low: float, clip_high: float, advantages: list[float]) -> dict:
    """Ratios exactly at 1 - clip_low, 1, 1 + clip_high and beyond, one row per advantage."""
    ratios = torch.tensor([0.5, 1.0 - clip_low, 0.9, 1.0, 1.1, 1.0 + clip_high, 2.0], dtype=torch.float64)
    rows = len(advantages)
    old = torch.full((rows, ratios.numel()), -1.5, dtype=torch.float64)
    return {"logp": old + ratios.log(), "old_logp": old, "mask": torch.ones_like(old),
            "advantages": torch.tensor(advantages, dtype=torch.float64)[:, None].expand_as(old).clone()}


ATOL = 1e-4


def tensors_close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> bool:
    return a.shape == b.shape and bool(torch.isfinite(a).all()) and torch.allclose(a, b, atol=atol, rtol=1e-4)
