"""The trainer: objectives, determinism, checkpoints and resumption, bad input, failures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from psft_edu.cli import main as cli
from psft_edu.data import load_split
from psft_edu.engine.runs import Interrupted, TrainingError
from psft_edu.engine.train import TrainConfig, Trainer
from psft_edu.models import load_model

REPO = Path(__file__).resolve().parent.parent
RECORDS = load_split("sft_train")[:256]


def small_cfg(**kw) -> TrainConfig:
    base = dict(objective="psft", lr=3e-3, max_steps=8, global_batch=32, mini_batch=8, log_kl=True, warmup_steps=2)
    base.update(kw)
    return TrainConfig(**base)


def run(cfg: TrainConfig, out=None, resume=False, **kw) -> Trainer:
    model, tok = load_model("tiny")
    trainer = Trainer(model, tok, RECORDS, cfg, out=out, progress=False, **kw)
    trainer.train(resume=resume)
    return trainer


def test_same_seed_gives_identical_metrics():
    a = run(small_cfg()).history
    b = run(small_cfg()).history
    assert a == b
    c = run(small_cfg(seed=1)).history
    assert [r["loss"] for r in a] != [r["loss"] for r in c]


@pytest.mark.parametrize("objective", ["sft", "psft", "sft_kl", "dft", "asft"])
def test_every_objective_trains_and_logs(objective):
    history = run(small_cfg(objective=objective, max_steps=4)).history
    assert [r["step"] for r in history] == [1, 2, 3, 4]
    for r in history:
        for key in ("loss", "entropy", "clip_fraction", "ratio_mean", "ratio_max", "grad_norm", "lr", "kl_to_base"):
            assert key in r and r[key] == r[key]  # present and not NaN


def test_psft_old_policy_is_frozen_per_global_batch():
    history = run(small_cfg(max_steps=8, lr=1e-2)).history  # K = 4
    for r in history:
        if (r["step"] - 1) % 4 == 0:  # first mini-batch: old == current, ratio exactly 1
            assert r["ratio_mean"] == pytest.approx(1.0, abs=1e-6) and r["clip_fraction"] == 0.0
    later = [r for r in history if (r["step"] - 1) % 4 != 0]
    assert any(abs(r["ratio_mean"] - 1.0) > 1e-4 for r in later)


def test_psft_with_one_mini_batch_per_global_batch_is_sft():
    """K = 1: the ratio is always 1, so PSFT takes exactly SFT's steps."""
    sft = run(small_cfg(objective="sft", global_batch=8, mini_batch=8, max_steps=5))
    psft = run(small_cfg(objective="psft", global_batch=8, mini_batch=8, max_steps=5))
    for p, q in zip(sft.model.parameters(), psft.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert [r["entropy"] for r in sft.history] == pytest.approx([r["entropy"] for r in psft.history], abs=1e-5)


def first_step_gradients(cfg: TrainConfig) -> list[torch.Tensor]:
    """Gradients of the first optimiser step (Adam would turn float noise on zero-gradient
    parameters, like attention key biases, into visible steps, so compare gradients)."""
    model, tok = load_model("tiny")
    trainer = Trainer(model, tok, RECORDS, cfg, progress=False)
    captured: list[torch.Tensor] = []
    trainer.optimizer.step = lambda *a, **k: captured.extend(p.grad.clone() for p in model.parameters())
    trainer.train()
    return captured


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean"])
@pytest.mark.parametrize("objective", ["sft", "psft"])
def test_gradient_accumulation_matches_full_mini_batch(agg, objective):
    full = first_step_gradients(small_cfg(objective=objective, max_steps=1, agg=agg))
    accumulated = first_step_gradients(small_cfg(objective=objective, max_steps=1, agg=agg, micro_batch=2))
    assert len(full) == len(accumulated) > 0
    for g, h in zip(full, accumulated):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-6)


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    straight = run(small_cfg(max_steps=12, save_every=4), out=tmp_path / "straight")

    stop_at = 8  # Ctrl-C during steps 5-8 takes effect at the end of that global batch (K = 4)

    def interrupt_at(model, step):  # eval hook: runs after every global batch when eval_every=1
        if step >= 6:
            trainer._interrupted = True
        return {}

    model, tok = load_model("tiny")
    cfg = small_cfg(max_steps=12, save_every=4, eval_every=1)
    trainer = Trainer(model, tok, RECORDS, cfg, out=tmp_path / "cut", eval_fn=interrupt_at, progress=False)
    with pytest.raises(Interrupted):
        trainer.train()
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == stop_at

    run(small_cfg(max_steps=12, save_every=4), out=tmp_path / "cut", resume=True)
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (tmp_path / "straight" / "metrics.jsonl").read_text()
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "cut" / "model")
    for p, q in zip(straight.model.parameters(), reloaded.parameters()):
        assert torch.equal(p, q)


