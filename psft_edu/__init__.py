"""psft_edu: Proximal Supervised Fine-Tuning (PSFT) from first principles.

Modules: ``objectives`` (the losses, the quantities the notebooks teach, and the objective
registry), ``presets`` (model sizes and their budgets), ``tasks`` (the verifiable task world),
``data`` (tokenizer and JSONL), ``models`` (loading), ``evaluate``, ``train`` (one loop for every
objective), ``compare`` (SFT vs PSFT), ``rl`` (GRPO), ``plots``, and for the notebooks ``analysis``
(reading results), ``drawing`` (figures), ``widgets`` (controls) and ``exercises``.
"""

from __future__ import annotations

import os
import random

__version__ = "0.1.0"


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's random number generators."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def notebook_setup(seed: int = 0) -> str:
    """Common first cell of every notebook: seed everything and return the preset name.

    The preset comes from ``$PSFT_EDU_PRESET``; notebooks default to ``tiny`` so they
    run in seconds on a laptop (CI uses ``tiny`` too).
    """
    import torch
    from transformers.utils import logging as hf_logging

    preset = os.environ.get("PSFT_EDU_PRESET", "tiny")
    seed_everything(seed)
    # The tiny model's matrices are too small to gain from threads; one thread also keeps
    # it fast when other work shares the CPU. $PSFT_EDU_THREADS overrides.
    default = 1 if preset == "tiny" else min(4, os.cpu_count() or 1)
    torch.set_num_threads(int(os.environ.get("PSFT_EDU_THREADS", default)))
    hf_logging.disable_progress_bar()
    return preset
