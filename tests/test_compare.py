"""The comparison's measurements and its summary: statistics, exact KL, one protocol, both views."""

from __future__ import annotations

import json
import math
import random
import statistics
from dataclasses import replace

import pytest
import torch

from psft_edu import stats, tasks
from psft_edu.engine.evaluate import evaluate_family, own_sample_kl, sample
from psft_edu.experiments import compare, report, results
from psft_edu.models import load_model
from psft_edu.objectives import exact_kl
from psft_edu.presets import EvalProtocol

# ---------------------------------------------------------------- statistics


def test_describe_matches_the_t_interval_by_hand() -> None:
    values = [0.2, 0.4, 0.35, 0.3, 0.5]
    d = stats.describe(values)
    half = 2.776 * statistics.stdev(values) / math.sqrt(5)  # t_{0.975, 4} from any table
    assert d["mean"] == pytest.approx(0.35)
    assert d["ci95"] == pytest.approx([0.35 - half, 0.35 + half])
    assert d["per_seed"] == values


def test_describe_one_value_and_empty() -> None:
    one = stats.describe([0.7])
    assert one["mean"] == 0.7 and one["ci95"] is None and one["std"] is None  # one seed: no interval
    assert not stats.excludes_zero(one) and not stats.excludes_zero(stats.paired_difference([0.5], [0.5]))
    assert not stats.has_interval(one) and stats.has_interval(stats.describe([0.1, 0.2]))
    assert report.fmt(one, 100, 1) == "70.0"
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
    out = tmp_path_factory.mktemp("compare")
    protocol = EvalProtocol(prompts=4, samples=2, ood_prompts=2, final_samples=2)
    main = replace(compare.SETTINGS["tiny"], max_steps=16, eval_every=8, eval=protocol, seeds=(0, 1))
    long = replace(compare.LONG_SETTINGS["tiny"], max_steps=16, eval_every=8, eval=protocol, seeds=(0, 1))
    summary = compare.compare("tiny", out=out, settings=main, long_settings=long, progress=False, workers=1)
    return summary, out


def test_summary_shape_and_intervals(quick_summary) -> None:
    summary, out = quick_summary
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for view in (summary, summary["long"]):
        assert set(view["base"]["final"]) == set(results.FINAL_KEYS)
        for name, run in view["runs"].items():
            assert {"objective", "lr", "final", "curves", "mechanism", "status"} <= set(run)
            for metric, stat in run["final"].items():
                assert len(stat["per_seed"]) == 2, (name, metric)
                low, high = stat["ci95"]
                assert low <= stat["mean"] <= high
        for label, diff in view["paired"].items():
            sft, psft = view["runs"][diff["sft"]]["final"], view["runs"][diff["psft"]]["final"]
            expected = [x - y for x, y in zip(sft["ood_exact"]["per_seed"], psft["ood_exact"]["per_seed"])]
            assert diff["ood_exact"]["per_seed"] == pytest.approx(expected), label
    assert list(summary["long"]["runs"]) == ["sft_lr1e-03", "psft_lr1e-03", "psft_lr1e-04"]
    assert summary["long"]["settings"]["train_records"] == 128
    for name in ("entropy_vs_step.png", "accuracy_vs_step.png", "pareto.png", "kl_vs_step.png",
                 "mechanism_vs_step.png", "report.md"):
        assert (out / name).stat().st_size > 0
    # Every finished run keeps its result, stamped with its settings, for --resume.
    assert len(list(out.glob("main/*_seed*/result.json"))) == 4 * 2 + 2


def test_one_protocol_for_every_point_of_a_curve(quick_summary) -> None:
    summary, _ = quick_summary
    run = summary["runs"]["sft_lr1e-03"]
    # Step 0 of every run is the base model under the same protocol: identical numbers.
    for key in ("in_domain_exact", "ood_exact", "sample_entropy", "style_teacher"):
        assert run["curves"][f"eval_{key}"]["mean"][0] == pytest.approx(summary["base"]["final"][key]["mean"])
    assert run["curves"]["eval_kl_ood"]["mean"][0] == 0.0
    assert run["curves"]["eval_kl_ood"]["step"] == [0, 8, 16]
    # The prolonged view evaluates at every epoch boundary (one epoch = one global batch = 8 steps).
    long_run = summary["long"]["runs"]["sft_lr1e-03"]
    assert long_run["curves"]["eval_in_domain_exact"]["step"] == [0, 8, 16]
    # The base model's KL to itself is exactly zero; fine-tuning at 1e-3 moves it.
    assert summary["base"]["final"]["kl_ood"]["mean"] == 0.0
    assert run["final"]["kl_in_domain"]["mean"] > 0.0
    # The last point of a curve is the final measurement.
    assert run["curves"]["eval_ood_exact"]["mean"][-1] == pytest.approx(run["final"]["ood_exact"]["mean"])


def test_each_seed_is_evaluated_on_its_own_prompts(quick_summary) -> None:
    from psft_edu.data import eval_prompts

    a, b = eval_prompts("add", 16, seed=0), eval_prompts("add", 16, seed=1)
    assert a != b and len(set(a)) == 16 and a == eval_prompts("add", 16, seed=0)
    assert set(a) <= set(eval_prompts("add"))
    assert eval_prompts("add", 5) == eval_prompts("add")[:5]  # without a seed: the first ones


