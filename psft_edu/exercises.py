"""Checkers for the notebooks' exercises.

Each ``check_*`` function prints a short, specific message (what is right, or what to
look at next) and returns ``True`` or ``False``. An exercise left as ``None`` is not an
error: the checker prints that it was not attempted (with a hint) and returns ``None``,
so a notebook always runs top to bottom and an untouched exercise never reads as passed.

Three kinds of exercise:

* recall: a number, a list or a boolean, compared with the value the checker computes;
* implement it: the learner writes a function, and :func:`check_implementation` runs it
  and the package's version on the same random tensors (edge cases included), compares the
  values and, for a loss or log-probabilities, the gradients, and names the first case where
  they disagree, and the likely mistake when it recognises one (a detached loss fails);
  :func:`check_psft_loop` runs a whole PSFT training loop against the package's Trainer;
* predict, then run: the learner writes a prediction before an experiment runs, and
  :func:`check_prediction` (the one checker of predictions, for every notebook) compares it
  with what the experiment measured. Left at None, it shows the hint, and the measured value
  folded away in the notebook's HTML view (see its docstring).

The checkers live by notebook: :mod:`psft_edu.exercises_basics` (01-03),
:mod:`psft_edu.exercises_clip` (04-05, 05's training loop included), :mod:`psft_edu.exercises_results`
(06-08), :mod:`psft_edu.exercises_impl` (implement-it, 01-05 and 09) and :mod:`psft_edu.exercises_late`
(implement-it, 06-08), on the shared machinery of :mod:`psft_edu.exercises_common`. Every checker of the first
four is importable from here.
"""

from __future__ import annotations

from .exercises_basics import (
    check_action_space,
    check_advantage,
    check_completion_logprob,
    check_constant_prob_loss,
    check_long_answer_weight,
    check_reinforce_gradient,
    check_seq_mean_loss,
    check_sequence_count,
    check_sft_logit_gradient,
)
from .exercises_clip import (
    check_clip_fraction,
    check_clipped_value,
    check_gradient_is_zero,
    check_psft_is_sft,
    check_psft_loop,
    check_psft_weights,
    check_refresh_count,
)
from .exercises_common import (
    _not_attempted,
    _report,
    check_implementation,
    check_prediction,
)
from .exercises_impl import (
    check_pg_loss_impl,
    check_ppo_clip_impl,
    check_psft_loss_impl,
    check_ratio_stats_impl,
    check_sft_loss_impl,
    check_token_logprobs_impl,
)
from .exercises_results import (
    check_best_ood_run,
    check_dft_weights,
    check_entropy_drop,
    check_group_advantages,
    check_group_size_needed,
    check_k3_kl,
    check_pareto_dominated,
    check_pareto_front,
    check_zero_signal_fraction,
    entropy_drop_percent,
    pareto_dominators,
)

__all__ = [
    "_not_attempted",
    "_report",
    "check_action_space",
    "check_advantage",
    "check_best_ood_run",
    "check_clip_fraction",
    "check_clipped_value",
    "check_completion_logprob",
    "check_constant_prob_loss",
    "check_dft_weights",
    "check_entropy_drop",
    "check_gradient_is_zero",
    "check_group_advantages",
    "check_group_size_needed",
    "check_implementation",
    "check_k3_kl",
    "check_long_answer_weight",
    "check_pareto_dominated",
    "check_pareto_front",
    "check_pg_loss_impl",
    "check_ppo_clip_impl",
    "check_prediction",
    "check_psft_is_sft",
    "check_psft_loop",
    "check_psft_loss_impl",
    "check_psft_weights",
    "check_ratio_stats_impl",
    "check_refresh_count",
    "check_reinforce_gradient",
    "check_seq_mean_loss",
    "check_sequence_count",
    "check_sft_logit_gradient",
    "check_sft_loss_impl",
    "check_token_logprobs_impl",
    "check_zero_signal_fraction",
    "entropy_drop_percent",
    "pareto_dominators",
]
