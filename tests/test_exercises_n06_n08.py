"""The implement-it checkers of notebooks 06-08: None when unattempted, True for a right
implementation, False with the first mistake named for the usual wrong ones (each one it recognises is fed to it
here)."""

from __future__ import annotations

import inspect

import pytest
import torch

from psft_edu import objectives as obj
from psft_edu.course.exercises import n06_entropy_collapse as n06
from psft_edu.course.exercises import n07_rl_after_sft as n07
from psft_edu.course.exercises import n08_neighbours_and_ablations as n08


def _checkers():
    return {
        n: f
        for module in (n06, n07, n08)
        for n, f in inspect.getmembers(module, inspect.isfunction)
        if n.startswith("check_") and n.endswith("_impl") and f.__module__ == module.__name__
    }


@pytest.mark.parametrize("name", sorted(_checkers()))
def test_unattempted_returns_none_and_says_so(name, capsys) -> None:
    checker = _checkers()[name]
    assert checker(None) is None
    out = capsys.readouterr().out
    assert "not attempted" in out.lower() and "correct" not in out.lower()


# ---------------------------------------------------------------- group advantages (07)

def good_advantages(rewards, group_size, delta=1e-6):
    r = rewards.reshape(-1, group_size)
    return ((r - r.mean(-1, keepdim=True)) / (r.std(-1, unbiased=False, keepdim=True) + delta)).reshape(rewards.shape)


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (
            lambda r, g: (
                lambda x: ((x - x.mean(-1, keepdim=True)) / x.std(-1, unbiased=False, keepdim=True)).reshape(-1)
            )(r.reshape(-1, g)),
            "σ + δ",
        ),
        (lambda r, g: (lambda x: (x - x.mean(-1, keepdim=True)).reshape(-1))(r.reshape(-1, g)), "not scaled"),
        (
            lambda r, g: (lambda x: ((x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6)).reshape(-1))(
                r.reshape(-1, g)
            ),
            "G - 1",
        ),
        (lambda r, g: (r - r.mean()) / (r.std(unbiased=False) + 1e-6), "whole batch"),
        (lambda r, g: (r - r.mean()) / (r.std() + 1e-6), "whole batch"),
        (lambda r, g: good_advantages(r, g) + 0.5, "check the mean and σ of that group"),
        (lambda r, g: "advantages", "returned str; return a tensor"),
        (lambda r, g: -good_advantages(r, g), "signs are flipped"),
        (lambda r, g: good_advantages(r, g).reshape(-1, g), "shape"),
        (lambda r, g: r.sub_(r.mean()), "in place"),
        (lambda r, g: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_group_advantages_names_the_mistake(wrong, words, capsys) -> None:
    assert n07.check_group_advantages_impl(wrong) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and words in out, out


def test_group_advantages_strided_groups(capsys) -> None:
    def strided(r, g):
        x = r.reshape(g, -1)
        return ((x - x.mean(0, keepdim=True)) / (x.std(0, unbiased=False, keepdim=True) + 1e-6)).reshape(-1)

    assert n07.check_group_advantages_impl(strided) is False
    assert "consecutive" in capsys.readouterr().out


def test_group_advantages_not_callable(capsys) -> None:
    assert n07.check_group_advantages_impl([1.0, 0.0]) is False
    assert "function" in capsys.readouterr().out


# ---------------------------------------------------------------- DFT loss (08)

def good_dft(logp, mask):
    sel = mask > 0
    return -(logp[sel].exp().detach() * logp[sel]).mean()


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (lambda lp, m: -(lp[m > 0].exp() * lp[m > 0]).mean(), "stop-gradient"),
        (lambda lp, m: -(lp[m > 0]).mean(), "SFT loss"),
        (lambda lp, m: (lp[m > 0].exp().detach() * lp[m > 0]).mean(), "sign"),
        (lambda lp, m: -(lp.exp().detach() * lp * m).sum() / m.sum(), "NaN"),
        (lambda lp, m: -(lp.exp().detach() * lp).mean(), "every position"),
        (lambda lp, m: obj.dft_loss(lp, m, "seq-mean"), "seq-mean"),
        (lambda lp, m: -(lp[m > 0].exp() * lp[m > 0]).mean().detach(), "has no gradient"),
        (lambda lp, m: lp, "one number"),
        (lambda lp, m: -(lp[m > 0]).mean() * 0 - (torch.exp(-lp[m > 0]) * lp[m > 0]).mean(), "1/p"),
        (lambda lp, m: good_dft(lp, m) + 0.5 * (lp[m > 0] - lp[m > 0].detach()).mean(), "only log p should carry"),
        (lambda lp, m: good_dft(lp, m) + 0.01, "check the weight p and the average"),
    ],
)
def test_dft_names_the_mistake(wrong, words, capsys) -> None:
    assert n08.check_dft_loss_impl(wrong) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and words in out, out


# ---------------------------------------------------------------- k3 KL (08)

def good_k3(logp, ref, mask):
    sel = mask > 0
    delta = ref[sel] - logp[sel]
    return (delta.exp() - 1 - delta).mean()


