"""The experiments the course reports, built on the engine.

:mod:`~psft_edu.experiments.compare` (SFT vs PSFT, ``make compare``), :mod:`~psft_edu.experiments.sweep`
(neighbours, ablations, the clip's regime map), :mod:`~psft_edu.experiments.rl_experiment` (GRPO after each),
:mod:`~psft_edu.experiments.pretrain` and :mod:`~psft_edu.experiments.build_base` (the base models),
:mod:`~psft_edu.experiments.pretrained` (a hub model as the base), :mod:`~psft_edu.experiments.bench` (speed and
memory); :mod:`~psft_edu.experiments.results`, :mod:`~psft_edu.experiments.report` and
:mod:`~psft_edu.experiments.plots` turn runs into the summaries, tables and figures they save.
Experiments import the engine and the ground floor, never the course or the command line.
"""
