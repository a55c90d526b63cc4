"""A missing preset base is built on first use (GPU, or forced) or refused on a CPU with a time estimate.

The ``gpt2`` preset is swapped for a tiny model with a few pretraining steps, so nothing here
trains the 124M model; the cache is a temporary folder.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from psft_edu import models, paths
from psft_edu.cli.main import main
from psft_edu.experiments import build_base
from psft_edu.experiments.build_base import BUILD_ENV, BaseRefused, build_policy, ensure_base, format_duration
from psft_edu.models import load_model
from psft_edu.presets import PRESETS

# One torch thread: on a busy 2-core machine two threads were more than ten times slower here.
pytestmark = pytest.mark.usefixtures("one_thread")

# The gpt2 name with a toy's size and budget (its comparison and bench budgets are the real preset's).
TINY_GPT2 = dataclasses.replace(
    PRESETS["gpt2"], n_layer=1, n_head=2, n_embd=32, n_positions=64, vocab_size=None,
    pretrain_steps=6, pretrain_batch=16, pretrain_lr=3e-3,
)


@pytest.fixture
def tiny_gpt2(tmp_path, monkeypatch):
    """The gpt2 preset at toy size, an empty user cache, no gpt2 checkpoint anywhere, a CPU device."""
    monkeypatch.setitem(PRESETS, "gpt2", TINY_GPT2)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(BUILD_ENV, raising=False)
    monkeypatch.setattr(paths, "CHECKPOINT_DIR", tmp_path / "shipped")  # nothing shipped or pretrained
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert not (paths.base_checkpoint_dir("gpt2") / "config.json").exists()
    return tmp_path / "cache" / "checkpoints" / "gpt2"


def test_cpu_refuses_with_a_one_line_time_estimate_and_writes_nothing(tiny_gpt2, monkeypatch):
    monkeypatch.setattr(build_base, "probe_seconds_per_step", lambda preset, device=None, **kw: 12.5)
    with pytest.raises(BaseRefused) as err:
        ensure_base("gpt2")
    message = str(err.value)
    assert "\n" not in message
    # 6 steps x 12.5 s = 75 s; the message names the time, how it was measured and how to force the build
    assert "would take about 75 s" in message and "6 steps at 12.5 s each" in message
    assert f"{BUILD_ENV}=1" in message and str(tiny_gpt2) in message
    assert not tiny_gpt2.exists() and not tiny_gpt2.parent.exists()
    assert isinstance(err.value, FileNotFoundError)  # the CLI turns it into one line and exit status 2


def test_the_estimate_comes_from_timed_steps(tiny_gpt2):
    per_step = build_base.probe_seconds_per_step("gpt2", "cpu", steps=1)
    assert 0 < per_step < 60
    total, again = build_base.estimate_build_seconds("gpt2", "cpu")
    assert total == pytest.approx(again * TINY_GPT2.pretrain_steps)


def test_the_cpu_estimate_fits_a_fixed_and_a_per_sequence_cost(tiny_gpt2, monkeypatch):
    full = TINY_GPT2.pretrain_batch

    def probe(preset, device=None, steps=2, batch=None):  # a step takes 0.5 s + 0.01 s per sequence
        batch = batch or full
        return (0.5 + 0.01 * batch) * full / batch  # what the probe reports: scaled to the full batch

    monkeypatch.setattr(build_base, "probe_seconds_per_step", probe)
    total, per_step = build_base.estimate_build_seconds("gpt2", "cpu")
    assert per_step == pytest.approx(0.5 + 0.01 * full)  # scaling the 4-sequence time alone: 3.3x too much
    assert total == pytest.approx(per_step * TINY_GPT2.pretrain_steps)


def test_forced_build_on_cpu_caches_the_base_and_later_loads_reuse_it(tiny_gpt2, monkeypatch, capsys):
    monkeypatch.setenv(BUILD_ENV, "1")
    monkeypatch.setattr(build_base, "probe_seconds_per_step", lambda preset, device=None, **kw: 0.01)
    calls = []
    from psft_edu.experiments import pretrain as pretrain_module

    real = pretrain_module.pretrain

    def small_pretrain(preset, out=None, **kwargs):
        calls.append(out)
        return real(preset, out, **{**kwargs, "eval_prompts": 2})

    monkeypatch.setattr(pretrain_module, "pretrain", small_pretrain)
    assert ensure_base("gpt2") == tiny_gpt2
    model, tok = load_model("gpt2")
    assert calls == [tiny_gpt2]
    err = capsys.readouterr().err
    assert "building it now on cpu" in err and str(tiny_gpt2) in err
    assert (model.config.n_layer, model.config.n_embd) == (1, 32) and len(tok) == model.config.vocab_size
    manifest = json.loads((tiny_gpt2 / "manifest.json").read_text())
    assert manifest["preset"] == "gpt2" and manifest["steps"] == 6
    assert not tiny_gpt2.with_name("gpt2.run").exists()  # the trainer's work folder is cleaned up
    assert models.checkpoint_path("gpt2") == tiny_gpt2
    # Later loads find the cached base and never build again, whatever the policy says.
    monkeypatch.setenv(BUILD_ENV, "0")
    assert ensure_base("gpt2") == tiny_gpt2
    again, _ = load_model("gpt2")
    assert calls == [tiny_gpt2]
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_gpu_builds_without_being_forced(tiny_gpt2, monkeypatch):
    """On a GPU (here: a device that is not the CPU, faked) the default policy builds."""
    monkeypatch.setattr(build_base, "estimate_build_seconds", lambda preset, device=None: (60.0, 10.0))
    built = []
    from psft_edu.experiments import pretrain as pretrain_module

    monkeypatch.setattr(
        pretrain_module, "pretrain", lambda preset, out=None, **kw: built.append((preset, out, kw["device"]))
    )
    assert ensure_base("gpt2", device="meta") == tiny_gpt2
    assert built == [("gpt2", tiny_gpt2, "meta")]
    with pytest.raises(BaseRefused, match="would take about 60 s"):
        ensure_base("gpt2", device="cpu")


def test_a_base_built_by_another_process_meanwhile_is_not_built_again(tiny_gpt2, monkeypatch):
    def other_process_finishes(preset, device=None):
        tiny_gpt2.mkdir(parents=True)
        (tiny_gpt2 / "config.json").write_text("{}")
        return 60.0, 10.0

    monkeypatch.setattr(build_base, "estimate_build_seconds", other_process_finishes)
    from psft_edu.experiments import pretrain as pretrain_module

    monkeypatch.setattr(pretrain_module, "pretrain", lambda *a, **k: pytest.fail("built twice"))
    assert ensure_base("gpt2", device="meta") == tiny_gpt2


def test_never_policy_does_not_probe(tiny_gpt2, monkeypatch):
    monkeypatch.setenv(BUILD_ENV, "0")
    monkeypatch.setattr(build_base, "probe_seconds_per_step", lambda *a, **k: pytest.fail("probed"))
    with pytest.raises(BaseRefused, match="forbids building it"):
        ensure_base("gpt2")


def test_loading_a_missing_base_builds_nothing_and_says_how(tiny_gpt2, monkeypatch):
    """models.load_model sits below the experiments: it never builds a base, it names the command that does."""
    monkeypatch.setenv(BUILD_ENV, "1")
    monkeypatch.setattr(build_base, "probe_seconds_per_step", lambda *a, **k: pytest.fail("probed"))
    with pytest.raises(FileNotFoundError) as err:
        load_model("gpt2")
    assert "python -m psft_edu pretrain --preset gpt2" in str(err.value) and "ensure_base('gpt2')" in str(err.value)
    assert not tiny_gpt2.exists()


def test_the_entry_points_build_a_missing_base_first(tiny_gpt2, monkeypatch, capsys):
    """The commands and notebook_setup call ensure_base before loading (here it refuses: a CPU, building off)."""
    from psft_edu.course import notebook_setup

    monkeypatch.setenv(BUILD_ENV, "0")
    assert main(["eval", "--preset", "gpt2", "--prompts", "1", "--samples", "1"]) == 2
    assert "forbids building it" in capsys.readouterr().err
    monkeypatch.setenv("PSFT_EDU_PRESET", "gpt2")
    with pytest.raises(BaseRefused, match="forbids building it"):
        notebook_setup(seed=0)


def test_build_policy_values(monkeypatch):
    for raw, policy in (
        ("", "auto"),
        ("auto", "auto"),
        ("1", "force"),
        ("YES", "force"),
        ("0", "never"),
        ("off", "never"),
    ):
        monkeypatch.setenv(BUILD_ENV, raw)
        assert build_policy() == policy
    monkeypatch.setenv(BUILD_ENV, "maybe")
    with pytest.raises(ValueError, match="PSFT_EDU_BUILD_BASE='maybe'"):
        build_policy()


def test_format_duration():
    assert format_duration(0.2) == "1 s"
    assert format_duration(75) == "75 s"
    assert format_duration(600) == "10 min"
    assert format_duration(3 * 3600 + 20 * 60) == "3 h 20 min"
    assert format_duration(5 * 3600) == "5 h"
    assert format_duration(3 * 86400) == "3.0 days"


def test_compare_cli_on_cpu_refuses_in_one_line(tiny_gpt2, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(build_base, "probe_seconds_per_step", lambda preset, device=None, **kw: 4000.0)
    code = main(["compare", "--preset", "gpt2", "--seeds", "0", "--out", str(tmp_path / "runs"), "--no-long"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("error: no `gpt2` base checkpoint yet")
    assert "would take about 6 h 40 min" in err  # 6 steps x 4000 s
    assert not tiny_gpt2.exists()
