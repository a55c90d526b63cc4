"""Command-line machinery shared by every command: argument groups, ``--config FILE`` and ``--version``.

* **Groups.** Each command's ``--help`` lists its flags under a few headings (:data:`GROUP_ORDER`). A command
  parser made by :class:`GroupedSubparsers` files each flag by its name (:data:`FLAG_GROUPS`); the settings
  fields of :class:`~psft_edu.engine.train.TrainConfig` and :class:`~psft_edu.engine.grpo_loop.RLConfig` by
  :func:`settings_group`.
* **Config files.** ``--config run.yaml`` reads a command's flags from a YAML (or JSON) mapping whose keys are
  the flags' names (``max_steps`` or ``max-steps``); flags on the command line override the file. A run's
  ``config.json`` is such a file: its record keys (:data:`RECORD_KEYS`) are skipped and ``init`` (what the
  model was loaded from) becomes ``--model`` for ``train``. A bad file stops the command before it does
  anything, with one line naming the file, the line and the problem.
* **Version.** ``--version`` prints the package's version and those of Python, PyTorch and transformers.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..config import SettingError, choices_of

#: compare --help: measured wall-clock time of `make compare` per preset (re-measure when the budgets change).
COMPARE_TIME = "about 12 minutes at small on 2 quiet cores with 2 workers (20 with --workers 1); tiny about 1 minute"

CONFIG_GROUP = "configuration"
INPUT_GROUP = "model and data"
RUN_GROUP = "what to run"
SETTINGS_GROUP = "training settings"
EVAL_GROUP = "evaluation and logging"
OUTPUT_GROUP = "output"
EXECUTION_GROUP = "execution"
OTHER_GROUP = "other options"  # a flag no rule files: tests/test_cli.py fails while one is left here
GROUP_ORDER = (CONFIG_GROUP, INPUT_GROUP, RUN_GROUP, SETTINGS_GROUP, EVAL_GROUP, OUTPUT_GROUP, EXECUTION_GROUP,
               OTHER_GROUP)

#: The group of every hand-written flag, by its destination name.
FLAG_GROUPS: dict[str, str] = {
    "config": CONFIG_GROUP,
    **dict.fromkeys(("preset", "model", "data", "init", "sft", "psft", "split", "num_prompts", "prompt_seed",
                     "families", "dest"), INPUT_GROUP),
    **dict.fromkeys(("seeds", "max_steps", "no_long", "midtrain_steps", "what", "lr", "steps", "seed", "check",
                     "student"), RUN_GROUP),
    **dict.fromkeys(("prompts", "samples", "no_eval", "show_prompts"), EVAL_GROUP),
    **dict.fromkeys(("out", "overwrite", "json", "tag"), OUTPUT_GROUP),
    **dict.fromkeys(("workers", "resume", "device", "threads", "debug"), EXECUTION_GROUP),
}
#: Keys of a run's ``config.json`` that record the run rather than set it.
RECORD_KEYS = ("commit", "command", "prompts")  # recorded in config.json, not flags (``prompts``: rl's digest)
#: Per command: a settings field recorded in ``config.json`` that is given by another flag.
CONFIG_ALIASES: dict[str, dict[str, str]] = {"train": {"init": "model"}}


def settings_group(name: str) -> str:
    """The group of a settings field of the run configs."""
    if name.startswith(("eval_", "log_")):
        return EVAL_GROUP
    if name.startswith("save_"):
        return OUTPUT_GROUP
    if name == "compile":
        return EXECUTION_GROUP
    return SETTINGS_GROUP


class GroupedParser:
    """A command's parser whose ``add_argument`` files each flag under its group (everything else is the parser's).

    ``group=`` names the group explicitly; otherwise :data:`FLAG_GROUPS` decides, by the flag's destination.
    """

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.groups = {title: parser.add_argument_group(title) for title in GROUP_ORDER}
        parser.psft_edu_groups = self.groups  # type: ignore[attr-defined]  (found again by add_to_group)

    def add_argument(self, *names: str, group: str | None = None, **kwargs: Any) -> argparse.Action:
        if group is None:
            group = FLAG_GROUPS.get(kwargs.get("dest") or _dest(names), OTHER_GROUP)
        return self.groups[group].add_argument(*names, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


class GroupedSubparsers:
    """``add_subparsers()``'s object, whose ``add_parser`` returns a :class:`GroupedParser`."""

    def __init__(self, subparsers: Any) -> None:
        self.subparsers = subparsers

    def add_parser(self, name: str, **kwargs: Any) -> GroupedParser:
        if "help" in kwargs and "description" not in kwargs:
            kwargs["description"] = kwargs["help"][:1].upper() + kwargs["help"][1:] + "."
        return GroupedParser(self.subparsers.add_parser(name, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.subparsers, name)


def add_to_group(parser: argparse.ArgumentParser, group: str, *names: str, **kwargs: Any) -> argparse.Action:
    """Add a flag to a command parser made by :class:`GroupedSubparsers`, under ``group``."""
    return parser.psft_edu_groups[group].add_argument(*names, **kwargs)  # type: ignore[attr-defined]


def _dest(names: tuple[str, ...]) -> str:
    long = next((n for n in names if n.startswith("--")), names[0])
    return long.lstrip("-").replace("-", "_")


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of every command, by name."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# ----------------------------------------------------------------------------------------- settings flags

class FlagError(ValueError):
    """A command-line value that cannot work; the message names the flag."""


def flag(name: str) -> str:
    """The command-line spelling of a settings field: ``max_steps`` -> ``--max-steps``."""
    return "--" + name.replace("_", "-")


_FIELD_TYPES = {"str": str, "int": int, "float": float, "int | None": int}


def add_settings(parser: GroupedParser, cls: type, from_preset: tuple[str, ...] = ()) -> None:
    """One flag per command-line field of the settings dataclass ``cls``: type, default, help text and
    choices are the field's own (:func:`psft_edu.config.setting`), the group :func:`settings_group`.
    Fields named in ``from_preset`` default to the preset's budget instead (filled in by the command)."""
    for f in fields(cls):
        if not f.metadata.get("cli", True):
            continue
        text, default, group = f.metadata["help"], f.default, settings_group(f.name)
        if f.name in from_preset:
            text, default = text + " (default: the preset's budget)", None
        elif default is not None:
            text += " (default: %(default)s)"
        if f.type == "bool" and not default:
            parser.add_argument(flag(f.name), action="store_true", help=f.metadata["help"], group=group)
        elif f.type == "bool":  # on by default: --no-<name> turns it off
            parser.add_argument(
                flag(f.name), action=argparse.BooleanOptionalAction, default=True, help=text, group=group
            )
        else:
            parser.add_argument(
                flag(f.name), type=_FIELD_TYPES[f.type], default=default, choices=choices_of(f), help=text,
                group=group,
            )


def settings_from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """An instance of the settings dataclass ``cls`` from the parsed flags (plus ``extra`` fields); a value
    the dataclass refuses becomes a :class:`FlagError` that names the flag."""
    values = {
        f.name: getattr(args, f.name) for f in fields(cls) if f.metadata.get("cli", True) and hasattr(args, f.name)
    }
    try:
        return cls(**{**values, **extra})
    except SettingError as err:
        raise FlagError(err.spelled(flag)) from None


# ----------------------------------------------------------------------------------------- --version

class VersionAction(argparse.Action):
    """``--version``: the package's version, with Python's, PyTorch's and transformers' (read only when asked)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the versions of psft-edu, Python, PyTorch and transformers, then exit")
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001 (argparse's signature)
        print(version_line())
        parser.exit()


def version_line() -> str:
    import platform
    from importlib import metadata

    from .. import __version__

    parts = [f"python {platform.python_version()}"]
    for dist in ("torch", "transformers"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} missing")
    return f"psft-edu {__version__} ({', '.join(parts)})"


# ----------------------------------------------------------------------------------------- --config FILE

class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, the line and the problem."""


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` for one command."""
    add_to_group(
        parser, CONFIG_GROUP, "--config", metavar="FILE", default=None,
        help="read this command's flags from a YAML or JSON file (keys: the flag names, e.g. max_steps: 40); "
        "flags given here override it. A run's config.json works as such a file",
    )


def _key_line(text: str, key: str) -> int | None:
    pattern = re.compile(r"""^\s*["']?""" + re.escape(key) + r"""["']?\s*:""")
    return next((i for i, line in enumerate(text.splitlines(), 1) if pattern.match(line)), None)


def read_config_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """The mapping in a YAML or JSON file (``.json``: JSON, which also reads ``Infinity``) and the file's text."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read it ({err})") from None
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text) if text.strip() else {}
        else:
            import yaml

            values = yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None
    except Exception as err:  # yaml.YAMLError: its mark names the line
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of flag names to values, got {type(values).__name__}")
    return values, text


def _convert(action: argparse.Action, value: Any) -> Any:
    """``value`` from a file as the command line would give it for ``action``; ValueError says what is wrong."""
    if value is None:
        return None
    if action.nargs == 0:  # an on/off flag: the file gives the value it sets (no_eval: true, log_kl: false)
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    many = action.nargs in ("*", "+") or isinstance(action, argparse._AppendAction)
    if many:
        items = value if isinstance(value, list) else None
        if items is None:
            raise ValueError(f"expected a list, got {value!r}")
        return [_one(action, item) for item in items]
    if isinstance(value, (list, dict)):
        raise ValueError(f"expected one value, got {value!r}")
    return _one(action, value)


def _one(action: argparse.Action, value: Any) -> Any:
    kind = action.type
    if isinstance(value, bool) and kind in (int, float):
        raise ValueError(f"expected a number, got {value!r}")
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"expected a whole number, got {value!r}")
        value = int(value)
    if kind is float and isinstance(value, str) and value.strip().lower() in ("infinity", "+infinity"):
        value = math.inf
    try:
        converted = kind(value) if kind is not None else (value if isinstance(value, str) else str(value))
    except (TypeError, ValueError):
        raise ValueError(f"expected {getattr(kind, '__name__', 'a value')}, got {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"must be one of {', '.join(map(str, action.choices))}; got {converted!r}")
    return converted


def apply_config(command: str, parser: argparse.ArgumentParser, path: str | Path) -> dict[str, Any]:
    """Make the flags in the config file ``path`` the defaults of ``parser`` (flags given still win).

    Returns the values applied, by destination. Raises :class:`ConfigError` on an unknown key or a bad value.
    """
    values, text = read_config_file(path)
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    aliases = CONFIG_ALIASES.get(command, {})
    applied: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{path}, line {_key_line(text, str(key)) or '?'}"
        if not isinstance(key, str):
            raise ConfigError(f"{where}: {key!r} is not a flag name")
        if key in RECORD_KEYS:
            continue
        dest = key.replace("-", "_")
        dest = aliases.get(dest, dest)
        action = actions.get(dest)
        if action is None:
            near = difflib.get_close_matches(dest, list(actions), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; {command} takes: {', '.join(sorted(actions))}"
            raise ConfigError(f"{where}: {command} has no flag {key!r}{hint}")
        try:
            applied[dest] = _convert(action, value)
        except ValueError as err:
            raise ConfigError(f"{where}: {key}: {err}") from None
    parser.set_defaults(**applied)
    for dest in applied:
        actions[dest].required = False  # given by the file
    return applied


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with the command's ``--config FILE`` (if any) read first."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = command_parsers(parser)
    command = next((word for word in argv if not word.startswith("-")), None)
    if command in commands and any(a.dest == "config" for a in commands[command]._actions):
        probe = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        probe.add_argument("--config", default=None)
        known, _ = probe.parse_known_args(argv[argv.index(command) + 1:])
        if known.config is not None:
            try:
                apply_config(command, commands[command], known.config)
            except ConfigError as err:
                print(f"error: {err}", file=sys.stderr)
                raise SystemExit(2) from None
    return parser.parse_args(argv)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces parsed ``args`` (recorded in results)."""
    import shlex

    words = ["python", "-m", "psft_edu", args.command]
    for key, value in vars(args).items():
        if key in ("func", "command") or value is None or value is False:
            continue
        if value is True:
            words.append(flag(key))
        elif isinstance(value, list):  # options given several times (action="append")
            for item in value:
                words += [flag(key), str(item)]
        else:
            words += [flag(key), str(value)]
    return " ".join(shlex.quote(w) for w in words)


__all__ = [
    "command_line",
    "COMPARE_TIME",
    "ConfigError",
    "FlagError",
    "GroupedParser",
    "GroupedSubparsers",
    "VersionAction",
    "add_config_flag",
    "add_settings",
    "add_to_group",
    "apply_config",
    "command_parsers",
    "flag",
    "parse_args",
    "read_config_file",
    "settings_from_args",
    "settings_group",
    "version_line",
]