def test_non_finite_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    import psft_edu.engine.train as train_module

    real = train_module.objective_loss

    def poisoned(cfg, logp, mask, old, ref, step=0):
        loss, stats = real(cfg, logp, mask, old, ref, step)
        return (loss * float("nan") if trainer.step >= 5 else loss), stats

    monkeypatch.setattr(train_module, "objective_loss", poisoned)
    model, tok = load_model("tiny")
    trainer = Trainer(model, tok, RECORDS, small_cfg(max_steps=10, save_every=4), out=tmp_path, progress=False)
    with pytest.raises(TrainingError, match="step 6"):
        trainer.train()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["model"].values())


BAD_INPUTS = {
    "broken_json": (b'{"prompt": "a", "completion": " b"}\n{"prompt": "a", \n', 2, "broken JSON"),
    "missing_prompt": (b'{"completion": " b"}\n', 1, "missing field 'prompt'"),
    "missing_completion": (b'{"prompt": "a", "completion": " b"}\n{"prompt": "a"}\n', 2, "missing field 'completion'"),
    "empty_completion": (b'{"prompt": "a", "completion": ""}\n', 1, "empty completion"),
    "not_utf8": (
        b'{"prompt": "a", "completion": " b"}\n{"prompt": "\xff\xfe", "completion": " b"}\n',
        2,
        "not valid UTF-8",
    ),
    "empty_file": (b"", None, "empty file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_stops_before_training(case, tmp_path, capsys):
    payload, line, problem = BAD_INPUTS[case]
    data = tmp_path / "bad.jsonl"
    data.write_bytes(payload)
    out = tmp_path / "out"
    code = cli.main(["train", "--preset", "tiny", "--data", str(data), "--out", str(out), "--max-steps", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    where = f"{data}:{line}:" if line else f"{data}:"
    assert err[0].startswith(f"error: {where}") and problem in err[0]
    assert not out.exists()


def test_bad_input_cli_exit_code_and_no_traceback(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "a", "completion": " b"}\nnot json\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "psft_edu",
            "train",
            "--preset",
            "tiny",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and f"{data}:2: broken JSON" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_long_examples_are_truncated_with_a_count(tmp_path, capsys):
    records = [{"prompt": "add 1 2:", "completion": " 3" * 40}] * 8 + RECORDS[:24]
    model, tok = load_model("tiny")
    Trainer(model, tok, records, small_cfg(max_steps=1, max_length=40), progress=False).train()
    assert "8 example(s) longer than 40 tokens were truncated" in capsys.readouterr().err


def test_cli_trains_own_model_on_own_data_and_saves_loadable_model(tmp_path):
    model, tok = load_model("tiny")
    folder = tmp_path / "my_model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:64]))
    out = tmp_path / "run"
    code = cli.main(
        [
            "train",
            "--model",
            str(folder),
            "--data",
            str(data),
            "--out",
            str(out),
            "--objective",
            "sft",
            "--max-steps",
            "4",
            "--global-batch",
            "16",
            "--mini-batch",
            "8",
        ]
    )
    assert code == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]
    trained = AutoModelForCausalLM.from_pretrained(out / "model")
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), trained.parameters()))


def test_sigint_saves_checkpoint_and_exits_cleanly(tmp_path, interrupted_cli):
    out = tmp_path / "run"
    flags = ["--global-batch", "16", "--mini-batch", "8", "--save-every", "3", "--no-eval"]
    code, stderr = interrupted_cli(
        ["train", "--preset", "tiny", "--out", str(out), "--max-steps", "100000", *flags],
        (out / "checkpoint.pt").exists,
        signal.SIGINT,
    )
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert "checkpoint saved" in stderr
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert state["step"] == json.loads(lines[-1])["step"] > 0


