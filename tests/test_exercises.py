"""The 'implement it' and 'predict, then run' checkers: a right answer passes, a typical mistake is named,
an unattempted exercise (None) prints so and returns None; losses are checked in gradient too, every mistake
model is named by its own checker, and the PSFT loop checker runs a learner's loop against the Trainer."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import torch

from psft_edu import objectives as obj
from psft_edu.course.exercises import checking
from psft_edu.course.exercises import n01_lm_as_mdp as n01
from psft_edu.course.exercises import n02_sft_loss as n02
from psft_edu.course.exercises import n03_sft_is_policy_gradient as n03
from psft_edu.course.exercises import n04_ppo_clip as n04
from psft_edu.course.exercises import n05_proximal_sft as n05
from psft_edu.course.exercises import n08_neighbours_and_ablations as n08
from psft_edu.course.exercises import n09_psft_in_trl as n09


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
    (n01.check_token_logprobs_impl, token_logprobs_ok, token_logprobs_probs, "probability, not its logarithm"),
    (n01.check_token_logprobs_impl, token_logprobs_ok, token_logprobs_unstable, "log_softmax"),
    (n02.check_sft_loss_impl, sft_ok, sft_token_only, "seq-mean gives the token-mean"),
    (n03.check_pg_loss_impl, pg_ok, pg_sign, "sign is flipped"),
    (n04.check_ppo_clip_impl, ppo_ok, ppo_max, "max() instead of min()"),
    (n05.check_psft_loss_impl, psft_ok, psft_two_sided, "also clips from below"),
    (n09.check_ratio_stats_impl, stats_ok, stats_inclusive, "use >"),
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

    assert n02.check_sft_loss_impl(broken) is False
    assert "RuntimeError: boom" in capsys.readouterr().out
    assert n02.check_sft_loss_impl(3.0) is False
    assert "pass a function" in capsys.readouterr().out


def test_unknown_mistake_names_the_case(capsys) -> None:
    def off_by_a_bit(logp, old_logp, mask, clip):
        return psft_ok(logp, old_logp, mask, clip) + 0.01

    assert n05.check_psft_loss_impl(off_by_a_bit) is False
    out = capsys.readouterr().out
    assert "random 3x5 batch" in out and "the package gives" in out


def test_generic_check_implementation_catches_edge_cases(capsys) -> None:
    def cases():
        return [("positive x", {"x": torch.tensor([1.0, 2.0])}), ("x with a zero", {"x": torch.tensor([0.0, 2.0])})]

    def reference(x):
        return torch.where(x > 0, x.log(), torch.zeros_like(x))

    assert checking.check_implementation(reference, reference, cases, "safe_log") is True
    assert checking.check_implementation(lambda x: x.log(), reference, cases, "safe_log") is False
    assert "x with a zero" in capsys.readouterr().out
    assert checking.check_implementation(None, reference, cases, "safe_log") is None


def test_recall_checkers_return_none_when_unattempted(capsys) -> None:
    """An untouched recall exercise must not read as passed (it used to return True)."""
    assert n04.check_clipped_value(None, r=1.5, advantage=2.0, epsilon=0.2) is None
    assert n03.check_advantage(-2.0, None, q=3.0, v=5.0) is None  # half attempted
    assert n04.check_clipped_value(2.4, r=1.5, advantage=2.0, epsilon=0.2) is True
    assert n04.check_clipped_value(3.0, r=1.5, advantage=2.0, epsilon=0.2) is False
    assert "larger of the two" in capsys.readouterr().out


def test_ppo_clamp_only_slip_is_named(capsys) -> None:
    """clip(r)·Â without the min with r·Â is named as such, not as "max() instead of min()"."""

    def clamp_only(logp, old_logp, advantages, mask, clip_low, clip_high):
        ratio = torch.exp(logp - old_logp)
        return -_masked_mean(ratio.clamp(1 - clip_low, 1 + clip_high) * advantages, mask)

    assert n04.check_ppo_clip_impl(clamp_only) is False
    out = capsys.readouterr().out
    assert "the clipped term alone" in out and "max()" not in out, out


# ---------------------------------------------------------------- gradients


def _item_then_tensor(fn):
    """A learner's loss through .item() and back into a new tensor: the right value, no graph."""

    def wrapped(*args, **kwargs):
        return torch.tensor(fn(*args, **kwargs).tolist())

    return wrapped


