"""The command line as a newcomer meets it: --version, grouped flags that all say what they do, the course's
commands in the main help, compare's expected time, eval's table saved as JSON, and the notebooks copied out."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import nbformat
import pytest

from psft_edu.cli import flags
from psft_edu.cli.main import build_parser, main
from psft_edu.course import editions


def _commands() -> dict[str, argparse.ArgumentParser]:
    return flags.command_parsers(build_parser())


def test_every_flag_of_every_command_has_help_and_a_group() -> None:
    for name, parser in _commands().items():
        for group in parser._action_groups:
            for action in group._group_actions:
                if action.dest == "help":
                    continue
                where = f"{name} {'/'.join(action.option_strings) or action.dest}"
                assert action.help and action.help != argparse.SUPPRESS, f"{where}: no help text"
                assert group.title in flags.GROUP_ORDER and group.title != flags.OTHER_GROUP, (
                    f"{where}: in group {group.title!r}; file it in psft_edu/cli/flags.py (FLAG_GROUPS)"
                )
        assert "--debug" in parser.format_help(), name


def test_version_and_the_main_help() -> None:
    done = subprocess.run([sys.executable, "-m", "psft_edu", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from psft_edu import __version__

    assert done.stdout.startswith(f"psft-edu {__version__} (python ") and "torch " in done.stdout
    text = build_parser().format_help()
    for command in ("notebooks", "python -m psft_edu.course", "stamp", "student", "book"):
        assert command in text, command


def test_compare_help_states_the_expected_time() -> None:
    text = " ".join(_commands()["compare"].format_help().split())
    assert f"Expected time: {flags.COMPARE_TIME}" in text
    assert "minutes at small" in flags.COMPARE_TIME and "tiny" in flags.COMPARE_TIME


def test_eval_saves_its_table_as_json(tmp_path, capsys) -> None:
    out = tmp_path / "tables" / "eval.json"
    argv = ["eval", "--preset", "tiny", "--prompts", "3", "--samples", "2", "--families", "add", "make_sum"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = json.loads(out.read_text())
    assert table["model"] == "tiny" and table["prompts"] == 3 and table["samples"] == 2
    assert set(table["results"]) >= {"add", "make_sum"}
    for family, row in table["results"].items():  # the numbers printed are the numbers saved
        assert f"{family:9s} " + "  ".join(f"{k}={v:.3f}" for k, v in row.items()) in printed
    assert main([*argv, "--out", str(tmp_path)]) == 2  # a folder: refused before evaluating
    assert "is a folder" in capsys.readouterr().err


def test_notebooks_copies_the_course_and_refuses_a_folder_in_use(tmp_path, capsys) -> None:
    source = editions.course_notebooks_dir()
    assert main(["notebooks", str(tmp_path / "course")]) == 0
    names = sorted(p.name for p in (tmp_path / "course").glob("*.ipynb"))
    assert names == sorted(p.name for p in source.glob("*.ipynb")) and len(names) == 9
    assert (tmp_path / "course" / "results" / "compare_small.json").exists()
    assert not any((tmp_path / "course" / name).exists() for name in editions.NOTEBOOK_SUPPORT)
    assert main(["notebooks", str(tmp_path / "student"), "--student"]) == 0
    nb = nbformat.read(tmp_path / "student" / names[0], as_version=4)
    assert nb.metadata["psft_edu"]["edition"] == "student"
    capsys.readouterr()
    assert main(["notebooks", str(tmp_path / "course")]) == 2  # not empty: nothing is replaced
    assert "not empty" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "--out", "x"], ["rl", "--init", "tiny", "--out", "x"]])
def test_settings_flags_sit_in_the_settings_groups(argv) -> None:
    parser = _commands()[argv[0]]
    titles = {a.dest: g.title for g in parser._action_groups for a in g._group_actions}
    assert titles["lr"] == flags.SETTINGS_GROUP and titles["eval_every"] == flags.EVAL_GROUP
    assert titles["save_every"] == flags.OUTPUT_GROUP and titles["out"] == flags.OUTPUT_GROUP
    assert titles["config"] == flags.CONFIG_GROUP and titles["device"] == flags.EXECUTION_GROUP
