"""Drawings that notebooks reuse: they draw on the axes they are given, with the labels a reader needs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from psft_edu.course.drawing import draw_psft_loop  # noqa: E402


@pytest.mark.parametrize("k, trl", [(8, False), (1, True), (3, True)])
def test_psft_loop_draws_the_four_stages(k, trl):
    fig, ax = plt.subplots()
    try:
        assert draw_psft_loop(ax, k=k, mini_batch=32, trl=trl) is ax
        texts = " | ".join(t.get_text() for t in ax.texts)
        assert f"{k} × 32 = {32 * k} sequences" in texts  # the global batch
        assert "freeze π_old" in texts and "no-grad forward" in texts
        assert f"{k} optimiser steps" in texts and "step 1\nr = 1" in texts
        assert "refresh" in texts
        assert ("refresh_every = K" in texts) == trl
        assert len(ax.patches) >= 2 + min(k, 8) + 2  # stripes, boxes and arrows were added
    finally:
        plt.close(fig)


@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_clipped_surrogate_legend_leaves_the_zero_slope_stretch_visible(advantage):
    """The flat stretch (past 1 + ε for Â > 0, below 1 - ε for Â < 0) is what the panel shows: no legend over it."""
    from psft_edu.experiments.plots import plot_clipped_surrogate

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    plot_clipped_surrogate(epsilon=0.2, advantage=advantage, ax=ax)
    fig.canvas.draw()
    box = ax.get_legend().get_window_extent()
    flat = [line for line in ax.get_lines() if line.get_label() == "d/dr of the surrogate"][0]
    r, slope = flat.get_data()
    stretch = (r > 1.2) if advantage > 0 else (r < 0.8)
    assert (slope[stretch] == 0).all()
    points = ax.transData.transform(list(zip(r[stretch], slope[stretch])))
    blue = [line for line in ax.get_lines() if line.get_label().startswith("min(")][0]
    points_blue = ax.transData.transform(list(zip(*[a[stretch] for a in blue.get_data()])))
    for x, y in [*points, *points_blue]:
        assert not box.contains(x, y), f"the legend covers the flat stretch at ({x:.0f}, {y:.0f}) px"
    assert ax.get_ylabel()
    plt.close(fig)
