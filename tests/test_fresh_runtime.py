"""A notebook opened in a runtime that has never seen the course: its set-up cell installs what it needs.

The simulated hosted runtime is a virtual environment that sees only PyTorch, ipykernel and nbconvert (with
their own dependencies, and pip and setuptools, as every Python has). Nothing else of the test environment is
visible there: transformers, matplotlib, datasets, trl and the rest must be installed by the set-up cell. pip
runs offline: it installs the course from a wheel built from this checkout (``$PSFT_EDU_INSTALL_SOURCE``) and
every other package from a local folder of wheels repacked from this environment's own installed packages.
Notebooks 01 (the course alone) and 09 (the course and its ``trl`` extra) then run top to bottom with
nbconvert in that environment's kernel, after ``python -m psft_edu.course stamp`` wrote their launch cells.

The rest checks the launch cells without a kernel: what the set-up cell does where the course is installed,
where an extra is missing, in a hosted runtime; the Open-in-Colab cell; ``stamp`` on copies of the notebooks;
``stamp --repo`` re-pointing a copy of the repository at a fork.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from test_wheel import build_wheel, clean_env, source_copy  # tests/ is on sys.path under pytest

from psft_edu.course import editions, home

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parent.parent
RUNTIME_HAS = ("torch", "ipykernel", "nbconvert", "pip", "setuptools")  # a hosted runtime's own packages
FRESH_NOTEBOOKS = {"01_lm_as_mdp.ipynb": [], "09_psft_in_trl.ipynb": ["trl"]}


# ----------------------------------------------------------------------------------------- the simulated runtime

def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed() -> dict[str, metadata.Distribution]:
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        found.setdefault(_canon(dist.metadata["Name"]), dist)
    return found


def _closure(requirements: list[str], dists: dict[str, metadata.Distribution]) -> set[str]:
    """The installed distributions that ``requirements`` pull in, recursively (markers evaluated here)."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = (_canon(req.name), tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        dist = dists.get(key[0])
        assert dist is not None, f"{req.name} is not installed in the test environment"
        for line in dist.requires or []:
            sub = Requirement(line)
            wanted = any(sub.marker is None or sub.marker.evaluate({**default_environment(), "extra": extra})
                         for extra in ("", *key[1]))
            if wanted:
                todo.append(sub)
    return {name for name, _ in seen}


def _course_requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *(r for extra in extras for r in project["optional-dependencies"][extra])]


def _files(dist: metadata.Distribution) -> list[str]:
    """The dist's files inside site-packages (scripts and data installed elsewhere left out)."""
    return [str(f) for f in dist.files or [] if not str(f).startswith("..") and "__pycache__" not in f.parts]


