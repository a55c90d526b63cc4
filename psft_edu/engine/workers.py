"""Independent runs side by side: a pool of worker processes, one torch thread each.

The runs of an experiment (``compare``, ``sweep``, ``rl-compare``) share nothing but the base
model and the data, so they can run at the same time. On a small model a second torch thread
buys almost nothing, and on a machine that is doing other work it costs a lot (threads wait for
each other), so each run gets one thread and the machine's cores are filled with runs instead.

A run's numbers depend only on its settings and its seed: the same with one worker or many
(:func:`run_tasks` runs ``workers=1`` in this process, also with one thread). Each task is a
module-level function called with keyword arguments; the results come back in the order the
tasks were given, whatever order they finish in.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from .runs import Interrupted

STOP_GRACE_SECONDS = 120  # how long an interrupted run may take to reach a safe point and save


def usable_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


@dataclass
class Task:
    """One independent unit of work: ``fn(**kwargs)`` in a worker. ``cost`` is its relative size: the
    pool starts the largest first (fewer idle cores at the end) and the progress bar counts in it."""

    name: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    cost: float = 1.0


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _quiet_transformers() -> None:
    """No per-file progress bars from transformers (loading and saving weights) inside the runs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _start_worker(threads: int) -> None:
    # Ctrl-C in a terminal reaches every process of the group: the parent decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _quiet_transformers()


def _call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[Any, float, int]:
    started = time.perf_counter()
    result = fn(**kwargs)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    return result, time.perf_counter() - started, peak_kib


class WorkerPool:
    """``workers`` processes with ``threads`` torch threads each, kept for several :meth:`run` calls
    (starting a worker costs a few seconds of imports). ``workers=1`` runs everything in this process."""

    def __init__(
        self, workers: int | None = None, threads: int = 1, progress: bool = True, resume_hint: str = ""
    ) -> None:
        self.workers, self.threads, self.progress = max(1, workers or usable_cores()), threads, progress
        self.resume_hint = resume_hint  # appended to the message of an interrupt, e.g. "continue with --resume"
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        if self.workers > 1:
            context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited thread pools
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                             initargs=(self.threads,))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=exc[0] is None, cancel_futures=True)
            self._pool = None

    def run(self, tasks: list[Task], desc: str = "runs") -> tuple[list[Any], dict]:
        """Run every task; returns ``(results in task order, timing)``.

        One progress bar counts finished runs, with the time elapsed and left. ``timing`` holds the
        wall time, each task's seconds and the largest resident memory of a worker (MiB). Ctrl-C stops
        every worker (a training run that reaches a safe point saves a checkpoint) and raises
        :class:`~psft_edu.engine.runs.Interrupted`; the tasks that had finished keep what they wrote.
        """
        order = sorted(range(len(tasks)), key=lambda i: -tasks[i].cost)  # largest first
        results: list[Any] = [None] * len(tasks)
        seconds: dict[str, float] = {}
        peaks: list[int] = []
        started = time.perf_counter()
        bar = tqdm(total=len(tasks), desc=desc, unit="run", disable=not self.progress or not tasks, file=sys.stderr,
                   bar_format="{desc}: run {n_fmt} of {total_fmt} |{bar}| {elapsed} elapsed, {remaining} left"
                              "{postfix}")

        def finished(i: int, outcome: tuple[Any, float, int]) -> None:
            results[i], seconds[tasks[i].name], peak = outcome
            peaks.append(peak)
            bar.set_postfix_str(f"done: {tasks[i].name}", refresh=False)
            bar.update(1)

        try:
            with bar:
                if self._pool is None:
                    with torch_threads(self.threads):
                        _quiet_transformers()
                        for i in order:
                            finished(i, _call(tasks[i].fn, tasks[i].kwargs))
                else:
                    self._run_in_pool(tasks, order, finished)
        except (KeyboardInterrupt, Interrupted):
            done = f"{len(seconds)} of {len(tasks)}"
            hint = f"; {self.resume_hint}" if self.resume_hint else ""
            raise Interrupted(f"interrupted after {done} runs; the finished runs are kept{hint}") from None
        timing = {
            "seconds": round(time.perf_counter() - started, 1),
            "workers": self.workers,
            "threads_per_worker": self.threads,
            "task_seconds": {k: round(v, 1) for k, v in seconds.items()},
            "peak_worker_mib": round(max(peaks, default=0) / 1024, 1),
        }
        return results, timing

    def _run_in_pool(self, tasks: list[Task], order: list[int], finished: Callable) -> None:
        pool, running, waiting = self._pool, {}, list(order)
        assert pool is not None
        try:
            while waiting or running:
                while waiting and len(running) < self.workers:
                    i = waiting.pop(0)
                    running[pool.submit(_call, tasks[i].fn, tasks[i].kwargs)] = i
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    finished(running.pop(future), future.result())
        except BaseException:
            _stop(pool, running)
            self._pool = None
            raise


def run_tasks(
    tasks: list[Task], workers: int | None = None, desc: str = "runs", progress: bool = True, threads: int = 1
) -> tuple[list[Any], dict]:
    """:meth:`WorkerPool.run` in a pool of its own (``workers``: default :func:`usable_cores`, at most one per task)."""
    with WorkerPool(min(workers or usable_cores(), max(len(tasks), 1)), threads, progress) as pool:
        return pool.run(tasks, desc)


def _stop(pool: ProcessPoolExecutor, running: dict[Future, int]) -> None:
    """Ask running workers to stop (SIGTERM: a training run saves at its next safe point), then end the pool.

    A worker still alive after the grace period (busy in a step that never checks for SIGTERM) is killed, so
    that the pool's manager thread sees every worker gone and the interpreter can exit instead of waiting on it.
    """
    processes = list(getattr(pool, "_processes", {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    wait(running, timeout=STOP_GRACE_SECONDS)
    for process in processes:
        process.join(timeout=1.0)
        if process.is_alive():
            process.kill()
            process.join(timeout=5.0)
    pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["Task", "WorkerPool", "run_tasks", "torch_threads", "usable_cores"]
