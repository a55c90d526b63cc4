"""The 'implement it' and 'predict, then run' checkers: a right answer passes, a typical mistake is named,
an unattempted exercise (None) prints so and returns None."""

from __future__ import annotations

import pytest
import torch

from psft_edu import exercises


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask > 0, x, torch.zeros_like(x)).sum() / mask.sum()


def token_logprobs_ok(logits, targets):
    return torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def token_logprobs_unstable(logits, targets):
    return torch.log(torch.softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1))


def token_logprobs_probs(logits, targets):
    return token_logprobs_ok(logits, targets).exp()


def sft_ok(logp, mask, agg):
    nll = torch.where(mask > 0, -logp, torch.zeros_like(logp))
    if agg == "token-mean":
        return nll.sum() / mask.sum()
    rows = mask.sum(-1) > 0
    return (nll.sum(-1)[rows] / mask.sum(-1)[rows]).mean()


def sft_token_only(logp, mask, agg):
    return sft_ok(logp, mask, "token-mean")


def pg_ok(logp, advantages, mask):
    return _masked_mean(-advantages * logp, mask)


def pg_sign(logp, advantages, mask):
    return -pg_ok(logp, advantages, mask)


def ppo_ok(logp, old_logp, advantages, mask, clip_low, clip_high):
    r = torch.exp(logp - old_logp)
    return -_masked_mean(torch.minimum(r * advantages, r.clamp(1 - clip_low, 1 + clip_high) * advantages), mask)


def ppo_max(logp, old_logp, advantages, mask, clip_low, clip_high):
    r = torch.exp(logp - old_logp)
    return -_masked_mean(torch.maximum(r * advantages, r.clamp(1 - clip_low, 1 + clip_high) * advantages), mask)


def psft_ok(logp, old_logp, mask, clip):
    r = torch.exp(logp - old_logp)
    return -_masked_mean(torch.minimum(r, r.clamp(1 - clip, 1 + clip)), mask)


def psft_two_sided(logp, old_logp, mask, clip):
    return -_masked_mean(torch.exp(logp - old_logp).clamp(1 - clip, 1 + clip), mask)


def stats_ok(logp, old_logp, mask, clip):
    r = torch.exp(logp - old_logp)[mask > 0]
    return (r > 1 + clip).float().mean(), r.mean(), r.max()


def stats_inclusive(logp, old_logp, mask, clip):
    r = torch.exp(logp - old_logp)[mask > 0]
    return (r >= 1 + clip).float().mean(), r.mean(), r.max()


CASES = [
    (exercises.check_token_logprobs_impl, token_logprobs_ok, token_logprobs_probs, "probability, not its logarithm"),
    (exercises.check_token_logprobs_impl, token_logprobs_ok, token_logprobs_unstable, "log_softmax"),
    (exercises.check_sft_loss_impl, sft_ok, sft_token_only, "seq-mean gives the token-mean"),
    (exercises.check_pg_loss_impl, pg_ok, pg_sign, "sign is flipped"),
    (exercises.check_ppo_clip_impl, ppo_ok, ppo_max, "max() instead of min()"),
    (exercises.check_psft_loss_impl, psft_ok, psft_two_sided, "also clips from below"),
    (exercises.check_ratio_stats_impl, stats_ok, stats_inclusive, "use >"),
]


@pytest.mark.parametrize("checker, right, wrong, named", CASES, ids=[f"{c[0].__name__}-{c[2].__name__}" for c in CASES])
def test_implementation_checkers(capsys, checker, right, wrong, named) -> None:
    assert checker(right) is True
    assert "Correct" in capsys.readouterr().out
    assert checker(wrong) is False
    out = capsys.readouterr().out
    assert named in out, out
    assert checker(None) is None
    assert "not attempted" in capsys.readouterr().out.lower()


def test_implementation_checker_reports_exceptions_and_non_callables(capsys) -> None:
    def broken(logp, mask, agg):
        raise RuntimeError("boom")

    assert exercises.check_sft_loss_impl(broken) is False
    assert "RuntimeError: boom" in capsys.readouterr().out
    assert exercises.check_sft_loss_impl(3.0) is False
    assert "pass a function" in capsys.readouterr().out


def test_unknown_mistake_names_the_case(capsys) -> None:
    def off_by_a_bit(logp, old_logp, mask, clip):
        return psft_ok(logp, old_logp, mask, clip) + 0.01

    assert exercises.check_psft_loss_impl(off_by_a_bit) is False
    out = capsys.readouterr().out
    assert "random 3x5 batch" in out and "the package gives" in out


def test_generic_check_implementation_catches_edge_cases(capsys) -> None:
    def cases():
        return [("positive x", {"x": torch.tensor([1.0, 2.0])}), ("x with a zero", {"x": torch.tensor([0.0, 2.0])})]

    def reference(x):
        return torch.where(x > 0, x.log(), torch.zeros_like(x))

    assert exercises.check_implementation(reference, reference, cases, "safe_log") is True
    assert exercises.check_implementation(lambda x: x.log(), reference, cases, "safe_log") is False
    assert "x with a zero" in capsys.readouterr().out
    assert exercises.check_implementation(None, reference, cases, "safe_log") is None


def test_check_prediction(capsys) -> None:
    assert exercises.check_prediction(0.5, 0.52, "p", tolerance=0.05) is True
    assert exercises.check_prediction(0.2, 0.52, "p", tolerance=0.05) is False
    assert "0.52" in capsys.readouterr().out
    assert exercises.check_prediction("Same", "same", "fixed point") is True
    assert exercises.check_prediction("different", "same", "fixed point") is False
    assert exercises.check_prediction(True, False, "flag") is False
    assert exercises.check_prediction("yes", True, "flag") is False
    capsys.readouterr()
    assert exercises.check_prediction(None, 1.0, "p") is None
    assert "not attempted" in capsys.readouterr().out.lower()


def test_recall_checkers_return_none_when_unattempted(capsys) -> None:
    """An untouched recall exercise must not read as passed (it used to return True)."""
    assert exercises.check_clipped_value(None, r=1.5, advantage=2.0, epsilon=0.2) is None
    assert exercises.check_advantage(-2.0, None, q=3.0, v=5.0) is None  # half attempted
    assert exercises.check_clipped_value(2.4, r=1.5, advantage=2.0, epsilon=0.2) is True
    assert exercises.check_clipped_value(3.0, r=1.5, advantage=2.0, epsilon=0.2) is False
    assert "larger of the two" in capsys.readouterr().out
