"""The task world, the character tokenizer, the shipped data files and turning records into tensors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from psft_edu import data, tasks
from psft_edu.paths import DATA_DIR, REPO_ROOT, TOKENIZER_DIR

N_EXAMPLES = 300


def examples(family: str, seed: int = 0, n: int = N_EXAMPLES, **kwargs) -> list[tasks.Example]:
    rng = random.Random(seed)
    return [tasks.generate(family, rng, **kwargs) for _ in range(n)]


# ---------------------------------------------------------------- registry


def test_family_registry():
    assert tasks.FAMILIES == ("make_sum", "add", "reverse", "sort", "even")
    assert tasks.IN_DOMAIN == "make_sum"
    assert tasks.OUT_OF_DOMAIN == ("add", "reverse", "sort", "even")
    for family in tasks.FAMILIES:
        ex = tasks.generate(family, random.Random(1))
        assert ex.family == family
        assert tasks.family_of(ex.prompt) == family
        assert ex.prompt.endswith(":")
        assert all(a.startswith(" ") for a in ex.answers)
        assert ex.as_record(ex.answers[0]) == {"prompt": ex.prompt, "completion": ex.answers[0]}


# ---------------------------------------------------------------- generators


@pytest.mark.parametrize("family", tasks.FAMILIES)
def test_generator_is_deterministic_given_the_seed(family):
    first = examples(family, seed=42, n=100)
    again = examples(family, seed=42, n=100)
    other = examples(family, seed=43, n=100)
    assert first == again
    assert [e.prompt for e in first] != [e.prompt for e in other]
    # the generator draws only from the rng it is given, not from the global one
    random.seed(1)
    a = examples(family, seed=42, n=20)
    random.seed(2)
    b = examples(family, seed=42, n=20)
    assert a == b


def test_generate_rejects_unknown_family(rng):
    with pytest.raises(ValueError, match=r"unknown family 'multiply'; choose from make_sum, add, reverse, sort, even"):
        tasks.generate("multiply", rng)


@pytest.mark.parametrize("family", tasks.FAMILIES)
@pytest.mark.parametrize("bad_rng", [0, None, "seed", random])
def test_generator_rejects_something_else_than_a_random_random(family, bad_rng):
    with pytest.raises(TypeError, match="rng must be a random.Random"):
        tasks.generate(family, bad_rng)


@pytest.mark.parametrize(
    "family,kwargs,error,message",
    [
        ("make_sum", {"count": 2}, ValueError, r"make_sum: count must be in \[3, max_value=9\], got 2"),
        ("make_sum", {"count": 8, "max_value": 7}, ValueError, r"count must be in \[3, max_value=7\], got 8"),
        ("make_sum", {"min_pairs": 0}, ValueError, r"min_pairs must be in \[1, 1\], got 0"),
        ("make_sum", {"min_pairs": 2}, ValueError, r"min_pairs must be in \[1, 1\], got 2"),
        ("make_sum", {"count": 5, "min_pairs": 3}, ValueError, r"min_pairs must be in \[1, 2\], got 3"),
        ("make_sum", {"count": 5.0}, TypeError, r"make_sum: count must be an int, got float 5.0"),
        ("make_sum", {"count": "5"}, TypeError, r"make_sum: count must be an int, got str '5'"),
        ("make_sum", {"min_pairs": True}, TypeError, r"min_pairs must be an int, got bool"),
        ("add", {"max_value": 0}, ValueError, r"add: max_value must be >= 1, got 0"),
        ("add", {"max_value": 10.5}, TypeError, r"add: max_value must be an int"),
        ("reverse", {"min_len": 0}, ValueError, r"reverse: need 1 <= min_len <= max_len, got 0, 5"),
        ("reverse", {"min_len": 4, "max_len": 3}, ValueError, r"got 4, 3"),
        ("reverse", {"max_len": None}, TypeError, r"reverse: max_len must be an int, got NoneType"),
        ("sort", {"count": 1}, ValueError, r"sort: count must be in \[2, 10\], got 1"),
        ("sort", {"count": 11}, ValueError, r"sort: count must be in \[2, 10\], got 11"),
        ("sort", {"count": 4.0}, TypeError, r"sort: count must be an int"),
        ("even", {"min_gap": 2}, ValueError, r"even: need min_gap >= 3 and max_value >= min_gap \+ 2, got 2, 60"),
        ("even", {"max_value": 7}, ValueError, r"got 6, 7"),
        ("even", {"min_gap": 6.0}, TypeError, r"even: min_gap must be an int"),
        ("add", {"colour": "red"}, TypeError, r"colour"),
    ],
)
def test_generator_rejects_bad_arguments(family, kwargs, error, message, rng):
    with pytest.raises(error, match=message):
        tasks.generate(family, rng, **kwargs)


# ---------------------------------------------------------------- answers and the verifier


def _expected_answers(ex: tasks.Example) -> list[str]:
    """Every valid base-style completion, recomputed from the prompt without the package."""
    words = ex.prompt[:-1].split()
    if ex.family == "make_sum":
        target, numbers = int(words[1]), [int(w) for w in words[3:]]
        return sorted(
            f" {a}+{b}" for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j and a + b == target
        )
    if ex.family == "add":
        return [f" {int(words[1]) + int(words[2])}"]
    if ex.family == "reverse":
        return [" " + words[1][::-1]]
    if ex.family == "sort":
        return [" " + " ".join(str(d) for d in sorted(int(w) for w in words[1:]))]
    low, high = int(words[2]), int(words[4])
    return [f" {n}" for n in range(low + 1, high) if n % 2 == 0]


@pytest.mark.parametrize("family", tasks.FAMILIES)
def test_every_answer_verifies_and_the_answer_set_is_complete(family):
    for ex in examples(family, seed=7):
        assert sorted(ex.answers) == sorted(_expected_answers(ex)), ex.prompt
        assert len(set(ex.answers)) == len(ex.answers)
        for answer in ex.answers:
            assert tasks.verify(ex.prompt, answer), (ex.prompt, answer)


@pytest.mark.parametrize(
    "family,kwargs",
    [
        ("make_sum", {}),
        ("make_sum", {"count": 7, "max_value": 29}),
        ("make_sum", {"count": 5, "max_value": 19, "min_pairs": 2}),
    ],
)
def test_make_sum_verifier_accepts_exactly_the_answer_set(family, kwargs):
    for ex in examples(family, seed=3, n=40, **kwargs):
        target = int(ex.prompt.split()[1])
        if kwargs.get("min_pairs"):
            assert len(ex.answers) >= 2 * kwargs["min_pairs"]
        for x in range(0, target + 3):
            for y in range(0, target + 3):
                plain = f" {x}+{y}"
                valid = plain in ex.answers
                assert tasks.verify(ex.prompt, plain) == valid, (ex.prompt, plain)
                assert tasks.verify(ex.prompt, f"{plain}={target}") == valid  # the teacher's style
                assert not tasks.verify(ex.prompt, f"{plain}={target + 1}")


def test_even_verifier_accepts_exactly_the_answer_set():
    for ex in examples("even", seed=5, n=100):
        for n in range(-2, 70):
            assert tasks.verify(ex.prompt, f" {n}") == (f" {n}" in ex.answers)
        low, high = (int(w) for w in ex.prompt[:-1].split()[2::2])
        assert not tasks.verify(ex.prompt, f" {low}") and not tasks.verify(ex.prompt, f" {high}")  # strictly between


@pytest.mark.parametrize(
    "prompt,completion",
    [
        # make_sum: wrong totals, numbers not in the list, a number used twice, formats
        ("make 14 from 3 5 9 11 2:", " 3+12"),  # off by one
        ("make 14 from 3 5 9 11 2:", " 4+10"),  # right total, numbers not in the list
        ("make 14 from 7 3 5 9 2:", " 7+7"),  # 7 appears once: cannot be used twice
        ("make 14 from 3 5 9 11 2:", " 3+11=15"),  # wrong stated total
        ("make 14 from 3 5 9 11 2:", " 3+11=14=14"),
        ("make 14 from 3 5 9 11 2:", "3+11"),  # no leading space
        ("make 14 from 3 5 9 11 2:", " 3 + 11"),
        ("make 14 from 3 5 9 11 2:", " 3+11 "),
        ("make 14 from 3 5 9 11 2:", " 3+11\n"),
        ("make 14 from 3 5 9 11 2:", " 11+3+0"),
        ("make 14 from 3 5 9 11 2:", " 03+11"),  # leading zero
        ("make 14 from 3 5 9 11 2:", " 3+11=014"),
        ("make 14 from 3 5 9 11 2:", " \u0663+11"),  # an Arabic-Indic three is not an ASCII digit
        ("make 14 from 3 5 9 11 2:", " 14"),
        ("make 14 from 3 5 9 11 2:", ""),
        # add
        ("add 23 48:", " 70"),
        ("add 23 48:", " 72"),
        ("add 23 48:", "71"),
        ("add 23 48:", " 071"),
        ("add 23 48:", " 71 "),
        # reverse
        ("reverse abcde:", " abcde"),
        ("reverse abcde:", " edcb"),
        ("reverse abcde:", "edcba"),
        # sort
        ("sort 5 2 9 1:", " 1 2 9 5"),
        ("sort 5 2 9 1:", " 1 2 5"),
        ("sort 5 2 9 1:", " 1259"),
        ("sort 5 2 9 1:", " 9 5 2 1"),
        # even
        ("even between 12 and 30:", " 17"),
        ("even between 12 and 30:", " 12"),
        ("even between 12 and 30:", " 30"),
        ("even between 12 and 30:", " 32"),
        ("even between 12 and 30:", " 018"),
        ("even between 12 and 30:", "18"),
    ],
)
def test_wrong_answers_fail(prompt, completion):
    assert not tasks.verify(prompt, completion)


@pytest.mark.parametrize(
    "prompt,completion",
    [
        ("make 14 from 3 5 9 11 2:", " 3+11"),
        ("make 14 from 3 5 9 11 2:", " 11+3"),
        ("make 14 from 3 5 9 11 2:", " 5+9=14"),
        ("make 14 from 7 7 3:", " 7+7"),  # a number listed twice may be used twice
        ("add 23 48:", " 71"),
        ("add 0 0:", " 0"),
        ("reverse abcde:", " edcba"),
        ("sort 5 2 9 1:", " 1 2 5 9"),
        ("even between 12 and 30:", " 18"),
    ],
)
def test_right_answers_pass(prompt, completion):
    assert tasks.verify(prompt, completion)


def test_verify_rejects_unknown_family():
    with pytest.raises(ValueError, match="unknown task family for prompt 'multiply 2 3:'"):
        tasks.verify("multiply 2 3:", " 6")


def test_malformed_prompts_never_verify():
    for prompt in ["add 2:", "add two three:", "reverse ABC:", "sort 12 3:", "even between 3:", "make 14 from:"]:
        assert not tasks.verify(prompt, " 5")
    # a trailing newline is not part of any prompt (a regex "$" would let it through)
    for prompt, answer in [("add 2 3:\n", " 5"), ("make 5 from 2 3 9:\n", " 2+3"), ("even between 2 and 9:\n", " 4")]:
        assert not tasks.verify(prompt, answer)
        assert tasks.verify(prompt[:-1], answer)


def test_teacher_completion_is_correct_and_in_a_style_the_base_never_saw():
    for ex in examples("make_sum", seed=11):
        teacher = tasks.teacher_completion(ex)
        assert tasks.verify(ex.prompt, teacher)
        assert teacher not in ex.answers
        target = int(ex.prompt.split()[1])
        first = min(int(a.split("+")[0]) for a in ex.answers)
        assert teacher == f" {first}+{target - first}={target}"
        assert teacher.rsplit("=", 1)[0] in ex.answers  # the same pair, written with its total


@pytest.mark.parametrize("family", tasks.OUT_OF_DOMAIN)
def test_teacher_only_answers_make_sum(family):
    with pytest.raises(ValueError, match=f"the teacher only answers make_sum, not {family}"):
        tasks.teacher_completion(tasks.generate(family, random.Random(0)))


def test_answer_counts_per_family():
    for family in ("add", "reverse", "sort"):
        assert all(len(ex.answers) == 1 for ex in examples(family))
    for family in ("make_sum", "even"):
        counts = [len(ex.answers) for ex in examples(family)]
        assert sum(c > 1 for c in counts) >= 0.9 * len(counts), family
        assert min(counts) >= 2  # both orders of a pair; at least two evens in a gap of six
    # Three distinct numbers have three different pair sums: exactly one pair is right, in either order.
    assert all(len(ex.answers) == 2 for ex in examples("make_sum"))


# ---------------------------------------------------------------- the tokenizer


def test_every_character_round_trips(tokenizer):
    ids = set()
    for ch in data.CHARACTERS:
        enc = tokenizer(ch, add_special_tokens=False)["input_ids"]
        assert len(enc) == 1, ch
        assert tokenizer.decode(enc) == ch
        ids.add(enc[0])
    assert len(ids) == len(data.CHARACTERS)
    assert tokenizer.unk_token_id not in ids


def test_special_tokens(tokenizer):
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token) == (data.PAD, data.EOS, data.UNK)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert len(tokenizer) == 3 + len(data.CHARACTERS)
    assert tokenizer("A?", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id] * 2
    assert tokenizer.decode([5, 1, 0], skip_special_tokens=True) == tokenizer.decode([5])


def test_whole_records_round_trip(tokenizer):
    records = data.load_split("sft_train") + data.load_split("pretrain")[:3000]
    for family in tasks.FAMILIES:
        records += data.load_split(f"eval/{family}")
    texts = [r["prompt"] + r["completion"] for r in records]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for text, ids in zip(texts, encoded):
        assert len(ids) == len(text), text
        assert tokenizer.unk_token_id not in ids, text
        assert tokenizer.decode(ids) == text


def test_auto_tokenizer_loads_the_saved_tokenizer():
    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    assert tok.pad_token == data.PAD and tok.pad_token_id == 0
    assert tok.eos_token == data.EOS and tok.eos_token_id == 1
    assert tok.get_vocab() == data.build_tokenizer().get_vocab()
    assert tok("make 3 from 1 2:", add_special_tokens=False)["input_ids"] == data.build_tokenizer()(
        "make 3 from 1 2:", add_special_tokens=False
    )["input_ids"]


# ---------------------------------------------------------------- the shipped data set


def test_shipped_data_is_correct_and_held_out():
    train_prompts = set()
    for name in ("sft_train", "sft_val", "rl_hard"):
        records = data.load_split(name)
        for r in records:
            assert tasks.family_of(r["prompt"]) == "make_sum"
            assert tasks.verify(r["prompt"], r["completion"]), r
            assert r["completion"].count("=") == 1  # the teacher's style
        train_prompts.update(r["prompt"] for r in records)
    assert len(data.load_split("sft_train")) == data.SFT_TRAIN_SIZE
    pretrain = data.load_split("pretrain")
    assert len(pretrain) == data.PRETRAIN_SIZE
    assert all("=" not in r["completion"] for r in pretrain)  # never the teacher's style
    clean = [r for r in pretrain if tasks.family_of(r["prompt"]) != tasks.IN_DOMAIN]
    assert all(tasks.verify(r["prompt"], r["completion"]) for r in clean)
    in_domain = [r for r in pretrain if tasks.family_of(r["prompt"]) == tasks.IN_DOMAIN]
    noisy = [tasks.verify(r["prompt"], r["completion"]) for r in in_domain]
    assert abs(sum(noisy) / len(noisy) - tasks.PRETRAIN_SUM_CORRECT) < 0.02  # in-domain answers: 30% valid
    assert {tasks.family_of(r["prompt"]) for r in pretrain} == set(tasks.FAMILIES)
    for family in tasks.FAMILIES:
        records = data.load_split(f"eval/{family}")
        assert len(records) == data.EVAL_SIZE
        assert all(tasks.verify(r["prompt"], r["completion"]) for r in records)
        prompts = [r["prompt"] for r in records]
        assert len(set(prompts)) == len(prompts)
        assert not set(prompts) & train_prompts
        assert not set(prompts) & {r["prompt"] for r in pretrain}
        assert data.eval_prompts(family, 5) == prompts[:5]
        assert data.eval_prompts(family) == prompts


def test_data_check_command_passes():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "psft_edu", "data", "--check"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "data/ matches the generator" in result.stdout


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The data set written twice into two fresh folders."""
    a, b = tmp_path_factory.mktemp("data_a"), tmp_path_factory.mktemp("data_b")
    return a, data.write_data(a), b, data.write_data(b)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_data_is_byte_identical_across_runs(written):
    a, names_a, b, names_b = written
    assert names_a == names_b
    files_a, files_b = _files(a), _files(b)
    assert sorted(files_a) == names_a  # nothing else left behind (no temporary files)
    assert files_a == files_b
    for name in ("sft_train.jsonl", "eval/add.jsonl", "tokenizer/tokenizer.json"):
        assert files_a[name] == (DATA_DIR / name).read_bytes()  # and identical to the shipped copy


