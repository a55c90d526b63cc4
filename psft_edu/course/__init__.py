"""Everything that exists for the notebooks, on top of the engine and the experiments.

* :mod:`~psft_edu.course.exercises`: the exercise checkers, one module per notebook, on shared machinery;
* :mod:`~psft_edu.course.analysis` (reading results and small computations the notebooks show),
  :mod:`~psft_edu.course.drawing` (the notebooks' figures), :mod:`~psft_edu.course.widgets` (sliders and
  viewers, each with a static fallback), :mod:`~psft_edu.course.bandit` (the two-armed bandit of 03-05),
  :mod:`~psft_edu.course.live` (re-running a committed result in a notebook), :mod:`~psft_edu.course.tables`;
* :mod:`~psft_edu.course.editions` (launch cells, the student edition, copies of the course),
  :mod:`~psft_edu.course.book` (the offline site), :mod:`~psft_edu.course.home` (where the course lives);
  ``python -m psft_edu.course`` runs them.

:func:`notebook_setup` is the first call of every notebook.
"""

from __future__ import annotations

import os

from .. import seed_everything


def notebook_setup(seed: int = 0) -> str:
    """Common first cell of every notebook: seed everything, make sure the preset's base model exists, and
    return the preset name.

    The preset comes from ``$PSFT_EDU_PRESET``; notebooks default to ``tiny`` so they run in seconds on a
    laptop (CI uses ``tiny`` too). ``tiny`` and ``small`` ship their base; ``gpt2``'s is built here on first
    use on a GPU (:func:`psft_edu.experiments.build_base.ensure_base`; on a CPU it stops with the time it
    would take).
    """
    import torch
    from transformers.utils import logging as hf_logging

    from ..experiments.build_base import ensure_base

    preset = os.environ.get("PSFT_EDU_PRESET", "tiny")
    seed_everything(seed)
    # The tiny model's matrices are too small to gain from threads; one thread also keeps
    # it fast when other work shares the CPU. $PSFT_EDU_THREADS overrides.
    default = 1 if preset == "tiny" else min(4, os.cpu_count() or 1)
    torch.set_num_threads(int(os.environ.get("PSFT_EDU_THREADS", default)))
    hf_logging.disable_progress_bar()
    ensure_base(preset)
    return preset
