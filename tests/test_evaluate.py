"""Exact accuracy, the measures on own samples, and the evaluation protocol of every point."""

from __future__ import annotations

import math
import random

import pytest
import torch

from psft_edu import tasks
from psft_edu.data import eval_prompts, load_split
from psft_edu.engine.evaluate import (
    answer_logprobs,
    answer_measures,
    exact_accuracy,
    make_eval_fn,
    own_sample_kl,
    own_sample_measures,
    sample,
)
from psft_edu.models import load_model
from psft_edu.objectives import exact_kl
from psft_edu.presets import EvalProtocol

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- the accepted sets


def test_accepted_answers_are_exactly_what_the_verifier_accepts() -> None:
    """Every candidate of the families' answer shapes (numbers 0..99 with and without a total, the
    digits 0..120) is accepted by the verifier if and only if it is in the accepted set."""
    rng = random.Random(0)
    for _ in range(20):
        ex = tasks.generate("make_sum", rng)
        accepted = set(tasks.accepted_answers(ex.prompt))
        assert len(accepted) == 4 and tasks.teacher_completion(ex) in accepted
        for x in range(0, 20):
            for y in range(0, 20):
                for total in (None, *range(0, 30)):
                    text = f" {x}+{y}" + ("" if total is None else f"={total}")
                    assert tasks.verify(ex.prompt, text) == (text in accepted), text
        assert not tasks.verify(ex.prompt, " 03+" + sorted(accepted)[0].split("+")[1])  # no leading zeros
    for family in ("add", "even"):
        for _ in range(10):
            ex = tasks.generate(family, rng)
            accepted = set(tasks.accepted_answers(ex.prompt))
            assert accepted == set(ex.answers)
            for n in range(0, 121):
                assert tasks.verify(ex.prompt, f" {n}") == (f" {n}" in accepted)
    for family in ("reverse", "sort"):
        ex = tasks.generate(family, rng)
        assert tasks.accepted_answers(ex.prompt) == ex.answers


def test_answer_style_and_operands() -> None:
    assert tasks.answer_style(" 3+9=12") == "teacher" and tasks.answer_style(" 3+9=13") == "teacher"
    assert tasks.answer_style(" 9+3") == "base"
    assert tasks.answer_style(" 2+9x10") == "other" and tasks.answer_style("") == "other"
    assert tasks.operand_positions(" 3+9=12") == [1, 3]
    assert tasks.operand_positions(" 12+9") == [1, 2, 4]
    assert tasks.operand_positions(" x") == []


# ---------------------------------------------------------------- exact accuracy


def test_exact_accuracy_is_the_hand_computed_mass_on_a_uniform_model() -> None:
    """With its output layer zeroed the model is uniform over the vocabulary, so an answer of n
    characters plus the end token has probability V^-(n+1), and the accuracy is their sum."""
    model, tok = load_model("tiny")
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied to the input embeddings: logits are all zero
    V = model.config.vocab_size
    prompts = [eval_prompts(f, 3) for f in tasks.FAMILIES]
    prompts = [p for ps in prompts for p in ps]
    by_hand = [sum(V ** -(len(a) + 1) for a in tasks.accepted_answers(p)) for p in prompts]
    assert exact_accuracy(model, tok, prompts) == pytest.approx(by_hand, rel=1e-5)


def test_answer_logprobs_match_one_full_forward_per_answer() -> None:
    model, tok = load_model("tiny")
    prompts = eval_prompts("even", 3) + eval_prompts("make_sum", 3)
    answers = [list(tasks.accepted_answers(p)) for p in prompts]
    fast = answer_logprobs(model, tok, prompts, answers)
    eos = tok.eos_token_id
    for prompt, per_prompt, got in zip(prompts, answers, fast):
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        for answer, value in zip(per_prompt, got):
            ids = p + tok(answer, add_special_tokens=False)["input_ids"] + [eos]
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
            by_hand = sum(float(logp[t - 1, ids[t]]) for t in range(len(p), len(ids)))
            assert value == pytest.approx(by_hand, abs=1e-4)


