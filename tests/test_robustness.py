"""Runs you can trust: safe checkpoints, resume checks, no silent overwrite, clean errors, SIGTERM.

One test per promise; each drives the command line (in-process where possible) the way a careful
user or a CI system would, and checks the exit code, the single line on stderr and the files left.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import tracemalloc
from pathlib import Path

import pytest
import torch

from psft_edu import data as data_module
from psft_edu.cli import main as cli
from psft_edu.data import DataError, build_tokenizer, jsonl_bytes, load_split, read_jsonl
from psft_edu.engine import train as train_module
from psft_edu.engine.runs import Interrupted, TrainingError
from psft_edu.engine.train import TrainConfig, Trainer
from psft_edu.models import load_model, load_tokenizer, new_model

REPO = Path(__file__).resolve().parent.parent
RECORDS = load_split("sft_train")[:64]
# A short run: 2 optimiser steps of K = 2 mini-batches, no evaluation.
QUICK = [
    "--preset",
    "tiny",
    "--max-steps",
    "2",
    "--global-batch",
    "16",
    "--mini-batch",
    "8",
    "--no-eval",
    "--save-every",
    "0",
]


def train_cli(out: Path, *extra: str) -> int:
    return cli.main(["train", "--out", str(out), *QUICK, *extra])


RL_QUICK = ["--init", "tiny", "--split", "eval/add", "--prompts-per-step", "2", "--group-size", "2"]


def rl_cli(out: Path, *extra: str) -> int:
    return cli.main(["rl", "--out", str(out), *RL_QUICK, *extra])


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


def mark(out: Path, command: str) -> Path:
    """A folder as ``command`` leaves it (its marker), for tests that craft the rest by hand."""
    from psft_edu.engine.outputs import mark_folder

    out.mkdir(parents=True, exist_ok=True)
    mark_folder(out, command)
    return out


class Crafted:
    """Unpickling this runs code: it writes ``marker`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


# ---------------------------------------------------------------- 1. checkpoints never run code


@pytest.mark.parametrize("command", ["train", "rl"])
def test_crafted_checkpoint_runs_nothing_and_is_refused(command, tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "marker"
    mark(out, command)
    torch.save({"model": Crafted(marker), "optimizer": {}, "step": 1, "config": {}}, out / "checkpoint.pt")
    if command == "train":
        code = train_cli(out, "--resume")
    else:
        code = rl_cli(out, "--resume", "--steps", "2")
    line = one_error_line(capsys)
    assert code == 2
    assert not marker.exists()
    assert "checkpoint.pt: refused: it would load" in line and "exec" in line


# ---------------------------------------------------------------- 2. --resume checks the settings


def test_resume_refuses_other_settings_and_allows_more_steps(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli(out) == 0
    saved_config = (out / "config.json").read_text()
    saved_metrics = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    code = train_cli(out, "--resume", "--objective", "sft", "--lr", "3e-4", "--seed", "7")
    line = one_error_line(capsys)
    assert code == 2
    for name in ("objective: 'psft' -> 'sft'", "lr: 0.0001 -> 0.0003", "seed: 0 -> 7"):
        assert name in line
    assert (out / "config.json").read_text() == saved_config
    assert (out / "metrics.jsonl").read_text() == saved_metrics
    # Settings documented as changeable on resume: the run goes on.
    assert train_cli(out, "--resume", "--max-steps", "4", "--save-every", "2") == 0
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_resume_with_other_data_is_refused(tmp_path, capsys):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(jsonl_bytes(RECORDS[:32]))
    second.write_bytes(jsonl_bytes(RECORDS[32:64]))
    out = tmp_path / "run"
    assert train_cli(out, "--data", str(first)) == 0
    capsys.readouterr()
    assert train_cli(out, "--data", str(second), "--max-steps", "4", "--resume") == 2
    assert "other training data" in one_error_line(capsys)


def test_resume_without_checkpoint_stops(tmp_path, capsys):
    out = tmp_path / "run"
    code = train_cli(out, "--resume")
    assert code == 2
    assert "no checkpoint.pt" in one_error_line(capsys)
    assert not out.exists()


# ---------------------------------------------------------------- 3. no silent overwrite


def test_existing_run_is_kept_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli(out) == 0
    before = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    code = train_cli(out, "--seed", "3")
    line = one_error_line(capsys)
    assert code == 2 and "--resume" in line and "--overwrite" in line
    assert (out / "metrics.jsonl").read_text() == before
    assert train_cli(out, "--seed", "3", "--overwrite") == 0
    assert (out / "metrics.jsonl").read_text() != before
    assert json.loads((out / "config.json").read_text())["seed"] == 3


def test_rl_prompts_outside_the_tokenizer_are_refused(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(jsonl_bytes([{"prompt": "ADD 1 2:", "completion": " 3"}]))
    out = tmp_path / "rl"
    assert cli.main(["rl", "--init", "tiny", "--out", str(out), "--split", str(prompts), "--steps", "2"]) == 2
    assert "'A'" in one_error_line(capsys)
    assert not out.exists()


def test_rl_run_is_guarded_the_same_way(tmp_path, capsys):
    out = tmp_path / "rl"
    assert rl_cli(out, "--steps", "2") == 0
    capsys.readouterr()
    assert rl_cli(out, "--steps", "2") == 2
    assert "--overwrite" in one_error_line(capsys)
    assert rl_cli(out, "--steps", "3", "--lr", "1e-3", "--resume") == 2
    assert "lr: 0.0001 -> 0.001" in one_error_line(capsys)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2


# ---------------------------------------------------------------- 4. tokenizer coverage


def test_characters_outside_the_tokenizer_are_refused_with_file_and_line(tmp_path, capsys):
    data = tmp_path / "mixed.jsonl"
    rows = RECORDS[:2] + [{"prompt": "MAKE 14 FROM 3 11:", "completion": " 3 + 11"}] + RECORDS[2:40]
    data.write_bytes(jsonl_bytes(rows))
    out = tmp_path / "run"
    code = train_cli(out, "--data", str(data))
    line = one_error_line(capsys)
    assert code == 2
    assert f"{data}:3:" in line and "'M'" in line and "'K'" in line
    assert not out.exists()


def test_a_tokenizer_that_covers_the_text_is_unaffected(tokenizer):
    uncovered_characters = data_module.uncovered_characters
    assert uncovered_characters(tokenizer, ["MAKE 14"]) == ["A", "E", "K", "M"]
    assert uncovered_characters(tokenizer, [r["prompt"] + r["completion"] for r in RECORDS]) == []
    wide = build_tokenizer()
    wide.unk_token = None  # like byte-level BPE: every string encodes, nothing to refuse
    assert uncovered_characters(wide, ["MAKE 14 é"]) == []


# ---------------------------------------------------------------- 5. sizes checked before training


def test_size_mismatches_are_one_line_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli(out, "--max-length", "65") == 2  # tiny has 64 positions
    assert "above the model's 64 positions" in one_error_line(capsys)
    small = new_model("tiny", load_tokenizer())
    small.resize_token_embeddings(30)
    folder = tmp_path / "small_vocab"
    small.save_pretrained(folder)  # model only: the project's tokenizer (44 tokens) goes with it
    assert train_cli(out, "--model", str(folder)) == 2
    assert "vocabulary (30 tokens) is smaller" in one_error_line(capsys)
    assert not out.exists()


# ---------------------------------------------------------------- 6. failed writes, torn logs, corrupt files


def test_failed_checkpoint_write_cleans_up_and_keeps_the_previous_one(tmp_path, monkeypatch):
    real_save = torch.save
    calls = []

    def full_disk(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(train_module.torch, "save", full_disk)
    model, tok = load_model("tiny")
    cfg = TrainConfig(max_steps=4, global_batch=16, mini_batch=8, save_every=2, warmup_steps=0)
    with pytest.raises(TrainingError) as caught:
        Trainer(model, tok, RECORDS, cfg, out=tmp_path, progress=False).train()
    message = str(caught.value)
    assert "\n" not in message and "No space left" in message and "previous checkpoint is kept" in message
    assert list(tmp_path.glob(".checkpoint.*")) == []
    monkeypatch.undo()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 2


def test_torn_last_metrics_line_is_dropped_on_resume(tmp_path, capsys):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert train_cli(straight, "--max-steps", "4") == 0
    assert train_cli(cut, "--max-steps", "2") == 0
    with open(cut / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 3, "loss": 0.12')  # killed while appending
    capsys.readouterr()
    assert train_cli(cut, "--max-steps", "4", "--resume") == 0
    assert "half-written last line" in capsys.readouterr().err
    # Longer after resume with a constant schedule: the same steps as the straight run, bit for bit.
    assert (cut / "metrics.jsonl").read_text() == (straight / "metrics.jsonl").read_text()


def test_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli(out) == 0
    payload = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(payload[: len(payload) // 3])
    capsys.readouterr()
    assert train_cli(out, "--resume", "--max-steps", "4") == 2
    assert "corrupt or truncated checkpoint" in one_error_line(capsys)
    (out / "checkpoint.pt").write_text('{"step": 1}\n')  # not a torch file at all
    assert train_cli(out, "--resume", "--max-steps", "4") == 2
    assert "corrupt or not a checkpoint" in one_error_line(capsys)


# ---------------------------------------------------------------- 7. SIGTERM


def test_sigterm_saves_exits_143_and_resumes(tmp_path, capsys, interrupted_cli):
    out = tmp_path / "run"
    flags = ["--preset", "tiny", "--global-batch", "16", "--mini-batch", "8", "--save-every", "1000", "--no-eval"]
    metrics = out / "metrics.jsonl"
    code, stderr = interrupted_cli(
        ["train", "--out", str(out), "--max-steps", "100000", *flags],
        lambda: metrics.exists() and bool(metrics.read_text()),
        signal.SIGTERM,
    )
    assert code == 143, stderr
    assert "Traceback" not in stderr and "terminated (SIGTERM)" in stderr
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert step == json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] > 0
    assert cli.main(["train", "--out", str(out), "--max-steps", str(step + 2), *flags, "--resume"]) == 0
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, step + 3))


# ---------------------------------------------------------------- 8. flags

FLAG_CASES = {
    "clip_negative": (["train", "--clip", "-0.5"], "--clip"),
    "global_batch_zero": (["train", "--global-batch", "0"], "--global-batch"),
    "max_length_zero": (["train", "--max-length", "0"], "--max-length"),
    "device_foo": (["train", "--device", "foo"], "--device foo"),
    "lr_inf": (["train", "--lr", "inf"], "--lr"),
    "lr_nan": (["train", "--lr", "nan"], "--lr"),
    "lr_zero": (["train", "--lr", "0"], "--lr"),
    "hf_missing": (["train", "--model", "hf:missing/model"], "cannot load model hf:missing/model"),
    "eval_samples_zero": (["eval", "--preset", "tiny", "--samples", "0"], "--samples"),
    "compare_steps_zero": (["compare", "--preset", "tiny", "--max-steps", "0"], "--max-steps"),
    "sweep_steps_zero": (["sweep", "--preset", "tiny", "--max-steps", "0"], "--max-steps"),
    "bench_steps_zero": (["bench", "--preset", "tiny", "--steps", "0"], "--steps"),
    "rl_lr_inf": (["rl", "--init", "tiny", "--lr", "inf"], "--lr"),
}


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_bad_flags_stop_with_one_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    from psft_edu.experiments import bench, compare, sweep

    def ran(*args, **kwargs):
        raise AssertionError("the command ran (with its defaults) instead of refusing the flag")

    for module, name in ((compare, "compare"), (sweep, "sweep"), (bench, "run_bench")):
        monkeypatch.setattr(module, name, ran)
    argv, named = FLAG_CASES[case]
    out = tmp_path / "run"
    if argv[0] in ("train", "rl", "compare", "sweep"):
        argv = [*argv, "--out", str(out)]
    if argv[0] == "train":
        argv = [*argv, "--preset", "tiny", "--max-steps", "2"]
    assert cli.main(argv) == 2
    assert named in one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("where", ["file", "unwritable"])
def test_out_that_cannot_hold_a_run(where, tmp_path, capsys):
    if where == "file":
        out = tmp_path / "taken"
        out.write_text("not a folder")
    else:
        out = Path("/proc/psft-edu-run")  # /proc refuses new files, even to root
    assert train_cli(out) == 2
    assert f"--out {out}" in one_error_line(capsys)


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="--clip"):
        cli.main(["train", "--debug", "--out", str(tmp_path / "r"), "--clip", "-1"])
    monkeypatch.setenv("PSFT_EDU_DEBUG", "1")
    with pytest.raises(ValueError, match="--clip"):
        cli.main(["train", "--out", str(tmp_path / "r"), "--clip", "-1"])


# ---------------------------------------------------------------- 9. own data sets, small and large


def test_small_data_set_trains_with_the_default_batch(tmp_path, capsys):
    data = tmp_path / "small.jsonl"
    data.write_bytes(jsonl_bytes(load_split("sft_train")[:240]))
    out = tmp_path / "run"
    code = cli.main(["train", "--preset", "tiny", "--data", str(data), "--out", str(out), "--max-steps", "2"])
    assert code == 0, capsys.readouterr().err
    assert "using a global batch of 224" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["global_batch"] == 224


def test_large_jsonl_shows_progress_and_stays_compact(tmp_path, monkeypatch):
    path = tmp_path / "large.jsonl"
    shipped = load_split("sft_train")
    path.write_bytes(jsonl_bytes(shipped * 4))
    size = path.stat().st_size
    seen = []

    class Recorder:
        def __init__(self, total=None, disable=None, **kwargs):
            self.total, self.n, self.disable = total, 0, disable
            seen.append(self)

        def update(self, n):
            self.n += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(data_module, "tqdm", Recorder)
    monkeypatch.setattr(data_module, "PROGRESS_BYTES", size // 2)
    tracemalloc.start()
    try:
        records = read_jsonl(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(records) == 4 * len(shipped)
    assert len(seen) == 1 and seen[0].total == size and seen[0].n == size and not seen[0].disable
    assert peak < 6 * size, peak / size
    with pytest.raises(DataError):  # still validated line by line
        path.write_bytes(jsonl_bytes(RECORDS[:3]) + b"{broken\n")
        read_jsonl(path)


def test_rl_sigterm_finishes_the_step_saves_and_resumes(tmp_path):
    from psft_edu.engine.grpo_loop import RLConfig, grpo

    prompts = [f"add {a} {b}:" for a in range(4) for b in range(4)]
    cfg = RLConfig(steps=3, prompts_per_step=2, group_size=2, eval_every=1, lr=1e-4)

    def terminate_at_one(model, step):
        if step == 1:
            signal.raise_signal(signal.SIGTERM)  # the handler only sets a flag; the step ends, then it stops
        return {}

    def unhandled(signum, frame):
        raise AssertionError("grpo left SIGTERM to the default handler (the process would die unsaved)")

    model, tok = load_model("tiny")
    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        with pytest.raises(Interrupted, match="terminated") as caught:
            grpo(model, tok, prompts, cfg, out=tmp_path, eval_fn=terminate_at_one, progress=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert caught.value.signum == signal.SIGTERM
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 1
    model, tok = load_model("tiny")
    history = grpo(model, tok, prompts, cfg, out=tmp_path, eval_fn=lambda m, s: {}, progress=False, resume=True)
    assert [r["step"] for r in history] == [1, 2, 3]


# ---------------------------------------------------------------- never touch what the program did not make


def listing(root: Path) -> dict[str, str]:
    """Every path under ``root`` (links not followed) with its kind and, for files, its text."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = "link -> " + os.readlink(path)
        elif path.is_file():
            out[key] = path.read_text(errors="replace")
        else:
            out[key] = "dir"
    return out


def test_train_refuses_a_model_folder_that_is_a_link_and_deletes_nothing(tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    out = tmp_path / "run"
    mark(out, "train")
    (out / "model").symlink_to(theirs, target_is_directory=True)
    before = listing(tmp_path)
    assert train_cli(out, "--overwrite") == 2
    assert "is a link" in one_error_line(capsys)
    assert listing(tmp_path) == before


def test_save_model_never_deletes_through_a_link(tmp_path):
    from psft_edu.engine.outputs import RunError
    from psft_edu.engine.runs import save_model_atomic

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    (tmp_path / "model").symlink_to(theirs, target_is_directory=True)
    model, tokenizer = load_model("tiny")
    before = listing(tmp_path)
    with pytest.raises(RunError, match="is a link"):
        save_model_atomic(model, tokenizer, tmp_path / "model")
    assert listing(tmp_path) == before  # the temporary save is gone too


def test_a_leftover_folder_holding_foreign_things_is_left_alone(tmp_path):
    from psft_edu.engine.outputs import RunError, remove_made_folder

    old = tmp_path / "model.old"
    (old / "sub").mkdir(parents=True)
    (old / "config.json").write_text("{}")
    before = listing(tmp_path)
    with pytest.raises(RunError, match="did not write"):
        remove_made_folder(old)
    assert listing(tmp_path) == before
    (old / "sub").rmdir()
    remove_made_folder(old)  # only files it could have written: removed
    assert not old.exists()


@pytest.mark.parametrize("case", ["empty", "same as model"])
def test_out_must_name_a_folder_other_than_the_model(case, tmp_path, capsys):
    model_dir = tmp_path / "model_in"
    model, tokenizer = load_model("tiny")
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = "" if case == "empty" else str(model_dir)
    before = listing(tmp_path)
    assert cli.main(["train", "--out", out, "--model", str(model_dir), *QUICK[2:]]) == 2
    line = one_error_line(capsys)
    assert ("empty" in line) if case == "empty" else ("the model folder this command reads" in line)
    assert listing(tmp_path) == before


def test_a_model_folder_with_its_own_code_is_refused_without_running_it(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    marker = tmp_path / "ran.txt"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "psft-edu-unknown", "auto_map": {"AutoConfig": "code.Cfg", "AutoModelForCausalLM": "code.M"},
    }))
    (folder / "code.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(ValueError, match="custom code"):
        load_model(str(folder))
    assert not marker.exists()


def test_student_edition_refuses_a_folder_it_did_not_write(tmp_path):
    from psft_edu.course.editions import build_student

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "my_work.ipynb").write_text("{}")
    before = listing(tmp_path)
    with pytest.raises(RuntimeError, match="not a student edition"):
        build_student(REPO / "notebooks" / "01_lm_as_mdp.ipynb", mine)
    assert listing(tmp_path) == before
    out = tmp_path / "student"
    build_student(REPO / "notebooks" / "01_lm_as_mdp.ipynb", out)
    build_student(REPO / "notebooks" / "01_lm_as_mdp.ipynb", out)  # its own folder: replaced
    assert (out / "01_lm_as_mdp.ipynb").is_file()
    (out / "my_scratch.ipynb").write_text("{}")  # a learner's own notebook beside the edition
    build_student(REPO / "notebooks" / "01_lm_as_mdp.ipynb", out)
    assert (out / "my_scratch.ipynb").read_text() == "{}"  # only what the edition wrote is replaced


def test_site_source_refuses_a_folder_it_did_not_write(tmp_path):
    from psft_edu.course.book import write_book_source

    stage = tmp_path / "source"
    stage.mkdir()
    (stage / "thesis.tex").write_text("mine")
    before = listing(tmp_path)
    with pytest.raises(RuntimeError, match="not a course-site source"):
        write_book_source(REPO / "notebooks" / "01_lm_as_mdp.ipynb", stage)
    assert listing(tmp_path) == before


# ---------------------------------------------------------------- one rule for every command that writes a folder

# Each command with the quickest arguments that would run; the folder's checks come before any work.
WRITERS = {
    "train": lambda out: ["train", "--out", out, *QUICK],
    "rl": lambda out: ["rl", "--out", out, *RL_QUICK, "--steps", "1"],
    "pretrain": lambda out: ["pretrain", "--preset", "tiny", "--steps", "1", "--out", out],
    "compare": lambda out: ["compare", "--preset", "tiny", "--max-steps", "1", "--no-long", "--out", out],
    "rl-compare": lambda out: ["rl-compare", "--sft", "tiny", "--psft", "tiny", "--preset", "tiny", "--out", out],
    "sweep": lambda out: ["sweep", "--preset", "tiny", "--what", "clip", "--max-steps", "1", "--out", out],
}


def refused(tmp_path: Path, capsys, argv: list[str], expected: str) -> None:
    """``argv`` exits with 2 and one line holding ``expected``, and nothing under ``tmp_path`` changes."""
    before = listing(tmp_path)
    assert cli.main(argv) == 2
    line = one_error_line(capsys)
    assert expected in line, line
    assert listing(tmp_path) == before


@pytest.mark.parametrize("command", list(WRITERS))
def test_a_folder_of_someone_elses_files_is_refused(command, tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    refused(tmp_path, capsys, WRITERS[command](str(theirs)), "holds files this package did not write (notes.txt)")


@pytest.mark.parametrize("command", list(WRITERS))
def test_a_run_of_another_command_is_refused(command, tmp_path, capsys):
    other = "rl" if command == "train" else "train"
    out = mark(tmp_path / "run", other)
    (out / "metrics.jsonl").write_text("{}\n")
    refused(tmp_path, capsys, WRITERS[command](str(out)), f"holds a {other} run, not a {command} one")


@pytest.mark.parametrize("command", list(WRITERS))
def test_an_earlier_run_is_kept_unless_resume_or_overwrite_says_otherwise(command, tmp_path, capsys):
    out = mark(tmp_path / "run", command)
    (out / "summary.json").write_text("{}")
    how = "replace it with --overwrite" if command == "pretrain" else "continue it with --resume"
    refused(tmp_path, capsys, WRITERS[command](str(out)), f"already holds a {command} run; {how}")


@pytest.mark.parametrize("command", list(WRITERS))
def test_an_out_that_is_a_link_or_empty_is_refused(command, tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    (tmp_path / "link").symlink_to(theirs, target_is_directory=True)
    refused(tmp_path, capsys, WRITERS[command](str(tmp_path / "link")), "is a link")
    refused(tmp_path, capsys, WRITERS[command](""), "--out is empty")


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_a_result_file_is_only_replaced_when_this_command_wrote_it(command, tmp_path, capsys):
    theirs = tmp_path / "theirs.json"
    theirs.write_text('{"mine": 1}')
    argv = [command, "--preset", "tiny", "--out", str(theirs)]
    refused(tmp_path, capsys, argv, f"a file this package's {command} command did not write")
    theirs.write_text(json.dumps({"written_by": command}))
    refused(tmp_path, capsys, argv, "replace it with --overwrite")
    (tmp_path / "link.json").symlink_to(theirs)
    refused(tmp_path, capsys, [command, "--preset", "tiny", "--out", str(tmp_path / "link.json")], "is a link")


def test_data_refuses_a_folder_that_holds_more_than_the_data(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    monkeypatch.setattr(data_module, "DATA_DIR", folder)
    monkeypatch.setattr("psft_edu.paths.data_is_read_only", lambda: False)
    refused(tmp_path, capsys, ["data"], "holds notes.txt, which is not the course's data")


def test_a_second_process_writing_into_the_same_folder_is_refused(tmp_path, capsys):
    import subprocess
    import sys

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from psft_edu.engine.runs import claim_folder; "
         f"claim_folder({str(out)!r}, 'train'); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        refused(tmp_path, capsys, WRITERS["train"](str(out)), f"another process (pid {holder.pid}) is writing into it")
    finally:
        holder.communicate("", timeout=30)
    assert train_cli(out, "--overwrite") == 0  # the lock went with the process; the folder is a train run


def test_a_command_refused_after_claiming_its_folder_leaves_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PSFT_EDU_CACHE", str(tmp_path / "cache"))  # no gpt2 base anywhere: compare refuses on a CPU
    out = tmp_path / "new" / "compare"
    refused(tmp_path, capsys, ["compare", "--preset", "gpt2", "--out", str(out), "--max-steps", "1"], "gpt2")
    assert not (tmp_path / "new").exists()


def test_pretrain_writes_into_the_cache_never_the_shipped_checkpoints(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PSFT_EDU_CACHE", str(tmp_path / "cache"))
    shipped = REPO / "data" / "checkpoints"
    before = listing(shipped)
    assert cli.main(["pretrain", "--preset", "tiny", "--steps", "1"]) == 0
    assert listing(shipped) == before
    made = tmp_path / "cache" / "checkpoints" / "tiny"
    assert (made / "config.json").is_file() and (made / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no work folder beside it
    capsys.readouterr()
    assert cli.main(["eval", "--preset", "tiny", "--prompts", "1", "--samples", "1", "--families", "add"]) == 0
    assert f"model: {made} (your cache" in capsys.readouterr().out  # which base was loaded is said
    monkeypatch.setenv("PSFT_EDU_CACHE", str(tmp_path / "empty"))
    assert cli.main(["eval", "--preset", "small", "--prompts", "1", "--samples", "1", "--families", "add"]) == 0
    assert "(shipped with the course)" in capsys.readouterr().out


# ---------------------------------------------------------------- weights, lengths and resumes checked up front


def _saved_tiny(folder: Path, **config_changes) -> Path:
    """The tiny base saved to ``folder`` with ``config.json`` edited afterwards (weights unchanged)."""
    model, tokenizer = load_model("tiny")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **config_changes}))
    return folder


@pytest.mark.parametrize(
    "change, expected",
    [("more_layers", "has no tensor: transformer.h.2."), ("fewer_layers", "config.json does not ask for"),
     ("wider", "does not match config.json: transformer.h.0.attn.c_attn.bias is [192] in the file, [384]")],
)
def test_weights_that_do_not_cover_the_config_are_refused(change, expected, tmp_path, capsys):
    n_layer, n_embd = load_model("tiny")[0].config.n_layer, load_model("tiny")[0].config.n_embd
    edits = {"more_layers": {"n_layer": n_layer + 1}, "fewer_layers": {"n_layer": n_layer - 1},
             "wider": {"n_embd": 2 * n_embd}}[change]
    folder = _saved_tiny(tmp_path / "model", **edits)
    argv = ["eval", "--model", str(folder), "--prompts", "1", "--samples", "1", "--families", "add"]
    refused(tmp_path, capsys, argv, f"{folder / 'model.safetensors'}: ")
    cli.main(argv)
    assert expected in one_error_line(capsys)


def test_a_record_with_no_room_for_its_completion_is_named_before_training(tmp_path, capsys):
    records = RECORDS[:8]
    data = tmp_path / "data.jsonl"
    long = {"prompt": "1+2=" * 40, "completion": " 3"}
    data.write_bytes(jsonl_bytes([*records[:5], long, *records[5:]]))
    out = tmp_path / "run"
    refused(tmp_path, capsys, ["train", "--data", str(data), "--out", str(out), *QUICK, "--max-length", "64"],
            f"{data}:6: the prompt is 160 tokens, so --max-length 64 leaves no completion token")


def test_prompts_that_would_run_past_the_models_positions_are_refused(tmp_path, capsys):
    positions = load_model("tiny")[0].config.n_positions
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(b'{"prompt": "1+2=", "completion": " 3"}\n\n{"prompt": "12+34+56=", "completion": " 1"}\n')
    argv = ["rl", "--out", str(tmp_path / "run"), "--init", "tiny", "--split", str(prompts),
            "--max-new-tokens", str(positions - 5), "--steps", "1"]
    refused(tmp_path, capsys, argv, f"{prompts}:3: 9 prompt tokens + {positions - 5} new tokens run past the model's")


def test_rl_resume_refuses_other_prompts(tmp_path, capsys):
    out = tmp_path / "run"
    assert rl_cli(out, "--steps", "1") == 0
    capsys.readouterr()
    before = listing(tmp_path)
    assert cli.main(["rl", "--out", str(out), *RL_QUICK[:2], "--split", "eval/sort", *RL_QUICK[4:], "--steps", "2",
                     "--resume"]) == 2
    line = one_error_line(capsys)
    assert "--resume with other settings" in line and "prompts: 'eval/add" in line and "'eval/sort" in line
    assert listing(tmp_path) == before


def test_a_checkpoint_of_another_model_names_the_file_and_the_first_mismatch(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli(out, "--save-every", "1") == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["model"]["transformer.wte.weight"] = state["model"]["transformer.wte.weight"][:, :8].clone()
    torch.save(state, out / "checkpoint.pt")
    capsys.readouterr()
    assert train_cli(out, "--resume", "--max-steps", "3") == 2
    line = one_error_line(capsys)
    assert f"{out / 'checkpoint.pt'}: the model weights saved in it cannot be loaded into this run" in line
    assert "(size mismatch for transformer.wte.weight: copying a param with shape torch.Size([44, 8])" in line


def test_the_recorded_command_can_be_pasted_back(tmp_path):
    import shlex
    import subprocess
    import sys

    out = tmp_path / "run with space"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    first = [sys.executable, "-m", "psft_edu", "train", "--out", str(out), *QUICK]
    subprocess.run(first, check=True, capture_output=True, cwd=REPO, env=env, timeout=300)
    words = shlex.split(json.loads((out / "config.json").read_text())["command"])
    assert words[:3] == ["python", "-m", "psft_edu"] and words[3:] == first[3:]
    again = subprocess.run([sys.executable, *words[1:], "--overwrite"], capture_output=True, text=True, cwd=REPO,
                           env=env, timeout=300)
    assert again.returncode == 0, again.stderr


def test_a_foreign_entry_in_model_or_model_old_is_refused_before_training(tmp_path, capsys):
    out = mark(tmp_path / "run", "train")
    (out / "metrics.jsonl").write_text("")
    (out / "model.old" / "theirs").mkdir(parents=True)
    refused(tmp_path, capsys, WRITERS["train"](str(out)) + ["--overwrite"], "model.old holds theirs")


def test_an_interrupted_compare_never_leaves_the_old_report_beside_new_runs(tmp_path, capsys, monkeypatch):
    from psft_edu.experiments import compare as compare_module

    out = mark(tmp_path / "compare", "compare")
    for name in ("summary.json", "report.md"):
        (out / name).write_text("old")
    (out / "notes.txt").write_text("the learner's")

    def interrupted(*args, **kwargs):
        raise Interrupted("interrupted after 0 of 8 runs; the finished runs are kept")

    monkeypatch.setattr(compare_module, "compare", interrupted)
    assert cli.main(WRITERS["compare"](str(out)) + ["--resume"]) == 130
    assert sorted(p.name for p in out.iterdir()) == sorted([".psft-edu-run", ".psft-edu-lock", "notes.txt"])