def test_mechanism_is_summarised_per_refresh_position(quick_summary) -> None:
    summary, _ = quick_summary
    K = summary["settings"]["refresh_every"]
    for name, run in summary["runs"].items():
        m = run["mechanism"]
        assert len(m["past_bound_by_position"]) == K, name
        assert m["past_bound_by_position"][0]["mean"] == 0.0  # right after a refresh every ratio is 1
        assert 0.0 <= m["unclippable_first"]["mean"] <= 1.0 and m["step_size"]["mean"] > 0.0
    psft = summary["runs"]["psft_lr1e-03"]
    # For PSFT the tokens past the bound are exactly the clipped ones.
    assert psft["curves"]["past_bound"]["mean"] == pytest.approx(psft["curves"]["clip_fraction"]["mean"])
    assert summary["runs"]["sft_lr1e-03"]["mechanism"]["clip_fraction"]["mean"] == 0.0


def test_findings_with_one_seed_never_claim_an_interval(tmp_path) -> None:
    protocol = EvalProtocol(prompts=4, samples=1, ood_prompts=2, final_samples=2)
    settings = replace(compare.SETTINGS["tiny"], max_steps=8, eval_every=8, eval=protocol, seeds=(0,))
    summary = compare.compare("tiny", out=tmp_path, settings=settings, long=False, progress=False, workers=1)
    text = "\n".join(report.findings(summary))
    assert "excludes 0" not in text and "includes 0" not in text and "one seed: no interval" in text
    assert "[" not in "\n".join(report.view_table(summary)[2:])  # values alone, no intervals
    assert summary["runs"]["sft_lr1e-03"]["final"]["ood_exact"]["ci95"] is None
    assert "One seed" in (tmp_path / "report.md").read_text()


def test_compare_cli_refuses_bad_workers_and_steps(tmp_path, capsys) -> None:
    from psft_edu.cli.main import main

    for flags in (["--workers", "0"], ["--max-steps", "0"]):
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
            assert "loss" not in run["curves"] and "entropy" in run["curves"] and "ratio_max" in run["curves"]
            got, want = run["final"]["ood_exact"]["mean"], full["runs"][name]["final"]["ood_exact"]["mean"]
            assert got == pytest.approx(want, rel=1e-4)


# ---------------------------------------------------------------- computed statements


def test_sawtooth_finds_steps_at_epoch_boundaries_and_not_in_noise() -> None:
    rng = random.Random(0)
    epoch = 8

    def run(drop: float) -> list[dict]:
        level, out = 1.0, []
        for step in range(1, 5 * epoch + 1):
            if step > 1 and (step - 1) % epoch == 0:
                level -= drop
            out.append({"step": step, "entropy": level + rng.gauss(0, 0.01)})
        return out

    saw = results.sawtooth([run(0.2) for _ in range(3)], epoch)
    assert saw["boundaries"] == 4
    assert saw["excess"]["ci95"][1] < 0 and -saw["excess"]["mean"] > saw["inside_spread"]["mean"]
    flat = results.sawtooth([run(0.0) for _ in range(3)], epoch)
    low, high = flat["excess"]["ci95"]
    assert low < 0 < high
    line = report._sawtooth_line({"objective": "sft", "lr": 1e-3, "sawtooth": saw})
    assert "a saw-tooth" in line
    assert "no saw-tooth" in report._sawtooth_line({"objective": "sft", "lr": 1e-3, "sawtooth": flat})
    assert results.sawtooth([run(0.2)[:epoch]], epoch) is None  # one epoch: nothing to compare


def _path(in_domain: list[float], ood: list[float]) -> dict:
    return {"curves": {"eval_in_domain_exact": {"per_seed": [in_domain]}, "eval_ood_exact": {"per_seed": [ood]}}}


def test_frontier_gap_tells_a_slower_walk_from_a_better_frontier() -> None:
    ind = [0.3, 0.4, 0.5, 0.6, 0.7]
    ood = [0.95, 0.8, 0.6, 0.4, 0.2]
    sft = _path(ind, ood)
    slower = _path([0.3, 0.35, 0.4, 0.45, 0.5], [0.95, 0.875, 0.8, 0.7, 0.6])  # the same line, walked slower
    assert results.frontier_gap(sft, slower)["gap"]["mean"] == pytest.approx(0.0, abs=1e-12)
    better = _path([0.3, 0.35, 0.4, 0.45, 0.5], [0.95, 0.975, 0.9, 0.8, 0.7])  # 0.1 above SFT's line
    assert results.frontier_gap(sft, better)["gap"]["mean"] == pytest.approx(0.1)
    assert results.frontier_gap(sft, _path([0.3, 0.9], [0.95, 0.1])) is None  # nothing inside SFT's range


def test_style_status_calls_a_mid_switch_run_switching() -> None:
    stat = lambda x: {"mean": x}  # noqa: E731
    base = {"sample_entropy": stat(0.4)}
    assert results.style_status({"style_teacher": stat(0.5)}, base) == "still switching"
    assert results.style_status({"style_teacher": stat(0.95)}, base) == "teacher style"
    assert results.style_status({"style_teacher": stat(0.0)}, base) == "base style"


def test_slim_thins_step_curves_but_not_evaluations() -> None:
    """``max_points`` keeps about that many evenly spaced per-step points, the last step among them, and leaves
    evaluation curves whole."""
    steps = list(range(1, 641))
    run = {"curves": {"entropy": {"step": steps, "mean": [float(s) for s in steps], "std": [0.0] * 640},
                      "eval_ood_exact": {"step": steps[::4], "mean": [0.5] * 160}}}
    small = compare.slim({"runs": {"a": run}}, keep=("entropy",), max_points=60)
    curve = small["runs"]["a"]["curves"]["entropy"]
    assert 50 <= len(curve["step"]) <= 62 and curve["step"][-1] == 640 and curve["step"][0] == 1
    assert curve["mean"] == [float(s) for s in curve["step"]] and len(curve["std"]) == len(curve["step"])
    assert len(small["runs"]["a"]["curves"]["eval_ood_exact"]["step"]) == 160