def _repack(dist: metadata.Distribution, wheelhouse: Path) -> None:
    """An installed distribution zipped back into a wheel that pip can install offline."""
    site = Path(dist.locate_file(""))
    info = next(f for f in _files(dist) if f.split("/")[0].endswith(".dist-info")).split("/")[0]
    tags = [line.split(":", 1)[1].strip().split("-") for line in (site / info / "WHEEL").read_text().splitlines()
            if line.startswith("Tag:")]  # e.g. py2-none-any and py3-none-any: the file name says py2.py3-none-any
    tag = "-".join(".".join(dict.fromkeys(parts)) for parts in zip(*tags))
    skip = {f"{info}/{name}" for name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    record = []
    with zipfile.ZipFile(wheelhouse / f"{info.removesuffix('.dist-info')}-{tag}.whl", "w", zipfile.ZIP_STORED) as z:
        for name in _files(dist):
            if name in skip or not (site / name).is_file():
                continue
            payload = (site / name).read_bytes()
            z.writestr(name, payload)
            digest = base64.urlsafe_b64encode(hashlib.sha256(payload).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(payload)}")
        z.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")


def _link_site(names: set[str], dists: dict[str, metadata.Distribution], folder: Path) -> None:
    """A folder holding links to exactly these distributions' top-level files (a runtime's own site-packages)."""
    folder.mkdir()
    for name in names:
        dist = dists[name]
        site = Path(dist.locate_file(""))
        for top in {f.split("/")[0] for f in _files(dist)}:
            if not (folder / top).exists() and (site / top).exists():
                (folder / top).symlink_to(site / top)


@pytest.fixture(scope="module")
def runtime_parts(tmp_path_factory) -> dict[str, Path]:
    """The course's wheel, a folder of wheels for everything else it may install, and the runtime's own site."""
    base = tmp_path_factory.mktemp("runtime")
    dists = _installed()
    own = _closure(list(RUNTIME_HAS), dists)
    wheelhouse = base / "wheelhouse"
    wheelhouse.mkdir()
    for name in sorted(_closure(_course_requirements(["trl"]), dists) - own):
        _repack(dists[name], wheelhouse)
    _link_site(own, dists, base / "runtime-site")
    wheel = build_wheel(source_copy(base / "src"), base / "dist")
    return {"wheel": wheel, "wheelhouse": wheelhouse, "site": base / "runtime-site"}


def _fresh_runtime(path: Path, site: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    Path(own, "_runtime_packages.pth").write_text(f"{site}\n")
    return python


def _where(python: Path, module: str, env: dict, cwd: Path) -> str:
    code = f"import importlib.util as u; s = u.find_spec({module!r}); print(s.origin if s else 'missing')"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env, cwd=cwd,
                          check=True).stdout.strip()


@pytest.mark.parametrize("name", list(FRESH_NOTEBOOKS))
def test_the_setup_cell_installs_what_the_notebook_needs_in_a_fresh_runtime(runtime_parts, tmp_path, name) -> None:
    python = _fresh_runtime(tmp_path / "venv", runtime_parts["site"])
    run = tmp_path / "content"  # a hosted runtime has the notebook and nothing else of the repository
    run.mkdir()
    shutil.copy2(REPO / "notebooks" / name, run / name)
    editions.stamp_notebook(run / name)
    env = clean_env(
        PSFT_EDU_INSTALL_SOURCE=str(runtime_parts["wheel"]), PIP_FIND_LINKS=str(runtime_parts["wheelhouse"]),
        PSFT_EDU_PRESET="tiny", PIP_NO_COMPILE="0", PYTHONNOUSERSITE="1", JUPYTER_PLATFORM_DIRS="1",
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"), JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"), IPYTHONDIR=str(tmp_path / "ipython"),
    )
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, as in a hosted notebook
    for module in ("psft_edu", "transformers", "matplotlib", "trl", "datasets"):
        assert _where(python, module, env, run) == "missing", f"the fresh runtime already has {module}"
    assert _where(python, "torch", env, run).startswith(str(runtime_parts["site"]))

    executed = tmp_path / "executed.ipynb"
    command = [str(python), "-m", "nbconvert", "--to", "notebook", "--execute", str(run / name),
               "--output", str(executed), "--ExecutePreprocessor.timeout=600",
               "--ExecutePreprocessor.kernel_name=python3"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=run, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    nb = nbformat.read(executed, as_version=4)
    setup = next(c for c in nb.cells if editions.SETUP_TAG in c.metadata.get("tags", []))
    said = "".join(o.get("text", "") for o in setup.outputs)
    extras = FRESH_NOTEBOOKS[name]
    package = f"psft-edu[{','.join(extras)}]" if extras else "psft-edu"
    assert f"installing {package} @ file://" in said, said
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors[:1]
    venv_site = str((tmp_path / "venv").resolve())
    assert _where(python, "psft_edu", env, run).startswith(venv_site)  # installed by the cell, into the runtime
    assert _where(python, "transformers", env, run).startswith(venv_site)
    trl = _where(python, "trl", env, run)
    assert trl.startswith(venv_site) if extras else trl == "missing", trl  # the extra only where it is needed


# ----------------------------------------------------------------------------------------- the set-up cell itself

def _run_cell(source: str, monkeypatch) -> tuple[dict, list]:
    calls: list = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append(args[0]))
    namespace: dict = {}
    exec(compile(source, "setup-cell", "exec"), namespace)
    return namespace, calls


def test_setup_cell_does_nothing_where_the_course_is_installed(monkeypatch) -> None:
    for name in ("COLAB_RELEASE_TAG", "KAGGLE_KERNEL_RUN_TYPE", "PSFT_EDU_PRESET"):
        monkeypatch.delenv(name, raising=False)
    for extras in ([], ["trl"]):  # this environment has the course and its trl extra
        namespace, calls = _run_cell(editions.setup_cell_source(extras, source="/nonexistent/source"), monkeypatch)
        assert namespace["missing"] == [] and not calls and not namespace["hosted"]
    assert "PSFT_EDU_PRESET" not in os.environ


def test_setup_cell_installs_a_missing_extra_in_a_hosted_runtime_and_stops_elsewhere(monkeypatch) -> None:
    monkeypatch.setitem(editions.EXTRA_MODULES, "trl", ("psft_edu_no_such_module",))
    source = editions.setup_cell_source(["trl"], source="git+https://github.com/someone/fork")
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delenv("PSFT_EDU_INSTALL_SOURCE", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"make setup.*pip install 'psft-edu\[trl\] @ git\+https://github"):
        _run_cell(source, monkeypatch)  # a local install without the extra: say how to get it, install nothing
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-1")
    monkeypatch.setenv("PSFT_EDU_PRESET", "tiny")
    namespace, calls = _run_cell(source, monkeypatch)
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet",
                      "psft-edu[trl] @ git+https://github.com/someone/fork"]]
    monkeypatch.setenv("PSFT_EDU_INSTALL_SOURCE", str(REPO))  # a folder: installed from its file:// address
    namespace, calls = _run_cell(source, monkeypatch)
    assert calls[0][-1] == f"psft-edu[trl] @ {REPO.resolve().as_uri()}"


