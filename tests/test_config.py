"""Settings are declared once: the dataclass field carries default, help and check; the CLI reads them."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields

import pytest

from psft_edu.__main__ import FlagError, build_parser, settings_from_args
from psft_edu.config import SettingError, check_settings, setting
from psft_edu.grpo_loop import RLConfig
from psft_edu.presets import PRESETS, RLBudget
from psft_edu.train import TrainConfig


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
