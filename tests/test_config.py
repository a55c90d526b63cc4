"""Settings are declared once: the dataclass field carries default, help and check; the CLI reads them."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields

import pytest

from psft_edu.cli.flags import FlagError, settings_from_args
from psft_edu.cli.main import build_parser
from psft_edu.config import SettingError, check_settings, setting
from psft_edu.engine.grpo_loop import RLConfig
from psft_edu.engine.train import TrainConfig
from psft_edu.presets import PRESETS, RLBudget


def _command(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[name]


def _actions(name: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in _command(name)._actions}


@pytest.mark.parametrize(("command", "cls"), [("train", TrainConfig), ("rl", RLConfig), ("rl-compare", RLConfig)])
def test_every_config_field_is_a_flag_with_the_fields_help(command, cls):
    actions = _actions(command)
    budget = {f.name for f in fields(RLBudget)} if command == "rl-compare" else set()
    for f in fields(cls):
        if not f.metadata["cli"]:  # set by the program (``rl --init`` is where from, not this field)
            continue
        action = actions[f.name]
        assert action.option_strings[0] == "--" + f.name.replace("_", "-")
        assert f.metadata["help"] in action.help
        # Stated once: the flag's default is the field's, except where the preset's budget decides.
        assert action.default == (None if f.name in budget else f.default), f.name


def test_a_parsed_command_line_without_flags_gives_the_dataclass_defaults():
    args = build_parser().parse_args(["train", "--out", "x"])
    assert settings_from_args(TrainConfig, args) == TrainConfig()
    args = build_parser().parse_args(["rl", "--init", "tiny", "--out", "x"])
    assert settings_from_args(RLConfig, args) == RLConfig()
    args = build_parser().parse_args(["rl-compare", "--sft", "a", "--psft", "b", "--init", "c=d", "--out", "x"])
    budget = PRESETS["tiny"].rl.config_kwargs()
    assert settings_from_args(RLConfig, args, **budget).init == ""  # --init NAME=PATH is not the field


def test_bool_fields_turn_on_and_off():
    parse = build_parser().parse_args
    assert settings_from_args(TrainConfig, parse(["train", "--out", "x", "--never-refresh"])).never_refresh
    assert not settings_from_args(TrainConfig, parse(["train", "--out", "x", "--no-log-kl"])).log_kl
    assert settings_from_args(TrainConfig, parse(["train", "--out", "x"])).log_kl


@pytest.mark.parametrize(
    ("kwargs", "field_words", "flag_words"),
    [
        ({"lr": math.nan}, "lr must be a positive number, got nan", "--lr must be a positive number"),
        ({"lr": math.inf}, "lr must be a positive number", "--lr must be"),
        ({"max_steps": 0}, "max_steps must be a positive number, got 0", "--max-steps must be"),
        ({"beta": -0.1}, "beta must be zero or more", "--beta must be zero or more"),
        ({"clip": -1.0}, "clip must be a positive number (or inf", "--clip must be"),
        ({"schedule": "linear"}, "schedule must be one of constant, cosine", "--schedule must be one of"),
        ({"global_batch": 100}, "global_batch (100) must be a multiple of mini_batch (32)", "--global-batch (100)"),
        ({"micro_batch": 5}, "mini_batch (32) must be a multiple of micro_batch (5)", "--micro-batch (5)"),
        ({"max_length": 1}, "max_length must be at least 2", "--max-length must be at least 2"),
    ],
)
def test_python_callers_and_the_command_line_refuse_the_same_values(kwargs, field_words, flag_words):
    with pytest.raises(SettingError) as caught:
        TrainConfig(**kwargs)
    assert field_words in str(caught.value)
    args = build_parser().parse_args(["train", "--out", "x"])
    for name, value in kwargs.items():
        setattr(args, name, value)
    with pytest.raises(FlagError, match=flag_words.replace("(", r"\(").replace(")", r"\)")):
        settings_from_args(TrainConfig, args)


def test_no_clip_is_allowed_and_none_means_the_default():
    assert TrainConfig(clip=math.inf).clip == math.inf
    assert TrainConfig(micro_batch=None).micro_batch is None
    with pytest.raises(SettingError, match="group_size must be at least 2"):
        RLConfig(group_size=1)
    with pytest.raises(SettingError, match="updates_per_step cannot exceed"):
        RLConfig(updates_per_step=200, prompts_per_step=4, group_size=2)


def test_checks_refuse_bools_and_strings_for_numbers():
    @dataclass
    class Toy:
        n: int = setting(1, "a count", check="positive")

    for bad in (True, "3"):
        with pytest.raises(SettingError, match="n must be a positive number"):
            check_settings(Toy(n=bad))
    with pytest.raises(ValueError, match="unknown check 'odd'"):
        setting(1, "x", check="odd")


def test_every_preset_has_an_rl_budget_that_is_a_valid_config():
    for name, preset in PRESETS.items():
        kwargs = preset.rl.config_kwargs()
        assert set(kwargs) <= {f.name for f in fields(RLConfig)}, name
        assert RLConfig(**kwargs).steps == preset.rl.steps
        assert preset.rl.num_prompts > 0


# ----------------------------------------------------------------------------------------- --config FILE

def _parse(argv: list[str]) -> argparse.Namespace:
    from psft_edu.cli import flags

    return flags.parse_args(build_parser(), argv)


def test_a_config_file_sets_flags_and_the_command_line_overrides_it(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("objective: sft\nmax-steps: 40\nlr: 3.0e-4\nclip: .inf\nlog_kl: false\nmodel: tiny\n")
    args = _parse(["train", "--config", str(config), "--out", "x", "--lr", "1e-3"])
    cfg = settings_from_args(TrainConfig, args)
    assert (cfg.objective, cfg.max_steps, cfg.lr, cfg.clip, cfg.log_kl) == ("sft", 40, 1e-3, math.inf, False)
    assert args.model == "tiny"
    # compare and sweep read theirs the same way (lists for repeated values)
    config.write_text("seeds: [0, 1]\nmax_steps: 12\nno_long: true\nworkers: 1\n")
    args = _parse(["compare", "--config", str(config)])
    assert (args.seeds, args.max_steps, args.no_long, args.workers) == ([0, 1], 12, True, 1)
    config.write_text("what: clip\nseeds: [0, 1]\nmax_steps: 12\n")
    args = _parse(["sweep", f"--config={config}", "--seeds", "3"])
    assert (args.what, args.seeds, args.max_steps) == ("clip", [3], 12)
    config.write_text("init: tiny\nout: runs/from-file\nsteps: 5\n")
    args = _parse(["rl", "--config", str(config)])  # a required flag may come from the file
    assert (args.init, args.out, settings_from_args(RLConfig, args).steps) == ("tiny", "runs/from-file", 5)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("lr: 1e-3\nmax_stepz: 4\n", "run.yaml, line 2: train has no flag 'max_stepz'; did you mean 'max_steps'?"),
        ("max_steps: four\n", "run.yaml, line 1: max_steps: expected int, got 'four'"),
        ("max_steps: 2.5\n", "run.yaml, line 1: max_steps: expected a whole number"),
        ("objective: ppo\n", "run.yaml, line 1: objective: must be one of sft, psft"),
        ("log_kl: 1\n", "run.yaml, line 1: log_kl: expected true or false"),
        ("lr: [1, 2]\n", "run.yaml, line 1: lr: expected one value"),
        ("lr: 1e-3\n  bad: [\n", "run.yaml, line 2: not valid YAML"),
        ("- lr\n", "run.yaml: expected a mapping of flag names to values"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file_and_line(tmp_path, capsys, text, words):
    from psft_edu.cli.main import main

    (tmp_path / "run.yaml").write_text(text)
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "out").exists()


def test_a_missing_config_file_and_bad_json_are_refused(tmp_path, capsys):
    from psft_edu.cli.main import main

    with pytest.raises(SystemExit):
        main(["compare", "--config", str(tmp_path / "none.yaml")])
    assert "none.yaml: no such config file" in capsys.readouterr().err
    (tmp_path / "c.json").write_text('{"lr": 1e-3,\n "seed": }')
    with pytest.raises(SystemExit):
        main(["train", "--config", str(tmp_path / "c.json"), "--out", "x"])
    assert "c.json, line 2: not valid JSON" in capsys.readouterr().err


def test_an_rl_runs_config_json_is_a_config_file(tmp_path):
    """What ``runs.write_run_header`` writes for an RL run parses back into the same settings."""
    import json
    from dataclasses import asdict

    cfg = RLConfig(lr=3e-5, steps=7, clip_high=0.5, beta=0.01, temperature=0.7, init="runs/sft/model")
    (tmp_path / "config.json").write_text(
        json.dumps({**asdict(cfg), "split": "eval/add", "commit": "abc", "command": "python -m psft_edu rl ..."},
                   indent=2)
    )
    args = _parse(["rl", "--config", str(tmp_path / "config.json"), "--out", "y"])
    assert args.init == "runs/sft/model" and args.split == "eval/add"
    assert settings_from_args(RLConfig, args, init=args.init) == cfg


def test_a_train_runs_config_json_reproduces_the_run(tmp_path):
    """Train 3 steps; then ``train --config <run>/config.json`` trains the same run again, step for step."""
    import json

    from psft_edu.cli.main import main
    from psft_edu.data import jsonl_bytes, load_split

    first, second = tmp_path / "first", tmp_path / "second"
    data = tmp_path / "mine.jsonl"
    data.write_bytes(jsonl_bytes(load_split("sft_train")[:40]))
    assert main(["train", "--preset", "tiny", "--out", str(first), "--max-steps", "3", "--global-batch", "16",
                 "--mini-batch", "8", "--lr", "1e-3", "--clip", "inf", "--save-every", "0", "--no-log-mechanism",
                 "--no-eval", "--data", str(data)]) == 0
    assert main(["train", "--config", str(first / "config.json"), "--out", str(second)]) == 0  # --data, --no-eval too

    def settings(run):
        return {k: v for k, v in json.loads((run / "config.json").read_text()).items() if k != "command"}

    assert settings(second) == settings(first)
    assert settings(first)["clip"] == math.inf and settings(first)["init"] == "tiny"
    assert settings(first)["data"] == str(data) and settings(first)["no_eval"] is True
    assert (second / "metrics.jsonl").read_text() == (first / "metrics.jsonl").read_text()
