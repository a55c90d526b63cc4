"""The comparison's measurements and its summary: statistics, exact KL, one protocol, both views."""

from __future__ import annotations

import json
import math
import random
import statistics
from dataclasses import replace

import pytest
import torch

from psft_edu import compare, stats, tasks
from psft_edu.evaluate import evaluate_family, own_sample_kl, sample
from psft_edu.models import load_model
from psft_edu.objectives import exact_kl

# ---------------------------------------------------------------- statistics


def test_describe_matches_the_t_interval_by_hand() -> None:
    values = [0.2, 0.4, 0.35, 0.3, 0.5]
    d = stats.describe(values)
    half = 2.776 * statistics.stdev(values) / math.sqrt(5)  # t_{0.975, 4} from any table
    assert d["mean"] == pytest.approx(0.35)
    assert d["ci95"] == pytest.approx([0.35 - half, 0.35 + half])
    assert d["per_seed"] == values


def test_describe_one_value_and_empty() -> None:
    assert stats.describe([0.7])["ci95"] == [0.7, 0.7]
    with pytest.raises(ValueError):
        stats.describe([])
    assert stats.t_quantile(100) == 1.96
    with pytest.raises(ValueError):
        stats.t_quantile(0)


def test_paired_difference_removes_what_seeds_share() -> None:
    # Two runs that differ by a constant 0.1 on every seed, with large seed-to-seed swings.
    a = [0.9, 0.2, 0.6, 0.4, 0.75]
    b = [x - 0.1 for x in a]
    d = stats.paired_difference(a, b)
    assert d["mean"] == pytest.approx(0.1)
    assert d["ci95"] == pytest.approx([0.1, 0.1])
    assert stats.excludes_zero(d) and d["same_sign"] == 5
    # Unpaired intervals of a and b overlap widely; the paired one is a point.
    assert stats.describe(a)["ci95"][0] < stats.describe(b)["ci95"][1]
    with pytest.raises(ValueError):
        stats.paired_difference([1.0], [1.0, 2.0])


# ---------------------------------------------------------------- exact KL


def test_exact_kl_matches_the_definition_and_torch() -> None:
    gen = torch.Generator().manual_seed(0)
    p, q = torch.randn(3, 4, 44, generator=gen) * 2, torch.randn(3, 4, 44, generator=gen) * 2
    by_hand = (p.softmax(-1) * (p.log_softmax(-1) - q.log_softmax(-1))).sum(-1)
    torch.testing.assert_close(exact_kl(p, q), by_hand)
    via_torch = torch.nn.functional.kl_div(q.log_softmax(-1), p.log_softmax(-1), log_target=True, reduction="none").sum(
        -1
    )
    torch.testing.assert_close(exact_kl(p, q), via_torch)
    assert torch.all(exact_kl(p, p) == 0)
    assert torch.all(exact_kl(p, q) > 0)


def test_own_sample_kl_is_zero_to_itself_and_positive_to_another_model(one_thread) -> None:
    model, tok = load_model("tiny")
    other, _ = load_model("tiny")
    with torch.no_grad():
        for param in other.parameters():
            param.add_(0.05 * torch.randn_like(param))
    prompts = [tasks.generate("add", random.Random(i)).prompt for i in range(4)]
    drawn = sample(model, tok, prompts, 3, seed=0)
    assert own_sample_kl(model, model, tok, prompts, drawn) == pytest.approx(0.0, abs=1e-6)
    assert own_sample_kl(model, other, tok, prompts, drawn) > 1e-4
    # evaluate_family reports the same number under the same seed.
    result = evaluate_family(model, tok, prompts, num_samples=3, seed=0, reference=other)
    assert result["kl_to_base"] == pytest.approx(own_sample_kl(model, other, tok, prompts, drawn))


# ---------------------------------------------------------------- the task world's noisy in-domain family


def test_pretrain_completion_is_noisy_only_in_domain() -> None:
    rng = random.Random(0)
    correct, total = 0, 4000
    for _ in range(total):
        ex = tasks.generate("make_sum", rng)
        answer = tasks.pretrain_completion(ex, rng)
        assert answer.startswith(" ") and "+" in answer and "=" not in answer
        numbers = tasks.sum_numbers(ex.prompt)
        a, b = (int(x) for x in answer.split("+"))
        assert a in numbers and b in numbers
        correct += tasks.verify(ex.prompt, answer)
    assert abs(correct / total - tasks.PRETRAIN_SUM_CORRECT) < 0.03
    for family in tasks.OUT_OF_DOMAIN:
        for _ in range(50):
            ex = tasks.generate(family, rng)
            assert tasks.verify(ex.prompt, tasks.pretrain_completion(ex, rng))


