"""The objectives' identities: SFT = policy gradient with A = 1, PSFT = clipped SFT, and friends.

Shapes stay tiny so hypothesis can try many of them quickly. Gradients are compared
with respect to the logits (through :func:`token_logprobs`) unless a test says otherwise.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.testing import assert_close

from psft_edu import objectives as obj

AGGS = list(obj.AGGREGATIONS)


# ---------------------------------------------------------------- helpers


def make_problem(seed: int, batch: int, seq: int, vocab: int, dtype: torch.dtype = torch.float32):
    """Random logits (a leaf that wants a gradient), targets and a mask with at least one token per row."""
    g = torch.Generator().manual_seed(seed)
    logits = (2.0 * torch.randn(batch, seq, vocab, generator=g)).to(dtype).requires_grad_(True)
    targets = torch.randint(0, vocab, (batch, seq), generator=g)
    mask = (torch.rand(batch, seq, generator=g) < 0.6).float()
    mask[:, 0] = 1.0  # every row has a completion token, so seq-mean and token-mean are both defined
    return logits, targets, mask


def grad_of(loss: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss, wrt, retain_graph=True)
    return g


def naive_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)


def naive_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def token_weights(mask: torch.Tensor, agg: str) -> torch.Tensor:
    """The weight each token gets in the aggregate (token-mean: 1/N; seq-mean: 1/(n_i * #rows))."""
    if agg == "token-mean":
        return mask / mask.sum()
    per_row = mask.sum(-1, keepdim=True)
    rows = (per_row > 0).sum()
    return torch.where(per_row > 0, mask / per_row.clamp(min=1), torch.zeros_like(mask)) / rows


def grad_log_pi(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """d log pi(y_t) / d logits_t for every position: onehot(y_t) - softmax(logits_t)."""
    probs = torch.softmax(logits.detach().float(), dim=-1)
    return torch.nn.functional.one_hot(targets, logits.shape[-1]).float() - probs


shapes = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(2, 7))
seeds = st.integers(0, 2**16)


# ---------------------------------------------------------------- SFT is policy gradient with A = 1


@given(seed=seeds, shape=shapes, agg=st.sampled_from(AGGS))
def test_sft_gradient_equals_policy_gradient_with_unit_advantage(seed, shape, agg):
    logits, targets, mask = make_problem(seed, *shape)
    logp = obj.token_logprobs(logits, targets)
    sft = obj.sft_loss(logp, mask, agg)
    pg = obj.policy_gradient_loss(logp, torch.ones_like(logp), mask, agg)
    assert_close(sft, pg)
    g_sft = grad_of(sft, logits)
    g_pg = grad_of(pg, logits)
    assert_close(g_sft, g_pg, rtol=0, atol=1e-7)
    # ... and both equal the analytic gradient -sum_t w_t (onehot - softmax).
    expected = -token_weights(mask, agg)[..., None] * grad_log_pi(logits, targets)
    assert_close(g_sft, expected, rtol=1e-5, atol=1e-6)
    assert g_sft.abs().sum() > 0


def test_policy_gradient_advantage_scales_gradient_per_token():
    logits, targets, mask = make_problem(3, 2, 4, 5)
    adv = torch.tensor([[2.0, -1.0, 0.5, 0.0], [1.0, 3.0, -2.0, 1.0]])
    logp = obj.token_logprobs(logits, targets)
    g = grad_of(obj.policy_gradient_loss(logp, adv, mask), logits)
    expected = -(adv * token_weights(mask, "token-mean"))[..., None] * grad_log_pi(logits, targets)
    assert_close(g, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- PSFT


@given(seed=seeds, shape=shapes, agg=st.sampled_from(AGGS), clip=st.sampled_from([0.1, 0.2, 0.28]))
def test_psft_with_fresh_old_policy_is_sft(seed, shape, agg, clip):
    """Ratio 1 everywhere: the loss value is -1 (the mean ratio) but the gradient is exactly SFT's."""
    logits, targets, mask = make_problem(seed, *shape)
    logp = obj.token_logprobs(logits, targets)
    loss, stats = obj.psft_loss(logp, logp.detach(), mask, clip=clip, agg=agg)
    assert loss.item() == pytest.approx(-1.0, abs=1e-7)
    assert stats["clip_fraction"].item() == 0.0
    assert stats["ratio_min"].item() == stats["ratio_max"].item() == 1.0
    g_psft = grad_of(loss, logits)
    logp2 = obj.token_logprobs(logits, targets)
    g_sft = grad_of(obj.sft_loss(logp2, mask, agg), logits)
    assert_close(g_psft, g_sft, rtol=0, atol=1e-7)
    assert g_sft.abs().sum() > 0


@given(
    seed=seeds,
    shape=shapes,
    clip=st.sampled_from([0.1, 0.2, 0.28]),
    agg=st.sampled_from(AGGS),
)
def test_psft_gradient_is_zero_above_the_clip_and_ratio_weighted_below(seed, shape, clip, agg):
    logits, targets, mask = make_problem(seed, *shape)
    g = torch.Generator().manual_seed(seed + 1)
    # log-ratios spread over both sides of log(1+eps), kept away from the kink itself
    log_ratio = torch.empty(shape[:2]).uniform_(-0.6, 0.6, generator=g)
    bound = math.log1p(clip)
    near = (log_ratio - bound).abs() < 1e-3
    log_ratio = torch.where(near, log_ratio + 0.01, log_ratio)
    logp = obj.token_logprobs(logits, targets)
    old_logp = logp.detach() - log_ratio
    loss, stats = obj.psft_loss(logp, old_logp, mask, clip=clip, agg=agg)
    grad = grad_of(loss, logits)

    ratio = log_ratio.exp()
    above = ratio > 1 + clip
    weight = torch.where(above, torch.zeros_like(ratio), ratio) * token_weights(mask, agg)
    expected = -weight[..., None] * grad_log_pi(logits, targets)
    assert_close(grad, expected, rtol=1e-5, atol=1e-6)
    # zero exactly (not just small) on clipped tokens; present on every unclipped completion token
    assert torch.all(grad[above] == 0)
    live = (~above) & (mask > 0)
    assert torch.all(grad[live].abs().sum(-1) > 0)
    # the loss value is -mean(min(r, 1+eps)) (with A = 1 the lower bound never binds)
    expected_value = obj.masked_mean(-torch.clamp(ratio, max=1 + clip), mask, agg)
    assert_close(loss.detach(), expected_value, rtol=1e-6, atol=1e-6)
    share = (above & (mask > 0)).sum() / mask.sum()
    assert_close(stats["clip_fraction"], share.float())


def test_psft_gradient_wrt_logp_by_hand():
    """Three tokens, ratio below, at 1 and above 1+eps: gradients -r/3, -1/3 and 0."""
    logp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    old = torch.tensor([[-1.0 + math.log(1 / 0.9), -2.0, -0.5 - math.log(1.5)]])  # r = 0.9, 1.0, 1.5
    loss, stats = obj.psft_loss(logp, old, torch.ones(1, 3), clip=0.28)
    loss.backward()
    assert_close(logp.grad, torch.tensor([[-0.9 / 3, -1.0 / 3, 0.0]]))
    assert_close(loss.detach(), torch.tensor(-(0.9 + 1.0 + 1.28) / 3))
    assert stats["clip_fraction"].item() == pytest.approx(1 / 3)
    assert stats["ratio_max"].item() == pytest.approx(1.5)
    assert stats["ratio_min"].item() == pytest.approx(0.9)


# ---------------------------------------------------------------- PPO's clip with negative advantages


@given(seed=seeds, shape=shapes, clip_low=st.sampled_from([0.1, 0.2]), clip_high=st.sampled_from([0.2, 0.28]))
def test_ppo_negative_advantage_zero_gradient_below_lower_bound(seed, shape, clip_low, clip_high):
    logits, targets, mask = make_problem(seed, *shape)
    g = torch.Generator().manual_seed(seed + 7)
    log_ratio = torch.empty(shape[:2]).uniform_(-0.6, 0.6, generator=g)
    low = math.log(1 - clip_low)
    log_ratio = torch.where((log_ratio - low).abs() < 1e-3, log_ratio - 0.01, log_ratio)
    adv = -torch.empty(shape[:2]).uniform_(0.5, 2.0, generator=g)
    logp = obj.token_logprobs(logits, targets)
    loss, stats = obj.ppo_clip_loss(logp, logp.detach() - log_ratio, adv, mask, clip_low, clip_high)
    grad = grad_of(loss, logits)

    ratio = log_ratio.exp()
    below = ratio < 1 - clip_low
    assert torch.all(grad[below] == 0)
    live = (~below) & (mask > 0)
    assert torch.all(grad[live].abs().sum(-1) > 0)  # above 1+eps_high a negative advantage still pushes down
    # d(-A r)/d logp = -A r: the push is downward (A < 0) wherever the clip leaves the token live
    weight = torch.where(below, torch.zeros_like(ratio), adv * ratio) * token_weights(mask, "token-mean")
    assert_close(grad, -weight[..., None] * grad_log_pi(logits, targets), rtol=1e-5, atol=1e-6)
    share = (below & (mask > 0)).sum() / mask.sum()
    assert_close(stats["clip_fraction"], share.float())


# ---------------------------------------------------------------- statistics


@given(seed=seeds, shape=shapes, clip_low=st.sampled_from([0.1, 0.2]), clip_high=st.sampled_from([0.2, 0.28]))
def test_clip_statistics(seed, shape, clip_low, clip_high):
    g = torch.Generator().manual_seed(seed)
    batch, seq = shape[:2]
    logp = -torch.rand(batch, seq, generator=g) * 3
    log_ratio = torch.empty(batch, seq).uniform_(-0.7, 0.7, generator=g)
    adv = torch.randn(batch, seq, generator=g)
    mask = (torch.rand(batch, seq, generator=g) < 0.6).float()
    mask[0, 0] = 1.0
    # extreme ratios on masked positions must not leak into the statistics
    log_ratio = torch.where(mask > 0, log_ratio, torch.full_like(log_ratio, 5.0))
    _, stats = obj.ppo_clip_loss(logp, logp - log_ratio, adv, mask, clip_low, clip_high)

    sel = mask > 0
    r = log_ratio.exp()[sel]
    a = adv[sel]
    clipped = ((a > 0) & (r > 1 + clip_high)) | ((a < 0) & (r < 1 - clip_low))
    assert stats["clip_fraction"].item() == pytest.approx(clipped.float().mean().item(), abs=1e-7)
    assert stats["ratio_mean"].item() == pytest.approx(r.mean().item(), rel=1e-6)
    assert stats["ratio_min"].item() == pytest.approx(r.min().item(), rel=1e-6)
    assert stats["ratio_max"].item() == pytest.approx(r.max().item(), rel=1e-6)
    kl = ((r - 1) - r.log()).mean().item()
    assert stats["k3_old_new"].item() == pytest.approx(kl, rel=1e-4, abs=1e-7)
    assert stats["k3_old_new"].item() >= 0
    for value in stats.values():
        assert not value.requires_grad


# ---------------------------------------------------------------- masked positions are inert


def _losses():
    """(name, function of (logp, old_logp, ref_logp, adv, mask) -> scalar loss)."""
    return [
        ("sft", lambda lp, old, ref, adv, m: obj.sft_loss(lp, m)),
        ("pg", lambda lp, old, ref, adv, m: obj.policy_gradient_loss(lp, adv, m)),
        ("ppo", lambda lp, old, ref, adv, m: obj.ppo_clip_loss(lp, old, adv, m, 0.2, 0.28)[0]),
        ("psft", lambda lp, old, ref, adv, m: obj.psft_loss(lp, old, m)[0]),
        ("psft-seq", lambda lp, old, ref, adv, m: obj.psft_loss(lp, old, m, agg="seq-mean")[0]),
        ("dft", lambda lp, old, ref, adv, m: obj.dft_loss(lp, m)),
        ("kl", lambda lp, old, ref, adv, m: obj.kl_to_reference(lp, ref, m)),
        ("sft_kl", lambda lp, old, ref, adv, m: obj.sft_kl_loss(lp, ref, m, beta=0.3)),
        ("asft", lambda lp, old, ref, adv, m: obj.asft_loss(lp, ref, m, beta=0.3, agg="seq-mean")),
    ]


@pytest.mark.parametrize("name,loss_fn", _losses(), ids=[n for n, _ in _losses()])
@pytest.mark.parametrize("junk", [float("nan"), float("inf"), float("-inf"), 1e30, -1e30])
def test_masked_positions_never_touch_loss_or_gradient(name, loss_fn, junk):
    g = torch.Generator().manual_seed(5)
    logp = -torch.rand(3, 6, generator=g) * 2 - 0.05
    old = logp + 0.3 * torch.randn(3, 6, generator=g)
    ref = logp + 0.3 * torch.randn(3, 6, generator=g)
    adv = torch.randn(3, 6, generator=g)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.float32)

    clean = logp.clone().requires_grad_(True)
    base = loss_fn(clean, old, ref, adv, mask)
    base.backward()

    def dirty(x):
        return torch.where(mask > 0, x, torch.full_like(x, junk))

    noisy = dirty(logp).requires_grad_(True)
    loss = loss_fn(noisy, dirty(old), dirty(ref), adv, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.equal(loss.detach(), base.detach()), name
    assert torch.all(noisy.grad[mask == 0] == 0), name
    assert torch.equal(noisy.grad, clean.grad), name


# ---------------------------------------------------------------- chunked log-probs and entropy


@pytest.mark.parametrize("chunk", [1, 3, 7, None])
@given(seed=seeds, shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(2, 40)))
def test_token_logprobs_chunked_matches_naive(chunk, seed, shape):
    logits, targets, _ = make_problem(seed, *shape)
    weights = torch.randn(shape[:2], generator=torch.Generator().manual_seed(seed))
    ours = obj.token_logprobs(logits, targets, chunk_size=chunk)
    assert ours.dtype == torch.float32 and ours.shape == targets.shape
    ref = naive_logprobs(logits, targets)
    assert_close(ours, ref, rtol=0, atol=1e-4)
    g_ours = grad_of((ours * weights).sum(), logits)
    g_ref = grad_of((ref * weights).sum(), logits)
    assert_close(g_ours, g_ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 3, 7, None])
def test_token_logprobs_bfloat16(chunk):
    logits, targets, _ = make_problem(11, 3, 5, 33, dtype=torch.bfloat16)
    weights = torch.randn(3, 5)
    ours = obj.token_logprobs(logits, targets, chunk_size=chunk)
    assert ours.dtype == torch.float32
    upcast = logits.detach().float().requires_grad_(True)  # the same bf16 values, in float32
    ref = naive_logprobs(upcast, targets)
    assert_close(ours, ref, rtol=0, atol=1e-4)
    g_ours = grad_of((ours * weights).sum(), logits)
    assert g_ours.dtype == torch.bfloat16
    g_ref = grad_of((ref * weights).sum(), upcast)
    # the gradient is computed in float32 and rounded once to bf16 (8 bits of mantissa)
    assert_close(g_ours.float(), g_ref, rtol=2**-7, atol=1e-6)


def test_token_logprobs_large_logits_stay_finite():
    logits = torch.tensor([[[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]]], requires_grad=True)
    targets = torch.tensor([[2, 1]])
    out = obj.token_logprobs(logits, targets, chunk_size=1)
    assert_close(out.detach(), torch.tensor([[-2000.0, -math.log(3)]]))
    out.sum().backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("chunk", [1, 3, 7, None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_entropy_chunked_matches_naive(chunk, dtype):
    logits, _, _ = make_problem(13, 3, 5, 17, dtype=dtype)
    ours = obj.token_entropy(logits, chunk_size=chunk)
    assert ours.dtype == torch.float32 and not ours.requires_grad
    assert_close(ours, naive_entropy(logits.detach()), rtol=0, atol=1e-5)
    # bounds: 0 <= H <= log V, and a uniform distribution reaches log V
    assert torch.all(ours >= -1e-6) and torch.all(ours <= math.log(17) + 1e-5)
    uniform = obj.token_entropy(torch.zeros(1, 2, 17, dtype=dtype), chunk_size=chunk)
    assert_close(uniform, torch.full((1, 2), math.log(17)))


# ---------------------------------------------------------------- aggregation


def test_token_mean_and_seq_mean_by_hand():
    # row 0: a one-token answer (value 2); row 1: a four-token answer (value 4 each); row 2: no answer
    x = torch.tensor([[2.0, 9.0, 9.0, 9.0], [4.0, 4.0, 4.0, 4.0], [7.0, 7.0, 7.0, 7.0]])
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.float32)
    assert obj.masked_mean(x, mask, "token-mean").item() == pytest.approx((2 + 16) / 5)
    assert obj.masked_mean(x, mask, "seq-mean").item() == pytest.approx((2 + 4) / 2)  # the empty row is skipped

    # The gradient of the SFT loss says how much each answer weighs in the update.
    logp = torch.full((3, 4), -1.0, requires_grad=True)
    grad_tok = grad_of(obj.sft_loss(logp, mask, "token-mean"), logp)
    grad_seq = grad_of(obj.sft_loss(logp, mask, "seq-mean"), logp)
    assert_close(grad_tok, -mask / 5)
    assert_close(grad_seq, -torch.tensor([[1 / 2, 0, 0, 0], [1 / 8] * 4, [0] * 4]))
    long_share_tok = grad_tok[1].sum() / grad_tok.sum()
    long_share_seq = grad_seq[1].sum() / grad_seq.sum()
    assert long_share_tok.item() == pytest.approx(4 / 5)  # token-mean: weight grows with length
    assert long_share_seq.item() == pytest.approx(1 / 2)  # seq-mean: every answer counts once
    assert long_share_tok > long_share_seq


def test_unknown_aggregation_rejected():
    with pytest.raises(ValueError, match="agg"):
        obj.masked_mean(torch.ones(1, 2), torch.ones(1, 2), "sum")


@pytest.mark.parametrize(
    "call",
    [
        lambda lp, m: obj.masked_mean(lp, m),
        lambda lp, m: obj.masked_mean(lp, m, "seq-mean"),
        lambda lp, m: obj.sft_loss(lp, m),
        lambda lp, m: obj.psft_loss(lp, lp.detach(), m),
        lambda lp, m: obj.ppo_clip_loss(lp, lp.detach(), torch.ones_like(lp), m),
        lambda lp, m: obj.dft_loss(lp, m, "seq-mean"),
        lambda lp, m: obj.kl_to_reference(lp, lp.detach(), m),
    ],
    ids=["masked_mean", "masked_mean-seq", "sft", "psft", "ppo", "dft", "kl"],
)
def test_all_masked_batch_raises(call):
    logp = -torch.rand(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="mask selects no token"):
        call(logp, torch.zeros(2, 3))


# ---------------------------------------------------------------- DFT and the KL anchor


@given(seed=seeds, shape=shapes, agg=st.sampled_from(AGGS))
def test_dft_gradient_is_sft_gradient_scaled_by_probability(seed, shape, agg):
    logits, targets, mask = make_problem(seed, *shape)
    logp = obj.token_logprobs(logits, targets)
    g_dft = grad_of(obj.dft_loss(logp, mask, agg), logits)
    logp2 = obj.token_logprobs(logits, targets)
    g_sft = grad_of(obj.sft_loss(logp2, mask, agg), logits)
    p = logp.detach().exp()
    # each position's logits only feed that position's log-prob, so the scaling is row by row
    assert_close(g_dft, p[..., None] * g_sft, rtol=1e-5, atol=1e-7)
    value = obj.dft_loss(logp.detach(), mask, agg)
    assert_close(value, obj.masked_mean(-p * logp.detach(), mask, agg))


@given(seed=seeds, shape=shapes, agg=st.sampled_from(AGGS))
def test_kl_to_reference_nonnegative_and_zero_at_reference(seed, shape, agg):
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(shape[:2], generator=g) * 4).requires_grad_(True)
    ref = -torch.rand(shape[:2], generator=g) * 4
    mask = torch.ones(shape[:2])
    kl = obj.kl_to_reference(logp, ref, mask, agg)
    assert kl.item() >= 0
    delta = ref - logp.detach()
    assert_close(kl.detach(), obj.masked_mean(delta.exp() - 1 - delta, mask, agg))
    same = obj.kl_to_reference(logp, logp.detach(), mask, agg)
    assert same.item() == 0.0
    assert torch.all(grad_of(same, logp) == 0)
    # SFT-KL and ASFT are the sums they claim to be
    beta = 0.25
    assert_close(obj.sft_kl_loss(logp, ref, mask, beta, agg), obj.sft_loss(logp, mask, agg) + beta * kl)
    assert_close(obj.asft_loss(logp, ref, mask, beta, agg), obj.dft_loss(logp, mask, agg) + beta * kl)


def test_kl_to_reference_strictly_positive_when_different():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -2.0]])
    kl = obj.kl_to_reference(logp, ref, torch.ones(1, 2))
    expected = (math.exp(-0.5) - 1 + 0.5) / 2
    assert kl.item() == pytest.approx(expected, rel=1e-6)
    assert kl.item() > 0


