"""The engine: the loops that train and measure a model, and the machinery every run shares.

:mod:`~psft_edu.engine.train` is the one training loop for every objective (SFT, PSFT, DFT, ...),
:mod:`~psft_edu.engine.grpo_loop` the GRPO loop, :mod:`~psft_edu.engine.evaluate` sampling and scoring;
:mod:`~psft_edu.engine.runs` (run folders, checkpoints, Ctrl-C) and :mod:`~psft_edu.engine.outputs` (the rule
every writing command follows) serve them all, and :mod:`~psft_edu.engine.workers` runs jobs on one-thread
processes. The engine imports only the ground floor (``objectives``, ``data``, ``models``, ...).
"""
