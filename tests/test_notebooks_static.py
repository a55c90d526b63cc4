"""Static checks of the committed notebooks (no kernel needed) and of the exercise checkers.

nbval (``make test-notebooks``) re-runs the notebooks; these tests read the saved files and check
what a reader sees: the notebook was executed top to bottom in one fresh kernel, without errors,
and follows the course's structure (title, goals, prerequisites, recap, exercises, solutions).
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
HEAD_CELLS = 4  # goals and prerequisites must appear in the first few markdown cells
TAIL_FRACTION = 0.5  # recap and exercises must be in the last half of the cells

ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
PROGRESS_BAR = re.compile(r"\d+it/s|s/it\]|\|[█▏▎▍▌▋▊▉ ]+\|")
LATEX = re.compile(r"\$\$.+?\$\$|(?<![\\$])\$[^$\n]+?\$", re.DOTALL)


def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _markdown(nb: dict) -> list[str]:
    return [_source(c) for c in nb["cells"] if c["cell_type"] == "markdown"]


def _output_text(output: dict) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return "".join(text) if isinstance(text, list) else text
    plain = output.get("data", {}).get("text/plain", "")
    return "".join(plain) if isinstance(plain, list) else plain


def _headings(markdown: str) -> list[str]:
    return [line.lstrip("#").strip().lower() for line in markdown.splitlines() if line.startswith("#")]


def test_notebooks_exist() -> None:
    if not NOTEBOOK_DIR.is_dir():
        pytest.skip("no notebooks folder")
    names = [p.name for p in NOTEBOOK_DIR.glob("*.ipynb")]
    badly_named = [n for n in names if not re.match(r"^\d\d_[a-z0-9_]+\.ipynb$", n)]
    assert not badly_named, f"notebook names must look like 03_some_topic.ipynb: {badly_named}"


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request) -> tuple[str, dict]:
    return request.param.name, _load(request.param)



def test_executed_in_order(notebook) -> None:
    name, nb = notebook
    cells = _code_cells(nb)
    empty = [i for i, c in enumerate(cells) if not _source(c).strip()]
    assert not empty, f"{name}: remove the empty code cell(s) {empty} (they are never executed)"
    counts = [c.get("execution_count") for c in cells]
    assert None not in counts, f"{name}: code cell {counts.index(None)} was never executed; run the whole notebook"
    assert counts == list(range(1, len(cells) + 1)), (
        f"{name}: execution counts {counts} are not 1..{len(cells)}; re-run top to bottom in a fresh kernel "
        "(jupyter nbconvert --to notebook --execute --inplace)"
    )


def test_no_errors(notebook) -> None:
    name, nb = notebook
    for i, cell in enumerate(_code_cells(nb)):
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", f"{name}: code cell {i} saved an error: {output.get('ename')}"
            text = _output_text(output)
            assert "Traceback (most recent call last)" not in text, f"{name}: code cell {i} printed a traceback"


def test_structure(notebook) -> None:
    name, nb = notebook
    cells = nb["cells"]
    assert cells and cells[0]["cell_type"] == "markdown", f"{name}: must open with a markdown cell"
    assert _source(cells[0]).lstrip().startswith("# "), f"{name}: the first cell must start with a '# Title'"
    head = " ".join(_markdown(nb)[:HEAD_CELLS]).lower()
    for word in ("goals", "prerequisites"):
        assert word in head, f"{name}: the first {HEAD_CELLS} markdown cells must state the learning {word}"
    tail_start = int(len(cells) * (1 - TAIL_FRACTION))
    tail_headings = [h for c in cells[tail_start:] if c["cell_type"] == "markdown" for h in _headings(_source(c))]
    for word in ("recap", "exercise"):
        assert any(word in h for h in tail_headings), f"{name}: needs a '{word}' heading in its second half"
    last = cells[-1]
    assert last["cell_type"] == "markdown" and "<details>" in _source(last), (
        f"{name}: solutions go in the last cell, a markdown cell with "
        "<details><summary>Solutions</summary>...</details>"
    )


def test_uses_package_latex_and_checks(notebook) -> None:
    name, nb = notebook
    # The hosted-runtime set-up cell (tag colab-setup, see psft_edu.course) may come before the first code cell.
    code = [_source(c) for c in _code_cells(nb) if "colab-setup" not in c.get("metadata", {}).get("tags", [])]
    assert code, f"{name}: no code cells"
    assert "psft_edu" in code[0] and "notebook_setup" in code[0], (
        f"{name}: the first code cell must call notebook_setup(seed=...) from psft_edu.course"
    )
    assert any("psft_edu" in src for src in code[1:]) or "psft_edu." in code[0], f"{name}: never calls psft_edu"
    assert any(LATEX.search(md) for md in _markdown(nb)), f"{name}: has no LaTeX equation ($...$ or $$...$$)"
    checked = [src for src in code if src.lstrip().startswith("# NBVAL_CHECK_OUTPUT")]
    assert checked, f"{name}: mark at least one deterministic cell with '# NBVAL_CHECK_OUTPUT' as its first line"


def test_checked_outputs_are_stable(notebook) -> None:
    """Cells nbval compares must not print things that change from run to run."""
    name, nb = notebook
    for i, cell in enumerate(_code_cells(nb)):
        if not _source(cell).lstrip().startswith("# NBVAL_CHECK_OUTPUT"):
            continue
        assert cell.get("outputs"), f"{name}: checked code cell {i} has no output to check"
        for output in cell["outputs"]:
            text = _output_text(output)
            assert not ADDRESS.search(text), f"{name}: checked code cell {i} prints a memory address"
            assert not PROGRESS_BAR.search(text), f"{name}: checked code cell {i} prints a progress bar"


def test_exercise_checkers_accept_none(capsys) -> None:
    """Every check_* prints that the exercise was not attempted (with a hint) and returns None for None."""
    import importlib

    from psft_edu.course import exercises

    checkers = {}
    for path in sorted(Path(exercises.__file__).parent.glob("n[0-9][0-9]_*.py")):
        module = importlib.import_module(f"{exercises.__name__}.{path.stem}")
        checkers.update({f"{path.stem}.{n}": f for n, f in inspect.getmembers(module, inspect.isfunction)
                         if n.startswith("check_")})
    for name, checker in sorted(checkers.items()):
        params = [
            p
            for p in inspect.signature(checker).parameters.values()
            if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        result = checker(*[None] * len(params))
        printed = capsys.readouterr().out
        assert result is None, f"{name}(None, ...) returned {result!r}, expected None (not attempted)"
        assert "not attempted" in printed.lower(), f"{name}(None, ...) must say the exercise was not attempted"
        assert printed.strip(), f"{name}(None, ...) printed nothing; it should give a hint"


def test_nbval_sanitize_rules() -> None:
    """The rules nbval applies before comparing checked cells: noise goes, numbers that matter stay."""
    nbval_plugin = pytest.importorskip("nbval.plugin")
    rules = nbval_plugin.get_sanitize_patterns((NOTEBOOK_DIR / "nbval_sanitize.cfg").read_text(encoding="utf-8"))
    assert rules, "nbval_sanitize.cfg has no regex/replace pairs"

    def clean(text: str) -> str:
        for regex, replace in rules:
            text = re.sub(regex, replace, text)
        return text

    assert clean("<Figure size 600x350 with 1 Axes>") == clean("<Figure size 640x480 with 1 Axes>")
    assert clean("<Figure size 600x350 with 1 Axes>") != clean("<Figure size 600x350 with 2 Axes>")
    assert clean("<object object at 0x7f1c12267270>") == clean("<object object at 0x7f0000000000>")
    assert clean("took 1.93 s") == clean("took 12.5 s") == clean("took 3ms")
    assert clean("Wall time: 2.1 s") == clean("Wall time: 350 ms")
    assert clean("10/10 [00:01<00:00, 9.5it/s]") == clean("10/10 [00:02<00:00, 4.1it/s]")
    for meaningful in (
        "loss 0.875 after 2 steps",
        "pi('7' | 'add 23 48: ') = 0.868",
        "17+7 x2, 8+16 x2",
        "3 samples, 4 sequences",
    ):
        assert clean(meaningful) == meaningful


def test_nbval_ignores_stderr_and_widgets() -> None:
    """notebooks/conftest.py drops stderr and widget displays from nbval's comparison, nothing else."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebooks_conftest", NOTEBOOK_DIR / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "kept\n"},
        {"output_type": "stream", "name": "stderr", "text": "a warning\n"},
        {
            "output_type": "display_data",
            "data": {"text/plain": "VBox(...)", "application/vnd.jupyter.widget-view+json": {}},
        },
        {"output_type": "execute_result", "data": {"text/plain": "42"}},
    ]
    kept = module.comparable_outputs(outputs)
    assert kept == [outputs[0], outputs[3]]


