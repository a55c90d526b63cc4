"""Data: the character tokenizer, the shipped JSONL files, and turning records into tensors.

``python -m psft_edu data`` rebuilds everything under ``data/`` byte-identically;
``--check`` compares ``data/`` with what the generator would write.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from . import tasks
from .paths import DATA_DIR, TOKENIZER_DIR

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
CHARACTERS = " +-=:" + "0123456789" + "abcdefghijklmnopqrstuvwxyz"
DATA_SEED = 1234

# name -> (family, number of records, generator kwargs, writer); sizes chosen so the
# whole data folder stays well under 2 MB.
PRETRAIN_SIZE = 30000
SFT_TRAIN_SIZE = 1024
SFT_VAL_SIZE = 128
EVAL_SIZE = 200
RL_SIZE = 512
RL_KWARGS = {"count": 7, "max_value": 29}


class DataError(ValueError):
    """Bad input data; the message names the file, the line and the problem."""


# ---------------------------------------------------------------- atomic writes

def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonl_bytes(records: Iterable[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


# ---------------------------------------------------------------- reading prompt/completion JSONL

PROGRESS_BYTES = 8 * 2**20  # files at least this large show a progress bar while they are read


def read_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Read and validate a prompt/completion JSONL file.

    Raises :class:`DataError` with ``"<file>:<line>: <problem>"`` for non-UTF-8 bytes,
    broken JSON, a line that is not an object, a missing or non-string ``prompt`` /
    ``completion``, an empty completion, or a file with no records.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    records = []
    size = path.stat().st_size
    # Streamed line by line: memory holds the records, never the file's text or a parsed copy of it.
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {path.name}", leave=False,
               disable=True if size < PROGRESS_BYTES else None)
    with path.open("rb") as handle, bar:
        for number, raw in enumerate(handle, start=1):
            bar.update(len(raw))
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: not valid UTF-8 (byte {err.start})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: broken JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            for field in ("prompt", "completion"):
                if field not in record:
                    raise DataError(f"{path}:{number}: missing field {field!r}")
                if not isinstance(record[field], str):
                    raise DataError(f"{path}:{number}: field {field!r} must be a string")
            if not record["completion"]:
                raise DataError(f"{path}:{number}: empty completion")
            records.append({"prompt": record["prompt"], "completion": record["completion"]})
    if not records:
        raise DataError(f"{path}: empty file (no records)")
    return records


def uncovered_characters(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> list[str]:
    """Characters of ``texts`` that ``tokenizer`` turns into its unknown token, sorted.

    Empty for tokenizers without an unknown token (byte-level BPE such as GPT-2's encodes
    every string), so only vocabularies with gaps, like the character tokenizer, are checked.
    """
    unk = tokenizer.unk_token_id
    if unk is None:
        return []
    seen: set[str] = set()
    for text in texts:
        seen.update(text)
    return sorted(c for c in seen if unk in tokenizer(c, add_special_tokens=False)["input_ids"])


def check_coverage(path: str | Path, records: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase) -> None:
    """Refuse records with text the tokenizer cannot encode (it would become ``<unk>`` and be trained as a target).

    Raises :class:`DataError` ``"<file>:<line>: ..."`` naming the first line that holds such
    characters and the characters themselves.
    """
    texts = (text for r in records for text in (r["prompt"], r["completion"]))
    bad = uncovered_characters(tokenizer, texts)
    if not bad:
        return
    path, wanted = Path(path), set(bad)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8")
            if not line.strip():
                continue
            record = json.loads(line)
            here = sorted(wanted & set(record["prompt"] + record["completion"]))
            if here:
                others = len(bad) - len(here)
                more = f" ({others} more elsewhere in the file)" if others > 0 else ""
                raise DataError(
                    f"{path}:{number}: characters the tokenizer cannot encode: "
                    + " ".join(repr(c) for c in here) + more
                )
    raise DataError(f"{path}: characters the tokenizer cannot encode: " + " ".join(repr(c) for c in bad))


def prompts_digest(prompts: list[str]) -> str:
    """What identifies a list of prompts, in order: the first 16 hex digits of the SHA-256 of their text."""
    return hashlib.sha256("\n".join(prompts).encode()).hexdigest()[:16]


def record_line(path: str | Path, index: int) -> int:
    """The line number (from 1) of record ``index`` (from 0) of a JSONL file: blank lines hold no record."""
    with Path(path).open("rb") as handle:
        seen = -1
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                seen += 1
                if seen == index:
                    return number
    raise IndexError(f"{path} has no record {index}")


def check_lengths(
    path: str | Path, records: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> None:
    """Refuse records whose prompt leaves no completion token within ``max_length`` (they would train on nothing,
    and fail at the step that draws them): :class:`DataError` ``"<file>:<line>: ..."`` for the first one."""
    lengths = [len(ids) for ids in tokenizer([r["prompt"] for r in records], add_special_tokens=False)["input_ids"]]
    for index, length in enumerate(lengths):
        if length >= max_length:
            too_long = sum(n >= max_length for n in lengths)
            more = f" ({too_long - 1} more records like it)" if too_long > 1 else ""
            raise DataError(
                f"{path}:{record_line(path, index)}: the prompt is {length} tokens, so --max-length {max_length} "
                f"leaves no completion token to train on{more}"
            )


# ---------------------------------------------------------------- tokenizer

def build_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one token per character, plus pad/eos/unk."""
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *CHARACTERS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK, bos_token=EOS, model_max_length=1024
    )


