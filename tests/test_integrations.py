"""PSFTTrainer, the TRL integration: its loss against TRL's own, its old-policy schedule,
gradient accumulation, the other objectives, and a two-process (gloo, CPU) run.

Every trainer here runs in float32 (``bf16=False``; TRL turns bf16 autocast on by
default, the CPU included) so that values can be compared tightly.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("trl")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from psft_edu.data import load_split  # noqa: E402
from psft_edu.integrations import PSFTTrainer  # noqa: E402
from psft_edu.models import load_model  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "accelerate_psft_script.py"


@pytest.fixture(scope="module")
def base():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # while this module's tests use the model; later modules keep conftest's count
    yield load_model("tiny", device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset():
    return Dataset.from_list(load_split("sft_train")[:48])


def config(tmp_path: Path, **overrides) -> SFTConfig:
    settings = dict(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        train_sampling_strategy="sequential",
        learning_rate=3e-3,
    )
    settings.update(overrides)
    return SFTConfig(**settings)


def loss_and_grads(trainer, batch, num_items_in_batch=None):
    model = trainer.model
    model.train()
    model.zero_grad()
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items_in_batch)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def flat_params(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def completion_nll(trainer, batch) -> float:
    logp = trainer.policy_log_probs(trainer.model, batch)
    return float(-logp.sum() / (batch["labels"][:, 1:] != -100).sum())


def test_k1_psft_gradient_equals_trl_sft_gradient(base, dataset, tmp_path):
    """With the old policy refreshed every step the ratio is 1 and d(-r) = -d log p: SFT's gradient.

    The values differ by design: TRL's SFT loss is the NLL, PSFT's is -mean(r) = -1 at r = 1.
    """
    model, tok = base
    trl_sft = SFTTrainer(model=copy.deepcopy(model), args=config(tmp_path), train_dataset=dataset, processing_class=tok)
    psft = PSFTTrainer(
        copy.deepcopy(model), config(tmp_path), train_dataset=dataset, processing_class=tok, refresh_every=1
    )
    batch = first_batch(trl_sft)
    tokens = int((batch["labels"][:, 1:] != -100).sum())

    for num_items in (None, torch.tensor(3 * tokens)):  # alone, and as one micro-batch of an accumulated step
        sft_value, sft_grads = loss_and_grads(trl_sft, batch, num_items)
        psft_value, psft_grads = loss_and_grads(psft, batch, num_items)
        share = 1.0 if num_items is None else 1 / 3
        torch.testing.assert_close(psft_value, torch.tensor(-share))
        assert sft_value > 0
        for name, grad in sft_grads.items():
            torch.testing.assert_close(psft_grads[name], grad, msg=name)
    stats = psft._metrics["train"]
    assert stats["ratio_mean"][-1] == pytest.approx(1.0, abs=1e-6)
    assert stats["clip_fraction"][-1] == 0.0


@pytest.mark.parametrize(
    "optimiser",
    [dict(optim="sgd", learning_rate=0.3),
     dict(optim="adamw_torch", learning_rate=3e-3, weight_decay=0.1, warmup_steps=2, max_grad_norm=1.0)],
    ids=["sgd", "adamw"],
)
def test_k1_psft_training_follows_trl_sft_training(base, dataset, tmp_path, optimiser):
    """End to end: with refresh_every=1, PSFT training takes SFT's steps, bit for bit, with SGD and with AdamW.

    Without gradient accumulation the per-token gradient weights are the same floats: TRL's 1/num_items
    and PSFT's share/count = 1/count, and at r = 1 the clipped objective's derivative is exactly -1.
    """
    model, tok = base
    args = dict(max_steps=4, **optimiser)
    trl_sft = SFTTrainer(
        model=copy.deepcopy(model), args=config(tmp_path, **args), train_dataset=dataset, processing_class=tok
    )
    psft = PSFTTrainer(
        copy.deepcopy(model), config(tmp_path, **args), train_dataset=dataset, processing_class=tok, refresh_every=1
    )
    trl_sft.train()
    psft.train()
    assert (flat_params(trl_sft.model) - flat_params(model)).abs().max().item() > 1e-3
    assert torch.equal(flat_params(psft.model), flat_params(trl_sft.model))


@pytest.mark.parametrize("objective", ["sft", "dft"])
def test_sft_and_dft_match_trl_loss_values_and_gradients(base, dataset, tmp_path, objective):
    model, tok = base
    loss_type = "nll" if objective == "sft" else "dft"
    trl_trainer = SFTTrainer(
        model=copy.deepcopy(model),
        args=config(tmp_path, loss_type=loss_type),
        train_dataset=dataset,
        processing_class=tok,
    )
    ours = PSFTTrainer(
        copy.deepcopy(model), config(tmp_path), train_dataset=dataset, processing_class=tok, objective=objective
    )
    batch = first_batch(trl_trainer)
    for num_items in (None, torch.tensor(200)):
        trl_value, trl_grads = loss_and_grads(trl_trainer, batch, num_items)
        our_value, our_grads = loss_and_grads(ours, batch, num_items)
        torch.testing.assert_close(our_value, trl_value)
        for name, grad in trl_grads.items():
            torch.testing.assert_close(our_grads[name], grad, msg=name)


def test_completion_only_masking_matches_psft_edu(base, dataset, tmp_path):
    """TRL's labels (-100 on the prompt) select the same targets as psft_edu.data's mask."""
    from psft_edu.data import collate, encode_records

    model, tok = base
    trainer = PSFTTrainer(copy.deepcopy(model), config(tmp_path), train_dataset=dataset, processing_class=tok)
    batch = first_batch(trainer)
    ids, prompt_lengths, _ = encode_records([dataset[i] for i in range(4)], tok, max_length=64)
    ours = collate(ids, prompt_lengths, tok.pad_token_id)
    trl_mask = (batch["labels"][:, 1:] != -100).float()
    width = min(trl_mask.shape[1], ours.mask.shape[1])
    assert torch.equal(trl_mask[:, :width], ours.mask[:, :width])
    assert trl_mask[:, width:].sum() == 0 and ours.mask[:, width:].sum() == 0


def test_psft_training_refreshes_old_policy_and_lowers_nll(base, dataset, tmp_path):
    model, tok = base
    trainer = PSFTTrainer(
        copy.deepcopy(model),
        config(tmp_path, max_steps=6),
        train_dataset=dataset,
        processing_class=tok,
        refresh_every=3,
    )
    batch = first_batch(trainer)
    nll_before = completion_nll(trainer, batch)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "ratio_mean" in h]
    assert [h["step"] for h in logs] == [1, 2, 3, 4, 5, 6]
    for h in logs:
        assert all(
            torch.isfinite(torch.tensor(h[k])) for k in ("loss", "nll", "clip_fraction", "ratio_mean", "ratio_max")
        )
        assert 0.0 <= h["clip_fraction"] <= 1.0 and 0.0 <= h["unclippable"] <= 1.0
        assert h["ratio_median"] <= h["ratio_p99"] <= h["ratio_max"]
        assert "k3_old_new" not in h and "approx_kl" not in h  # no KL-named number that estimates no KL here
        if h["step"] in (1, 4):  # first step after a refresh: old policy == current policy
            assert h["ratio_mean"] == pytest.approx(1.0, abs=1e-6) and h["clip_fraction"] == 0.0
            assert h["ratio_median"] == h["ratio_p99"] == h["ratio_max"] == 1.0
        else:
            assert h["ratio_mean"] != pytest.approx(1.0, abs=1e-4)
    assert max(h["clip_fraction"] for h in logs) > 0  # lr 3e-3 moves tokens past 1 + 0.28
    assert completion_nll(trainer, batch) < nll_before


def test_logged_ratio_max_is_the_largest_since_the_last_log(base, dataset, tmp_path):
    """Logging every 3 steps: ratio_max is the largest of the 3 steps, the other statistics their mean."""
    model, tok = base
    logs = {}
    for every in (1, 3):
        trainer = PSFTTrainer(
            copy.deepcopy(model), config(tmp_path, max_steps=6, logging_steps=every), train_dataset=dataset,
            processing_class=tok, refresh_every=3,
        )
        trainer.train()
        logs[every] = [h for h in trainer.state.log_history if "ratio_max" in h]
    assert [h["step"] for h in logs[3]] == [3, 6]
    for h in logs[3]:
        window = [g for g in logs[1] if h["step"] - 3 < g["step"] <= h["step"]]
        assert h["ratio_max"] == pytest.approx(max(g["ratio_max"] for g in window), rel=1e-6)
        assert h["ratio_max"] > sum(g["ratio_max"] for g in window) / 3  # not the mean of the maxima
        for key in ("ratio_median", "ratio_p99", "clip_fraction"):
            assert h[key] == pytest.approx(sum(g[key] for g in window) / 3, rel=1e-6)


def test_old_policy_refresh_restarts_with_each_epoch(base, dataset, tmp_path):
    """48 sequences / 8 per step = 6 steps per epoch; with K = 4 refreshes fall on steps 1, 5 and 7."""
    model, tok = base
    trainer = PSFTTrainer(
        copy.deepcopy(model),
        config(tmp_path, per_device_train_batch_size=8, max_steps=9, optim="sgd", learning_rate=0.3),
        train_dataset=dataset,
        processing_class=tok,
        refresh_every=4,
    )
    trainer.train()
    fresh = [h["step"] for h in trainer.state.log_history if h.get("ratio_mean") == pytest.approx(1.0, abs=1e-6)]
    assert fresh == [1, 5, 7]


def test_gradient_accumulation_matches_larger_batch(base, dataset, tmp_path):
    """4 x 2 accumulated micro-batches train like one batch of 8 (token-mean over the whole step).

    Plain SGD, so the weights compare gradients: Adam divides every gradient by its own
    running size, which blows float noise up into lr-sized steps where the exact gradient is
    zero (the attention key bias: softmax ignores a constant added to one query's scores).
    With AdamW the same runs differ by ~1e-3 in those biases only.
    """
    model, tok = base
    finals = []
    for per_device, accumulation in ((8, 1), (4, 2)):
        trainer = PSFTTrainer(
            copy.deepcopy(model),
            config(
                tmp_path,
                per_device_train_batch_size=per_device,
                gradient_accumulation_steps=accumulation,
                max_steps=4,
                optim="sgd",
                learning_rate=0.3,
            ),
            train_dataset=dataset,
            processing_class=tok,
            refresh_every=2,
        )
        trainer.train()
        assert max(h.get("clip_fraction", 0.0) for h in trainer.state.log_history) > 0
        finals.append(flat_params(trainer.model))
    assert (finals[0] - finals[1]).abs().max().item() < 1e-6


def test_sft_kl_keeps_a_frozen_reference(base, dataset, tmp_path):
    model, tok = base
    trainer = PSFTTrainer(
        copy.deepcopy(model),
        config(tmp_path, max_steps=3),
        train_dataset=dataset,
        processing_class=tok,
        objective="sft_kl",
        beta=0.5,
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "kl_to_ref" in h]
    assert logs[0]["kl_to_ref"] == pytest.approx(0.0, abs=1e-6)
    assert logs[-1]["kl_to_ref"] > 0
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in logs)
    torch.testing.assert_close(flat_params(trainer.ref_model), flat_params(model), rtol=0, atol=0)
    assert not torch.equal(flat_params(trainer.model), flat_params(model))


def test_eval_loss_is_the_nll_for_every_objective(base, dataset, tmp_path):
    model, tok = base
    small = dataset.select(range(8))
    args = config(tmp_path, per_device_eval_batch_size=4)
    reference = SFTTrainer(model=copy.deepcopy(model), args=args, train_dataset=small, processing_class=tok).evaluate(
        small
    )
    psft = PSFTTrainer(copy.deepcopy(model), args, train_dataset=small, processing_class=tok).evaluate(small)
    assert psft["eval_loss"] == pytest.approx(reference["eval_loss"], rel=1e-5)


def test_a_registered_objective_trains_through_psft_trainer(base, dataset, tmp_path, monkeypatch):
    """One declaration in the registry is enough: the trainer freezes old log-probs and builds a reference for it."""
    from psft_edu import objectives

    model, tok = base
    calls = []

    def loss(logp, mask, old_logp=None, ref_logp=None, *, clip=0.28, beta=0.1, agg="token-mean"):
        calls.append((old_logp is not None, ref_logp is not None))
        return objectives.sft_loss(logp, mask, agg) + beta * objectives.kl_to_reference(logp, ref_logp, mask), {}

    toy = objectives.Objective("toy", loss, "Toy", "tab:brown", needs_old_logprobs=True, needs_reference=True)
    monkeypatch.setitem(objectives.OBJECTIVES, "toy", toy)
    trainer = PSFTTrainer(
        copy.deepcopy(model), config(tmp_path), train_dataset=dataset, processing_class=tok, objective="toy",
        refresh_every=2,
    )
    trainer.train()
    assert trainer.ref_model is not None
    assert calls == [(True, True), (True, True)]
    assert [h for h in trainer.state.log_history if "kl_to_ref" in h]
    assert not torch.equal(flat_params(trainer.model), flat_params(model))


def test_rejects_bad_arguments(base, dataset, tmp_path):
    model, tok = base
    bad_arguments = ({"objective": "ppo"}, {"objective": "unknown"}, {"refresh_every": 0}, {"refresh_every": 2.0},
                     {"clip": 0.0}, {"beta": -1.0}, {"beta": float("nan")}, {"clip": float("inf")})
    for bad in bad_arguments:
        with pytest.raises(ValueError):
            PSFTTrainer(model, config(tmp_path), train_dataset=dataset, processing_class=tok, **bad)
    with pytest.raises(ValueError, match="loss_type"):
        PSFTTrainer(model, config(tmp_path, loss_type="dft"), train_dataset=dataset, processing_class=tok)


def test_core_package_does_not_import_trl():
    code = (
        "import importlib, pkgutil, sys, psft_edu\n"
        "for m in pkgutil.walk_packages(psft_edu.__path__, 'psft_edu.'):\n"
        "    if m.name != 'psft_edu.integrations' and not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "assert 'psft_edu.course.exercises.n09_psft_in_trl' in sys.modules\n"
        "bad = sorted(n for n in sys.modules if n == 'trl' or n.startswith(('trl.', 'psft_edu.integrations')))\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "MPLBACKEND": "Agg"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env, timeout=120)


# ---------------------------------------------------------------- two processes, gloo on the CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_single_process(tmp_path):
    """2 ranks x 4 sequences train like 1 process x 8 sequences (same global batches, same order).

    Data order: sequential sampling; accelerate hands rank r the per-device batches r, r+2, ...
    of that order, so step k sees sequences 8k..8k+7 in both runs. Loss normalisation: every
    rank divides by the token count of all ranks and DDP averages gradients, so the step's
    gradient is the same token-mean. The only differences are float summation order and
    padding widths, hence the tolerance: max |difference| of any weight < 1e-5 (plain SGD,
    for the reason given in test_gradient_accumulation_matches_larger_batch).
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    common = ["--steps", "6", "--refresh-every", "3", "--global-batch", "8"]
    port = free_port()
    # The repository's DDP config (distributed_type MULTI_GPU) picks accelerate's torchrun-style
    # launcher, one process per rank; on a machine without GPUs the script's use_cpu=True makes
    # them a MULTI_CPU group on gloo. (`accelerate launch --cpu` would start a single process.)
    launch = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "configs" / "accelerate" / "ddp.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(port),
        str(SCRIPT), "--out", str(tmp_path / "ddp"), *common,
    ]  # fmt: skip
    single = [sys.executable, str(SCRIPT), "--out", str(tmp_path / "single"), *common]
    runs = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for cmd in (launch, single)
    ]
    for run in runs:
        output, _ = run.communicate(timeout=240)
        assert run.returncode == 0, output[-4000:]

    def result(folder: str, rank: int):
        meta = json.loads((tmp_path / folder / f"rank{rank}.json").read_text())
        return meta, torch.load(tmp_path / folder / f"rank{rank}.pt")

    meta0, params0 = result("ddp", 0)
    meta1, params1 = result("ddp", 1)
    meta_single, params_single = result("single", 0)
    assert meta0["world_size"] == 2 and meta0["distributed_type"] == "MULTI_CPU" and meta0["backend"] == "gloo"
    assert meta_single["world_size"] == 1
    for meta in (meta0, meta1, meta_single):
        assert all(torch.isfinite(torch.tensor(meta["losses"])))
        assert max(meta["clip_fractions"]) > 0  # the old policy was stale on some steps
    assert torch.equal(params0, params1), "ranks diverged"
    assert meta0["checksum"] == meta1["checksum"]
    assert (params0 - params_single).abs().max().item() < 1e-5
    assert meta0["losses"] == pytest.approx(meta_single["losses"], abs=1e-5)