def _detached(fn):
    def wrapped(*args, **kwargs):
        return fn(*args, **kwargs).detach()

    return wrapped


def _under_no_grad(fn):
    def wrapped(*args, **kwargs):
        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapped


def dft_ok(logp, mask):
    sel = mask > 0
    return -(logp[sel].exp().detach() * logp[sel]).mean()


def k3_ok(logp, ref_logp, mask):
    sel = mask > 0
    delta = ref_logp[sel] - logp[sel]
    return (delta.exp() - 1 - delta).mean()


# Every implement-it checker of a loss (or of the log-probabilities a loss is built from), with a right function.
DIFFERENTIABLE = [
    (n01.check_token_logprobs_impl, token_logprobs_ok),
    (n02.check_sft_loss_impl, sft_ok),
    (n03.check_pg_loss_impl, pg_ok),
    (n04.check_ppo_clip_impl, ppo_ok),
    (n05.check_psft_loss_impl, psft_ok),
    (n08.check_dft_loss_impl, dft_ok),
    (n08.check_k3_kl_impl, k3_ok),
]


@pytest.mark.parametrize("cut", [_detached, _item_then_tensor, _under_no_grad], ids=lambda f: f.__name__)
@pytest.mark.parametrize("checker, right", DIFFERENTIABLE, ids=[c.__name__ for c, _ in DIFFERENTIABLE])
def test_each_implement_it_checker_rejects_a_detached_loss(capsys, checker, right, cut) -> None:
    assert checker(right) is True
    capsys.readouterr()
    assert checker(cut(right)) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and "has no gradient: it is detached from the inputs" in out, out


def test_a_loss_returned_as_a_python_number_is_detached(capsys) -> None:
    assert n02.check_sft_loss_impl(lambda logp, mask, agg: sft_ok(logp, mask, agg).item()) is False
    assert "has no gradient" in capsys.readouterr().out
    assert n08.check_dft_loss_impl(lambda lp, m: dft_ok(lp, m).item()) is False
    assert "has no gradient" in capsys.readouterr().out


def test_right_value_wrong_gradient_is_named_as_such(capsys) -> None:
    """A stop-gradient the checker has no model for: the value passes, the gradient is named as the problem."""

    def half_gradient(logp, mask, agg):
        value = sft_ok(logp, mask, agg)
        return value / 2 + value.detach() / 2

    assert n02.check_sft_loss_impl(half_gradient) is False
    out = capsys.readouterr().out
    assert "gives the right value but the wrong gradient with respect to logp" in out, out

    def k3_half(logp, ref_logp, mask):
        value = k3_ok(logp, ref_logp, mask)
        return value / 2 + value.detach() / 2

    assert n08.check_k3_kl_impl(k3_half) is False
    assert "the value is right but the gradient is not" in capsys.readouterr().out


def test_a_nan_gradient_at_padding_is_reported(capsys) -> None:
    """where() after exp(): a finite, right value whose gradient is NaN at the -inf padding."""

    def k3_where_late(logp, ref_logp, mask):
        delta = ref_logp - logp
        terms = torch.where(mask > 0, delta.exp() - 1 - delta, torch.zeros_like(delta))
        return terms.sum() / mask.sum()

    assert n08.check_k3_kl_impl(k3_where_late) is False
    out = capsys.readouterr().out
    assert "padding" in out and "gradient holds NaN" in out, out