# A printed line that states an identity ("equals", "==", "agree", "holds", "same", "matches", "as expected")
# and ends in a boolean. Under '# NBVAL_CHECK_OUTPUT' nbval would lock in whatever it printed, False included.
CLAIM_WORDS = re.compile(r"equal|==|agree|holds?\b|same|match|identical|as expected", re.IGNORECASE)
ENDS_IN_BOOLEAN = re.compile(r"\b(True|False)\s*$")
ASSERTS = re.compile(r"\bassert\b|assert_close|assert_allclose|assert_array_equal|assert_equal")


def boolean_claim_problems(nb: dict) -> list[str]:
    """Checked cells that print a claim which is False, or print a True claim without asserting anything."""
    problems = []
    for i, cell in enumerate(_code_cells(nb)):
        source = _source(cell)
        if not source.lstrip().startswith("# NBVAL_CHECK_OUTPUT"):
            continue
        for output in cell.get("outputs", []):
            for line in _output_text(output).splitlines():
                match = ENDS_IN_BOOLEAN.search(line)
                if not match or not CLAIM_WORDS.search(line):
                    continue
                if match.group(1) == "False":
                    problems.append(f"code cell {i} prints a claim that does not hold: {line.strip()!r}")
                elif not ASSERTS.search(source):
                    problems.append(f"code cell {i} prints {line.strip()!r} but asserts nothing; assert the claim")
    return problems


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_checked_claims_hold_and_are_asserted(path: Path) -> None:
    problems = boolean_claim_problems(_load(path))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_claim_scan_catches_a_false_claim_and_a_print_without_assert() -> None:
    def nb(source: str, text: str) -> dict:
        return {
            "cells": [{"cell_type": "code", "source": source, "outputs": [{"output_type": "stream", "text": text}]}]
        }

    assert boolean_claim_problems(nb("# NBVAL_CHECK_OUTPUT\nprint(x)", "SFT with K = 8 equals SFT with K = 1: False\n"))
    assert boolean_claim_problems(nb("# NBVAL_CHECK_OUTPUT\nprint(x)", "a equals b: True\n"))
    assert not boolean_claim_problems(nb("# NBVAL_CHECK_OUTPUT\nassert a == b\nprint(x)", "a equals b: True\n"))
    assert not boolean_claim_problems(nb("# NBVAL_CHECK_OUTPUT\nprint(x)", "' 7' -> verified: False\n"))
    assert not boolean_claim_problems(nb("print(x)", "a equals b: False\n"))  # unchecked cells are not compared


