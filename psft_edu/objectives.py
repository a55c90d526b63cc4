"""Training objectives as pure functions of tensors.

Every loss here is *minimised*. Shapes: ``logp``, ``old_logp``, ``ref_logp``,
``advantages`` and ``mask`` are ``[B, T]``; ``mask`` is 1 on completion tokens and
0 on prompt and padding positions. ``agg`` chooses how per-token values become one
number:

* ``"token-mean"`` (default): sum over all unmasked tokens / their count. Every
  token weighs the same, so a long answer contributes more than a short one.
* ``"seq-mean"``: mean over sequences of each sequence's own token mean. Every
  answer weighs the same, whatever its length.

The clipped losses return ``(loss, stats)``; ``stats`` is a dict of detached
scalar tensors (``clip_fraction``, ``ratio_mean``, ``ratio_min``, ``ratio_max``,
``approx_kl``) so a training loop can log them without another forward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

AGGREGATIONS = ("token-mean", "seq-mean")
LOG_RATIO_LIMIT = 20.0  # exp(20) ~ 5e8: keeps the ratio finite when policies drift far apart


def _default_chunk_rows(vocab_size: int) -> int:
    # About 16M float32 values (64 MB) per temporary: small next to the [B, T, V] gradient
    # that backward must produce anyway, and still few enough chunks to keep the loop cheap.
    return max(1, (1 << 24) // max(vocab_size, 1))


class _ChunkedLogProb(torch.autograd.Function):
    """log_softmax(logits).gather(targets) without a full float32 [N, V] copy.

    Forward keeps only the per-row log-sum-exp; backward recomputes the softmax
    one chunk at a time.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, chunk_rows: int) -> Tensor:  # type: ignore[override]
        rows = logits.shape[0]
        logp = torch.empty(rows, dtype=torch.float32, device=logits.device)
        lse = torch.empty(rows, dtype=torch.float32, device=logits.device)
        for start in range(0, rows, chunk_rows):
            stop = min(start + chunk_rows, rows)
            x = logits[start:stop].float()
            lse[start:stop] = torch.logsumexp(x, dim=-1)
            logp[start:stop] = x.gather(-1, targets[start:stop, None]).squeeze(-1) - lse[start:stop]
        ctx.save_for_backward(logits, targets, lse)
        ctx.chunk_rows = chunk_rows
        return logp

    @staticmethod
    def backward(ctx, grad_logp: Tensor):  # type: ignore[override]
        logits, targets, lse = ctx.saved_tensors
        rows = logits.shape[0]
        grad = None if rows <= ctx.chunk_rows else torch.empty_like(logits)
        for start in range(0, rows, ctx.chunk_rows):
            stop = min(start + ctx.chunk_rows, logits.shape[0])
            g = grad_logp[start:stop, None].float()
            probs = torch.exp(logits[start:stop].float() - lse[start:stop, None])
            chunk_grad = -probs * g  # d logp / d logits = onehot - softmax
            chunk_grad.scatter_add_(-1, targets[start:stop, None], g)
            if grad is None:  # a single chunk: no copy into a preallocated buffer
                return chunk_grad.to(logits.dtype), None, None
            grad[start:stop] = chunk_grad.to(grad.dtype)
        return grad, None, None


def token_logprobs(logits: Tensor, targets: Tensor, chunk_size: int | None = None) -> Tensor:
    r"""Log-probability of each target token, :math:`\log \pi_\theta(y_t \mid s_t)`.

    .. math:: \log \pi_\theta(y_t \mid s_t) = z_{t, y_t} - \log \sum_{v} e^{z_{t, v}}

    ``logits`` is ``[B, T, V]`` (any float dtype; the arithmetic is float32) and
    ``targets`` ``[B, T]``. Rows are processed ``chunk_size`` positions at a time
    (default: about 16M values per chunk), so the full ``[B, T, V]`` float32
    log-softmax never exists at once, in the forward or the backward pass.
    Returns float32 ``[B, T]``; differentiable with respect to ``logits``.
    """
    batch, seq, vocab = logits.shape
    chunk_rows = chunk_size or _default_chunk_rows(vocab)
    flat = _ChunkedLogProb.apply(logits.reshape(-1, vocab), targets.reshape(-1).long(), chunk_rows)
    return flat.view(batch, seq)


