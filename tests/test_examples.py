"""examples/train_psft_trl.py: the TRL recipe runs on the CPU with the tiny model, K = 1 and K = 4, with and
without LoRA (PEFT), on prompt/completion and on chat-format data, and refuses bad input in one line.

The runs call the script's ``main`` in this process (a few seconds each); one test runs it as a program.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from psft_edu.data import load_split  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "train_psft_trl.py"
FAST = ["--model", "tiny", "--lr", "3e-3", "--per-device-batch", "4", "--precision", "fp32", "--cpu",
        "--logging-steps", "1"]


def load_script():
    spec = importlib.util.spec_from_file_location("train_psft_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass module must be importable by name while it runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture(scope="module")
def records():
    return load_split("sft_train")[:40]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def as_chat(record: dict) -> dict:
    return {"messages": [{"role": "user", "content": record["prompt"]},
                         {"role": "assistant", "content": record["completion"]}]}


def train(script, tmp_path: Path, data: Path, *flags: str) -> tuple[Path, list[dict]]:
    out = tmp_path / "out"
    assert script.main([*FAST, "--data", str(data), "--out", str(out), *flags]) == 0
    logged = [json.loads(line) for line in (out / "log_history.jsonl").read_text().splitlines()]
    return out, [h for h in logged if "nll" in h and "loss" in h]


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("peft", [False, True], ids=["full", "lora"])
def test_script_trains_at_k1_and_k4_with_and_without_lora(script, records, tmp_path, one_thread, k, peft, capsys):
    if peft:
        pytest.importorskip("peft")
    data = write_jsonl(tmp_path / "demos.jsonl", records)
    out, steps = train(script, tmp_path, data, "--steps", "6", "--refresh-every", str(k), *(["--peft"] if peft else []))
    printed = capsys.readouterr().out
    assert f"wrote {out / 'model'}" in printed
    assert f"= 4 sequences (mini-batch); old policy frozen every K = {k} steps = {4 * k} sequences" in printed
    run = json.loads((out / "run.json").read_text())
    assert run["batch"] == {"processes": 1, "mini_batch": 4, "refresh_every": k, "global_batch": 4 * k}
    assert {"trl", "transformers", "torch", "peft"} <= set(run["versions"])

    assert [h["step"] for h in steps] == [1, 2, 3, 4, 5, 6]
    for h in steps:
        assert h["ratio_median"] <= h["ratio_p99"] <= h["ratio_max"] and 0 <= h["unclippable"] <= 1
        assert "k3_old_new" not in h and "approx_kl" not in h
        if (h["step"] - 1) % k == 0:  # a refresh: old policy == current policy
            assert h["ratio_max"] == 1.0 and h["clip_fraction"] == 0.0
    if k == 4:
        assert max(h["ratio_max"] for h in steps) > 1.0  # between refreshes the ratios moved
    assert steps[-1]["nll"] < steps[0]["nll"]

    saved = {p.name for p in (out / "model").iterdir()}
    assert "tokenizer.json" in saved
    if peft:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= saved and "model.safetensors" not in saved
        from safetensors.torch import load_file

        lora_b = [t for name, t in load_file(out / "model" / "adapter_model.safetensors").items() if "lora_B" in name]
        assert lora_b and any(t.abs().max() > 0 for t in lora_b)  # B starts at zero: the adapter was trained
    else:
        assert "model.safetensors" in saved
    assert not (out / ".model.partial").exists()


def test_chat_format_trains_like_prompt_completion(script, records, tmp_path, one_thread):
    """Messages rendered by the course's chat template are the same tokens and loss mask: the same run."""
    runs = []
    for name, rows in (("plain", records), ("chat", [as_chat(r) for r in records])):
        folder = tmp_path / name
        folder.mkdir()
        runs.append(train(script, folder, write_jsonl(folder / "data.jsonl", rows), "--steps", "5",
                          "--refresh-every", "4")[1])
    plain, chat = runs
    assert max(h["clip_fraction"] for h in chat) > 0
    for a, b in zip(plain, chat):
        for key in ("nll", "loss", "clip_fraction", "ratio_max"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-7), (a["step"], key)


@pytest.mark.parametrize(
    "lines, problem",
    [
        (['{"prompt": "a", "completion": " b"}', "{broken"], ":2: broken JSON"),
        (['{"prompt": "a", "completion": " b"}', '{"prompt": "a"}'], ":2: needs a string 'completion'"),
        (['{"prompt": "a", "completion": ""}'], ":1: empty completion"),
        (['{"prompt": "a", "completion": " b"}', json.dumps(as_chat({"prompt": "a", "completion": " b"}))],
         ":2: messages example in a prompt/completion file"),
        (['{"messages": [{"role": "user", "content": "a"}]}'], ":1: no assistant message"),
        (['{"messages": [{"role": "robot", "content": "a"}]}'], ":1: every message needs a role"),
        (["", "  "], ": no examples"),
    ],
)
def test_bad_data_is_refused_in_one_line_and_nothing_is_written(script, tmp_path, capsys, lines, problem):
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert script.main(["--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {data}") and problem in err and "\n" not in err
    assert not out.exists()


def test_refuses_an_output_folder_that_holds_something(script, records, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert script.main(["--data", str(write_jsonl(tmp_path / "d.jsonl", records)), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_runs_as_a_program(tmp_path):
    """The command line itself: --help lists the flags; bad data exits 2 with one line."""
    shown = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    for flag in ("--model", "--data", "--refresh-every", "--clip", "--lr", "--steps", "--per-device-batch",
                 "--grad-accum", "--out", "--peft"):
        assert flag in shown.stdout
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": 1, "completion": " 2"}])
    failed = subprocess.run([sys.executable, str(SCRIPT), "--data", str(bad), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2 and failed.stderr.strip() == f"error: {bad}:1: needs a string 'prompt' (or a " \
        "'messages' list)"
