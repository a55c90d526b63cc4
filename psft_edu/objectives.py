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
scalar tensors (``clip_fraction``, the ratio's mean, median, 99th percentile, minimum and
maximum, and ``k3_old_new``) so a training loop can log them without another forward pass.

The module also holds the quantities the notebooks teach (PSFT's per-token gradient weight,
the clipped surrogate's value and slope, the clip fraction per mini-batch, GRPO's
group-normalised advantage) and :data:`OBJECTIVES`, the registry every training loop, the
command line, the sweeps and the plots read: an objective is declared once, at the end of
this file, with :func:`register`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

AGGREGATIONS = ("token-mean", "seq-mean")
LOG_RATIO_LIMIT = 20.0  # exp(20) ~ 5e8: keeps the ratio finite when policies drift far apart
PSFT_CLIP = 0.28  # PSFT's epsilon: the upper bound 1 + epsilon of the ratio (the only one that binds with A = 1)
PPO_CLIP = 0.2  # PPO's usual epsilon (both bounds)
KL_BETA = 0.1  # weight of the KL anchor of SFT-KL and ASFT


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
    clip_low: float = PPO_CLIP,
    clip_high: float = PPO_CLIP,
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
    gradient), the ratio's quantiles (:func:`ratio_quantiles`: ``ratio_median``, ``ratio_p99``,
    ``ratio_max``), ``ratio_mean``, ``ratio_min`` and ``k3_old_new``, the mean of
    :math:`(r-1) - \log r`. That is the "k3" estimate of KL(old || new) only when the tokens were
    sampled from the old policy (as in GRPO); on demonstration tokens (SFT, PSFT) it estimates no KL.
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
            **ratio_quantiles(ratio, mask),
            "k3_old_new": ((r - 1.0) - log_ratio[selected]).mean(),
        }
    return loss, stats