# ---------------------------------------------------------------- the shipped data set

def _unique_examples(family: str, rng: random.Random, size: int, exclude: set[str], **kwargs) -> list[tasks.Example]:
    seen = set(exclude)
    out = []
    for _ in range(size * 200):
        ex = tasks.generate(family, rng, **kwargs)
        if ex.prompt not in seen:
            seen.add(ex.prompt)
            out.append(ex)
            if len(out) == size:
                return out
    raise RuntimeError(f"could not draw {size} distinct {family} prompts")


def build_datasets(seed: int = DATA_SEED) -> dict[str, list[dict[str, str]]]:
    """Every JSONL file under ``data/`` as ``{relative path: records}``, deterministically.

    Evaluation prompts are drawn first and excluded from all training sets.
    """
    rng = random.Random(seed)
    files: dict[str, list[dict[str, str]]] = {}
    held_out: set[str] = set()
    for family in tasks.FAMILIES:
        examples = _unique_examples(family, rng, EVAL_SIZE, held_out)
        held_out.update(e.prompt for e in examples)
        files[f"eval/{family}.jsonl"] = [e.as_record(e.answers[0]) for e in examples]
    rl = _unique_examples("make_sum", rng, RL_SIZE, held_out, **RL_KWARGS)
    held_out.update(e.prompt for e in rl)
    files["rl_hard.jsonl"] = [e.as_record(tasks.teacher_completion(e)) for e in rl]

    sft = _unique_examples("make_sum", rng, SFT_TRAIN_SIZE + SFT_VAL_SIZE, held_out)
    files["sft_train.jsonl"] = [e.as_record(tasks.teacher_completion(e)) for e in sft[:SFT_TRAIN_SIZE]]
    files["sft_val.jsonl"] = [e.as_record(tasks.teacher_completion(e)) for e in sft[SFT_TRAIN_SIZE:]]
    # SFT prompts may also occur in pretraining, with the mixture's noisy answers (as instruction data
    # overlaps web text); evaluation and RL prompts never do.

    # The base model's mixture: every family; clean answers, except make_sum's noisy ones.
    pretrain = []
    while len(pretrain) < PRETRAIN_SIZE:
        family = rng.choice(tasks.FAMILIES)
        ex = tasks.generate(family, rng)
        if ex.prompt in held_out:
            continue
        pretrain.append(ex.as_record(tasks.pretrain_completion(ex, rng)))
    files["pretrain.jsonl"] = pretrain
    return files


def tokenizer_files() -> dict[str, bytes]:
    """The tokenizer's saved files, as bytes (saved to a temporary folder and read back)."""
    with tempfile.TemporaryDirectory() as tmp:
        build_tokenizer().save_pretrained(tmp)
        return {f"tokenizer/{p.name}": p.read_bytes() for p in sorted(Path(tmp).iterdir())}


def all_data_files(seed: int = DATA_SEED) -> dict[str, bytes]:
    files = {name: jsonl_bytes(records) for name, records in build_datasets(seed).items()}
    files.update(tokenizer_files())
    return files


def write_data(root: str | Path = DATA_DIR, seed: int = DATA_SEED) -> list[str]:
    """(Re)write the data files under ``root`` atomically; returns their relative paths."""
    files = all_data_files(seed)
    for name, payload in files.items():
        atomic_write_bytes(Path(root) / name, payload)
    return sorted(files)