def test_ratios_on_a_kink_are_compared_in_value_only(capsys) -> None:
    """min(r, 1+ε) with a constant bound gives half the slope exactly at r = 1+ε: a kink, where either slope is
    right, so the edge case with ratios on the bounds does not compare gradients."""

    def psft_constant_bound(logp, old_logp, mask, clip):
        ratio = torch.exp(logp - old_logp)
        return -_masked_mean(torch.minimum(ratio, torch.full_like(ratio, 1 + clip)), mask)

    assert n05.check_psft_loss_impl(psft_constant_bound) is True
    assert "in value and gradient" in capsys.readouterr().out


# ---------------------------------------------------------------- every mistake model is exercised

NOTEBOOK_MODULES = [importlib.import_module(f"psft_edu.course.exercises.{path.stem}")
                    for path in sorted(Path(checking.__file__).parent.glob("n[0-9][0-9]_*.py"))]
MODELS = [
    (module, name, index)
    for module in NOTEBOOK_MODULES
    for name, models in getattr(module, "MISTAKE_MODELS", {}).items()
    for index in range(len(models()))
]


@pytest.mark.parametrize(
    "module, name, index", MODELS, ids=[f"{name}-{i}" for _, name, i in MODELS]
)
def test_each_mistake_model_is_named_by_its_checker(capsys, module, name, index) -> None:
    message, wrong = module.MISTAKE_MODELS[name]()[index]
    assert getattr(module, name)(wrong) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet: " + message), out


def test_every_checker_built_on_check_implementation_lists_its_mistake_models() -> None:
    """An implement-it checker that hands its work to check_implementation names its mistakes from a list of
    mistake models, and that list is fed to it above; 07's and 08's name theirs from the wrong output itself."""
    for module in NOTEBOOK_MODULES:
        generic = {name for name, fn in vars(module).items() if name.startswith("check_") and name.endswith("_impl")
                   and "check_implementation(" in inspect.getsource(fn)}
        assert set(getattr(module, "MISTAKE_MODELS", {})) == generic, module.__name__
    assert len(MODELS) >= 20


def test_each_notebook_module_offers_its_checkers_and_the_prediction_checker() -> None:
    """Notebook N imports its own module as ``exercises``: it holds every checker N calls, check_prediction too."""
    assert [m.__name__.rsplit(".", 1)[1][:3] for m in NOTEBOOK_MODULES] == [f"n0{i}" for i in range(1, 10)]
    for module in NOTEBOOK_MODULES:
        assert module.check_prediction is checking.check_prediction
        own = {name for name, value in vars(module).items() if callable(value) and not name.startswith("_")
               and getattr(value, "__module__", None) == module.__name__}
        assert set(module.__all__) == own | {"check_prediction"}, module.__name__


def test_a_broken_mistake_model_is_not_skipped() -> None:
    """A mistake model that cannot be called the way the reference is raises, instead of being passed over."""

    def cases():
        return [("x", {"x": torch.tensor([1.0, 2.0])})]

    def reference(x):
        return x.sum()

    with pytest.raises(TypeError):
        checking.check_implementation(lambda x: -x.sum(), reference, cases, "total",
                                       mistakes=[("sign", lambda y: -y.sum())])


def test_a_mistake_must_fit_every_case(capsys) -> None:
    """A model that fits only the first failing case is not named; the one that fits every case is."""

    def cases():
        return [("a", {"x": torch.tensor([1.0, 2.0])}), ("b", {"x": torch.tensor([-1.0, 3.0])})]

    def reference(x):
        return x.sum()

    def abs_sum(x):
        return x.abs().sum()

    mistakes = [("doubled", lambda x: 2 * x.sum()), ("absolute values", abs_sum)]
    assert checking.check_implementation(lambda x: x.abs().sum() * 1.0, reference, cases, "total",
                                          mistakes=mistakes) is False
    assert "absolute values" in capsys.readouterr().out
    assert checking.check_implementation(lambda x: x.sum() + x.numel() * 1.5, reference, cases, "total",
                                          mistakes=mistakes) is False
    out = capsys.readouterr().out
    assert "doubled" not in out and "absolute" not in out and "on a, total gives" in out, out


# ---------------------------------------------------------------- predict, then run: one checker


