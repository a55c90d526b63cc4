"""GRPO (psft_edu.engine.grpo_loop): advantages, the shared clipped loss, learning, the CLI, resuming, Ctrl-C."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from psft_edu import objectives, tasks
from psft_edu.engine.evaluate import sample
from psft_edu.engine.grpo_loop import RLConfig, grpo, load_prompts, prompts_for_step
from psft_edu.engine.runs import Interrupted, TrainingError
from psft_edu.models import load_model
from psft_edu.objectives import group_advantages

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PSFT_EDU_PRESET": "tiny", "OMP_NUM_THREADS": "1"}


def add_prompts(count: int, seed: int) -> list[str]:
    """Single-digit additions: the tiny base gets about three in four right when sampling (mixed groups: a signal)."""
    rng = random.Random(seed)
    return [tasks.generate("add", rng, max_value=9).prompt for _ in range(count)]


# The tiny model runs several times faster on one thread than on two busy ones (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def small_config(**changes) -> RLConfig:
    settings = {"lr": 5e-4, "steps": 2, "group_size": 4, "prompts_per_step": 4, "max_new_tokens": 8}
    return RLConfig(**{**settings, **changes})


# ---------------------------------------------------------------- advantages


def test_group_advantages_identical_groups_get_zero() -> None:
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert torch.equal(group_advantages(rewards, 4), torch.zeros(8))


def test_group_advantages_mean_zero_unit_std_per_group() -> None:
    rewards = torch.tensor(
        [[1.0, 0.0, 0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0], [0.3, 0.9, 0.1, 0.5, 0.7, 0.2]]
    )
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
        calls.append(
            {
                "adv": advantages.detach().clone(),
                "mask": mask,
                "clip": (clip_low, clip_high),
                "stats": stats,
                "loss": loss,
            }
        )
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
    for key in ("pass@8", "entropy", "distinct_valid", "clip_fraction", "k3_old_new", "grad_norm", "loss"):
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
    """Single-digit additions: 30 GRPO steps lift the training reward (about 0.72 -> 0.94)
    and held-out accuracy (0.78 -> 0.86)."""
    model, tok = load_model("tiny")
    held_out = add_prompts(64, 99)
    before = sampled_accuracy(model, tok, held_out)
    cfg = RLConfig(lr=5e-4, steps=30, group_size=8, prompts_per_step=32, max_new_tokens=8, seed=0)
    history = grpo(model, tok, add_prompts(256, 0), cfg, progress=False)
    after = sampled_accuracy(model, tok, held_out)
    first, last = [r["reward"] for r in history[:5]], [r["reward"] for r in history[-5:]]
    assert after > before + 0.04, (before, after)
    assert sum(last) / 5 > sum(first) / 5 + 0.1, (first, last)


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
    history = grpo(
        model, tok, prompts, cfg, out=tmp_path / "resumed", eval_fn=straight_eval, progress=False, resume=True
    )
    assert [r["step"] for r in history] == [1, 2, 3, 4]
    for name in ("metrics.jsonl", "evals.jsonl"):
        assert (tmp_path / "resumed" / name).read_text() == (tmp_path / "straight" / name).read_text()
    a, _ = load_model(str(tmp_path / "straight" / "model"))
    b, _ = load_model(str(tmp_path / "resumed" / "model"))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "psft_edu", "rl", *args], cwd=REPO, env=ENV, capture_output=True, text=True, **kwargs
    )


def test_cli_writes_metrics_and_a_loadable_model(tmp_path: Path) -> None:
    out = tmp_path / "rl"
    result = run_cli(
        "--init",
        "tiny",
        "--out",
        str(out),
        "--steps",
        "3",
        "--split",
        "eval/add",
        "--prompts-per-step",
        "4",
        "--group-size",
        "4",
        "--lr",
        "1e-4",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert (out / "checkpoint.pt").exists() and (out / "evals.jsonl").exists()
    assert json.loads((out / "config.json").read_text())["group_size"] == 4
    model, tok = load_model(str(out / "model"))
    assert sample(model, tok, ["add 1 2:"], max_new_tokens=4).texts[0][0] is not None
    assert "done: 3 steps" in result.stdout


def test_cli_bad_split_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from psft_edu.cli.main import main as cli

    code = cli(["rl", "--init", "tiny", "--out", str(tmp_path / "x"), "--split", str(tmp_path / "missing.jsonl")])
    assert code == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_sigint_saves_a_checkpoint_and_exits_130(tmp_path: Path, interrupted_cli) -> None:
    out = tmp_path / "rl"
    metrics = out / "metrics.jsonl"
    code, stderr = interrupted_cli(
        ["rl", "--init", "tiny", "--out", str(out), "--steps", "2000", "--split", "eval/add",
         "--prompts-per-step", "4", "--group-size", "4", "--save-every", "0"],
        lambda: metrics.exists() and bool(metrics.read_text()),
        signal.SIGINT,
        env=ENV,
    )
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted at step" in stderr
    assert (out / "checkpoint.pt").exists()
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == steps[-1]


# ---------------------------------------------------------------- RL after SFT vs after PSFT


def test_fresh_prompts_avoid_every_shipped_split() -> None:
    from psft_edu.data import load_split
    from psft_edu.experiments.rl_experiment import fresh_prompts

    prompts = fresh_prompts(300, seed=1)
    assert len(set(prompts)) == 300 and prompts == fresh_prompts(300, seed=1)
    assert prompts != fresh_prompts(300, seed=2)
    assert all(tasks.family_of(p) == "make_sum" for p in prompts)
    held_out = {r["prompt"] for f in tasks.FAMILIES for r in load_split(f"eval/{f}")}
    assert not held_out & set(prompts)
    hard = fresh_prompts(20, seed=1, count=7, max_value=29)
    assert all(len(p.split(":")[0].split()) == 10 for p in hard)  # "make T from" + 7 numbers


def test_rl_after_finetuning_runs_each_init_with_the_same_settings(tmp_path: Path) -> None:
    from psft_edu.experiments.rl_experiment import format_table, fresh_prompts, rl_after_finetuning

    per_family = {"make_sum": load_prompts("eval/make_sum")[:4], "add": load_prompts("eval/add")[:4]}
    show = per_family["make_sum"][:1]
    cfg = small_config(steps=2, eval_every=1)
    with pytest.raises(ValueError, match="evaluation prompts"):
        rl_after_finetuning({"a": "tiny"}, per_family["add"] + add_prompts(8, 0), cfg, per_family, 2)
    # Two runs from the same checkpoint with one seed must agree exactly: only the start differs between runs.
    result = rl_after_finetuning(
        {"sft": "tiny", "psft": "tiny"},
        fresh_prompts(32),
        cfg,
        per_family,
        2,
        out=tmp_path,
        show_prompts=show,
        show_samples=3,
        command="python -m psft_edu rl-compare ...",
    )
    assert result["preset"] == "tiny" and result["command"].startswith("python -m psft_edu rl-compare")
    assert set(result["runs"]) == {"sft", "psft"}
    sft, psft = result["runs"]["sft"], result["runs"]["psft"]
    assert [r["step"] for r in sft["metrics"]] == [1, 2]
    for key in ("reward", "pass@4", "entropy", "distinct_valid", "zero_signal_groups", "clip_fraction"):
        assert key in sft["metrics"][0]
    assert [e["step"] for e in sft["evals"]] == [0, 1, 2]
    assert sft["before"] == sft["evals"][0] and sft["after"] == sft["evals"][-1]
    assert set(sft["after"]) >= {"make_sum", "add", "summary", "samples", "step"}
    assert "ood_accuracy" in sft["after"]["summary"] and len(sft["after"]["samples"][show[0]]) == 3
    assert [r["reward"] for r in sft["metrics"]] == [r["reward"] for r in psft["metrics"]]
    assert sft["after"]["summary"] == psft["after"]["summary"]
    assert result["settings"]["steps"] == 2 and result["settings"]["eval_samples"] == 2
    assert set(result["table"]["sft"]) >= {"reward_first", "reward_last", "ood_before", "ood_after", "zero_signal_last"}
    saved = json.loads((tmp_path / "rl_compare.json").read_text())
    assert saved["table"] == result["table"]
    assert (tmp_path / "sft" / "model").is_dir() and (tmp_path / "psft" / "metrics.jsonl").exists()
    table = format_table(result)
    assert table.splitlines()[0].split()[:3] == ["run", "reward", "pass@4"] and len(table.splitlines()) == 3
    assert format_table(result, by_condition=True).splitlines()[1].startswith("sft (x1)")


def test_rl_compare_cli(tmp_path: Path) -> None:
    model, tok = load_model("tiny")
    model.save_pretrained(tmp_path / "psft_model")
    tok.save_pretrained(tmp_path / "psft_model")
    command = [
        sys.executable,
        "-m",
        "psft_edu",
        "rl-compare",
        "--sft",
        "tiny",
        "--psft",
        str(tmp_path / "psft_model"),
        "--out",
        str(tmp_path / "out"),
        "--steps",
        "2",
        "--prompts-per-step",
        "4",
        "--group-size",
        "4",
        "--eval-every",
        "0",
        "--eval-prompts",
        "3",
        "--eval-samples",
        "2",
        "--num-prompts",
        "16",
        "--show-prompts",
        "1",
        "--json",
        str(tmp_path / "r.json"),
    ]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved == json.loads((tmp_path / "out" / "rl_compare.json").read_text())
    assert saved["command"].startswith("python -m psft_edu rl-compare --sft tiny --psft ")
    assert saved["settings"]["split"] == "generated" and saved["settings"]["num_prompts"] == 16
    assert [e["step"] for e in saved["runs"]["psft"]["evals"]] == [0, 2]
    lines = result.stdout.splitlines()
    assert any(line.startswith("sft ") for line in lines) and any(line.startswith("psft ") for line in lines)


def test_rl_compare_cli_missing_checkpoint_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from psft_edu.cli.main import main as cli

    code = cli(["rl-compare", "--sft", "tiny", "--psft", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert code == 2
    assert "no such checkpoint folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_recorded_command_parses_back_to_the_same_arguments() -> None:
    import shlex

    from psft_edu.cli.flags import command_line
    from psft_edu.cli.main import build_parser
    from psft_edu.experiments.rl_experiment import aggregate_table, condition_of

    argv = [
        "rl-compare",
        "--sft",
        "a/model",
        "--psft",
        "b/model",
        "--tag",
        "lr1e-03_seed0",
        "--init",
        "sft_lr1e-03_seed1=c",
        "--init",
        "base=small",
        "--out",
        "o",
        "--steps",
        "5",
    ]
    command = command_line(build_parser().parse_args(argv))
    again = vars(build_parser().parse_args(shlex.split(command)[3:]))
    first = vars(build_parser().parse_args(argv))
    again.pop("func"), first.pop("func")
    assert again == first and command.startswith("python -m psft_edu rl-compare ")
    # Seeds of one condition are averaged in the summary table.
    assert condition_of("sft_lr1e-03_seed1") == "sft_lr1e-03" and condition_of("base") == "base"
    row = {"reward_first": 0.1, "reward_last": 0.3, "pass@8_first": 0.5, "pass@8_last": 0.6}
    result = {
        "runs": {"sft_x_seed0": {}, "sft_x_seed1": {}, "base": {}},
        "table": {"sft_x_seed0": row, "sft_x_seed1": {**row, "reward_last": 0.5}, "base": row},
    }
    table = aggregate_table(result)
    assert table["sft_x"]["seeds"] == 2 and table["sft_x"]["reward_last"]["mean"] == pytest.approx(0.4)
    assert (
        table["sft_x"]["reward_last"]["std"] == pytest.approx(0.1414, abs=1e-4)
        and table["base"]["reward_last"]["std"] == 0.0
    )
