"""Refactors keep behaviour: compare, sweep, GRPO and pretraining at ``tiny`` reproduce recorded metrics exactly.

Each check runs a few optimiser steps on one CPU thread and compares every logged number with
``tests/golden/behaviour.json`` for equality (bit-identical floats, not a tolerance). When the
behaviour is meant to change (a new task world, new base checkpoints), record new values with::

    PSFT_EDU_REGOLD=1 python -m pytest -q tests/test_behaviour_unchanged.py

and commit the rewritten JSON with the change that explains it.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).resolve().parent / "golden" / "behaviour.json"
REGOLD = os.environ.get("PSFT_EDU_REGOLD") == "1"

# The comparison's tiny budget, cut to a few steps and a handful of evaluation samples.
STEPS, GLOBAL, MINI, PROMPTS, SAMPLES = 4, 32, 8, 2, 2


# The golden metrics were recorded on one torch thread (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def _settings(settings):
    from psft_edu.presets import EvalProtocol

    protocol = EvalProtocol(prompts=PROMPTS, samples=SAMPLES, ood_prompts=1, final_samples=SAMPLES)
    return replace(settings, max_steps=STEPS, global_batch=GLOBAL, mini_batch=MINI, eval_every=STEPS,
                   eval=protocol, seeds=(0,))


def _step_metrics(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "lr" or isinstance(v, float)} for record in history]


def _finals(view: dict) -> dict:
    """Every run's step curves (means) and final metrics of a compare/sweep summary."""
    runs = {}
    for name, run in view["runs"].items():
        curves = {k: c["mean"] for k, c in run["curves"].items()}
        finals = {k: v["mean"] for k, v in run["final"].items()}
        runs[name] = {"curves": curves, "final": finals, "samples": run["samples"]}
    return {"base": {k: v["mean"] for k, v in view["base"]["final"].items()}, "runs": runs}


def run_compare(tmp: Path) -> dict:
    from psft_edu.experiments import compare

    settings = _settings(compare.SETTINGS["tiny"])
    summary = compare.compare("tiny", out=tmp / "compare", settings=settings, progress=False, long=False, workers=1)
    return _finals(summary)


def run_sweep(tmp: Path) -> dict:
    from psft_edu.experiments import compare, sweep

    settings = _settings(compare.SETTINGS["tiny"])
    neighbours = sweep.sweep("neighbours", "tiny", out=tmp / "sweep", progress=False, settings=settings, workers=1)
    clip = sweep.sweep("clip", "tiny", out=tmp / "sweep", progress=False, settings=settings,
                       only=("psft_eps_0.1", "psft_no_clip"), workers=1)
    refresh = sweep.sweep("refresh", "tiny", out=tmp / "sweep", progress=False, settings=settings,
                          only=("psft_never_refreshed",), workers=1)
    return {"neighbours": _finals(neighbours), "clip": _finals(clip), "refresh": _finals(refresh)}


def run_rl(tmp: Path) -> dict:
    from psft_edu import tasks
    from psft_edu.engine.grpo_loop import RLConfig, grpo
    from psft_edu.models import load_model

    rng = random.Random(0)
    prompts = [tasks.generate("add", rng, max_value=19).prompt for _ in range(8)]
    model, tokenizer = load_model("tiny", device="cpu")
    torch.manual_seed(0)
    cfg = RLConfig(lr=5e-4, steps=4, group_size=4, prompts_per_step=4, max_new_tokens=8, beta=0.05)
    history = grpo(model, tokenizer, prompts, cfg, out=tmp / "rl", progress=False)
    return {"metrics": _step_metrics(history)}


def run_pretrain(tmp: Path, monkeypatch) -> dict:
    from psft_edu.experiments import pretrain

    full = pretrain.base_evaluation
    monkeypatch.setattr(
        pretrain, "base_evaluation", lambda model, tokenizer, prompts=None: full(model, tokenizer, prompts=PROMPTS)
    )
    out = pretrain.pretrain("tiny", out=tmp / "base", steps=3, device="cpu")
    lines = (out / pretrain.TRAINING / "metrics.jsonl").read_text().splitlines()
    manifest = json.loads((out / pretrain.MANIFEST).read_text())
    return {"metrics": [json.loads(line) for line in lines], "evaluation": manifest["evaluation"]["results"]}


def _check(name: str, measured: dict) -> None:
    measured = json.loads(json.dumps(measured))  # the same types as the stored values (tuples -> lists)
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if REGOLD:
        stored[name] = measured
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        return
    assert name in stored, f"{GOLDEN} has no {name!r}: record it with PSFT_EDU_REGOLD=1"
    assert measured == stored[name], f"{name}: metrics differ from {GOLDEN.name} (behaviour changed)"


def test_compare_unchanged(tmp_path) -> None:
    _check("compare", run_compare(tmp_path))


def test_sweep_unchanged(tmp_path) -> None:
    _check("sweep", run_sweep(tmp_path))


def test_rl_unchanged(tmp_path) -> None:
    _check("rl", run_rl(tmp_path))


def test_pretrain_unchanged(tmp_path, monkeypatch) -> None:
    _check("pretrain", run_pretrain(tmp_path, monkeypatch))
