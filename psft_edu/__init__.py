"""psft_edu: Proximal Supervised Fine-Tuning (PSFT) from first principles.

Four layers, each importing only the ones below it (``tests/test_structure.py`` checks this):

* the ground floor, in this folder: :mod:`~psft_edu.objectives` (every loss and quantity the course teaches,
  and the objective registry), :mod:`~psft_edu.tasks` (the verifiable task world), :mod:`~psft_edu.data`,
  :mod:`~psft_edu.models`, :mod:`~psft_edu.presets`, :mod:`~psft_edu.config`, :mod:`~psft_edu.paths`,
  :mod:`~psft_edu.stats`; :mod:`~psft_edu.integrations` (PSFT for TRL) uses only ``objectives``;
* :mod:`psft_edu.engine`: the training, GRPO and evaluation loops and the run machinery they share;
* :mod:`psft_edu.experiments`: the comparison, sweeps, RL after fine-tuning, base models, benchmark;
* :mod:`psft_edu.course`: what exists for the notebooks (exercises, one module per notebook; widgets,
  drawing, the bandit, live runs, tables; the student edition and the site);

and on top :mod:`psft_edu.cli`, the command line (``python -m psft_edu``).
"""

from __future__ import annotations

import random

__version__ = "0.1.0"


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's random number generators."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
