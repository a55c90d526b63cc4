"""The neighbours/ablation sweeps: which runs each one holds, and a short end-to-end sweep at the tiny preset."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from psft_edu.experiments.compare import SETTINGS, slim
from psft_edu.experiments.sweep import NO_CLIP, cache_path, load_results, regime_pairs, sweep, sweep_specs
from psft_edu.presets import EvalProtocol

TINY = SETTINGS["tiny"]
# A short run with a token evaluation: the end-to-end tests check plumbing, not accuracy.
QUICK = replace(TINY, max_steps=8, eval_every=8, eval=EvalProtocol(prompts=2, samples=1, ood_prompts=1,
                                                                   final_samples=1))


def test_neighbours_specs() -> None:
    specs = sweep_specs("neighbours", TINY)
    assert [s.name for s in specs] == ["sft", "psft", "sft_kl", "dft", "asft"]
    assert [s.objective for s in specs] == ["sft", "psft", "sft_kl", "dft", "asft"]
    assert {s.lr for s in specs} == {TINY.high_lr}
    assert {s.lr for s in sweep_specs("neighbours", TINY, lr=1e-4)} == {1e-4}


def test_clip_specs() -> None:
    specs = sweep_specs("clip", TINY)
    assert [s.name for s in specs] == ["psft_eps_0.1", "psft_eps_0.28", "psft_eps_0.5", "psft_no_clip"]
    assert [s.clip for s in specs] == [0.1, 0.28, 0.5, NO_CLIP]
    assert math.isinf(NO_CLIP)
    assert all(s.objective == "psft" and not s.never_refresh and s.global_batch is None for s in specs)


def test_refresh_specs() -> None:
    specs = sweep_specs("refresh", TINY, lr=1e-4)
    assert [s.name for s in specs] == [
        "psft_refresh_1",
        "psft_refresh_4",
        "psft_refresh_8",
        "psft_refresh_16",
        "psft_never_refreshed",
    ]
    # Refreshing every K steps: a global batch of K mini-batches.
    assert [s.global_batch for s in specs[:4]] == [k * TINY.mini_batch for k in (1, 4, 8, 16)]
    assert [s.never_refresh for s in specs] == [False] * 4 + [True]
    assert all(s.objective == "psft" and s.lr == 1e-4 for s in specs)


def test_lr_specs() -> None:
    specs = sweep_specs("lr", TINY, lr=123.0)  # the lr sweep ignores the sweep rate
    assert [s.name for s in specs] == [
        f"{o}_lr_{r}" for o in ("sft", "psft") for r in ("3e-05", "1e-04", "3e-04", "1e-03")
    ]
    assert sorted({s.lr for s in specs}) == pytest.approx([3e-5, 1e-4, 3e-4, 1e-3])


def test_regime_specs() -> None:
    specs = {s.name: s for s in sweep_specs("regime", TINY)}
    for rate in ("1e-04", "3e-04", "1e-03"):
        assert specs[f"psft_k8_lr{rate}"].global_batch == 8 * TINY.mini_batch
        assert specs[f"psft_k32_lr{rate}"].global_batch == 32 * TINY.mini_batch
        assert specs[f"psft_never_lr{rate}"].never_refresh
        assert specs[f"psft_warmup_lr{rate}"].sft_warmup == 36
        assert specs[f"sft_lr{rate}"].objective == "sft"
    low = specs["psft_lowdrift_lr3e-05"]
    assert low.max_steps == 4 * TINY.max_steps and low.lr == pytest.approx(3e-5)
    assert specs["psft_basestyle_lr1e-03"].teacher == "base-style"
    summary = {"runs": {n: {"objective": s.objective, "lr": s.lr, "max_steps": s.max_steps or TINY.max_steps,
                            "teacher": s.teacher} for n, s in specs.items()}}
    pairs = dict((p, s) for s, p in regime_pairs(summary))
    assert pairs["psft_k32_lr3e-04"] == "sft_lr3e-04"
    assert pairs["psft_lowdrift_lr3e-05"] == "sft_lowdrift_lr3e-05"
    assert pairs["psft_basestyle_lr1e-03"] == "sft_basestyle_lr1e-03"
    assert len(pairs) == sum(s.objective == "psft" for s in specs.values())


def test_unknown_sweep_or_run(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown sweep"):
        sweep_specs("everything", TINY)
    with pytest.raises(ValueError, match="no run named psft_eps_9"):
        sweep("clip", "tiny", (0,), tmp_path, progress=False, settings=QUICK, only=("psft_eps_9",))
    assert not any(tmp_path.iterdir()), "nothing is written before the runs are known"


def _all_finite(x) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(_all_finite(v) for v in x.values())
    if isinstance(x, list):
        return all(_all_finite(v) for v in x)
    return True


def test_tiny_clip_sweep_end_to_end(tmp_path, one_thread) -> None:
    summary = sweep("clip", "tiny", (0,), tmp_path, progress=False, settings=QUICK, workers=1)
    written = json.loads((tmp_path / "clip" / "summary.json").read_text())
    assert written == summary
    assert summary["sweep"] == "clip" and summary["preset"] == "tiny" and summary["settings"]["max_steps"] == 8
    assert list(summary["runs"]) == ["psft_eps_0.1", "psft_eps_0.28", "psft_eps_0.5", "psft_no_clip"]
    assert [r["clip"] for r in summary["runs"].values()] == [0.1, 0.28, 0.5, None]
    for name, run in summary["runs"].items():
        assert _all_finite(run["final"]) and _all_finite(run["curves"]), name
        assert run["curves"]["loss"]["step"] == list(range(1, 9))
        assert run["refresh_every"] == TINY.global_batch // TINY.mini_batch
        assert 0.0 <= run["final"]["ood_exact"]["mean"] <= 1.0
    assert set(summary["runs"]["psft_no_clip"]["curves"]["clip_fraction"]["mean"]) == {0.0}
    # The same data and seed up to the first clip: the first step of every run is identical (r = 1 there).
    first = {run["curves"]["loss"]["mean"][0] for run in summary["runs"].values()}
    assert max(first) - min(first) < 1e-6
    # slim keeps the finals and eval curves, drops the per-step loss curve, and rounds.
    small = slim(summary)
    run = small["runs"]["psft_eps_0.28"]
    assert "loss" not in run["curves"] and "clip_fraction" in run["curves"] and "eval_ood_exact" in run["curves"]
    full = summary["runs"]["psft_eps_0.28"]["final"]["ood_exact"]["mean"]
    assert run["final"]["ood_exact"]["mean"] == pytest.approx(full, rel=1e-3)
    assert len(json.dumps(small)) < len(json.dumps(summary))


def test_tiny_refresh_sweep_k1_never_clips(tmp_path, one_thread) -> None:
    summary = sweep(
        "refresh",
        "tiny",
        (0,),
        tmp_path,
        progress=False,
        settings=QUICK,
        only=("psft_refresh_1", "psft_never_refreshed"),
        workers=1,
    )
    assert list(summary["runs"]) == ["psft_refresh_1", "psft_never_refreshed"]
    k1, never = summary["runs"]["psft_refresh_1"], summary["runs"]["psft_never_refreshed"]
    assert k1["refresh_every"] == 1 and not k1["never_refresh"]
    assert never["refresh_every"] is None and never["never_refresh"]
    # K = 1: the old policy is frozen just before each step, so every ratio is exactly 1 and nothing is clipped.
    assert set(k1["curves"]["clip_fraction"]["mean"]) == {0.0}
    assert _all_finite(k1["final"]) and _all_finite(never["final"])


@pytest.mark.parametrize("what", ["neighbours", "clip", "refresh", "lr", "regime"])
def test_committed_caches(what) -> None:
    """Notebook 08's committed results: the runs of the sweep at the small preset, finite, and small files."""
    path = cache_path(what, "small")
    if not path.exists():
        pytest.skip(f"{path.name} not committed")
    assert path.stat().st_size < 1_000_000
    summary = load_results(what, "small")
    assert summary["sweep"] == what and summary["preset"] == "small"
    assert list(summary["runs"]) == [s.name for s in sweep_specs(what, SETTINGS["small"], summary["sweep_lr"])]
    for run in summary["runs"].values():
        assert _all_finite(run["final"]) and _all_finite(run["curves"]["grad_norm"])
        assert run["curves"]["eval_ood_exact"]["step"][-1] == run["max_steps"]
