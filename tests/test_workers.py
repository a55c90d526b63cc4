"""Runs side by side: the same numbers with one worker or two; results in order; a finished run reused."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from psft_edu.engine.workers import Task, WorkerPool, usable_cores
from psft_edu.experiments import compare
from psft_edu.presets import EvalProtocol

TINY = replace(compare.SETTINGS["tiny"], max_steps=8, eval_every=8, seeds=(0, 1),
               eval=EvalProtocol(prompts=3, samples=1, ood_prompts=1, final_samples=2))


def _square(x: int) -> int:
    return x * x


def _threads() -> int:
    return torch.get_num_threads()


def test_results_come_back_in_task_order_with_one_thread_each() -> None:
    tasks = [Task(f"t{i}", _square, {"x": i}, cost=i) for i in range(5)]
    with WorkerPool(2, progress=False) as pool:
        results, timing = pool.run(tasks)
        assert results == [0, 1, 4, 9, 16] and timing["workers"] == 2
        threads, _ = pool.run([Task("threads", _threads)])
    assert threads == [1]
    before = torch.get_num_threads()
    with WorkerPool(1, progress=False) as pool:
        assert pool.run([Task("threads", _threads)])[0] == [1]  # in this process, one thread during the task
    assert torch.get_num_threads() == before
    assert usable_cores() >= 1


def _numbers(summary: dict) -> dict:
    out = {"base": summary["base"]["final"]}
    for name, run in summary["runs"].items():
        out[name] = {"final": run["final"], "curves": run["curves"], "samples": run["samples"]}
    return json.loads(json.dumps(out))


def test_one_worker_and_two_workers_give_bit_identical_results(tmp_path) -> None:
    one = compare.compare("tiny", out=tmp_path / "one", settings=TINY, long=False, progress=False, workers=1)
    two = compare.compare("tiny", out=tmp_path / "two", settings=TINY, long=False, progress=False, workers=2)
    assert two["timing"]["phases"][1]["workers"] == 2
    assert _numbers(one) == _numbers(two)


def test_resume_reuses_finished_runs_and_reruns_changed_ones(tmp_path) -> None:
    first = compare.compare("tiny", out=tmp_path, settings=TINY, long=False, progress=False, workers=1)
    (tmp_path / "main" / "psft_lr1e-04_seed1" / "result.json").unlink()  # as if interrupted during that run
    again = compare.compare("tiny", out=tmp_path, settings=TINY, long=False, progress=False, workers=1, resume=True)
    assert [p["reused"] for p in again["timing"]["phases"]] == [2, 7]
    assert _numbers(again) == _numbers(first)
    changed = replace(TINY, max_steps=16)  # other settings: nothing can be reused
    third = compare.compare("tiny", out=tmp_path, settings=changed, long=False, progress=False, workers=1,
                            resume=True)
    assert [p["reused"] for p in third["timing"]["phases"]] == [2, 0]  # the base evaluations are the same


@pytest.mark.parametrize("workers", [0, -1])
def test_cli_refuses_no_workers(workers, tmp_path, capsys) -> None:
    from psft_edu.cli.main import main

    assert main(["sweep", "--preset", "tiny", "--what", "clip", "--workers", str(workers),
                 "--out", str(tmp_path / "s")]) == 2
    assert "--workers" in capsys.readouterr().err


def test_ctrl_c_stops_every_worker_keeps_finished_runs_and_resume_finishes(tmp_path) -> None:
    """A comparison with two workers, interrupted once a fine-tuning run has finished: exit code 130, a
    message that says how to continue, the finished runs kept; `--resume` reuses them and completes."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "cmp"
    script = (
        "import signal, sys; from dataclasses import replace; from psft_edu.experiments import compare; "
        # as a command started from a terminal: Ctrl-C raises KeyboardInterrupt even if this test runs in a
        # background job, whose children inherit SIGINT ignored
        "signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from psft_edu.presets import EvalProtocol; from psft_edu.cli.main import main; "
        "compare.SETTINGS['tiny'] = replace(compare.SETTINGS['tiny'], max_steps=8, eval_every=8, seeds=(0, 1), "
        "eval=EvalProtocol(prompts=3, samples=1, ood_prompts=1, final_samples=2)); "
        f"sys.exit(main(['compare', '--preset', 'tiny', '--no-long', '--workers', '2', '--out', {str(out)!r}] "
        "+ sys.argv[1:]))"
    )
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=repo, env=env, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    finished = lambda: [p for p in out.glob("main/*_lr*_seed*/result.json")]  # noqa: E731
    while time.monotonic() < deadline and not finished():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "--resume" in err and "finished runs are kept" in err
    kept = finished()
    assert 1 <= len(kept) < 8 and not (out / "summary.json").exists()
    again = subprocess.run([sys.executable, "-c", script, "--resume"], cwd=repo, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["timing"]["phases"][1]["reused"] >= len(kept)


def test_a_base_evaluation_both_views_need_runs_once_and_is_kept_in_both(tmp_path) -> None:
    long = replace(TINY, seeds=(1,), train_records=64)  # seed 1 under the same protocol as the main view
    summary = compare.compare("tiny", out=tmp_path, settings=TINY, long_settings=long, progress=False, workers=1)
    base = summary["timing"]["phases"][0]
    assert base["shared"] == 1 and len(base["task_seconds"]) == 2  # seeds 0 and 1 of main; long's seed 1 shared
    kept = [json.loads((tmp_path / view / "base_seed1" / "result.json").read_text()) for view in ("main", "long")]
    assert kept[0] == kept[1]
