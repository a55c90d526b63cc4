"""Packaging stays consistent: pyproject.toml vs environment.yml, CI entry point, README."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from psft_edu.paths import REPO_ROOT

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


def test_ci_workflow_runs_make_test_on_python_3_11():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    jobs = list(workflow["jobs"].values())
    assert len(jobs) == 1 and "ubuntu" in jobs[0]["runs-on"]
    steps = jobs[0]["steps"]
    pythons = [s["with"]["python-version"] for s in steps if "setup-python" in s.get("uses", "")]
    assert [str(v) for v in pythons] == ["3.11"]
    runs = [line.strip() for s in steps for line in s.get("run", "").splitlines()]
    assert any(line.startswith("make test") for line in runs), runs


def _make_dry_run(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("no make")
    stamp = ".venv/.psft-edu-installed"  # -o: treat the set-up as done, so only the target's own command is shown
    # --no-print-directory: under an outer make (make test) the nested one would add "Entering directory" lines
    command = ["make", "--no-print-directory", "-n", "-o", stamp, *args]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_make_lab_works_as_root_and_passes_flags():
    as_root = _make_dry_run("lab", "USER_ID=0")
    assert "jupyter lab --allow-root" in as_root and as_root.rstrip().endswith("notebooks/")
    as_user = _make_dry_run("lab", "USER_ID=1000", "ARGS=--port=8899 --no-browser")
    assert "--allow-root" not in as_user and "--port=8899 --no-browser notebooks/" in as_user
    if os.geteuid() == 0:  # the real user id decides by default
        assert "--allow-root" in _make_dry_run("lab")
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert '-e ".[test,trl,book,lab]"' in makefile  # make setup installs JupyterLab (the lab extra)


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
