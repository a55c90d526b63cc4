"""The run machinery every loop shares (psft_edu.engine.runs): stop signals, finiteness guard, resume history."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch

from psft_edu.data import load_split
from psft_edu.engine import runs
from psft_edu.engine.train import TrainConfig, Trainer
from psft_edu.models import load_model


def test_stop_signals_turn_sigterm_into_a_flag_and_restore_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with runs.StopSignals() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM
        error = stop.interrupted(7, None)
    assert signal.getsignal(signal.SIGTERM) == before
    assert isinstance(error, runs.Interrupted) and error.signum == signal.SIGTERM
    assert str(error) == "terminated (SIGTERM) at step 7; nothing saved"


def test_check_finite_names_the_step_and_drops_the_gradients(tmp_path):
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    weight.sum().backward()
    runs.check_finite(3, [1.0, 2.0], "loss", tmp_path, optimizer)  # finite: nothing happens
    assert weight.grad is not None
    with pytest.raises(runs.TrainingError, match=r"^step 3: non-finite loss; stopping; no checkpoint"):
        runs.check_finite(3, [1.0, math.nan], "loss", tmp_path, optimizer)
    assert weight.grad is None


def test_autocast_is_a_no_op_on_cpu():
    with runs.autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled()


def test_trainer_reloads_its_history_on_resume(tmp_path):
    records = load_split("sft_train")[:64]
    cfg = dict(objective="sft", lr=1e-3, global_batch=16, mini_batch=8, warmup_steps=0, log_kl=False)
    model, tok = load_model("tiny")
    Trainer(model, tok, records, TrainConfig(max_steps=4, **cfg), out=tmp_path, progress=False).train()
    model, tok = load_model("tiny")
    resumed = Trainer(model, tok, records, TrainConfig(max_steps=6, **cfg), out=tmp_path, progress=False)
    history = resumed.train(resume=True)
    assert [r["step"] for r in history] == [1, 2, 3, 4, 5, 6]
