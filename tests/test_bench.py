"""The benchmark's code paths and the gpt2 preset on CPU (correctness only; speed is measured by `bench`)."""

from __future__ import annotations

import math

import torch

from psft_edu.data import load_split
from psft_edu.engine.train import TrainConfig, Trainer
from psft_edu.experiments import bench
from psft_edu.models import load_tokenizer, new_model


def test_bench_runs_every_measurement_at_tiny(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "peak_memory", lambda mode, rows=256, vocab=50257: {"naive": 4.0, "chunked": 1.0}[mode])
    result = bench.run_bench("tiny", steps=2, out=str(tmp_path / "bench.json"), repeats=1)
    assert [r["measure"].split()[0] for r in result["rows"]] == ["PSFT", "ours", "ours", "chunked", "2", "2"]
    assert all(math.isfinite(r["value"]) and r["value"] > 0 for r in result["rows"])
    assert (tmp_path / "bench.json").exists()


def test_chunked_logprobs_use_less_memory_than_naive():
    naive = bench.peak_memory("naive", rows=1024)
    chunked = bench.peak_memory("chunked", rows=1024)
    assert 0 < chunked < naive


def test_gpt2_preset_takes_training_steps_on_cpu():
    """The 124M preset's code path (SFT and PSFT) on a few short sequences."""
    torch.manual_seed(0)
    tok = load_tokenizer()
    model = new_model("gpt2", tok)
    assert sum(p.numel() for p in model.parameters()) == 124_439_808
    cfg = TrainConfig(
        objective="psft", lr=1e-4, max_steps=2, global_batch=4, mini_batch=2, log_kl=False, warmup_steps=0
    )
    history = Trainer(model, tok, load_split("sft_train")[:8], cfg, progress=False).train()
    assert [r["step"] for r in history] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in history)
    assert history[1]["ratio_mean"] != 1.0  # the second mini-batch sees a policy that moved
