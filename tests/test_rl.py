"""GRPO (psft_edu.rl): advantages, the shared clipped loss, learning, the CLI, resuming, Ctrl-C."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from psft_edu import objectives, tasks
from psft_edu.evaluate import sample
from psft_edu.models import load_model
from psft_edu.rl import RLConfig, group_advantages, grpo, load_prompts, prompts_for_step
from psft_edu.train import Interrupted, TrainingError

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PSFT_EDU_PRESET": "tiny", "OMP_NUM_THREADS": "1"}


def add_prompts(count: int, seed: int) -> list[str]:
    """Single-digit additions: the tiny base gets about a quarter of them right when sampling."""
    rng = random.Random(seed)
    return [tasks.generate("add", rng, max_value=9).prompt for _ in range(count)]


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny model runs several times faster on one thread than on two busy ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_config(**changes) -> RLConfig:
    settings = {"lr": 5e-4, "steps": 2, "group_size": 4, "prompts_per_step": 4, "max_new_tokens": 8}
    return RLConfig(**{**settings, **changes})


# ---------------------------------------------------------------- advantages

def test_group_advantages_identical_groups_get_zero() -> None:
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert torch.equal(group_advantages(rewards, 4), torch.zeros(8))


def test_group_advantages_mean_zero_unit_std_per_group() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0], [0.3, 0.9, 0.1, 0.5, 0.7, 0.2]])
    adv = group_advantages(rewards.flatten(), 6).reshape(3, 6)
    torch.testing.assert_close(adv.mean(-1), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(adv.std(-1, unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    # Hand-computed: one correct answer out of six -> +sqrt(5) for it, -1/sqrt(5) for the others.
    torch.testing.assert_close(adv[1, -1], torch.tensor(5**0.5), atol=1e-5, rtol=0)
    torch.testing.assert_close(adv[1, 0], torch.tensor(-(5**-0.5)), atol=1e-5, rtol=0)
    assert group_advantages(rewards, 6).shape == rewards.shape
    with pytest.raises(ValueError):
        group_advantages(torch.ones(7), 4)


def test_prompt_order_is_seeded_and_covers_every_prompt() -> None:
    prompts = [f"add {i} 1:" for i in range(10)]
    cfg = small_config(prompts_per_step=5, seed=3)
    first_epoch = prompts_for_step(prompts, 0, cfg) + prompts_for_step(prompts, 1, cfg)
    assert sorted(first_epoch) == sorted(prompts)
    assert prompts_for_step(prompts, 1, cfg) == prompts_for_step(prompts, 1, small_config(prompts_per_step=5, seed=3))
    assert first_epoch != prompts_for_step(prompts, 0, small_config(prompts_per_step=10, seed=4))


def test_load_prompts_from_split_and_file(tmp_path: Path) -> None:
    assert len(load_prompts("rl_hard")) == 512
    assert load_prompts("eval/add")[0].startswith("add ")
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "add 1 2:", "completion": " 3"}\n')
    assert load_prompts(str(path)) == ["add 1 2:"]


# ---------------------------------------------------------------- the loss is PPO's clipped surrogate

def test_loss_is_ppo_clip_loss_with_group_advantages(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = objectives.ppo_clip_loss

    def spy(logp, old_logp, advantages, mask, clip_low, clip_high, agg):
        loss, stats = original(logp, old_logp, advantages, mask, clip_low, clip_high, agg)
        calls.append({"adv": advantages.detach().clone(), "mask": mask, "clip": (clip_low, clip_high), "stats": stats, "loss": loss})
        return loss, stats

    monkeypatch.setattr(objectives, "ppo_clip_loss", spy)
    model, tok = load_model("tiny")
    cfg = small_config(steps=1, updates_per_step=2, clip_low=0.15, clip_high=0.33, group_size=8, prompts_per_step=8)
    history = grpo(model, tok, add_prompts(64, 0), cfg, progress=False)
    assert len(calls) == 2  # one call per mini-batch update
    assert all(c["clip"] == (0.15, 0.33) for c in calls)
    # One advantage per sequence, broadcast over its tokens; each group of 8 has mean zero.
    adv = torch.cat([c["adv"][:, 0] for c in calls])
    assert all(torch.equal(c["adv"], c["adv"][:, :1].expand_as(c["adv"])) for c in calls)
    torch.testing.assert_close(adv.reshape(8, 8).mean(-1), torch.zeros(8), atol=1e-5, rtol=0)
    # The first mini-batch sees the freshly frozen policy (ratio exactly 1); the second a moved one.
    assert calls[0]["stats"]["ratio_max"].item() == pytest.approx(1.0, abs=1e-5)
    assert calls[0]["stats"]["clip_fraction"].item() == 0.0
    moved = calls[1]["stats"]
    assert moved["ratio_max"].item() > 1 + 1e-6 or moved["ratio_min"].item() < 1 - 1e-6
    record = history[0]
    zero_groups = (adv.reshape(8, 8).abs().sum(-1) == 0).float().mean().item()
    assert record["zero_signal_groups"] == pytest.approx(zero_groups)
    assert record["pass@1"] == record["reward"]
    for key in ("pass@8", "entropy", "distinct_valid", "clip_fraction", "approx_kl", "grad_norm", "loss"):
        assert key in record


def test_kl_penalty_logged_when_beta_positive() -> None:
    model, tok = load_model("tiny")
    history = grpo(model, tok, add_prompts(16, 0), small_config(steps=2, beta=0.1), progress=False)
    assert all(r["kl_to_ref"] >= 0.0 for r in history)
    assert history[-1]["kl_to_ref"] > 0.0


def test_nan_loss_stops_naming_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(logp, *args, **kwargs):
        return logp.sum() * float("nan"), {}

    monkeypatch.setattr(objectives, "ppo_clip_loss", broken)
    model, tok = load_model("tiny")
    with pytest.raises(TrainingError, match="step 1"):
        grpo(model, tok, add_prompts(16, 0), small_config(), progress=False)


# ---------------------------------------------------------------- it learns

def sampled_accuracy(model, tok, prompts: list[str]) -> float:
    samples = sample(model, tok, prompts, num_samples=8, temperature=1.0, max_new_tokens=8, seed=5)
    return sum(tasks.verify(p, t) for p, group in zip(prompts, samples.texts) for t in group) / (8 * len(prompts))


def test_reward_rises_on_an_easy_task() -> None:
    """Single-digit additions: 20 GRPO steps lift held-out sampled accuracy (about 0.25 -> 0.40)."""
    model, tok = load_model("tiny")
    held_out = add_prompts(64, 99)
    before = sampled_accuracy(model, tok, held_out)
    cfg = RLConfig(lr=5e-4, steps=20, group_size=8, prompts_per_step=32, max_new_tokens=8, seed=0)
    history = grpo(model, tok, add_prompts(256, 0), cfg, progress=False)
    after = sampled_accuracy(model, tok, held_out)
    first, last = [r["reward"] for r in history[:5]], [r["reward"] for r in history[-5:]]
    assert after > before + 0.08, (before, after)
    assert sum(last) / 5 > sum(first) / 5 + 0.05, (first, last)


# ---------------------------------------------------------------- resuming and interruption

def test_interrupted_and_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    prompts = add_prompts(32, 0)
    cfg = small_config(steps=4, eval_every=1)

    def straight_eval(model, step):
        return {"n": step}

    model, tok = load_model("tiny")
    grpo(model, tok, prompts, cfg, out=tmp_path / "straight", eval_fn=straight_eval, progress=False)

    def interrupting_eval(model, step):
        if step == 2:
            signal.raise_signal(signal.SIGINT)  # the handler only sets a flag; the step ends, then it stops
        return {"n": step}

    model, tok = load_model("tiny")
    with pytest.raises(Interrupted, match="step 2"):
        grpo(model, tok, prompts, cfg, out=tmp_path / "resumed", eval_fn=interrupting_eval, progress=False)
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "model").exists()
    # A line written after the checkpoint (as if killed mid-step) must be dropped on resume.
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"step": 3, "reward": -1.0}) + "\n")

    model, tok = load_model("tiny")
    history = grpo(model, tok, prompts, cfg, out=tmp_path / "resumed", eval_fn=straight_eval, progress=False, resume=True)
    assert [r["step"] for r in history] == [1, 2, 3, 4]
    for name in ("metrics.jsonl", "evals.jsonl"):
        assert (tmp_path / "resumed" / name).read_text() == (tmp_path / "straight" / name).read_text()
    a, _ = load_model(str(tmp_path / "straight" / "model"))
    b, _ = load_model(str(tmp_path / "resumed" / "model"))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psft_edu", "rl", *args], cwd=REPO, env=ENV, capture_output=True, text=True, **kwargs)


def test_cli_writes_metrics_and_a_loadable_model(tmp_path: Path) -> None:
    out = tmp_path / "rl"
    result = run_cli("--init", "tiny", "--out", str(out), "--steps", "3", "--split", "eval/add", "--prompts-per-step", "4",
                     "--group-size", "4", "--lr", "1e-4", timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert (out / "checkpoint.pt").exists() and (out / "evals.jsonl").exists()
    assert json.loads((out / "config.json").read_text())["group_size"] == 4
    model, tok = load_model(str(out / "model"))
    assert sample(model, tok, ["add 1 2:"], max_new_tokens=4).texts[0][0] is not None
    assert "done: 3 steps" in result.stdout


def test_cli_bad_split_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from psft_edu.__main__ import main as cli

    code = cli(["rl", "--init", "tiny", "--out", str(tmp_path / "x"), "--split", str(tmp_path / "missing.jsonl")])
    assert code == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_sigint_saves_a_checkpoint_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "rl"
    command = [sys.executable, "-m", "psft_edu", "rl", "--init", "tiny", "--out", str(out), "--steps", "2000", "--split", "eval/add",
               "--prompts-per-step", "4", "--group-size", "4", "--save-every", "0"]
    proc = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted at step" in stderr
    assert (out / "checkpoint.pt").exists()
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == steps[-1]