@pytest.mark.parametrize(
    ("checker", "by_hand", "package"),
    [
        (n07.check_group_advantages_impl, good_advantages, obj.group_advantages),
        (n08.check_dft_loss_impl, good_dft, obj.dft_loss),
        (n08.check_k3_kl_impl, good_k3, obj.kl_to_reference),
    ],
)
def test_right_implementations_pass(checker, by_hand, package, capsys) -> None:
    assert checker(by_hand) is True
    assert checker(package) is True
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (lambda lp, rf, m: good_k3(rf, lp, m), "wrong sign"),
        (lambda lp, rf, m: (rf - lp)[m > 0].mean(), "the mean of δ, the plain log-ratio"),
        (lambda lp, rf, m: (lp - rf)[m > 0].mean(), "the mean of -δ, the plain log-ratio"),
        (lambda lp, rf, m: (lambda d: (d.exp() - 1 - d).mean())(rf - lp), "every position"),
        (lambda lp, rf, m: good_k3(lp, rf, m) + 0.01, "check exp(δ) - 1 - δ token by token"),
        (lambda lp, rf, m: good_k3(lp, rf, m)[None].expand(2), "one number"),
        (lambda lp, rf, m: (lambda d: (d.exp() - 1 - d) * m)(rf - lp).sum() / m.sum(), "NaN"),
        (lambda lp, rf, m: obj.kl_to_reference(lp, rf, m, "seq-mean"), "seq-mean"),
    ],
)
def test_k3_names_the_mistake(wrong, words, capsys) -> None:
    assert n08.check_k3_kl_impl(wrong) is False
    out = capsys.readouterr().out
    assert words in out, out


# ---------------------------------------------------------------- reading a curve

def test_trend() -> None:
    assert n08.trend([0.3, 0.2, 0.1]) == "falls"
    assert n08.trend([0.1, 0.2]) == "rises"
    assert n08.trend([0.1, 0.3, 0.2]) == "neither"
    assert n08.trend([0.1]) == "neither"


def test_cases_are_real_distributions() -> None:
    for _, logp, ref, mask in n08._token_cases():
        finite = mask > 0
        assert (logp[finite] <= 0).all() and (ref[finite] <= 0).all()
    assert torch.isinf(n08._token_cases()[-1][1]).any()


def test_function_that_still_returns_none_is_not_attempted(capsys) -> None:
    assert n07.check_group_advantages_impl(lambda r, g: None) is None
    assert n08.check_dft_loss_impl(lambda lp, m: None) is None
    assert n08.check_k3_kl_impl(lambda lp, rf, m: None) is None
    out = capsys.readouterr().out
    assert out.count("Not attempted yet") == 3 and "Correct" not in out and "Not yet" not in out


# ---------------------------------------------------------------- the notebooks that use these checkers

def _cells(name: str) -> list[dict]:
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "notebooks" / name
    if not path.exists():
        pytest.skip(f"{name} not found")
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


@pytest.mark.parametrize("name", ["07_rl_after_sft.ipynb", "08_neighbours_and_ablations.ipynb"])
def test_notebook_exercises_build_predict_and_fold_a_solution(name) -> None:
    cells = _cells(name)
    source = ["".join(c["source"]) for c in cells]
    tags = [c.get("metadata", {}).get("tags", []) for c in cells]
    code = [(s, t, c) for s, t, c in zip(source, tags, cells) if c["cell_type"] == "code"]
    exercise = [s for s, t, _ in code if "exercise" in t]
    assert any("exercises.check_" in s and "_impl(" in s for s in exercise), "no implement-it exercise"
    assert any(s.lstrip().startswith("prediction = None") for s in exercise), "no predict-then-run question"
    assert any("check_prediction(prediction" in s for s, _, _ in code)
    solutions = [c for s, t, c in code if "solution" in t]
    assert len(solutions) == 1 and solutions[0].get("metadata", {}).get("jupyter", {}).get("source_hidden")
    assert sum("open challenge" in s.lower() for s, c in zip(source, cells) if c["cell_type"] == "markdown") >= 2
    assert cells[-1]["cell_type"] == "markdown" and "<details>" in source[-1] and "open challenge" in source[-1].lower()
    for src, cell_tags, cell in code:  # an unattempted checker prints no verdict and shows no `Out: True`
        if "exercise" not in cell_tags:
            continue
        printed = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))
        results = ["".join(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", [])
                   if o.get("output_type") == "execute_result"]
        assert "Correct" not in printed and "Not yet" not in printed, src[:60]
        assert not any(r.strip() in ("True", "False") for r in results), f"{src[:60]} shows a boolean result"


def test_exact_kl_checker(capsys) -> None:
    from psft_edu.course.exercises.n06_entropy_collapse import check_exact_kl_impl

    def right(logits, ref_logits):
        p, q = logits.log_softmax(-1), ref_logits.log_softmax(-1)
        return (p.exp() * (p - q)).sum(-1)

    def swapped(logits, ref_logits):
        return right(ref_logits, logits)

    assert check_exact_kl_impl(None) is None
    assert "Not attempted" in capsys.readouterr().out
    assert check_exact_kl_impl(right) is True
    assert check_exact_kl_impl(swapped) is False
    assert "swapped" in capsys.readouterr().out


def test_a_template_that_still_returns_none_is_not_attempted(capsys) -> None:
    from psft_edu.course.exercises.n06_entropy_collapse import check_exact_kl_impl

    def template(logits, ref_logits):
        return None

    assert check_exact_kl_impl(template) is None
    assert "Not attempted" in capsys.readouterr().out