@torch.no_grad()
def token_entropy(logits: Tensor, chunk_size: int | None = None) -> Tensor:
    r"""Entropy of the next-token distribution at every position (for logging; no gradient).

    .. math:: H_t = -\sum_v \pi(v \mid s_t) \log \pi(v \mid s_t)
              = \log \sum_v e^{z_{t,v}} - \sum_v \pi(v \mid s_t)\, z_{t,v}

    Same chunking as :func:`token_logprobs`. Returns float32 ``[B, T]`` in nats.
    """
    batch, seq, vocab = logits.shape
    flat = logits.reshape(-1, vocab)
    chunk_rows = chunk_size or _default_chunk_rows(vocab)
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    for start in range(0, flat.shape[0], chunk_rows):
        x = flat[start : start + chunk_rows].float()
        lse = torch.logsumexp(x, dim=-1)
        out[start : start + chunk_rows] = lse - (torch.softmax(x, dim=-1) * x).sum(-1)
    return out.view(batch, seq)


def masked_mean(x: Tensor, mask: Tensor, agg: str = "token-mean") -> Tensor:
    r"""Average ``x`` over the positions where ``mask`` is 1.

    token-mean: :math:`\frac{\sum_{i,t} m_{i,t} x_{i,t}}{\sum_{i,t} m_{i,t}}`;
    seq-mean: :math:`\frac{1}{|I|}\sum_{i \in I} \frac{\sum_t m_{i,t} x_{i,t}}{\sum_t m_{i,t}}`
    over the sequences :math:`I` with at least one unmasked token.

    Raises ``ValueError`` when no position is unmasked (instead of returning NaN).
    """
    mask = mask.to(x.dtype)
    count = mask.sum()
    if count.item() == 0:
        raise ValueError("masked_mean: the mask selects no token (all prompt or padding)")
    # where() keeps NaN/Inf from masked positions out of the sum.
    masked = torch.where(mask > 0, x, torch.zeros_like(x)) * mask
    if agg == "token-mean":
        return masked.sum() / count
    if agg == "seq-mean":
        per_seq_count = mask.sum(-1)
        has_tokens = per_seq_count > 0
        per_seq = masked.sum(-1)[has_tokens] / per_seq_count[has_tokens]
        return per_seq.mean()
    raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")


def sft_loss(logp: Tensor, mask: Tensor, agg: str = "token-mean") -> Tensor:
    r"""Supervised fine-tuning loss: negative log-likelihood of the demonstration.

    .. math:: \mathcal{L}_{\mathrm{SFT}}(\theta) = -\,\mathbb{E}_{(s_t, a^*_t) \sim \mathcal{D}}
              \big[\log \pi_\theta(a^*_t \mid s_t)\big]
    """
    return masked_mean(-logp, mask, agg)


def policy_gradient_loss(logp: Tensor, advantages: Tensor, mask: Tensor, agg: str = "token-mean") -> Tensor:
    r"""REINFORCE-style policy-gradient loss (the negative of the objective).

    .. math:: \mathcal{L}_{\mathrm{PG}}(\theta) = -\,\mathbb{E}_t\big[\hat A_t \log \pi_\theta(a_t \mid s_t)\big]

    With :math:`\hat A_t = 1` on demonstration tokens this is exactly :func:`sft_loss`.
    """
    return masked_mean(-advantages * logp, mask, agg)


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    agg: str = "token-mean",
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""PPO's clipped surrogate (negated), with separate lower and upper clip bounds.

    .. math::
        r_t = \exp\big(\mathrm{clamp}(\log\pi_\theta - \log\pi_{\theta_\mathrm{old}}, -20, 20)\big)

    .. math::
        \mathcal{L}_{\mathrm{CLIP}}(\theta) = -\,\mathbb{E}_t\Big[\min\big(r_t \hat A_t,\;
        \mathrm{clip}(r_t, 1-\epsilon_\mathrm{low}, 1+\epsilon_\mathrm{high})\, \hat A_t\big)\Big]

    Returns ``(loss, stats)``. ``stats`` holds detached scalars over unmasked tokens:
    ``clip_fraction`` (share of tokens whose clipped branch is active, i.e. with zero
    gradient), ``ratio_mean``, ``ratio_min``, ``ratio_max`` and ``approx_kl``, the
    estimator :math:`\mathbb{E}[(r-1) - \log r]` of KL(old || new).
    """
    log_ratio = torch.clamp(logp - old_logp, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    ratio = torch.exp(log_ratio)
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = masked_mean(torch.maximum(pg1, pg2), mask, agg)

    with torch.no_grad():
        selected = mask > 0
        r = ratio[selected]
        stats = {
            "clip_fraction": (pg2 > pg1)[selected].float().mean(),
            "ratio_mean": r.mean(),
            "ratio_min": r.min(),
            "ratio_max": r.max(),
            "approx_kl": ((r - 1.0) - log_ratio[selected]).mean(),
        }
    return loss, stats


def psft_loss(
    logp: Tensor, old_logp: Tensor, mask: Tensor, clip: float = 0.28, agg: str = "token-mean"
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Proximal SFT: PPO's clipped surrogate with a constant advantage of one.

    .. math::
        \mathcal{L}_{\mathrm{PSFT}}(\theta) = -\,\mathbb{E}_{(s_t, a_t) \sim \mathcal{D}}
        \big[\min\big(r_t,\; \mathrm{clip}(r_t, 1-\epsilon, 1+\epsilon)\big)\big]

    With :math:`\hat A = 1` only the upper bound can bind: a token whose probability
    has already grown by more than a factor :math:`1+\epsilon` since the old policy
    was frozen gets no gradient; below it the gradient is :math:`r_t \nabla \log \pi_\theta`.
    Returns ``(loss, stats)`` like :func:`ppo_clip_loss`.
    """
    ones = torch.ones_like(logp)
    return ppo_clip_loss(logp, old_logp, ones, mask, clip_low=clip, clip_high=clip, agg=agg)


