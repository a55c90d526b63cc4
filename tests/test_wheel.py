"""The installable package: build the wheel, install it (not editable) into a fresh virtual environment,
and use the course from a directory that has nothing of the repository in it.

The fresh environment sees the test environment's dependencies (torch, transformers, ...) through a
``.pth`` line, so nothing is downloaded; the repository's own (editable) ``psft_edu`` is not visible
there, because ``.pth`` files inside that borrowed folder are not processed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_WHEEL_BYTES = 10 * 1024 * 1024


def source_copy(dest: Path) -> Path:
    """The files a wheel is built from, copied so that building leaves nothing in the checkout."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.run", ".ipynb_checkpoints")
    shutil.copytree(REPO / "psft_edu", dest / "psft_edu", ignore=junk)
    shutil.copytree(REPO / "data", dest / "data", ignore=junk)
    shutil.copytree(REPO / "notebooks", dest / "notebooks", ignore=junk)  # conftest.py too: it must stay out
    shutil.copytree(REPO / "examples", dest / "examples", ignore=junk)
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would make the checkout importable, offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PSFT_EDU_DATA", "PSFT_EDU_CACHE")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TQDM_DISABLE="1", MPLBACKEND="Agg", PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


def fresh_venv(path: Path) -> Path:
    """A virtual environment without the course that borrows this interpreter's installed packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def build_wheel(src: Path, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        cwd=src,
        env=clean_env(),
        timeout=300,
    )
    (wheel,) = out.glob("psft_edu-*.whl")
    return wheel


def site_files(python: Path) -> set[str]:
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    return {str(p.relative_to(site)) for p in Path(site).rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(source_copy(base / "src"), base / "dist")
    python = fresh_venv(base / "venv")
    probe = [str(python), "-c", "import importlib.util; print(importlib.util.find_spec('psft_edu'))"]
    assert subprocess.run(probe, capture_output=True, text=True, env=clean_env(), cwd=base).stdout.strip() == "None"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, env=clean_env(), timeout=300
    )
    return wheel, python


def test_wheel_carries_the_course_data(installed) -> None:
    wheel, _ = installed
    assert wheel.stat().st_size <= MAX_WHEEL_BYTES, f"{wheel.name}: {wheel.stat().st_size} bytes"
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = "psft_edu/_course/data/"
    expected = [
        f"{shipped}tokenizer/tokenizer.json",
        f"{shipped}sft_train.jsonl",
        f"{shipped}sft_val.jsonl",
        f"{shipped}pretrain.jsonl",
        f"{shipped}rl_hard.jsonl",
        "psft_edu/_course/notebooks/results/compare_small.json",
        "psft_edu/_course/examples/train_psft_trl.py",
        "psft_edu/_course/examples/chat_template.jinja",
    ]
    expected += [
        f"{shipped}checkpoints/{p}/{f}" for p in ("tiny", "small") for f in ("config.json", "model.safetensors")
    ]
    expected += [f"{shipped}eval/{p.name}" for p in (REPO / "data" / "eval").glob("*.jsonl")]
    expected += [f"psft_edu/_course/notebooks/{p.name}" for p in (REPO / "notebooks").glob("*.ipynb")]
    expected += ["psft_edu/course/home.json"]
    missing = [n for n in expected if n not in names]
    assert not missing, missing
    assert not any(".run/" in n for n in names), "a pretraining work folder leaked into the wheel"
    assert not any(n.endswith(("conftest.py", "nbval_sanitize.cfg")) for n in names), "test set-up in the wheel"
    # JupyterLab is an extra: a hosted runtime that installs the course keeps its own front end.
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    lab = [line for line in requires if "jupyterlab" in line]
    assert lab and all('extra == "lab"' in line for line in lab), lab


def test_paths_after_a_non_editable_install(installed, tmp_path) -> None:
    _, python = installed
    code = ("import json, psft_edu.paths as p; print(json.dumps({'file': p.__file__, 'data': str(p.DATA_DIR), "
            "'read_only': p.data_is_read_only(), 'pretrain_to': str(p.user_checkpoint_dir('tiny')), "
            "'tiny': str(p.base_checkpoint_dir('tiny'))}))")
    env = clean_env(PSFT_EDU_CACHE=str(tmp_path / "cache"))
    got = json.loads(
        subprocess.run(
            [str(python), "-c", code], check=True, capture_output=True, text=True, env=env, cwd=tmp_path
        ).stdout
    )
    package = Path(got["file"]).parent
    assert not package.is_relative_to(REPO)
    assert Path(got["data"]) == package / "_course" / "data" and got["read_only"]
    assert Path(got["tiny"]) == package / "_course" / "data" / "checkpoints" / "tiny"
    assert Path(got["pretrain_to"]) == tmp_path / "cache" / "checkpoints" / "tiny"  # not into site-packages
    # The user's data folder still wins over the shipped copy; pretraining still writes to the cache.
    env = clean_env(PSFT_EDU_DATA=str(tmp_path / "mydata"))
    got = json.loads(
        subprocess.run(
            [str(python), "-c", code], check=True, capture_output=True, text=True, env=env, cwd=tmp_path
        ).stdout
    )
    assert Path(got["data"]) == tmp_path / "mydata" and not got["read_only"]
    assert Path(got["pretrain_to"]).parts[-2:] == ("checkpoints", "tiny")
    assert not Path(got["pretrain_to"]).is_relative_to(tmp_path / "mydata")


def test_train_and_eval_from_any_directory(installed, tmp_path) -> None:
    _, python = installed
    before = site_files(python)
    env = clean_env(PSFT_EDU_CACHE=str(tmp_path / "cache"))
    train = [str(python), "-m", "psft_edu", "train", "--preset", "tiny", "--out", "run", "--max-steps", "2",
             "--global-batch", "8", "--mini-batch", "8", "--no-eval", "--save-every", "0"]
    done = subprocess.run(train, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done: 2 steps" in done.stdout
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    evaluate = [str(python), "-m", "psft_edu", "eval", "--model", "run/model", "--prompts", "4", "--samples", "2",
                "--families", "add", "make_sum"]
    done = subprocess.run(evaluate, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split()[0] for line in done.stdout.splitlines() if "=" in line}
    assert {"add", "make_sum", "summary"} <= rows, done.stdout
    refused = subprocess.run(
        [str(python), "-m", "psft_edu", "data"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert refused.returncode == 2 and "PSFT_EDU_DATA" in refused.stderr, refused.stderr[-2000:]
    assert site_files(python) == before, "the course wrote into the installed package"


def test_notebooks_command_copies_the_course_out_of_the_installed_package(installed, tmp_path) -> None:
    import nbformat

    _, python = installed
    before = site_files(python)
    env = clean_env(PSFT_EDU_CACHE=str(tmp_path / "cache"))
    for folder, extra in (("course", []), ("student", ["--student"])):
        done = subprocess.run([str(python), "-m", "psft_edu", "notebooks", folder, *extra], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        names = sorted(p.name for p in (tmp_path / folder).glob("*.ipynb"))
        assert names == sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb")), names
        assert (tmp_path / folder / "results" / "compare_small.json").exists()
        assert not (tmp_path / folder / "conftest.py").exists()
    full = nbformat.read(tmp_path / "course" / names[0], as_version=4)
    assert full.cells == nbformat.read(REPO / "notebooks" / names[0], as_version=4).cells
    assert nbformat.read(tmp_path / "student" / names[0], as_version=4).metadata["psft_edu"]["edition"] == "student"
    again = subprocess.run([str(python), "-m", "psft_edu", "notebooks", "course"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=300)
    assert again.returncode == 2 and "not empty" in again.stderr  # nothing of the learner's is replaced
    assert site_files(python) == before


def test_paths_in_a_checkout_are_unchanged() -> None:
    from psft_edu import models, paths

    if os.environ.get("PSFT_EDU_DATA"):
        pytest.skip("PSFT_EDU_DATA is set")
    assert paths.IN_CHECKOUT and paths.REPO_ROOT == REPO and paths.DATA_DIR == REPO / "data"
    assert not paths.data_is_read_only()
    assert paths.user_checkpoint_dir("tiny") == paths.cache_dir() / "checkpoints" / "tiny"  # pretrain's default
    if not (paths.user_checkpoint_dir("tiny") / "config.json").exists():
        assert models.checkpoint_path("tiny") == REPO / "data" / "checkpoints" / "tiny"


def test_a_users_own_base_model_wins_over_the_shipped_one(tmp_path, monkeypatch) -> None:
    from psft_edu import paths

    shipped = tmp_path / "site" / "psft_edu" / "_course" / "data"
    (shipped / "checkpoints" / "tiny").mkdir(parents=True)
    (shipped / "checkpoints" / "tiny" / "config.json").write_text("{}")
    for name, value in {"IN_CHECKOUT": False, "SHIPPED_DATA_DIR": shipped, "DATA_DIR": shipped,
                        "CHECKPOINT_DIR": shipped / "checkpoints"}.items():
        monkeypatch.setattr(paths, name, value)
    monkeypatch.setenv("PSFT_EDU_CACHE", str(tmp_path / "cache"))
    assert paths.data_is_read_only()
    assert paths.base_checkpoint_dir("tiny") == shipped / "checkpoints" / "tiny"
    assert (
        paths.base_checkpoint_dir("gpt2") == tmp_path / "cache" / "checkpoints" / "gpt2"
    )  # where pretrain would put it
    own = tmp_path / "cache" / "checkpoints" / "tiny"
    own.mkdir(parents=True)
    (own / "config.json").write_text("{}")
    assert paths.base_checkpoint_dir("tiny") == own
    monkeypatch.delenv("PSFT_EDU_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "xdg" / "psft-edu"
