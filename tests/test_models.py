"""Presets, devices and loading models: from a preset, a local folder, or a hub id (offline)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import GPT2LMHeadModel

from psft_edu import models, presets
from psft_edu.engine.runs import maybe_compile
from psft_edu.models import load_model, new_model, pick_device
from psft_edu.presets import PRESETS, preset_name

PROBE = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])


def gpt2_parameter_count(layers: int, width: int, positions: int, vocab: int) -> int:
    """Parameters of a GPT-2 with tied input/output embeddings, counted by hand."""
    per_block = (
        2 * 2 * width  # two layer norms (weight + bias)
        + width * 3 * width + 3 * width  # attention: fused q/k/v projection
        + width * width + width  # attention: output projection
        + width * 4 * width + 4 * width  # MLP up
        + 4 * width * width + width  # MLP down
    )
    return vocab * width + positions * width + layers * per_block + 2 * width  # + final layer norm


# ---------------------------------------------------------------- presets


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_builds_a_gpt2_of_the_right_size(name, tokenizer):
    p = PRESETS[name]
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = new_model(name, tokenizer)
    assert isinstance(model, GPT2LMHeadModel)
    cfg = model.config
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions) == (p.n_layer, p.n_embd, p.n_head, p.n_positions)
    vocab = p.vocab_size or len(tokenizer)
    assert cfg.vocab_size == vocab
    assert cfg.eos_token_id == tokenizer.eos_token_id and cfg.pad_token_id == tokenizer.pad_token_id
    assert cfg.resid_pdrop == cfg.embd_pdrop == cfg.attn_pdrop == 0.0
    assert model.lm_head.weight is model.transformer.wte.weight  # tied input and output embeddings
    count = sum(t.numel() for t in model.parameters())
    assert count == gpt2_parameter_count(p.n_layer, p.n_embd, p.n_positions, vocab)


def test_preset_sizes():
    expected = {"tiny": (2, 64, 2, 64), "small": (4, 128, 4, 64), "gpt2": (12, 768, 12, 1024)}
    for name, (layers, width, heads, positions) in expected.items():
        p = PRESETS[name]
        assert (p.n_layer, p.n_embd, p.n_head, p.n_positions) == (layers, width, heads, positions)
        assert p.n_embd % p.n_head == 0
    assert PRESETS["gpt2"].vocab_size == 50257
    # GPT-2 small: the famous 124M (124,439,808 with tied embeddings)
    assert gpt2_parameter_count(12, 768, 1024, 50257) == 124_439_808


def test_gpt2_preset_on_the_meta_device_is_124m(tokenizer):
    with torch.device("meta"):
        model = new_model("gpt2", tokenizer)
    assert next(model.parameters()).device.type == "meta"
    count = sum(t.numel() for t in model.parameters())
    assert count == 124_439_808
    assert math.isclose(count / 1e6, 124.4, abs_tol=0.1)


def test_new_model_is_seeded(tokenizer):
    a, b, c = (
        new_model("tiny", tokenizer, seed=3),
        new_model("tiny", tokenizer, seed=3),
        new_model("tiny", tokenizer, seed=4),
    )
    for (name, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(x, y), name
    assert not all(torch.equal(x, z) for x, z in zip(a.parameters(), c.parameters()))


def test_preset_name_resolution(monkeypatch):
    monkeypatch.delenv(presets.PRESET_ENV, raising=False)
    assert preset_name() == "small"
    assert preset_name("tiny") == "tiny"
    monkeypatch.setenv(presets.PRESET_ENV, "gpt2")
    assert preset_name() == "gpt2"
    assert preset_name(None) == "gpt2"
    assert preset_name("tiny") == "tiny"  # an explicit name wins over the environment
    assert presets.get_preset() is PRESETS["gpt2"]
    monkeypatch.setenv(presets.PRESET_ENV, "")
    assert preset_name() == "small"  # an empty variable counts as unset


def test_preset_name_rejects_unknown_names(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; choose from tiny, small, gpt2"):
        preset_name("huge")
    monkeypatch.setenv(presets.PRESET_ENV, "medium")
    with pytest.raises(ValueError, match="unknown preset 'medium'"):
        preset_name()
    with pytest.raises(ValueError, match="unknown preset"):
        presets.get_preset()


# ---------------------------------------------------------------- devices


def test_pick_device(monkeypatch):
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device().type == expected
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("meta") == torch.device("meta")  # an explicit choice is honoured as is
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")


def test_maybe_compile_leaves_cpu_models_alone(tokenizer):
    model = new_model("tiny", tokenizer)
    assert maybe_compile(model) is model
    assert maybe_compile(model, compile=True) is model


# ---------------------------------------------------------------- loading


@pytest.fixture
def saved_tiny(tmp_path, tokenizer):
    """A freshly initialised tiny model (and the tokenizer) saved with save_pretrained."""
    model = new_model("tiny", tokenizer, seed=7).eval()
    folder = tmp_path / "tiny-model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, folder


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=PROBE.to(next(model.parameters()).device)).logits.cpu()


def test_load_model_from_a_folder_round_trips_exactly(saved_tiny, tokenizer):
    model, folder = saved_tiny
    loaded, tok = load_model(folder, device="cpu")
    assert not loaded.training
    assert next(loaded.parameters()).dtype == torch.float32
    assert torch.equal(_logits(loaded), _logits(model))
    assert tok.get_vocab() == tokenizer.get_vocab()
    assert tok.pad_token_id == tokenizer.pad_token_id
    loaded2, _ = load_model(str(folder), device="cpu", dtype=torch.bfloat16)
    assert next(loaded2.parameters()).dtype == torch.bfloat16


def test_load_model_without_a_tokenizer_falls_back_to_the_project_one(tmp_path, tokenizer):
    model = new_model("tiny", tokenizer, seed=1)
    model.save_pretrained(tmp_path / "m")
    _, tok = load_model(tmp_path / "m", device="cpu")
    assert tok.get_vocab() == tokenizer.get_vocab()


def test_load_model_rejects_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder, a preset"):
        load_model(tmp_path / "nowhere")


def test_load_model_hf_prefix_with_a_local_path(saved_tiny):
    model, folder = saved_tiny
    loaded, tok = load_model(f"hf:{folder}", device="cpu")
    assert torch.equal(_logits(loaded), _logits(model))
    assert tok.eos_token_id == 1


def test_load_model_hf_hub_id_from_an_offline_cache(saved_tiny, tmp_path, monkeypatch):
    """``hf:<owner>/<name>`` resolves through the Hugging Face cache, with no network at all.

    The cache is laid out as huggingface_hub writes it (``models--owner--name/refs/main`` holding a
    commit hash, files under ``snapshots/<hash>/``), in a temporary folder.
    """
    import huggingface_hub.constants as hub_constants

    model, folder = saved_tiny
    cache = tmp_path / "hub"
    repo = cache / "models--psft-edu--tiny-test"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    # transformers reads the cache location and offline flag from huggingface_hub at call time
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    loaded, tok = load_model("hf:psft-edu/tiny-test", device="cpu")
    assert torch.equal(_logits(loaded), _logits(model))
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1
    with pytest.raises(OSError):
        load_model("hf:psft-edu/not-in-the-cache", device="cpu")


# ---------------------------------------------------------------- the shipped base checkpoints

# Counting metrics must reproduce exactly; mean entropies are float32 sums whose last bits
# depend on the CPU's thread count, so they get a (still tight) relative tolerance.
FLOAT_KEYS = {"sample_entropy", "ood_sample_entropy"}  # the summary holds the out-of-domain mean too


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_shipped_checkpoint_reproduces_its_manifest(preset):
    from psft_edu.experiments.pretrain import MANIFEST, base_evaluation

    folder = models.checkpoint_path(preset)
    if not (folder / "config.json").exists() or not (folder / MANIFEST).exists():
        pytest.skip(f"no shipped {preset} checkpoint")
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("device", "cpu") != "cpu":
        pytest.skip(f"the {preset} manifest was measured on {manifest['device']}, not the CPU")
    model, tok = load_model(preset, device="cpu")
    assert manifest["preset"] == preset
    assert manifest["parameters"] == sum(t.numel() for t in model.parameters())
    p = PRESETS[preset]
    assert (model.config.n_layer, model.config.n_embd) == (p.n_layer, p.n_embd)

    evaluation = manifest["evaluation"]
    results = base_evaluation(model, tok, prompts=evaluation["prompts_per_family"])
    expected = evaluation["results"]
    assert set(results) == set(expected)
    for family, row in expected.items():
        # Every number the manifest recorded is reproduced; measures added to the evaluation since
        # (exact accuracy) may be there too.
        assert set(row) <= set(results[family]), family
        for key, value in row.items():
            tol = dict(rel=1e-6, abs=1e-9) if key in FLOAT_KEYS else dict(rel=0, abs=1e-9)
            assert results[family][key] == pytest.approx(value, **tol), (family, key)


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_a_shipped_base_uses_its_presets_activation(preset) -> None:
    shipped = json.loads((models.checkpoint_path(preset) / "config.json").read_text())
    assert shipped["activation_function"] == presets.get_preset(preset).activation
    assert new_model(preset).config.activation_function == presets.get_preset(preset).activation