def dft_loss(logp: Tensor, mask: Tensor, agg: str = "token-mean") -> Tensor:
    r"""Dynamic fine-tuning: each token's NLL weighted by its own (stop-gradient) probability.

    .. math:: \mathcal{L}_{\mathrm{DFT}}(\theta) = -\,\mathbb{E}\big[\mathrm{sg}(\pi_\theta(a_t \mid s_t))
              \log \pi_\theta(a_t \mid s_t)\big]
    """
    # Zero the masked positions first: their weight exp(logp) would turn junk there (NaN, +inf)
    # into a NaN gradient, even though masked_mean leaves them out of the value.
    logp = torch.where(mask > 0, logp, torch.zeros_like(logp))
    return masked_mean(-torch.exp(logp).detach() * logp, mask, agg)


def kl_to_reference(logp: Tensor, ref_logp: Tensor, mask: Tensor, agg: str = "token-mean") -> Tensor:
    r"""Per-token estimate of :math:`\mathrm{KL}(\pi_\theta \,\|\, \pi_\mathrm{ref})` (the "k3" estimator).

    .. math:: \widehat{\mathrm{KL}}_t = e^{\,\delta_t} - 1 - \delta_t,\qquad
              \delta_t = \log \pi_\mathrm{ref}(a_t \mid s_t) - \log \pi_\theta(a_t \mid s_t)

    It is non-negative per token and unbiased when the tokens are sampled from
    :math:`\pi_\theta` (as in RL); on demonstration tokens it is the usual
    approximation used by SFT-KL and anchored SFT. Differentiable in ``logp``.
    """
    delta = torch.clamp(ref_logp - logp, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return masked_mean(torch.exp(delta) - 1.0 - delta, mask, agg)


def sft_kl_loss(logp: Tensor, ref_logp: Tensor, mask: Tensor, beta: float = 0.1, agg: str = "token-mean") -> Tensor:
    r"""SFT with a KL anchor to the base model.

    .. math:: \mathcal{L}_{\mathrm{SFT\text{-}KL}} = \mathcal{L}_{\mathrm{SFT}} + \beta\,\mathrm{KL}(\pi_\theta \,\|\, \pi_\mathrm{ref})
    """
    return sft_loss(logp, mask, agg) + beta * kl_to_reference(logp, ref_logp, mask, agg)


def asft_loss(logp: Tensor, ref_logp: Tensor, mask: Tensor, beta: float = 0.1, agg: str = "token-mean") -> Tensor:
    r"""Anchored SFT: dynamic fine-tuning plus a KL anchor to the base model.

    .. math:: \mathcal{L}_{\mathrm{ASFT}} = \mathcal{L}_{\mathrm{DFT}} + \beta\,\mathrm{KL}(\pi_\theta \,\|\, \pi_\mathrm{ref})
    """
    return dft_loss(logp, mask, agg) + beta * kl_to_reference(logp, ref_logp, mask, agg)


def exact_kl(logits: Tensor, ref_logits: Tensor) -> Tensor:
    r"""Exact KL divergence between two next-token distributions at every position.

    .. math:: \mathrm{KL}\big(\pi(\cdot \mid s_t) \,\|\, \pi_\mathrm{ref}(\cdot \mid s_t)\big)
              = \sum_v \pi(v \mid s_t)\,\big(\log \pi(v \mid s_t) - \log \pi_\mathrm{ref}(v \mid s_t)\big)

    A sum over the whole vocabulary, so no estimator is involved: with the course's
    44-token vocabulary it costs about as much as one softmax. ``logits`` and
    ``ref_logits`` are ``[..., V]``; returns float32 ``[...]`` in nats (no gradient).
    """
    with torch.no_grad():
        logp = torch.log_softmax(logits.float(), dim=-1)
        ref = torch.log_softmax(ref_logits.float(), dim=-1)
        return (logp.exp() * (logp - ref)).sum(-1).clamp_min(0.0)