# ---------------------------------------------------------------- agreement with transformers' own loss


def test_sft_loss_matches_transformers_causal_lm_loss(tokenizer):
    from psft_edu.data import collate, encode_records
    from psft_edu.models import new_model

    model = new_model("tiny", tokenizer, seed=0)
    model.eval()
    records = [
        {"prompt": "make 14 from 3 5 9 11 2:", "completion": " 3+11=14"},
        {"prompt": "add 2 3:", "completion": " 5"},
        {"prompt": "reverse abcdefgh:", "completion": " hgfedcba"},
        {"prompt": "sort 5 2 9 1 0 7:", "completion": " 0 1 2 5 7 9"},
    ]
    ids, prompt_lengths, truncated = encode_records(records, tokenizer, max_length=64)
    assert truncated == 0
    batch = collate(ids, prompt_lengths, tokenizer.pad_token_id)

    # Our convention: input_ids[:, t] predicts targets[:, t] = the full sequence's token t + 1.
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    ours = obj.sft_loss(obj.token_logprobs(logits, batch.targets), batch.mask)

    # transformers' convention: feed the whole sequence; labels are the tokens themselves, shifted
    # inside the model, with -100 wherever no loss is wanted (prompt and padding).
    width = max(len(s) for s in ids)
    full = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(full)
    labels = torch.full_like(full, -100)
    for i, (seq, p) in enumerate(zip(ids, prompt_lengths)):
        full[i, : len(seq)] = torch.tensor(seq)
        attention[i, : len(seq)] = 1
        labels[i, p : len(seq)] = torch.tensor(seq[p:])  # completion + eos
    assert torch.equal(batch.input_ids, full[:, :-1]) and torch.equal(batch.targets, full[:, 1:])
    assert int((labels != -100).sum()) == int(batch.mask.sum())
    out = model(input_ids=full, attention_mask=attention, labels=labels)
    assert_close(ours, out.loss, rtol=1e-5, atol=1e-6)

    # The gradients agree too.
    g_ours = torch.autograd.grad(ours, list(model.parameters()))
    g_hf = torch.autograd.grad(out.loss, list(model.parameters()))
    for a, b in zip(g_ours, g_hf):
        assert_close(a, b, rtol=1e-4, atol=1e-6)

    # And the comparison has teeth: counting the prompt too gives a different number.
    everything = obj.sft_loss(obj.token_logprobs(logits, batch.targets), batch.attention_mask.float())
    assert abs(everything.item() - out.loss.item()) > 1e-3