def test_metrics_file_grows_after_every_global_batch(tmp_path):
    seen = []

    def count_lines(model, step):
        path = tmp_path / "metrics.jsonl"
        seen.append((step, len(path.read_text().splitlines()) if path.exists() else 0))
        return {}

    model, tok = load_model("tiny")
    Trainer(
        model, tok, RECORDS, small_cfg(max_steps=12, eval_every=4), out=tmp_path, eval_fn=count_lines, progress=False
    ).train()
    assert seen == [(0, 0), (4, 4), (8, 8), (12, 12)]


# ---------------------------------------------------------------- what the clip and the optimiser do, logged


def _params(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.parameters()]


@pytest.mark.parametrize("objective", ["sft", "psft"])
def test_logging_the_mechanism_does_not_change_training(objective, one_thread) -> None:
    on = run(small_cfg(objective=objective, log_kl=False, log_mechanism=True))
    off = run(small_cfg(objective=objective, log_kl=False, log_mechanism=False))
    assert all(torch.equal(p, q) for p, q in zip(_params(on), _params(off)))
    assert [r["loss"] for r in on.history] == [r["loss"] for r in off.history]
    first = on.history[0]
    assert first["refresh_position"] == 0 and first["ratio_max"] == 1.0 and first["kl_old"] == 0.0
    assert [int(r["refresh_position"]) for r in on.history] == [0, 1, 2, 3, 0, 1, 2, 3]  # K = 32 / 8
    assert all(r["step_size"] > 0 and r["base_distance"] > 0 for r in on.history)
    assert "past_bound" not in off.history[0]


class _Recording(Trainer):
    """A trainer that keeps the (current, old) log-probs every mechanism measurement saw."""

    seen: list

    def _mechanism(self, mini, current, old_logp, old_full, k):
        logp = torch.cat([lp for lp, _ in current])
        self.seen.append((logp, logp if old_logp is None else old_logp, mini.mask))
        return super()._mechanism(mini, current, old_logp, old_full, k)


def test_no_clipped_token_is_in_the_unclippable_zone_on_a_real_model(one_thread) -> None:
    """r = pi / pi_old <= 1 / pi_old: on the real model, no token past 1 + eps had an old probability
    above 1 / (1 + eps), while both kinds of token occur."""
    model, tok = load_model("tiny")
    cfg = small_cfg(objective="psft", lr=1e-2, max_steps=16, log_kl=False)
    trainer = _Recording(model, tok, RECORDS, cfg, progress=False)
    trainer.seen = []
    trainer.train()
    eps, clipped_seen, unclippable_seen = cfg.clip, 0, 0
    for logp, old, mask in trainer.seen:
        ratio = torch.exp(torch.clamp(logp - old, -20, 20))
        clipped = (ratio > 1 + eps) & (mask > 0)
        never = (old.exp() > 1 / (1 + eps)) & (mask > 0)
        assert not (clipped & never).any()
        clipped_seen, unclippable_seen = clipped_seen + int(clipped.sum()), unclippable_seen + int(never.sum())
    assert clipped_seen > 0 and unclippable_seen > 0
    for record in trainer.history:
        assert record["past_bound"] + record["unclippable"] <= 1.0 + 1e-6
        assert record["past_bound"] == pytest.approx(record["clip_fraction"])
    assert max(r["ratio_max"] for r in trainer.history) > 1 + eps  # ratios do pass the bound: a mask, not a wall


def test_sft_warmup_trains_sft_first_then_psft(one_thread) -> None:
    warm = run(small_cfg(objective="psft", max_steps=4, sft_warmup=4, log_kl=False))
    sft = run(small_cfg(objective="sft", max_steps=4, log_kl=False))
    assert all(torch.equal(p, q) for p, q in zip(_params(warm), _params(sft)))
    assert all(r["clip_fraction"] == 0.0 for r in warm.history)
    longer = run(small_cfg(objective="psft", max_steps=8, sft_warmup=4, log_kl=False))
    assert any(r["loss"] < 0 for r in longer.history[4:])  # PSFT's loss is -ratio after the warm-up
