"""The softmax bandit of notebook 05: SFT and PSFT side by side, with exact (expected) gradients."""

from __future__ import annotations

import time

import numpy as np
import pytest

from psft_edu.course import bandit

ONE, TWO = bandit.TEACHERS["one answer"], bandit.TEACHERS["two answers (70/30)"]


def test_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(0)
    z, old = rng.normal(size=5), bandit.softmax(rng.normal(size=5))
    q = np.array(TWO)

    def sft_objective(x):
        return float(q @ np.log(bandit.softmax(x)))

    def psft_objective(x):
        return float(q @ np.minimum(bandit.softmax(x) / old, 1.28))

    for objective, grad in (
        (sft_objective, bandit.sft_gradient(z, q)),
        (psft_objective, bandit.psft_gradient(z, old, q, 0.28)),
    ):
        h = 1e-6
        numeric = np.array([(objective(z + h * e) - objective(z - h * e)) / (2 * h) for e in np.eye(5)])
        np.testing.assert_allclose(grad, numeric, atol=1e-6)


def test_sft_collapses_on_one_answer_and_converges_to_the_mix_on_two() -> None:
    one = bandit.simulate("sft", ONE, lr=0.3, epochs=100)
    assert one.entropy[0] > 1.0 and one.entropy[-1] < 0.05
    assert np.all(np.diff(one.entropy[10:]) < 0)  # after the first rise, it only falls
    assert one.probs[-1, 0] > 0.99
    two = bandit.simulate("sft", TWO, lr=0.3, epochs=100)
    np.testing.assert_allclose(two.probs[-1, :2], [0.7, 0.3], atol=0.01)
    teacher_entropy = -(0.7 * np.log(0.7) + 0.3 * np.log(0.3))
    assert abs(two.entropy[-1] - teacher_entropy) < 0.05  # the other three actions keep a little mass


@pytest.mark.parametrize("teacher", [ONE, TWO])
def test_psft_with_k1_is_sft_exactly(teacher) -> None:
    sft = bandit.simulate("sft", teacher, lr=1.0, epochs=20)
    psft = bandit.simulate("psft", teacher, lr=1.0, k=1, epochs=20)
    np.testing.assert_array_equal(psft.probs, sft.probs)
    assert np.all(psft.ratio_max == 1.0) and np.all(psft.clip_fraction == 0.0)


def test_psft_has_sfts_fixed_point() -> None:
    """With K = 8 the path differs, the end point does not: one-hot for one answer, the mix for two."""
    one = bandit.simulate("psft", ONE, lr=0.3, k=8, epochs=100)
    sft = bandit.simulate("sft", ONE, lr=0.3, epochs=100)
    assert not np.allclose(one.probs[8:16], sft.probs[8:16])  # the paths differ after the first refresh
    assert one.entropy[-1] < 0.06 and one.probs[-1, 0] > 0.99
    two = bandit.simulate("psft", TWO, lr=0.3, k=8, epochs=200)
    np.testing.assert_allclose(two.probs[-1, :2], [0.7, 0.3], atol=0.01)


def test_clip_freezes_a_lone_answer_until_the_next_refresh() -> None:
    """One-answer teacher: once the ratio passes 1 + ε the gradient is exactly zero, so the policy stays put
    until the refresh; within a refresh it moves far less than SFT does over the same steps."""
    eps, k = 0.28, 8
    psft = bandit.simulate("psft", ONE, lr=0.3, epsilon=eps, k=k, epochs=10)
    sft = bandit.simulate("sft", ONE, lr=0.3, epochs=10)
    for start in range(0, len(psft.ratio_max), k):
        cycle = psft.ratio_max[start : start + k]
        assert cycle[0] == 1.0
        crossed = np.flatnonzero(cycle > 1 + eps)
        if crossed.size:
            assert np.all(cycle[crossed[0] :] == cycle[crossed[0]])  # no further movement after the crossing
            # the crossing step started below 1 + ε; one step moves log π(answer) by at most 2 lr (1 + ε)
            assert cycle.max() <= (1 + eps) * np.exp(2 * 0.3 * (1 + eps))
    first = bandit.simulate("psft", ONE, lr=0.3, epsilon=eps, k=k, epochs=1)
    assert first.ratio_max.max() < sft.probs[k - 1, 0] / sft.probs[0, 0] / 2  # SFT's first 8 steps go much further


def test_simulation_is_fast_enough_for_a_slider() -> None:
    bandit.simulate("psft", TWO, epochs=60)
    start = time.perf_counter()
    for objective in ("sft", "psft"):
        bandit.simulate(objective, TWO, lr=0.3, k=8, epochs=60)
    assert time.perf_counter() - start < 0.25  # both runs of one redraw (measured: about 30 ms on a loaded CPU)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="objective"):
        bandit.simulate("rl")
    with pytest.raises(ValueError):
        bandit.simulate("psft", k=0)


def test_widget_and_figure_build() -> None:
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")
    box = bandit.collapse_widget(epochs=5)
    assert len(box.children) == 4
    image, text = box.children[2], box.children[3]
    before_png, before_text = image.value, text.value
    box.children[0].children[2].value = 1  # the K slider: PSFT becomes SFT
    assert image.value != before_png and text.value != before_text
    sft_line, psft_line = text.value.replace("<pre>", "").replace("</pre>", "").splitlines()
    assert sft_line.split(":", 1)[1].split(", largest")[0] == psft_line.split(":", 1)[1].split(", largest")[0]
    fig = bandit.figure(epochs=5)
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
    assert "SFT" in bandit.readout(0.3, 0.28, 8, 5, "one answer")