def test_ratio_quantiles_match_numpy() -> None:
    import numpy as np

    from psft_edu.objectives import ratio_quantiles

    gen = torch.Generator().manual_seed(3)
    ratio = torch.exp(torch.randn(6, 9, generator=gen) * 2)
    mask = (torch.rand(6, 9, generator=gen) > 0.3).float()
    q = ratio_quantiles(ratio, mask)
    kept = ratio[mask > 0].numpy()
    assert q["ratio_median"].item() == pytest.approx(float(np.quantile(kept, 0.5)), rel=1e-6)
    assert q["ratio_p99"].item() == pytest.approx(float(np.quantile(kept, 0.99)), rel=1e-6)
    assert q["ratio_max"].item() == pytest.approx(float(kept.max()), rel=1e-7)


def test_unclippable_tokens_never_pass_the_bound() -> None:
    """r <= 1 / pi_old: a token above 1/(1+eps) under the old policy cannot be clipped, whatever the new policy."""
    from psft_edu.objectives import unclippable

    eps = 0.28
    old_p = torch.linspace(0.01, 0.999, 400)
    new_p = torch.rand(50, 1) * 0 + torch.linspace(0.0, 1.0, 50)[:, None]  # every new probability in [0, 1]
    ratio = new_p / old_p
    never = unclippable(old_p.log(), eps).expand_as(ratio)
    assert never.any() and (~never).any()
    assert not (ratio[never] > 1 + eps).any()
    assert (ratio[~never] > 1 + eps).any()  # below the threshold some new policy does pass the bound
    assert unclippable(torch.tensor([1 / (1 + eps) + 1e-4]).log(), eps).item()
    assert not unclippable(torch.tensor([1 / (1 + eps) - 1e-4]).log(), eps).item()