def test_teacher_is_canonical_and_always_correct() -> None:
    rng = random.Random(1)
    for _ in range(200):
        ex = tasks.generate("make_sum", rng)
        answer = tasks.teacher_completion(ex)
        assert tasks.verify(ex.prompt, answer)
        assert answer == tasks.teacher_completion(ex)  # one answer per prompt
        assert answer.count("=") == 1


# ---------------------------------------------------------------- the summary, end to end at tiny


@pytest.fixture(scope="module")
def quick_summary(tmp_path_factory) -> tuple[dict, object]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("compare")
    main = replace(compare.SETTINGS["tiny"], max_steps=8, eval_every=8, eval_prompts=2, eval_samples=2, seeds=(0, 1))
    long = replace(
        compare.LONG_SETTINGS["tiny"], max_steps=16, eval_every=8, eval_prompts=2, eval_samples=2, seeds=(0, 1)
    )
    try:
        summary = compare.compare("tiny", out=out, settings=main, long_settings=long, progress=False)
    finally:
        torch.set_num_threads(threads)  # later modules run at conftest's thread count
    return summary, out


def test_summary_shape_and_intervals(quick_summary) -> None:
    summary, out = quick_summary
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for view in (summary, summary["long"]):
        assert set(view["base"]["final"]) == set(compare.FINAL_KEYS)
        for name, run in view["runs"].items():
            assert {"objective", "lr", "final", "curves"} <= set(run)
            for metric, stat in run["final"].items():
                assert len(stat["per_seed"]) == 2, (name, metric)
                low, high = stat["ci95"]
                assert low <= stat["mean"] <= high
        for label, diff in view["paired"].items():
            sft, psft = view["runs"][diff["sft"]]["final"], view["runs"][diff["psft"]]["final"]
            expected = [x - y for x, y in zip(sft["ood_accuracy"]["per_seed"], psft["ood_accuracy"]["per_seed"])]
            assert diff["ood_accuracy"]["per_seed"] == pytest.approx(expected), label
    assert list(summary["long"]["runs"]) == ["sft_lr1e-03", "psft_lr1e-03", "psft_lr1e-04"]
    assert summary["long"]["settings"]["train_records"] == 128
    for name in ("entropy_vs_step.png", "pareto.png", "kl_vs_step.png", "report.md"):
        assert (out / name).stat().st_size > 0


def test_one_protocol_for_every_point_of_a_curve(quick_summary) -> None:
    summary, _ = quick_summary
    run = summary["runs"]["sft_lr1e-03"]
    # Step 0 of every run is the base model under the same protocol: identical numbers.
    for key in ("in_domain_accuracy", "ood_accuracy", "sample_entropy"):
        assert run["curves"][f"eval_{key}"]["mean"][0] == pytest.approx(summary["base"]["final"][key]["mean"])
    assert run["curves"]["eval_kl_ood"]["mean"][0] == 0.0
    assert run["curves"]["eval_kl_ood"]["step"] == [0, 8]
    # The base model's KL to itself is exactly zero; fine-tuning at 1e-3 moves it.
    assert summary["base"]["final"]["kl_ood"]["mean"] == 0.0
    assert run["final"]["kl_in_domain"]["mean"] > 0.0


def test_compare_cli_refuses_bad_threads_and_steps(tmp_path, capsys) -> None:
    from psft_edu.__main__ import main

    for flags in (["--threads", "0"], ["--max-steps", "0"]):
        assert main(["compare", "--preset", "tiny", "--out", str(tmp_path / "x"), *flags]) == 2
        err = capsys.readouterr().err
        assert flags[0] in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_slim_cache_keeps_both_views_and_rounds(quick_summary, tmp_path) -> None:
    summary, _ = quick_summary
    path = compare.write_cache(summary, tmp_path / "cache.json")
    cached = json.loads(path.read_text())
    assert set(cached) == set(json.loads(json.dumps(summary)))
    for view, full in ((cached, summary), (cached["long"], summary["long"])):
        for name, run in view["runs"].items():
            assert set(run["curves"]) <= set(full["runs"][name]["curves"])
            assert "loss" not in run["curves"] and "entropy" in run["curves"]
            got, want = run["final"]["ood_accuracy"]["mean"], full["runs"][name]["final"]["ood_accuracy"]["mean"]
            assert got == pytest.approx(want, rel=1e-4)