def psft_loss(
    logp: Tensor, old_logp: Tensor, mask: Tensor, clip: float = PSFT_CLIP, agg: str = "token-mean"
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Proximal SFT: PPO's clipped surrogate with a constant advantage of one.

    .. math::
        \mathcal{L}_{\mathrm{PSFT}}(\theta) = -\,\mathbb{E}_{(s_t, a_t) \sim \mathcal{D}}
        \big[\min\big(r_t,\; \mathrm{clip}(r_t, 1-\epsilon, 1+\epsilon)\big)\big]

    With :math:`\hat A = 1` only the upper bound can bind: a token whose probability
    has already grown by more than a factor :math:`1+\epsilon` since the old policy
    was frozen gets no gradient; below it the gradient is :math:`r_t \nabla \log \pi_\theta`.
    Returns ``(loss, stats)`` like :func:`ppo_clip_loss`, plus ``unclippable``: the share of
    tokens that can never be clipped in this refresh (:func:`unclippable`).
    """
    ones = torch.ones_like(logp)
    loss, stats = ppo_clip_loss(logp, old_logp, ones, mask, clip_low=clip, clip_high=clip, agg=agg)
    with torch.no_grad():
        stats["unclippable"] = unclippable(old_logp, clip)[mask > 0].float().mean()
    return loss, stats


def dft_loss(logp: Tensor, mask: Tensor, agg: str = "token-mean") -> Tensor:
    r"""Dynamic fine-tuning: each token's NLL weighted by its own (stop-gradient) probability.

    .. math:: \mathcal{L}_{\mathrm{DFT}}(\theta) = -\,\mathbb{E}\big[\mathrm{sg}(\pi_\theta(a_t \mid s_t))
              \log \pi_\theta(a_t \mid s_t)\big]
    """
    # Zero the masked positions first: their weight exp(logp) would turn junk there (NaN, +inf)
    # into a NaN gradient, even though masked_mean leaves them out of the value.
    logp = torch.where(mask > 0, logp, torch.zeros_like(logp))
    return masked_mean(-torch.exp(logp).detach() * logp, mask, agg)


def kl_k1(sample_logp: Tensor, other_logp: Tensor) -> Tensor:
    r"""Per-token "k1" estimate of :math:`\mathrm{KL}(q \,\|\, p)` from tokens drawn from :math:`q`.

    .. math:: k_1 = \log q(x) - \log p(x), \qquad x \sim q

    ``sample_logp`` is :math:`\log q` of the drawn tokens (the distribution that sampled them),
    ``other_logp`` is :math:`\log p` of the same tokens. Unbiased, but a single draw can be
    negative and its variance is large. Elementwise, no averaging; see :func:`kl_k3`.
    """
    return sample_logp - other_logp


def kl_k3(sample_logp: Tensor, other_logp: Tensor) -> Tensor:
    r"""Per-token "k3" estimate of :math:`\mathrm{KL}(q \,\|\, p)` from tokens drawn from :math:`q`.

    .. math:: k_3 = (\rho - 1) - \log \rho, \qquad \rho = \frac{p(x)}{q(x)}, \quad x \sim q

    Unbiased (:math:`\mathbb{E}_q[\rho] = 1`) and never negative; for nearby distributions its
    variance is far below :func:`kl_k1`'s. The log-ratio is clamped to :math:`\pm 20` like the PPO ratio.
    """
    log_rho = torch.clamp(other_logp - sample_logp, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return torch.expm1(log_rho) - log_rho


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


def sft_kl_loss(
    logp: Tensor, ref_logp: Tensor, mask: Tensor, beta: float = KL_BETA, agg: str = "token-mean"
) -> Tensor:
    r"""SFT with a KL anchor to the base model.

    .. math:: \mathcal{L}_{\mathrm{SFT\text{-}KL}} = \mathcal{L}_{\mathrm{SFT}}
              + \beta\,\mathrm{KL}(\pi_\theta \,\|\, \pi_\mathrm{ref})
    """
    return sft_loss(logp, mask, agg) + beta * kl_to_reference(logp, ref_logp, mask, agg)


def asft_loss(
    logp: Tensor, ref_logp: Tensor, mask: Tensor, beta: float = KL_BETA, agg: str = "token-mean"
) -> Tensor:
    r"""Anchored SFT: dynamic fine-tuning plus a KL anchor to the base model.

    .. math:: \mathcal{L}_{\mathrm{ASFT}} = \mathcal{L}_{\mathrm{DFT}}
              + \beta\,\mathrm{KL}(\pi_\theta \,\|\, \pi_\mathrm{ref})
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


# ---------------------------------------------------------------- the quantities the notebooks teach


def psft_gradient_weight(ratio: Tensor, clip: float = PSFT_CLIP) -> Tensor:
    r"""PSFT's weight on each demonstration token's gradient (SFT's weight is 1 on every token).

    .. math:: \nabla_\theta \mathcal{L}_{\mathrm{PSFT}} = -\,\mathbb{E}_t\big[w_t\,\nabla_\theta
              \log \pi_\theta(a_t \mid s_t)\big],\qquad
              w_t = r_t\,\mathbf{1}\{r_t \le 1+\epsilon\}

    Below the bound the token is pushed up like in SFT, scaled by how far its ratio has already
    moved; past :math:`1+\epsilon` the clipped branch is a constant and the weight is zero.
    ``ratio`` is any float tensor of :math:`r_t`; returns a tensor of the same shape and dtype.
    """
    return torch.where(ratio <= 1.0 + clip, ratio, torch.zeros_like(ratio))


def ratio_quantiles(ratio: Tensor, mask: Tensor) -> dict[str, Tensor]:
    r"""Median, 99th percentile and maximum of the ratios :math:`r_t` over unmasked tokens.

    The clip fraction only says how many tokens passed :math:`1+\epsilon`; these say how far
    they went. With :math:`\hat A = 1` a clipped token gets no gradient of its own, but the
    parameters it shares with other tokens keep moving it, so its ratio can end far above
    :math:`1+\epsilon`. Returns detached scalars ``ratio_median``, ``ratio_p99`` and ``ratio_max``.
    """
    with torch.no_grad():
        r = ratio[mask > 0].float()
        median, p99 = torch.quantile(r, torch.tensor([0.5, 0.99], device=r.device))
        return {"ratio_median": median, "ratio_p99": p99, "ratio_max": r.max()}


def unclippable(old_logp: Tensor, clip: float = PSFT_CLIP) -> Tensor:
    r"""Which tokens PSFT can never clip before the next refresh: those the old policy already found likely.

    A probability is at most one, so
    :math:`r_t = \pi_\theta / \pi_{\theta_\mathrm{old}} \le 1 / \pi_{\theta_\mathrm{old}}`.
    A token whose old probability is above :math:`1/(1+\epsilon)` therefore never reaches the bound:

    .. math:: \pi_{\theta_\mathrm{old}}(a_t \mid s_t) > \frac{1}{1+\epsilon}
              \;\Longrightarrow\; r_t < 1+\epsilon \;\text{ for every } \theta

    (about 0.78 for :math:`\epsilon = 0.28`). Returns a boolean tensor shaped like ``old_logp``.
    """
    return old_logp > -math.log1p(clip)


def clipped_surrogate(
    ratio: Tensor, advantage: Tensor | float, clip_low: float = PPO_CLIP, clip_high: float | None = None
) -> tuple[Tensor, Tensor]:
    r"""PPO's clipped surrogate per token and its slope in the ratio (the objective, maximised).

    .. math:: J(r) = \min\big(r \hat A,\; \mathrm{clip}(r, 1-\epsilon_\mathrm{low}, 1+\epsilon_\mathrm{high})\,
              \hat A\big),\qquad
              \frac{\partial J}{\partial r} = \begin{cases} \hat A & r \hat A \le \mathrm{clip}(r)\,\hat A \\
              0 & \text{otherwise (the clipped branch is the minimum)} \end{cases}

    ``clip_high`` defaults to ``clip_low`` (PPO's symmetric interval). Returns ``(value, slope)``,
    each shaped like ``ratio``; :func:`ppo_clip_loss` is the negated token-mean of ``value``.
    """
    high = clip_low if clip_high is None else clip_high
    advantage = torch.as_tensor(advantage, dtype=ratio.dtype, device=ratio.device)
    unclipped = ratio * advantage
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + high) * advantage
    slope = torch.where(unclipped <= clipped, advantage.expand_as(unclipped), torch.zeros_like(unclipped))
    return torch.minimum(unclipped, clipped), slope


