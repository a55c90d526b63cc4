"""The device helper, and loading models and tokenizers (presets live in :mod:`psft_edu.presets`).

All models are ``transformers.GPT2LMHeadModel``; a preset only picks its size.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from .paths import DATA_ENV, TOKENIZER_DIR, base_checkpoint_dir
from .presets import PRESETS, Preset, get_preset, preset_name


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
        where = f" (the data folder set by ${DATA_ENV})" if not path and os.environ.get(DATA_ENV) else ""
        raise FileNotFoundError(f"{folder}: no tokenizer here{where}; run `python -m psft_edu data` to build it")
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
        activation_function=p.activation,
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


def model_source(spec: str | Path | None) -> str:
    """Where :func:`load_model` takes ``spec`` from, in words: the shipped base or the user's cache (for a preset),
    a folder, or the hub."""
    from .paths import base_source

    name = preset_name(str(spec)) if spec is None or str(spec) in PRESETS else str(spec)
    if name in PRESETS:
        return base_source(name)
    if name.startswith("hf:"):
        return f"{name} (the Hugging Face hub, or its local cache)"
    return f"{name} (a folder)"


def weights_fingerprint(spec: str | Path) -> str:
    """What identifies a model's weights: SHA-256 (16 hex digits) of its ``config.json`` and weights files.

    ``spec`` is a preset name, a folder or ``hf:<id>`` (its local snapshot, when the hub cache has one;
    otherwise the id itself stands in).
    """
    import hashlib

    text = str(spec)
    if text in PRESETS:
        folder: Path | None = checkpoint_path(text)
    elif text.startswith("hf:"):
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(text[3:], local_files_only=True))
        except Exception:  # not in the local cache (or no hub library): the id is all there is
            folder = None
    else:
        folder = Path(text)
    digest = hashlib.sha256()
    if folder is None or not folder.is_dir():
        digest.update(text.encode())
        return digest.hexdigest()[:16]
    weights = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    for name in ("config.json", *weights):
        path = folder / name
        if path.is_file():
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


class WeightsMismatch(ValueError):
    """A model folder whose weights do not cover its configuration (one line: the file and the first mismatch)."""


def _load_weights(folder: str, dtype: torch.dtype) -> torch.nn.Module:
    """``from_pretrained`` that refuses, rather than randomly initialises, what the weights do not cover.

    ``trust_remote_code=False``: a folder's own Python code is never run (and never asked about). A
    missing, unexpected or mis-shaped tensor raises :class:`WeightsMismatch` naming the weights file and
    the first such tensor (transformers would otherwise fill the gap with random numbers and go on).
    """
    from transformers.utils import logging as hf_logging

    weights = Path(folder, "model.safetensors") if Path(folder).is_dir() else Path(folder)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report is replaced by the one-line refusal below
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            folder, dtype=dtype, trust_remote_code=False, output_loading_info=True
        )
    except RuntimeError as err:
        if "mismatched" not in str(err):
            raise
        raise WeightsMismatch(f"{weights}: does not match config.json: {_first_shape_mismatch(folder)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = sorted(map(str, info.get(kind) or ()))
        if names:
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            what = {"missing_keys": "has no tensor", "unexpected_keys": "has a tensor config.json does not ask for",
                    "mismatched_keys": "has a tensor of the wrong shape"}[kind]
            raise WeightsMismatch(f"{weights}: {what}: {names[0]}{more}")
    return model


def _first_shape_mismatch(folder: str) -> str:
    """The first tensor whose shape in the folder's weights differs from what its config.json builds."""
    from safetensors import safe_open
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()}
    path = Path(folder, "model.safetensors")
    if not path.is_file():
        return "tensor shapes differ"
    with safe_open(str(path), framework="pt") as handle:
        for key in sorted(handle.keys()):
            shape = tuple(handle.get_slice(key).get_shape())
            if key in expected and expected[key] != shape:
                return f"{key} is {list(shape)} in the file, {list(expected[key])} by the config"
    return "tensor shapes differ"


def load_model(
    spec: str | Path | None = None, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """Load ``(model, tokenizer)`` from a preset name, a local folder or a hub id.

    * ``"tiny"``, ``"small"``, ``"gpt2"`` (or ``None`` for ``$PSFT_EDU_PRESET``): the base checkpoint
      of that preset, the user's own or the shipped one; a missing one (``gpt2``, never shipped) is an
      error here: :func:`psft_edu.experiments.build_base.ensure_base` builds it first (the commands,
      the experiments and :func:`psft_edu.course.notebook_setup` call it for you);
    * a folder written by ``save_pretrained``;
    * ``"hf:<model id>"``, for example ``"hf:gpt2"``: from the Hugging Face hub (needs the hub,
      or the model in the local cache with ``HF_HUB_OFFLINE=1``).
    """
    if spec is None or str(spec) in PRESETS:
        name = preset_name(str(spec) if spec else None)
        folder: str = str(checkpoint_path(name))
        if not Path(folder, "config.json").exists():  # only the experiments may build one (they sit above this layer)
            raise FileNotFoundError(
                f"no `{name}` base checkpoint yet ({folder}): build it with `python -m psft_edu pretrain --preset "
                f"{name}`, or call psft_edu.experiments.build_base.ensure_base({name!r}) before loading it"
            )
    elif str(spec).startswith("hf:"):
        folder = str(spec)[3:]
    else:
        folder = str(spec)
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder}: not a folder, a preset ({', '.join(PRESETS)}) or an hf:<id>")
    model = _load_weights(folder, dtype or torch.float32)
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
