"""Settings fields that say everything about themselves: default, help text, check and choices.

The run configs (:class:`psft_edu.engine.train.TrainConfig`, :class:`psft_edu.engine.grpo_loop.RLConfig`) declare
each field with :func:`setting`. The command line builds its flags from those fields
(:func:`psft_edu.cli.flags.add_settings`), so a default or a help text is written once, beside the
field, and Python callers and the command line refuse the same bad values with the same words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import Field, field, fields
from typing import Any

# A named check: the test a (non-NaN) number must pass and the words for one that fails it.
CHECKS: dict[str, tuple[Callable[[float], bool], str]] = {
    "positive": (lambda v: 0 < v < math.inf, "must be a positive number"),
    "non-negative": (lambda v: 0 <= v < math.inf, "must be zero or more"),
    "positive-or-inf": (lambda v: v > 0, "must be a positive number (or inf: never binds)"),
}


class SettingError(ValueError):
    """A setting (or a combination) that cannot work.

    ``template`` refers to the settings involved as ``{0}``, ``{1}``, ...; :meth:`spelled` fills them
    in, as field names by default and as ``--flags`` on the command line.
    """

    def __init__(self, template: str, *names: str) -> None:
        self.template, self.names = template, names
        super().__init__(self.spelled(str))

    def spelled(self, spell: Callable[[str], str]) -> str:
        return self.template.format(*(spell(name) for name in self.names))


def setting(
    default: Any,
    help: str,  # noqa: A002 (the word argparse and TRL use)
    *,
    check: str | None = None,
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with its help text beside its default.

    ``check`` names an entry of :data:`CHECKS` (``None`` values always pass); ``choices`` is a list of
    allowed strings or a function returning it (read when needed, so registries can grow);
    ``cli=False`` keeps the field off the command line (it is set by the program, not the user).
    """
    if check is not None and check not in CHECKS:
        raise ValueError(f"unknown check {check!r}; choose from {', '.join(CHECKS)}")
    return field(default=default, metadata={"help": help, "check": check, "choices": choices, "cli": cli})


def choices_of(f: Field) -> list[str] | None:
    """The allowed values of a field declared with ``choices`` (``None`` when any value goes)."""
    choices = f.metadata.get("choices")
    return list(choices() if callable(choices) else choices) if choices is not None else None


def problem_with(value: Any, check: str) -> str | None:
    """What is wrong with ``value`` under the named check (``"must be a positive number, got 0"``); None if it
    passes. ``None`` always passes: it stands for "the default"."""
    if value is None:
        return None
    passes, problem = CHECKS[check]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return None if number and not math.isnan(value) and passes(value) else f"{problem}, got {value}"


def check_settings(cfg: Any) -> None:
    """Raise :class:`SettingError` for the first field of ``cfg`` that fails its declared check or choices."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        problem = problem_with(value, f.metadata["check"]) if f.metadata.get("check") else None
        if problem:
            raise SettingError("{0} " + problem, f.name)
        allowed = choices_of(f)
        if allowed is not None and value not in allowed:
            raise SettingError(f"{{0}} must be one of {', '.join(allowed)}; got {value!r}", f.name)


__all__ = ["CHECKS", "SettingError", "check_settings", "choices_of", "problem_with", "setting"]
