"""The device helper, and loading models and tokenizers (presets live in :mod:`psft_edu.presets`).

All models are ``transformers.GPT2LMHeadModel``; a preset only picks its size.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

# The data folder: the checkout's data/, the copy inside an installed package, or $PSFT_EDU_DATA.
from .paths import CHECKPOINT_DIR, DATA_DIR, REPO_ROOT, TOKENIZER_DIR, base_checkpoint_dir  # noqa: F401

# Presets (model size and every budget that goes with it) live in presets.py; re-exported here.
from .presets import PRESET_ENV, PRESETS, Preset, get_preset, preset_name  # noqa: E402, F401


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA if present, then Apple's MPS, then the CPU (``prefer`` overrides)."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_tokenizer(path: str | Path | None = None) -> PreTrainedTokenizerBase:
    """The project's character tokenizer (or the one saved at ``path``)."""
    folder = Path(path) if path else TOKENIZER_DIR
    if not (folder / "tokenizer.json").exists() and not (folder / "tokenizer_config.json").exists():
        raise FileNotFoundError(f"{folder}: no tokenizer here; run `python -m psft_edu data` to build it")
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)


def new_model(
    preset: str | Preset | None = None, tokenizer: PreTrainedTokenizerBase | None = None, seed: int = 0
) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 of the preset's size."""
    p = preset if isinstance(preset, Preset) else get_preset(preset)
    tok = tokenizer or load_tokenizer()
    config = GPT2Config(
        vocab_size=p.vocab_size or len(tok),
        n_positions=p.n_positions,
        n_embd=p.n_embd,
        n_layer=p.n_layer,
        n_head=p.n_head,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        # Dropout off: small models on clean synthetic data, and bit-exact resumption.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def checkpoint_path(preset: str) -> Path:
    """Folder of a preset's base checkpoint: the user's own if pretrained into the cache, else the shipped one."""
    return base_checkpoint_dir(preset_name(preset))


def load_model(
    spec: str | Path | None = None, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """Load ``(model, tokenizer)`` from a preset name, a local folder or a hub id.

    * ``"tiny"``, ``"small"``, ``"gpt2"`` (or ``None`` for ``$PSFT_EDU_PRESET``): the shipped
      base checkpoint of that preset; a missing one (``gpt2``) is built on first use, or refused
      on a CPU with an estimate of the time (:func:`psft_edu.build_base.ensure_base`);
    * a folder written by ``save_pretrained``;
    * ``"hf:<model id>"``, for example ``"hf:gpt2"``: from the Hugging Face hub (needs the hub,
      or the model in the local cache with ``HF_HUB_OFFLINE=1``).
    """
    if spec is None or str(spec) in PRESETS:
        folder: str = str(checkpoint_path(preset_name(str(spec) if spec else None)))
        if not Path(folder, "config.json").exists():
            from .build_base import ensure_base  # a missing base is built on first use (or refused on a CPU)

            folder = str(ensure_base(preset_name(str(spec) if spec else None), device=device))
    elif str(spec).startswith("hf:"):
        folder = str(spec)[3:]
    else:
        folder = str(spec)
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder}: not a folder, a preset ({', '.join(PRESETS)}) or an hf:<id>")
    # trust_remote_code=False: a folder's own Python code is never run (and never asked about)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or torch.float32, trust_remote_code=False)
    local = Path(folder)
    if local.is_dir() and not any((local / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        tokenizer = load_tokenizer()  # a model-only folder: it was trained with the project's tokenizer
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(pick_device(str(device)) if device else pick_device())
    model.eval()
    return model, tokenizer