def test_k1_and_k3_are_unbiased_and_k3_is_never_negative():
    """Both estimate KL(q || p) from draws of q; k3 never goes below zero, k1 does. Near q, k3 varies less; when p
    puts its mass on a token q rarely draws, the ratio p/q of that draw is huge and k3 varies far more than k1."""
    gen = torch.Generator().manual_seed(0)
    q_logits = torch.randn(6, 11, generator=gen)
    near = q_logits + 0.1 * torch.randn(6, 11, generator=gen)
    rare = torch.full((6, 11), 0.1 / 10).log()
    rare[:, 0] = math.log(0.9)  # p: 0.9 on token 0
    q_far = torch.full((6, 11), 0.995 / 10).log()
    q_far[:, 0] = math.log(0.005)  # q draws token 0 once in 200
    for q, p, k3_varies_less in ((q_logits, near, True), (q_far, rare, False)):
        exact = obj.exact_kl(q, p)
        log_q, log_p = torch.log_softmax(q, -1), torch.log_softmax(p, -1)
        draws = torch.multinomial(log_q.exp(), 40_000, replacement=True, generator=gen)
        k1 = obj.kl_k1(log_q.gather(1, draws), log_p.gather(1, draws))
        k3 = obj.kl_k3(log_q.gather(1, draws), log_p.gather(1, draws))
        for k in (k1, k3):
            standard_error = k.std(dim=1) / draws.shape[1] ** 0.5
            assert ((k.mean(dim=1) - exact).abs() < 5 * standard_error + 1e-6).all()
        assert (k3 >= 0).all() and (k1 < 0).any()
        assert bool(k3.var(dim=1).mean() < k1.var(dim=1).mean()) is k3_varies_less