def check_data(root: str | Path = DATA_DIR, seed: int = DATA_SEED) -> list[str]:
    """Relative paths under ``root`` that differ from what the generator writes (empty: all good)."""
    bad = []
    for name, payload in all_data_files(seed).items():
        path = Path(root) / name
        if not path.is_file() or path.read_bytes() != payload:
            bad.append(name)
    return sorted(bad)


# ---------------------------------------------------------------- records -> tensors

@dataclass
class Batch:
    """Token ids and masks for a batch of prompt/completion pairs.

    ``input_ids[:, t]`` predicts ``targets[:, t]`` (= ``input_ids[:, t + 1]``);
    ``mask`` is 1 where that target is a completion token (or the final eos).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.targets, self.mask)))

    def __getitem__(self, index) -> Batch:
        return Batch(self.input_ids[index], self.attention_mask[index], self.targets[index], self.mask[index])

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def encode_records(
    records: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase, max_length: int, add_eos: bool = True
) -> tuple[list[list[int]], list[int], int]:
    """Token ids per record and the length of each prompt.

    Records longer than ``max_length`` are cut from the end; the third value counts them
    so callers can report it.
    """
    ids, prompt_lengths, truncated = [], [], 0
    eos = [tokenizer.eos_token_id] if add_eos else []
    chunk = 8192  # the fast tokenizer encodes a list in one call, far quicker than record by record
    bar = tqdm(total=len(records), desc="encoding", unit="rec", disable=len(records) < 4 * chunk, leave=False)
    for start in range(0, len(records), chunk):
        part = records[start : start + chunk]
        prompts = tokenizer([r["prompt"] for r in part], add_special_tokens=False)["input_ids"]
        completions = tokenizer([r["completion"] for r in part], add_special_tokens=False)["input_ids"]
        for p, c in zip(prompts, completions):
            seq = p + c + eos
            if len(seq) > max_length:
                truncated += 1
                seq = seq[:max_length]
            ids.append(seq)
            prompt_lengths.append(min(len(p), max_length))
        bar.update(len(part))
    bar.close()
    return ids, prompt_lengths, truncated


def collate(ids: list[list[int]], prompt_lengths: list[int], pad_id: int) -> Batch:
    """Right-pad sequences into a :class:`Batch` (loss mask on completion targets only)."""
    width = max(len(s) for s in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    for i, seq in enumerate(ids):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        attention[i, : len(seq)] = 1
    positions = torch.arange(width - 1)
    lengths = attention.sum(-1, keepdim=True)
    starts = torch.tensor(prompt_lengths)[:, None]
    # target index t+1 is a completion token when prompt_len <= t+1 < len
    mask = ((positions + 1 >= starts) & (positions + 1 < lengths)).float()
    return Batch(input_ids[:, :-1], attention[:, :-1], input_ids[:, 1:], mask)


def load_split(name: str, root: str | Path = DATA_DIR) -> list[dict[str, str]]:
    """Records of a shipped file, e.g. ``"sft_train"`` or ``"eval/add"``."""
    return read_jsonl(Path(root) / f"{name}.jsonl")


def eval_prompts(
    family: str, count: int | None = None, root: str | Path = DATA_DIR, seed: int | None = None
) -> list[str]:
    """Held-out evaluation prompts of a family: the first ``count``, or with ``seed`` a random ``count`` of them.

    With a seed every seed of an experiment is evaluated on its own draw of prompts (kept in file
    order), so the spread over seeds includes the choice of prompts as well as training noise.
    """
    prompts = [r["prompt"] for r in load_split(f"eval/{family}", root)]
    if not count or count >= len(prompts):
        return prompts
    if seed is None:
        return prompts[:count]
    picked = sorted(random.Random(f"eval-prompts-{family}-{seed}").sample(range(len(prompts)), count))
    return [prompts[i] for i in picked]


__all__ = [
    "check_lengths",
    "prompts_digest",
    "record_line",
    "Batch",
    "DataError",
    "TOKENIZER_DIR",
    "atomic_write_bytes",
    "build_datasets",
    "build_tokenizer",
    "check_coverage",
    "check_data",
    "collate",
    "encode_records",
    "eval_prompts",
    "load_split",
    "read_jsonl",
    "uncovered_characters",
    "write_data",
]
