"""GRPO and the RL experiment under one name: ``from psft_edu import rl`` keeps working.

The algorithm (:class:`RLConfig`, :func:`grpo`, :func:`update_policy`, ...) lives in
:mod:`psft_edu.grpo_loop`; the experiment (:func:`rl_after_finetuning` and its tables) in
:mod:`psft_edu.rl_experiment`; the ``rl`` and ``rl-compare`` command handlers in
:mod:`psft_edu.__main__` with every other command.
"""

from __future__ import annotations

from .grpo_loop import (
    RL_RESUMABLE_SETTINGS,
    RLConfig,
    group_advantages,
    grpo,
    load_prompts,
    prompts_for_step,
    rollout_batch,
    sample_metrics,
    update_policy,
)
from .rl_experiment import (
    _summary_row,
    aggregate_table,
    condition_of,
    conditions,
    format_table,
    fresh_prompts,
    rl_after_finetuning,
    training_prompts,
)

__all__ = [
    "RL_RESUMABLE_SETTINGS",
    "RLConfig",
    "_summary_row",
    "aggregate_table",
    "condition_of",
    "conditions",
    "format_table",
    "fresh_prompts",
    "group_advantages",
    "grpo",
    "load_prompts",
    "prompts_for_step",
    "rl_after_finetuning",
    "rollout_batch",
    "sample_metrics",
    "training_prompts",
    "update_policy",
]