def test_prediction_not_attempted_prints_the_hint_without_the_value(capsys) -> None:
    assert checking.check_prediction(None, 0.6994, "the final pi", tolerance=0.05, explanation="The mix.") is None
    out = capsys.readouterr().out
    assert out.startswith("Not attempted yet. Hint:") and "the final pi" in out
    assert "0.6994" not in out and "The mix." not in out


def test_prediction_not_attempted_folds_the_value_in_html(monkeypatch) -> None:
    """In a kernel: one output whose HTML shows the value inside a closed <details>, whose plain text does not."""
    import IPython
    import IPython.display

    shown = []

    class Kernel:
        kernel = object()

    monkeypatch.setattr(IPython, "get_ipython", lambda: Kernel())
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append((obj, raw)))
    assert checking.check_prediction(None, 0.69937, "the final pi", tolerance=0.05,
                                      explanation="PSFT's fixed point is the mix (q < π).") is None
    (output, raw), = shown
    assert raw and set(output) == {"text/plain", "text/html"}
    plain, page = output["text/plain"], output["text/html"]
    assert plain.startswith("Not attempted yet. Hint:") and "0.6994" not in plain and "fixed point" not in plain
    assert page.index("Not attempted yet") < page.index("<details>") < page.index("0.6994") < page.index("</details>")
    assert "<details open" not in page and "<summary>Measured value (open it after" in page
    assert "(q &lt; π)" in page  # the explanation is escaped
    shown.clear()
    checking.check_prediction(None, "unchanged", "the rescaled advantages", options=["unchanged", "shifted"])
    (output, _), = shown
    assert "'unchanged', 'shifted'" in output["text/plain"] and "gave 'unchanged'" in output["text/html"]
    assert "gave" not in output["text/plain"]


def test_prediction_output_is_the_same_on_every_run(monkeypatch) -> None:
    """The cells carry # NBVAL_CHECK_OUTPUT: the folded output depends on the value to 4 digits, nothing else."""
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("K", (), {"kernel": None})())
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    for measured in (0.699371, 0.699372, 0.7):
        checking.check_prediction(None, measured, "p", tolerance=0.05)
    assert shown[0] == shown[1] != shown[2]


def test_prediction_right_and_wrong(capsys) -> None:
    assert checking.check_prediction(0.7, 0.6994, "p", tolerance=0.05, explanation="The mix.") is True
    out = capsys.readouterr().out
    assert out.startswith("Correct: you predicted 0.7; the experiment gave 0.6994 (within ±0.05 counts). The mix.")
    assert checking.check_prediction(0.2, 0.52, "p", tolerance=0.05) is False
    assert capsys.readouterr().out.startswith("Not yet: you predicted 0.2; the experiment gave 0.52")
    assert checking.check_prediction(3, 3, "steps", tolerance=0) is True
    assert checking.check_prediction("Same", "same", "fixed point") is True
    assert checking.check_prediction("different", "same", "fixed point") is False
    assert checking.check_prediction(True, False, "flag") is False
    capsys.readouterr()
    assert checking.check_prediction("yes", True, "flag") is False
    assert "predict True or False" in capsys.readouterr().out
    assert checking.check_prediction("a lot", 0.5, "p", tolerance=0.1) is False
    assert "single number" in capsys.readouterr().out


def test_prediction_with_options(capsys) -> None:
    options = ["rises", "falls", "neither"]
    assert checking.check_prediction(None, "rises", "the curve", options=options) is None
    assert "one of 'rises', 'falls', 'neither'" in capsys.readouterr().out
    assert checking.check_prediction("up", "rises", "the curve", options=options) is False
    assert "answer with one of" in capsys.readouterr().out
    assert checking.check_prediction(" Rises", "rises", "the curve", options=options, explanation="K grows.") is True
    assert capsys.readouterr().out.rstrip().endswith("K grows.")
    assert checking.check_prediction("falls", "rises", "the curve", options=options) is False
    assert "the experiment gave 'rises'" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not one of the options"):
        checking.check_prediction("rises", "sideways", "the curve", options=options)
    with pytest.raises(ValueError, match="not one of the options"):
        checking.check_prediction(None, "sideways", "the curve", options=options)


