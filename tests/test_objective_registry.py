"""The objective registry (every loop reads it, unknown names fail) and the teaching equations in objectives.py."""

from __future__ import annotations

import pytest
import torch

from psft_edu import objectives as obj
from psft_edu.engine.train import TrainConfig, Trainer, objective_loss

RECORDS = [{"prompt": f"add {a} {b}:", "completion": f" {a + b}"} for a in range(8) for b in range(8)]


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logp = -torch.rand(3, 5, generator=gen) * 3
    old = logp + 0.4 * torch.randn(3, 5, generator=gen)
    ref = logp + 0.2 * torch.randn(3, 5, generator=gen)
    mask = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.float32)
    return logp, old, ref, mask


# ---------------------------------------------------------------- unknown names are errors everywhere

def test_objective_loss_rejects_an_unknown_name() -> None:
    cfg = TrainConfig(objective="sft", global_batch=8, mini_batch=8)
    cfg.objective = "not_an_objective"  # as if a caller bypassed the config's own check
    logp, old, ref, mask = _inputs()
    with pytest.raises(ValueError, match="unknown objective 'not_an_objective'"):
        objective_loss(cfg, logp, mask, old, ref)


def test_config_and_cli_reject_an_unknown_name() -> None:
    from psft_edu.cli.main import build_parser

    with pytest.raises(ValueError, match="unknown objective"):
        TrainConfig(objective="asft2")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--objective", "asft2", "--out", "x"])


def test_every_reader_lists_the_registry() -> None:
    from psft_edu.cli.main import build_parser
    from psft_edu.experiments import plots, sweep
    from psft_edu.experiments.compare import SETTINGS

    names = list(obj.OBJECTIVES)
    assert names == ["sft", "psft", "sft_kl", "dft", "asft"]
    assert [s.objective for s in sweep.sweep_specs("neighbours", SETTINGS["tiny"])] == names
    assert all(plots.COLOURS[n] == obj.OBJECTIVES[n].colour for n in names)
    train_parser = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    assert next(a for a in train_parser._actions if a.dest == "objective").choices == names


def test_registering_a_name_twice_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):
        obj.register(obj.OBJECTIVES["sft"])


@pytest.mark.parametrize("name", ["sft", "psft", "sft_kl", "dft", "asft"])
def test_registry_losses_are_the_named_functions(name: str) -> None:
    logp, old, ref, mask = _inputs()
    direct = {
        "sft": lambda: obj.sft_loss(logp, mask),
        "psft": lambda: obj.psft_loss(logp, old, mask, 0.28)[0],
        "sft_kl": lambda: obj.sft_kl_loss(logp, ref, mask, 0.1),
        "dft": lambda: obj.dft_loss(logp, mask),
        "asft": lambda: obj.asft_loss(logp, ref, mask, 0.1),
    }[name]()
    spec = obj.get_objective(name)
    value, _ = spec.loss(logp, mask, old if spec.needs_old_logprobs else None, ref if spec.needs_reference else None)
    assert torch.equal(value, direct)


# ---------------------------------------------------------------- adding an objective: one declaration

@pytest.fixture
def toy_objective(monkeypatch):
    """A toy objective needing both the old log-probs and the reference: NLL scaled by 1 + mean |logp - old|."""
    calls: list[tuple[bool, bool]] = []

    def loss(logp, mask, old_logp=None, ref_logp=None, *, clip=obj.PSFT_CLIP, beta=obj.KL_BETA, agg="token-mean"):
        calls.append((old_logp is not None, ref_logp is not None))
        drift = obj.masked_mean((logp - old_logp).abs(), mask, agg).detach()
        return obj.sft_loss(logp, mask, agg) * (1.0 + drift), {"drift": drift}

    toy = obj.Objective("toy", loss, "Toy", "tab:brown", needs_old_logprobs=True, needs_reference=True)
    monkeypatch.setitem(obj.OBJECTIVES, "toy", toy)
    return calls


def test_a_registered_objective_trains_through_the_trainer(toy_objective, one_thread) -> None:
    from psft_edu.models import load_model

    model, tok = load_model("tiny", device="cpu")
    before = [p.detach().clone() for p in model.parameters()]
    cfg = TrainConfig(objective="toy", max_steps=2, global_batch=16, mini_batch=8, warmup_steps=0, log_kl=False)
    history = Trainer(model, tok, RECORDS, cfg, progress=False).train()
    assert [r["step"] for r in history] == [1, 2]
    assert toy_objective == [(True, True), (True, True)]  # the registry's flags reached the loss
    assert history[0]["drift"] == 0.0 and history[1]["drift"] > 0.0  # mini-batch 2 meets a moved policy
    assert any(not torch.equal(p, q) for p, q in zip(before, model.parameters()))


# ---------------------------------------------------------------- the teaching equations

def test_psft_gradient_weight_is_the_autograd_weight() -> None:
    """d L_PSFT / d logp_t = -w_t / N for token-mean over N tokens: the weight of each token's gradient."""
    logp, old, _, mask = _inputs(1)
    logp = logp.clone().requires_grad_(True)
    loss, _ = obj.psft_loss(logp, old, mask, clip=0.28)
    (grad,) = torch.autograd.grad(loss, logp)
    ratio = torch.exp(logp.detach() - old)
    expected = -obj.psft_gradient_weight(ratio, 0.28) * mask / mask.sum()
    torch.testing.assert_close(grad, expected)


def test_clipped_surrogate_value_and_slope_match_autograd() -> None:
    ratio = torch.linspace(0.3, 2.0, 41, dtype=torch.float64).requires_grad_(True)
    for advantage in (1.0, -1.0, 0.5):
        value, slope = obj.clipped_surrogate(ratio, advantage, 0.2, 0.28)
        (grad,) = torch.autograd.grad(value.sum(), ratio)
        torch.testing.assert_close(slope, grad)
        clipped = torch.clamp(ratio.detach(), 0.8, 1.28) * advantage
        torch.testing.assert_close(value.detach(), torch.minimum(ratio.detach() * advantage, clipped))


def test_clip_fraction_by_minibatch_matches_the_loss_statistic() -> None:
    _, _, _, mask = _inputs()
    ratios = torch.stack([torch.ones(3, 5), torch.full((3, 5), 1.1), torch.tensor([[1.5, 1.0, 2.0, 0.9, 1.3]] * 3)])
    fractions = obj.clip_fraction_by_minibatch(ratios, mask, 0.28, 3)
    for k in range(3):
        stats = obj.psft_loss(torch.log(ratios[k]), torch.zeros(3, 5), mask, 0.28)[1]
        assert fractions[k].item() == pytest.approx(stats["clip_fraction"].item())
    with pytest.raises(ValueError, match="K must be between 1 and 3"):
        obj.clip_fraction_by_minibatch(ratios, mask, 0.28, 4)


def test_the_notebook_helpers_use_the_registry_equations() -> None:
    import numpy as np

    from psft_edu.course import analysis

    r = np.array([0.5, 1.0, 1.28, 1.2800001, 3.0])
    assert analysis.psft_weight(r, 0.28).tolist() == [0.5, 1.0, 1.28, 0.0, 0.0]
    assert analysis.surrogate_and_slope(1.5, 1.0, 0.2) == (1.2, 0.0)
    assert analysis.surrogate_and_slope(0.5, -1.0, 0.2) == (-0.8, 0.0)
    assert analysis.clip_fractions_by_minibatch([[[1.0, 2.0]], [[1.5, 1.0]]], [[1, 1]], 0.28, 2) == [0.5, 0.5]