def test_setup_cell_picks_the_preset_in_a_hosted_runtime(monkeypatch) -> None:
    import torch

    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")  # e.g. after a restart: installed, preset unset
    monkeypatch.delenv("PSFT_EDU_PRESET", raising=False)
    namespace, calls = _run_cell(editions.setup_cell_source(), monkeypatch)
    assert not calls
    assert os.environ["PSFT_EDU_PRESET"] == ("small" if torch.cuda.is_available() else "tiny")
    monkeypatch.setenv("PSFT_EDU_PRESET", "gpt2")  # an explicit choice wins
    _run_cell(editions.setup_cell_source(), monkeypatch)
    assert os.environ["PSFT_EDU_PRESET"] == "gpt2"


def test_extras_follow_the_imports_and_match_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for extra, modules in editions.EXTRA_MODULES.items():
        names = {_canon(Requirement(r).name) for r in project["optional-dependencies"][extra]}
        assert {_canon(m) for m in modules} == names, extra
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert editions.extras_needed(nb) == (["trl"] if path.name.startswith("09_") else []), path.name


# ----------------------------------------------------------------------------------------- stamp

def test_stamp_writes_both_launch_cells_under_the_title_and_is_idempotent(tmp_path) -> None:
    the_home = home.load_home()
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        target = tmp_path / path.name
        shutil.copy2(path, target)
        original = nbformat.read(target, as_version=4)
        editions.stamp_notebook(target)
        first = target.read_bytes()
        assert editions.stamp_notebook(target) is False and target.read_bytes() == first
        nb = nbformat.read(target, as_version=4)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        link, setup = nb.cells[1], nb.cells[2]
        assert link.metadata["tags"] == [editions.LINK_TAG] and the_home.colab_url(path.name) in link.source
        assert setup.metadata["tags"] == [editions.SETUP_TAG]
        assert setup.source == editions.setup_cell_source(editions.extras_needed(original))
        old = next((c for c in original.cells if editions.SETUP_TAG in c.metadata.get("tags", [])), None)
        if old is not None:  # updated in place: an executed notebook stays executed
            assert setup.execution_count == old.execution_count and setup.id == old.id
        kept = [c.source for c in original.cells if not set(editions.LAUNCH_TAGS) & set(c.metadata.get("tags", []))]
        assert [c.source for c in nb.cells[:1] + nb.cells[3:]] == kept
    # An outdated or duplicated launch cell is replaced, not added to.
    nb.cells[2].source = "# an older set-up cell"
    nb.cells.insert(5, nbformat.v4.new_markdown_cell("[Open in Colab](old)", metadata={"tags": [editions.LINK_TAG]}))
    nbformat.write(nb, target)
    assert editions.stamp_notebook(target) is True
    assert target.read_bytes() == first


def test_stamp_repo_points_a_copy_of_the_repository_at_a_fork(tmp_path) -> None:
    fork = tmp_path / "fork"
    fork.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, fork / name)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "results", "conftest.py", "*.cfg")
    for folder in ("psft_edu", "docs", "notebooks", "data/tokenizer"):
        shutil.copytree(REPO / folder, fork / folder, ignore=junk)
    env = {**clean_env(), "PYTHONPATH": str(fork)}
    url = "https://github.com/alice/psft-course"
    command = [sys.executable, "-m", "psft_edu.course", "stamp", "--repo", url + ".git"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=fork, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    new = home.load_home(fork / "psft_edu" / "course" / "home.json")
    assert new == home.Home(url, "main", f"git+{url}")
    old = home.load_home()
    for path in sorted((fork / "notebooks").glob("*.ipynb")):
        text = path.read_text()
        assert new.colab_url(path.name) in text and f'\\"git+{url}\\"' in text, path.name
        assert old.repository not in text, path.name
    for path in (fork / "README.md", fork / "docs" / "workshop.md"):
        text = path.read_text()
        assert old.repository not in text and url in text, path.name
    readme = (fork / "README.md").read_text()
    assert all(new.colab_url(p.name) in readme for p in (fork / "notebooks").glob("*.ipynb"))
    # A bad address changes nothing.
    before = {p: p.read_bytes() for p in fork.rglob("*") if p.is_file()}
    bad = subprocess.run([*command[:-1], "http://example.com/x"], capture_output=True, text=True, env=env, cwd=fork)
    assert bad.returncode == 2 and "expected https://github.com/<owner>/<name>" in bad.stderr
    assert {p: p.read_bytes() for p in fork.rglob("*") if p.is_file()} == before


def test_readme_links_follow_the_home() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    the_home = home.load_home()
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        assert the_home.colab_url(path.name) in readme, f"README: no 'Open in Colab' link for {path.name}"
    assert f'pip install "{the_home.install_source}"' in readme
    assert "public" in readme  # the links work once the repository is public at that address
    assert "make student" in readme and "make book" in readme


def test_the_home_file_is_valid_json_in_the_wheel_layout() -> None:
    values = json.loads(home.HOME_FILE.read_text())
    assert set(values) == {"repository", "branch", "install_source"}
    assert home.load_home() == home.Home(**values)
    with pytest.raises(home.HomeError, match="expected https://github.com"):
        home.Home("https://gitlab.com/a/b")