# ---------------------------------------------------------------- 05: the PSFT training loop


def psft_loop_ok(model, minibatches, K, optimiser, logprobs, clip):
    """The reference solution of notebook 05's loop exercise."""
    for start in range(0, len(minibatches), K):
        global_batch = minibatches[start : start + K]
        with torch.no_grad():  # freeze the old policy on the whole global batch
            frozen = [logprobs(model, mini) for mini in global_batch]
        for mini, old_logp in zip(global_batch, frozen):  # K steps against it
            loss, _ = obj.psft_loss(logprobs(model, mini), old_logp, mini.mask, clip)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()


def psft_loop_refresh_every_step(model, minibatches, K, optimiser, logprobs, clip):
    for mini in minibatches:
        with torch.no_grad():
            old_logp = logprobs(model, mini)
        loss, _ = obj.psft_loss(logprobs(model, mini), old_logp, mini.mask, clip)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def psft_loop_never_refresh(model, minibatches, K, optimiser, logprobs, clip):
    with torch.no_grad():
        frozen = [logprobs(model, mini) for mini in minibatches]
    for mini, old_logp in zip(minibatches, frozen):
        loss, _ = obj.psft_loss(logprobs(model, mini), old_logp, mini.mask, clip)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def test_psft_loop_checker_passes_a_right_loop(capsys) -> None:
    assert n05.check_psft_loop(psft_loop_ok) is True
    out = capsys.readouterr().out
    assert "K = 1 and K = 8" in out and "bit for bit" in out, out


def test_psft_loop_checker_fails_a_loop_that_refreshes_every_step(capsys) -> None:
    """Right at K = 1 (a refresh before every step is what K = 1 means), named at K = 8."""
    assert n05.check_psft_loop(psft_loop_refresh_every_step) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet: with K = 8: the old policy is refreshed before every step"), out


def test_psft_loop_checker_fails_a_loop_that_never_refreshes(capsys) -> None:
    assert n05.check_psft_loop(psft_loop_never_refresh) is False
    out = capsys.readouterr().out
    assert "never refreshed" in out, out


@pytest.mark.parametrize("index", range(len(n05.LOOP_MISTAKES)))
def test_each_loop_mistake_model_is_named(capsys, index) -> None:
    message, wrong, _ = n05.LOOP_MISTAKES[index]
    first_wrong_k = 8 if wrong is n05._loop_refresh_every_step else 1  # K = 1 refreshes every step
    assert n05.check_psft_loop(wrong) is False
    assert capsys.readouterr().out == f"Not yet: with K = {first_wrong_k}: {message}.\n"


def test_psft_loop_checker_other_answers(capsys) -> None:
    assert n05.check_psft_loop(None) is None
    assert "Not attempted" in capsys.readouterr().out
    assert n05.check_psft_loop(3) is False
    assert "pass the function itself" in capsys.readouterr().out
    assert n05.check_psft_loop(lambda *args: None) is False
    assert "left the parameters where they started" in capsys.readouterr().out

    def raises_at_k8(model, minibatches, K, optimiser, logprobs, clip):
        if K == 8:  # the old log-probs keep their graph only here: the second step's backward needs stale weights
            for start in range(0, len(minibatches), K):
                group = minibatches[start : start + K]
                frozen = [logprobs(model, mini) for mini in group]
                for mini, old_logp in zip(group, frozen):
                    loss, _ = obj.psft_loss(logprobs(model, mini), old_logp, mini.mask, clip)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
        else:
            psft_loop_ok(model, minibatches, K, optimiser, logprobs, clip)

    assert n05.check_psft_loop(raises_at_k8) is False
    out = capsys.readouterr().out
    assert "with K = 8 your loop raised RuntimeError" in out and "torch.no_grad()" in out, out


def test_psft_loop_checker_keeps_the_random_state_and_thread_count() -> None:
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    n05.check_psft_loop(psft_loop_ok)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