def test_k3_estimator_matches_the_reference_penalty():
    gen = torch.Generator().manual_seed(1)
    logp, ref = -torch.rand(3, 5, generator=gen) * 4, -torch.rand(3, 5, generator=gen) * 4
    mask = torch.ones(3, 5)
    torch.testing.assert_close(obj.masked_mean(obj.kl_k3(logp, ref), mask), obj.kl_to_reference(logp, ref, mask))
    torch.testing.assert_close(obj.kl_k1(logp, ref), logp - ref)


def test_unclippable_zone_holds_on_a_real_model() -> None:
    """On the tiny model after a few large SFT steps on demonstrations: some tokens pass 1 + eps, and none of them
    had pi_old > 1/(1+eps) (the ratio of a demonstrated token is at most 1/pi_old)."""
    from psft_edu.data import collate, encode_records, load_split
    from psft_edu.models import load_model
    from psft_edu.objectives import unclippable

    torch.manual_seed(0)
    model, tokenizer = load_model("tiny")
    ids, starts, _ = encode_records(load_split("sft_train")[:32], tokenizer, 64)
    batch = collate(ids, starts, tokenizer.pad_token_id)

    def logprobs():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        return obj.token_logprobs(logits, batch.targets)

    with torch.no_grad():
        old = logprobs()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(4):
        optimiser.zero_grad()
        obj.sft_loss(logprobs(), batch.mask).backward()
        optimiser.step()
    with torch.no_grad():
        ratio = (logprobs() - old).exp()
    eps = obj.PSFT_CLIP
    on = batch.mask > 0
    never = unclippable(old, eps) & on
    passed = (ratio > 1 + eps) & on
    assert never.any() and passed.any()  # both kinds of token occur
    assert not (passed & never).any()
    assert (ratio[never] <= 1.0 / old[never].exp() * (1 + 1e-4)).all()