# Notebooks whose exercises include building: an "implement it" checker, a "predict, then run" question and an open
# challenge.
BUILD_EXERCISE_NOTEBOOKS = [
    "01_lm_as_mdp",
    "02_sft_loss",
    "03_sft_is_policy_gradient",
    "04_ppo_clip",
    "05_proximal_sft",
    "06_entropy_collapse",
    "07_rl_after_sft",
    "08_neighbours_and_ablations",
    "09_psft_in_trl",
]


@pytest.mark.parametrize("stem", BUILD_EXERCISE_NOTEBOOKS)
def test_exercises_make_you_build(stem: str) -> None:
    path = NOTEBOOK_DIR / f"{stem}.ipynb"
    if not path.exists():
        pytest.skip(f"{path.name} not present")
    nb = _load(path)
    tagged = [c for c in _code_cells(nb) if "exercise" in c.get("metadata", {}).get("tags", [])]
    sources = [_source(c) for c in tagged]
    assert any(re.search(r"check_\w+_impl\(", s) for s in sources), f"{stem}: needs an 'implement it' exercise cell"
    assert any("check_prediction(" in _source(c) for c in _code_cells(nb)), (
        f"{stem}: needs a 'predict, then run' question"
    )
    assert any("challenge" in md.lower() for md in _markdown(nb)[-4:]), f"{stem}: needs an open challenge near the end"
    assert "challenge" in _source(nb["cells"][-1]).lower(), (
        f"{stem}: the challenge's worked solution belongs in the last cell"
    )
    for cell in tagged:  # left unattempted, an exercise runs and says so (never an error, never a pass)
        for output in cell.get("outputs", []):
            text = _output_text(output)
            assert "Correct:" not in text, f"{stem}: a committed exercise cell reads as passed: {text[:80]!r}"

def test_launch_cells_are_current(notebook) -> None:
    """The Open-in-Colab and set-up cells are the ones ``python -m psft_edu.course stamp notebooks`` writes from
    psft_edu/course/home.json, right under the title (re-run that command after changing either)."""
    import nbformat

    from psft_edu.course.editions import LINK_TAG, SETUP_TAG, extras_needed, link_cell_source, setup_cell_source

    name, nb = notebook
    nb = nbformat.reads(json.dumps(nb), as_version=4)
    tags = [c.get("metadata", {}).get("tags", []) for c in nb.cells]
    assert tags[1:3] == [[LINK_TAG], [SETUP_TAG]], (
        f"{name}: the launch cells must follow the title; run python -m psft_edu.course stamp notebooks"
    )
    assert sum(LINK_TAG in t or SETUP_TAG in t for t in tags) == 2, f"{name}: launch cells twice"
    assert nb.cells[1].source == link_cell_source(name), f"{name}: outdated Colab cell; run ... course stamp notebooks"
    assert nb.cells[2].source == setup_cell_source(extras_needed(nb)), (
        f"{name}: outdated set-up cell; run python -m psft_edu.course stamp notebooks"
    )
