"""Shared test set-up: offline hub, a modest thread count, seeded random generators."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub or transformers: never reach for the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")
# A cache of its own: a base the developer pretrained into ~/.cache/psft-edu would replace the shipped one.
if "PSFT_EDU_CACHE" not in os.environ:
    import tempfile

    os.environ["PSFT_EDU_CACHE"] = tempfile.mkdtemp(prefix="psft-edu-test-cache-")

import random  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# Two threads: the CI machine's core count, and the setting the shipped manifests were measured with.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "psft",
        deadline=None,
        max_examples=25,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("psft")
except ImportError:  # hypothesis is a test extra; the tests that need it import it themselves
    pass


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Every test starts from the same Python and PyTorch random state."""
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def rng() -> random.Random:
    """A fresh, seeded ``random.Random`` (the task generators take one explicitly)."""
    return random.Random(0)


@pytest.fixture(scope="session")
def tokenizer():
    """The project's character tokenizer, as saved under data/tokenizer."""
    from psft_edu.models import load_tokenizer

    return load_tokenizer()


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core machine two threads can be many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def interrupted_cli():
    """``run(args, ready, signum, env=None)``: start ``python -m psft_edu *args`` in the checkout, wait until
    ``ready()`` holds (at most two minutes), send ``signum`` and return ``(exit code, stderr)``.

    The command must still be running when ``ready()`` first holds: one that ended early fails the test
    with its output.
    """
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent

    def run(args: list[str], ready, signum: int, env: dict | None = None) -> tuple[int, str]:
        env = {**os.environ, "TQDM_DISABLE": "1", **(env or {})}
        command = [sys.executable, "-m", "psft_edu", *args]
        proc = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not ready():
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)
            proc.send_signal(signum)
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        return proc.returncode, stderr

    return run