def test_exact_accuracy_agrees_with_sampled_accuracy_on_the_trained_base() -> None:
    """The shipped base is a trained checkpoint: its exact in-domain accuracy lies within the sampling
    interval of the accuracy of 64 samples per prompt (4 standard errors, from the exact per-prompt p)."""
    model, tok = load_model("tiny")
    for family in ("make_sum", "even"):
        prompts = eval_prompts(family, 24)
        exact = exact_accuracy(model, tok, prompts)
        k = 64
        drawn = sample(model, tok, prompts, k, seed=3)
        sampled = [sum(tasks.verify(p, t) for t in texts) / k for p, texts in zip(prompts, drawn.texts)]
        n = len(prompts)
        se = math.sqrt(sum(p * (1 - p) for p in exact) / k) / n
        diff = abs(sum(sampled) / n - sum(exact) / n)
        assert diff <= 4 * se + 1e-9, (family, diff, se)
        assert 0.0 < sum(exact) / n < 1.0


# ---------------------------------------------------------------- measures on own samples


def _base_and_moved():
    """The tiny base, its tokenizer, and a copy of it with every weight moved a little (a 'fine-tuned' model)."""
    model, tok = load_model("tiny")
    other, _ = load_model("tiny")
    with torch.no_grad():
        for param in other.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model, tok, other


def test_kl_while_sampling_equals_the_separate_computation() -> None:
    model, tok, other = _base_and_moved()
    prompts = eval_prompts("make_sum", 6)
    drawn = sample(model, tok, prompts, 3, seed=0, reference=other)
    again = sample(model, tok, prompts, 3, seed=0)
    assert drawn.texts == again.texts  # the reference does not change what is sampled
    assert own_sample_measures(drawn)["kl_to_base"] == pytest.approx(own_sample_kl(model, other, tok, prompts, drawn),
                                                                     rel=1e-4)


def test_kl_on_own_samples_is_the_exact_kl_at_every_drawn_tokens_state() -> None:
    model, tok, other = _base_and_moved()
    prompts = [p for family in tasks.FAMILIES for p in eval_prompts(family, 2)]  # prompts of several lengths
    drawn = sample(model, tok, prompts, 2, seed=3, reference=other)
    checked = 0
    for prompt, per_prompt, kls in zip(prompts, drawn.token_ids, drawn.kls):
        start = len(tok(prompt, add_special_tokens=False)["input_ids"]) - 1  # the state of the first drawn token
        for tokens, per_token in zip(per_prompt, kls):
            ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"] + tokens])
            with torch.no_grad():
                expected = exact_kl(model(input_ids=ids).logits[0], other(input_ids=ids).logits[0])
            assert len(per_token) == len(tokens)
            assert per_token == pytest.approx(expected[start : start + len(tokens)].tolist(), abs=1e-4)
            checked += len(tokens)
    assert checked > 2 * len(prompts)


def test_answer_measures_count_styles_and_read_operand_tokens() -> None:
    model, tok = load_model("tiny")
    prompts = eval_prompts("make_sum", 8)
    drawn = sample(model, tok, prompts, 4, seed=1, reference=model)
    m = answer_measures(drawn)
    assert sum(m[f"style_{s}"] for s in tasks.STYLES) == pytest.approx(1.0)
    entropies = [drawn.entropies[i][j][t] for i, texts in enumerate(drawn.texts) for j, text in enumerate(texts)
                 for t in tasks.operand_positions(text)]
    assert m["operand_entropy"] == pytest.approx(sum(entropies) / len(entropies))
    assert m["operand_kl"] == pytest.approx(0.0, abs=1e-6)  # the reference is the model itself


def test_eval_point_protocol_is_the_same_at_every_step_and_adds_finals_at_the_end() -> None:
    model, tok = load_model("tiny")
    protocol = EvalProtocol(prompts=6, samples=2, ood_prompts=2, final_samples=3)
    evaluate = make_eval_fn(tok, load_split("sft_val")[:16], protocol, seed=0, reference=model, final_step=10)
    middle, again, final = evaluate(model, 5), evaluate(model, 5), evaluate(model, 10)
    assert middle == again
    assert "in_domain_accuracy" not in middle and "pass_at_k" in final and "demo_entropy" in final
    for key in ("in_domain_exact", "ood_exact", "sample_entropy", "kl_ood", "style_base"):
        assert final[key] == middle[key], key
    assert final["kl_ood"] == 0.0 and final["kl_in_domain"] == 0.0  # the base against itself
    assert len(final["families"]["add"]["exact_per_prompt"]) == 6