def test_check_data_detects_a_modified_copy(written, tmp_path):
    a, names, _, _ = written
    copy = tmp_path / "copy"
    for name, payload in _files(a).items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(payload)
    assert data.check_data(copy) == []
    path = copy / "sft_val.jsonl"
    raw = bytearray(path.read_bytes())
    at = raw.index(b"+")
    raw[at] = ord("-")  # one byte
    path.write_bytes(bytes(raw))
    (copy / "eval" / "sort.jsonl").unlink()
    assert data.check_data(copy) == ["eval/sort.jsonl", "sft_val.jsonl"]


# ---------------------------------------------------------------- atomic writes


def test_atomic_write_bytes_writes_and_replaces(tmp_path):
    target = tmp_path / "deep" / "file.bin"
    data.atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o777 == 0o644
    data.atomic_write_bytes(str(target), b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


@pytest.mark.parametrize("fail_at", ["replace", "fsync"])
def test_atomic_write_bytes_never_leaves_a_half_file(tmp_path, monkeypatch, fail_at):
    target = tmp_path / "file.jsonl"
    target.write_bytes(b"original\n")

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(data.os, fail_at, boom)
    with pytest.raises(OSError, match="disk on fire"):
        data.atomic_write_bytes(target, b"new content that must not appear\n" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"original\n"
    assert [p.name for p in tmp_path.iterdir()] == ["file.jsonl"]  # the temporary file is gone too


def test_atomic_write_bytes_interrupted_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "new.txt"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.atomic_write_bytes(target, b"x")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- reading JSONL

GOOD = json.dumps({"prompt": "add 1 2:", "completion": " 3"})


@pytest.mark.parametrize(
    "lines,line_no,problem",
    [
        ([GOOD, "", '{"prompt": "add 1 2:", '], 3, r"broken JSON \(.* at column \d+\)"),
        ([GOOD, GOOD, GOOD, '{"completion": " 3"}'], 4, r"missing field 'prompt'"),
        (['{"prompt": "add 1 2:"}'], 1, r"missing field 'completion'"),
        ([GOOD, '{"prompt": 12, "completion": " 3"}'], 2, r"field 'prompt' must be a string"),
        ([GOOD, "   ", '{"prompt": "a", "completion": null}'], 3, r"field 'completion' must be a string"),
        ([GOOD, '{"prompt": "add 1 2:", "completion": ""}'], 2, r"empty completion"),
        ([GOOD, GOOD, "[1, 2]"], 3, r"expected a JSON object, got list"),
        (['"just a string"'], 1, r"expected a JSON object, got str"),
    ],
    ids=[
        "broken-json",
        "missing-prompt",
        "missing-completion",
        "non-string",
        "null",
        "empty-completion",
        "list",
        "string",
    ],
)
def test_read_jsonl_names_file_and_line(tmp_path, lines, line_no, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(data.DataError, match=problem) as info:
        data.read_jsonl(path)
    assert str(info.value).startswith(f"{path}:{line_no}: ")


def test_read_jsonl_non_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes((GOOD + "\n").encode() + '{"prompt": "caf\u00e9", "completion": " 1"}\n'.encode("latin-1"))
    with pytest.raises(data.DataError) as info:
        data.read_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: not valid UTF-8 (byte 15)")


@pytest.mark.parametrize("content", [b"", b"\n\n   \n"])
def test_read_jsonl_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(data.DataError, match="empty file") as info:
        data.read_jsonl(path)
    assert str(info.value) == f"{path}: empty file (no records)"


def test_read_jsonl_missing_file(tmp_path):
    with pytest.raises(data.DataError, match="no such file"):
        data.read_jsonl(tmp_path / "nope.jsonl")
    assert issubclass(data.DataError, ValueError)


def test_read_jsonl_good_file(tmp_path):
    path = tmp_path / "good.jsonl"
    rows = [
        {"prompt": "add 1 2:", "completion": " 3", "source": "extra fields are dropped"},
        {"prompt": "", "completion": " caf\u00e9"},
    ]
    path.write_bytes(("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n\n").encode())
    assert data.read_jsonl(path) == [
        {"prompt": "add 1 2:", "completion": " 3"},
        {"prompt": "", "completion": " caf\u00e9"},
    ]


# ---------------------------------------------------------------- records -> tensors


def test_collate_by_hand():
    ids = [[10, 11, 12, 13, 1], [20, 21, 22, 1], [30, 31, 1]]
    prompt_lengths = [2, 3, 1]
    batch = data.collate(ids, prompt_lengths, pad_id=0)
    assert batch.input_ids.tolist() == [[10, 11, 12, 13], [20, 21, 22, 1], [30, 31, 1, 0]]
    assert batch.targets.tolist() == [[11, 12, 13, 1], [21, 22, 1, 0], [31, 1, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]
    # target t+1 is a completion token or the eos: positions p-1 .. len-2
    assert batch.mask.tolist() == [[0, 1, 1, 1], [0, 0, 1, 0], [1, 1, 0, 0]]
    assert batch.mask.dtype == torch.float32
    assert len(batch) == 3
    sub = batch[1:]
    assert len(sub) == 2 and torch.equal(sub.mask, batch.mask[1:])


def test_collate_masks_exactly_completion_and_eos(tokenizer):
    records = data.load_split("sft_train")[:20] + data.load_split("eval/sort")[:20]
    ids, prompt_lengths, truncated = data.encode_records(records, tokenizer, max_length=64)
    assert truncated == 0
    batch = data.collate(ids, prompt_lengths, tokenizer.pad_token_id)
    for i, r in enumerate(records):
        selected = batch.targets[i][batch.mask[i] > 0].tolist()
        assert selected[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(selected[:-1]) == r["completion"]
        # padding is never in the loss, and attention covers exactly the real inputs (the final
        # column is dropped by the shift, so the longest row loses its eos as an input)
        length = len(r["prompt"]) + len(r["completion"]) + 1
        assert int(batch.attention_mask[i].sum()) == min(length, batch.input_ids.shape[1])
        assert torch.all(batch.input_ids[i][batch.attention_mask[i] == 0] == tokenizer.pad_token_id)
        assert torch.all(batch.mask[i][length - 1 :] == 0)
        assert torch.all(batch.targets[i][length - 1 :] == tokenizer.pad_token_id)
        assert torch.equal(batch.input_ids[i, 1:length - 1], batch.targets[i, : length - 2])


def test_encode_records_truncates_and_counts(tokenizer):
    records = [{"prompt": "add 1 2:", "completion": " 3"}, {"prompt": "reverse abcde:", "completion": " edcba"}]
    ids, prompt_lengths, truncated = data.encode_records(records, tokenizer, max_length=12)
    assert truncated == 1
    assert [len(s) for s in ids] == [11, 12]
    assert prompt_lengths == [8, 12]
    assert ids[0][-1] == tokenizer.eos_token_id
    ids, _, _ = data.encode_records(records, tokenizer, max_length=64, add_eos=False)
    assert tokenizer.decode(ids[0]) == "add 1 2: 3"
