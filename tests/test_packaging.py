"""Packaging stays consistent: pyproject.toml vs environment.yml, CI entry point, README."""

from __future__ import annotations

import os
import re

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from psft_edu.models import REPO_ROOT

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

# pip name -> conda-forge name, where they differ
CONDA_NAMES = {"torch": "pytorch"}
EXTRAS = ("test", "trl", "book", "lab")


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(REPO_ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


@pytest.fixture(scope="module")
def environment() -> dict:
    import yaml  # a dependency of the package (config files)

    return yaml.safe_load((REPO_ROOT / "environment.yml").read_text())


def _parse(lines: list[str]) -> dict[str, SpecifierSet]:
    out: dict[str, SpecifierSet] = {}
    for line in lines:
        req = Requirement(line)
        name = CONDA_NAMES.get(req.name.lower(), req.name.lower())
        if name in out:
            assert out[name] == req.specifier, f"{name} listed twice with different versions"
        out[name] = req.specifier
    return out


def test_environment_yml_matches_pyproject(pyproject, environment):
    project = pyproject["project"]
    pip_lines = list(project["dependencies"])
    for extra in EXTRAS:
        pip_lines += project["optional-dependencies"][extra]
    expected = _parse(pip_lines)

    conda_lines, pip_section = [], None
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            pip_section = entry.get("pip")
        elif Requirement(entry).name not in ("python", "pip"):
            conda_lines.append(entry)
    actual = _parse(conda_lines)

    assert sorted(actual) == sorted(expected), "package names differ"
    for name, spec in expected.items():
        assert actual[name] == spec, f"{name}: environment.yml has {actual[name]}, pyproject.toml has {spec}"
    assert "torch" not in actual and "pytorch" in actual
    # the package itself is installed from the checkout, and the Python floor is the same
    assert pip_section == ["-e ."]
    python = next(e for e in environment["dependencies"] if isinstance(e, str) and e.startswith("python"))
    assert SpecifierSet(python[len("python") :]) == SpecifierSet(project["requires-python"])
    assert "conda-forge" in environment["channels"]


def test_console_script_points_at_a_callable(pyproject):
    target = pyproject["project"]["scripts"]["psft-edu"]
    module_name, func = target.split(":")
    module = __import__(module_name, fromlist=[func])
    assert callable(getattr(module, func))


def test_ci_runs_make_test():
    script = REPO_ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK), ".ci/run must be executable"
    commands = [
        line.strip() for line in script.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "make test" in commands


def test_makefile_has_the_documented_targets():
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, flags=re.M))
    assert {"setup", "test", "compare", "data"} <= targets
    # the unit tests run offline, on the tiny preset
    assert "HF_HUB_OFFLINE=1" in makefile and "PSFT_EDU_PRESET=tiny" in makefile


def test_readme_mentions_the_main_commands():
    readme = REPO_ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md not written yet")
    text = readme.read_text()
    assert "make compare" in text
    assert "make test" in text