def clip_fraction_by_minibatch(ratios: Tensor, mask: Tensor, clip: float, refresh_every: int) -> Tensor:
    r"""Share of completion tokens past :math:`1+\epsilon` that each mini-batch of one global batch meets.

    ``ratios[k]`` (``[B, T]``) holds the ratios :math:`r^{(k)}_t = \pi_{\theta_k}/\pi_{\theta_\mathrm{old}}`
    after ``k`` optimiser steps since the old policy was frozen. With ``refresh_every`` (K) mini-batches per
    global batch, mini-batch ``k`` is trained after ``k`` steps, so it meets ``ratios[k]``:

    .. math:: c_k = \frac{\sum_t m_t\,\mathbf{1}\{r^{(k)}_t > 1+\epsilon\}}{\sum_t m_t},\qquad k = 0, \dots, K-1

    Returns a float64 tensor of K entries; the first is always 0 (no step taken yet, every ratio is 1).
    """
    selected = mask > 0
    if not 1 <= refresh_every <= len(ratios):
        raise ValueError(f"K must be between 1 and {len(ratios)} (the number of ratio snapshots), got {refresh_every}")
    return torch.stack([(ratios[k][selected] > 1.0 + clip).double().mean() for k in range(refresh_every)])


def group_advantages(rewards: Tensor, group_size: int, eps: float = 1e-6) -> Tensor:
    r"""GRPO's group-normalised advantages: each reward compared with the other samples of its prompt.

    ``rewards`` holds consecutive groups of ``group_size`` samples (one group per prompt);
    the result has the same shape. For sample :math:`i` of group :math:`g`:

    .. math:: \hat A_{g,i} = \frac{r_{g,i} - \mu_g}{\sigma_g + \varepsilon},\qquad
              \mu_g = \frac{1}{G}\sum_{j=1}^{G} r_{g,j},\qquad
              \sigma_g = \sqrt{\frac{1}{G}\sum_{j=1}^{G} (r_{g,j} - \mu_g)^2}

    (:math:`\sigma_g` is the population standard deviation). Every group then has mean
    zero and, unless all its rewards are equal, standard deviation one; a group whose
    rewards are all equal (all right or all wrong) gets zero advantage: it carries no
    learning signal.
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.float().reshape(-1, group_size)
    mean = r.mean(dim=-1, keepdim=True)
    std = r.std(dim=-1, unbiased=False, keepdim=True)
    return ((r - mean) / (std + eps)).reshape(rewards.shape)


# ---------------------------------------------------------------- the registry of objectives

LossFn = Callable[..., tuple[Tensor, dict[str, Tensor]]]


@dataclass(frozen=True)
class Objective:
    """One fine-tuning objective, as the trainer, ``PSFTTrainer``, the CLI, the sweeps and the plots see it.

    ``loss(logp, mask, old_logp, ref_logp, *, clip, beta, agg)`` returns ``(loss, stats)``;
    ``old_logp`` is given only when ``needs_old_logprobs`` (the frozen old policy's log-probs),
    ``ref_logp`` only when ``needs_reference`` (the base model's). ``label`` and ``colour`` are
    how tables and figures show it.
    """

    name: str
    loss: LossFn
    label: str
    colour: str
    needs_old_logprobs: bool = False
    needs_reference: bool = False


OBJECTIVES: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    """Add ``objective`` to :data:`OBJECTIVES` (a name may be declared only once); returns it."""
    if objective.name in OBJECTIVES:
        raise ValueError(f"objective {objective.name!r} is already registered")
    OBJECTIVES[objective.name] = objective
    return objective


def get_objective(name: str) -> Objective:
    """The registered objective called ``name``; ``ValueError`` naming the choices for any other name."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}") from None


def _sft(logp, mask, old_logp=None, ref_logp=None, *, clip=PSFT_CLIP, beta=KL_BETA, agg="token-mean"):
    return sft_loss(logp, mask, agg), {}


def _psft(logp, mask, old_logp=None, ref_logp=None, *, clip=PSFT_CLIP, beta=KL_BETA, agg="token-mean"):
    return psft_loss(logp, old_logp, mask, clip, agg)


def _sft_kl(logp, mask, old_logp=None, ref_logp=None, *, clip=PSFT_CLIP, beta=KL_BETA, agg="token-mean"):
    return sft_kl_loss(logp, ref_logp, mask, beta, agg), {}


def _dft(logp, mask, old_logp=None, ref_logp=None, *, clip=PSFT_CLIP, beta=KL_BETA, agg="token-mean"):
    return dft_loss(logp, mask, agg), {}


def _asft(logp, mask, old_logp=None, ref_logp=None, *, clip=PSFT_CLIP, beta=KL_BETA, agg="token-mean"):
    return asft_loss(logp, ref_logp, mask, beta, agg), {}


# The declaration order is the order of sweeps, CLI choices and legends.
register(Objective("sft", _sft, "SFT", "tab:red"))
register(Objective("psft", _psft, "PSFT", "tab:blue", needs_old_logprobs=True))
register(Objective("sft_kl", _sft_kl, "SFT-KL", "tab:orange", needs_reference=True))
register(Objective("dft", _dft, "DFT", "tab:green"))
register(Objective("asft", _asft, "ASFT", "tab:purple", needs_reference=True))
