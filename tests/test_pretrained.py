"""A pretrained model with its own tokenizer as the comparison's base: mid-training, SFT vs PSFT, perplexity.

No hub: the "pretrained" model is a GPT-2-architecture model built here at toy size, with a
byte-level BPE tokenizer trained here on task-world text and English.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from psft_edu.data import load_split
from psft_edu.experiments import pretrained
from psft_edu.experiments.compare import compare
from psft_edu.experiments.pretrained import heldout_text, midtrain, perplexity
from psft_edu.models import load_model
from psft_edu.presets import CompareSettings, EvalProtocol

# One torch thread: on a busy 2-core machine two threads were more than ten times slower here.
pytestmark = pytest.mark.usefixtures("one_thread")

EOS = "<|endoftext|>"


@pytest.fixture(scope="module")
def hub_like_model(tmp_path_factory):
    """A folder like a hub snapshot: a GPT-2 (2 layers, 32 wide, dropout on) and its byte-level BPE tokenizer."""
    folder = tmp_path_factory.mktemp("toy-gpt2")
    lines = [r["prompt"] + r["completion"] for r in load_split("pretrain")[:3000]]
    lines += heldout_text().splitlines()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(lines, vocab_size=400, min_frequency=2, special_tokens=[EOS], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(hub_like_model):
    model, tok = load_model(hub_like_model, device="cpu")
    with torch.no_grad():
        model.transformer.wte.weight.zero_()  # tied output embedding: every logit is 0, the policy uniform
    text = heldout_text()
    result = perplexity(model, tok, text, window=50)
    assert result["perplexity"] == pytest.approx(model.config.vocab_size, rel=1e-4)
    n = len(tok(text, add_special_tokens=False)["input_ids"])
    windows = [min(50, n - start) for start in range(0, n - 1, 50)]
    assert result["tokens"] == sum(w - 1 for w in windows if w >= 2)  # each window's first token is context only


def test_perplexity_falls_when_the_model_learns_the_text(hub_like_model):
    model, tok = load_model(hub_like_model, device="cpu")
    text = heldout_text()[:600]
    before = perplexity(model, tok, text)["perplexity"]
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"][:128]])
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(20):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    assert perplexity(model, tok, text)["perplexity"] < before / 2


def test_midtrain_saves_a_dropout_free_base_and_reuses_it(hub_like_model, tmp_path, monkeypatch):
    out = midtrain(str(hub_like_model), tmp_path / "base", steps=3, batch=16, lr=1e-3, progress=False)
    manifest = json.loads((out / "midtrain.json").read_text())
    assert manifest["settings"]["steps"] == 3 and manifest["settings"]["source"] == str(hub_like_model)
    for key in ("perplexity_before", "perplexity_after"):
        assert math.isfinite(manifest[key]["perplexity"]) and manifest[key]["perplexity"] > 1
    config = json.loads((out / "config.json").read_text())
    assert config["resid_pdrop"] == config["embd_pdrop"] == config["attn_pdrop"] == 0.0
    original, tok = load_model(hub_like_model, device="cpu")
    taught, tok2 = load_model(out, device="cpu")
    assert tok2.get_vocab() == tok.get_vocab()  # the model keeps its own tokenizer
    assert not all(torch.equal(a, b) for a, b in zip(original.parameters(), taught.parameters()))
    # Same settings: reused without training; other settings: trained again.
    monkeypatch.setattr(pretrained, "Trainer", lambda *a, **k: pytest.fail("trained again"))
    assert midtrain(str(hub_like_model), out, steps=3, batch=16, lr=1e-3, progress=False) == out
    with pytest.raises(pytest.fail.Exception, match="trained again"):
        midtrain(str(hub_like_model), out, steps=4, batch=16, lr=1e-3, progress=False)
    # Same settings but the source's weights changed: the cached base is stale, so it is trained again.
    changed = tmp_path / "changed"
    original.transformer.wte.weight.data.add_(0.01)
    original.save_pretrained(changed)
    tok.save_pretrained(changed)
    manifest = json.loads((out / "midtrain.json").read_text())
    manifest["settings"]["source"] = str(changed)  # as if `changed` had been mid-trained before its weights moved
    (out / "midtrain.json").write_text(json.dumps(manifest))
    with pytest.raises(pytest.fail.Exception, match="trained again"):
        midtrain(str(changed), out, steps=3, batch=16, lr=1e-3, progress=False)


def test_compare_with_a_pretrained_model_reports_perplexity(hub_like_model, tmp_path):
    settings = CompareSettings(max_steps=2, global_batch=16, mini_batch=8, high_lr=1e-3, low_lr=1e-4, eval_every=2,
                               eval=EvalProtocol(prompts=2, samples=2, ood_prompts=1, final_samples=2), seeds=(0, 1))
    out = tmp_path / "compare"
    summary = compare("tiny", out=out, settings=settings, long=False, progress=False,
                      model=str(hub_like_model), midtrain_steps=3, workers=1)
    base = out / "base"
    assert (base / "midtrain.json").exists()
    retention = summary["lm_retention"]
    assert summary["model"] == str(hub_like_model)
    assert math.isfinite(retention["original"]) and math.isfinite(retention["base"]) and retention["tokens"] > 100
    runs = retention["main"]["runs"]
    assert set(runs) == {"sft_lr1e-03", "psft_lr1e-03", "sft_lr1e-04", "psft_lr1e-04"}
    for stat in runs.values():
        assert len(stat["per_seed"]) == 2 and all(math.isfinite(v) and v > 1 for v in stat["per_seed"])
    assert len(retention["main"]["paired"]) == 3
    # Every run started from the mid-trained base, with the model's own tokenizer.
    config = json.loads((out / "main" / "sft_lr1e-03_seed0" / "config.json").read_text())
    assert config["init"] == str(base)
    assert summary["base"]["final"]["ood_accuracy"]["mean"] >= 0
    # Both files carry it: summary.json as written, and the report's new section.
    assert json.loads((out / "summary.json").read_text())["lm_retention"] == retention
    report = (out / "report.md").read_text()
    assert "## Language-modelling retention" in report and f"`{hub_like_model}`, mid-trained" in report
    assert f"| after mid-training (the base) | {retention['base']:.2f} |" in report
