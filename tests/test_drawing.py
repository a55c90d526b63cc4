"""Drawings that notebooks reuse: they draw on the axes they are given, with the labels a reader needs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from psft_edu.drawing import draw_psft_loop  # noqa: E402


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
