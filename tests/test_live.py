"""psft_edu.course.live: the plumbing behind notebook 07's PSFT_EDU_LIVE=1 re-run."""

from __future__ import annotations

import json

import pytest

from psft_edu.course import live
from psft_edu.engine.grpo_loop import RLConfig
from psft_edu.experiments import rl_experiment
from psft_edu.paths import REPO_ROOT


def test_parse_run_name() -> None:
    assert live.parse_run_name("psft_lr1e-03_seed2") == ("psft", 1e-3, 2)
    assert live.parse_run_name("sft_lr3e-05") == ("sft", 3e-5, 0)
    assert live.parse_run_name("base") is None
    assert live.parse_run_name("dft_lr1e-03") is None


def test_rl_config_from_committed_settings() -> None:
    cached = json.loads((REPO_ROOT / "notebooks" / "results" / "rl_small.json").read_text())
    cfg = live.rl_config_from_settings(cached["settings"])
    assert isinstance(cfg, RLConfig)
    for key in ("lr", "steps", "group_size", "clip_low", "clip_high", "beta", "agg", "seed"):
        assert getattr(cfg, key) == cached["settings"][key]
    assert cfg.init == ""


def test_resolve_init(tmp_path) -> None:
    assert live.resolve_init("runs/x") == REPO_ROOT / "runs" / "x"
    assert live.resolve_init(str(tmp_path)) == tmp_path


def test_rerun_fine_tunes_missing_checkpoints(tmp_path, monkeypatch) -> None:
    present = tmp_path / "present"
    present.mkdir()
    cached = {
        "preset": "tiny",
        "settings": {**json.loads((REPO_ROOT / "notebooks" / "results" / "rl_small.json").read_text())["settings"],
                     "eval_prompts_per_family": {"make_sum": 2}, "num_prompts": 8},
        "runs": {"sft_lr1e-03_seed1": {"init": "runs/does/not/exist"}, "psft_lr1e-04": {"init": str(present)},
                 "base": {"init": "tiny"}},
    }
    tuned, called = [], {}

    def fake_finetune(preset, out, objectives, lr=None, seed=0, max_steps=None, records=None):
        tuned.append((preset, objectives, lr, seed))
        path = out / objectives[0] / "model"
        path.mkdir(parents=True)
        return {objectives[0]: path}

    def fake_rl(inits, prompts, cfg, evals, samples, **kwargs):
        called.update(inits=inits, prompts=prompts, cfg=cfg, evals=evals, samples=samples, **kwargs)
        return {"runs": {}}

    monkeypatch.setattr(live, "finetune_checkpoints", fake_finetune)
    monkeypatch.setattr(rl_experiment, "rl_after_finetuning", fake_rl)
    assert live.rerun_rl_experiment(cached, tmp_path / "work") == {"runs": {}}
    assert tuned == [("tiny", ("sft",), 1e-3, 1)]
    assert called["inits"] == {"sft_lr1e-03_seed1": str(tmp_path / "work" / "tiny_sft_lr1e-03_seed1" / "sft" / "model"),
                               "psft_lr1e-04": str(present), "base": "tiny"}
    assert (
        len(called["prompts"]) == 8 and list(called["evals"]) == ["make_sum"] and len(called["evals"]["make_sum"]) == 2
    )
    assert called["cfg"].clip_high == cached["settings"]["clip_high"]
    assert called["show_prompts"] == cached["settings"]["show_prompts"]


def test_finetune_checkpoints_rejects_unknown_preset(tmp_path) -> None:
    with pytest.raises(ValueError, match="no comparison settings for preset 'huge'"):
        live.finetune_checkpoints("huge", tmp_path)


def test_finetune_checkpoints_tiny(tmp_path) -> None:
    paths = live.finetune_checkpoints("tiny", tmp_path, ("sft", "psft"), max_steps=2)
    assert set(paths) == {"sft", "psft"}
    for objective, path in paths.items():
        assert path == tmp_path / objective / "model" and (path / "config.json").exists()
