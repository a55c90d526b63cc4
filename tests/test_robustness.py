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

from psft_edu import __main__ as cli
from psft_edu import data as data_module
from psft_edu import train as train_module
from psft_edu.data import DataError, build_tokenizer, jsonl_bytes, load_split, read_jsonl
from psft_edu.models import load_model, load_tokenizer, new_model
from psft_edu.runs import Interrupted, TrainingError
from psft_edu.train import TrainConfig, Trainer

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
    out.mkdir()
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
    import psft_edu.bench
    import psft_edu.compare
    import psft_edu.sweep

    def ran(*args, **kwargs):
        raise AssertionError("the command ran (with its defaults) instead of refusing the flag")

    for module, name in ((psft_edu.compare, "compare"), (psft_edu.sweep, "sweep"), (psft_edu.bench, "run_bench")):
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
    from psft_edu.rl import RLConfig, grpo

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
    out.mkdir()
    (out / "model").symlink_to(theirs, target_is_directory=True)
    before = listing(tmp_path)
    assert train_cli(out, "--overwrite") == 2
    assert "is a link" in one_error_line(capsys)
    assert listing(tmp_path) == before


def test_save_model_never_deletes_through_a_link(tmp_path):
    from psft_edu.runs import RunError, save_model_atomic

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
    from psft_edu.runs import RunError, remove_made_folder

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
    assert ("empty" in line) if case == "empty" else ("the model being fine-tuned" in line)
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
    from psft_edu.course import build_student

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


def test_site_source_refuses_a_folder_it_did_not_write(tmp_path):
    from psft_edu.book import write_book_source

    stage = tmp_path / "source"
    stage.mkdir()
    (stage / "thesis.tex").write_text("mine")
    before = listing(tmp_path)
    with pytest.raises(RuntimeError, match="not a course-site source"):
        write_book_source(REPO / "notebooks" / "01_lm_as_mdp.ipynb", stage)
    assert listing(tmp_path) == before
