"""Presets: one entry per model size, carrying every budget that goes with it.

A preset says how big the model is and how much work each experiment does at that size:
pretraining the base model, the evaluation protocol, the comparison's main and prolonged
views (:mod:`psft_edu.experiments.compare`, :mod:`psft_edu.experiments.sweep`), the RL stage after them
and the speed benchmark (:mod:`psft_edu.experiments.bench`). Adding a preset is one more entry in
:data:`PRESETS`; everything else (``--preset`` choices, ``compare.SETTINGS``, ...) is read from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PRESET_ENV = "PSFT_EDU_PRESET"
DEFAULT_PRESET = "small"  # a laptop CPU; `tiny` is for CI, `gpt2` for one GPU


@dataclass(frozen=True)
class EvalProtocol:
    """What one evaluation point measures (:func:`psft_edu.engine.evaluate.make_eval_fn`).

    Every point of a run's curves uses the same protocol; the final point adds sampled accuracy.
    """

    prompts: int = 64  # held-out prompts per family, drawn afresh for each seed (exact accuracy at every point)
    samples: int = 2  # own samples per in-domain prompt at every point (entropy, KL, answer style)
    ood_prompts: int = 8  # of each out-of-domain family's prompts, those sampled at every point (entropy, KL)
    final_samples: int = 8  # samples per prompt at the final point: sampled accuracy, pass@k, distinct answers


@dataclass(frozen=True)
class CompareSettings:
    """Budget of one view of the comparison at one preset."""

    max_steps: int
    global_batch: int
    mini_batch: int
    high_lr: float  # the best in-domain rate of SFT in a scan: the "aggressive" rate
    low_lr: float  # ten times lower: PSFT's rate in the paper-style pairing
    eval_every: int  # optimiser steps between evaluations (checked between global batches)
    eval: EvalProtocol = EvalProtocol()
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    train_records: int | None = None  # demonstrations used (None: all of sft_train.jsonl)

    @property
    def refresh_every(self) -> int:
        """K: optimiser steps per frozen old policy."""
        return self.global_batch // self.mini_batch


@dataclass(frozen=True)
class BenchBudget:
    """What ``python -m psft_edu bench`` times at one preset."""

    global_batch: int
    mini_batch: int
    max_length: int
    records: int  # training examples drawn
    steps: int  # timed optimiser steps per loop (default of --steps)
    synthetic_length: int | None = None  # random letters of this length instead of sft_train.jsonl
    from_scratch: bool = False  # a freshly initialised model instead of the shipped base checkpoint

    def train_kwargs(self) -> dict[str, int]:
        """The :class:`~psft_edu.engine.train.TrainConfig` fields this budget sets."""
        return {"global_batch": self.global_batch, "mini_batch": self.mini_batch, "max_length": self.max_length}


@dataclass(frozen=True)
class RLBudget:
    """The RL stage at one preset (``python -m psft_edu rl-compare``): GRPO from each fine-tuned model."""

    steps: int  # sampled batches of GRPO
    lr: float
    updates_per_step: int  # optimiser steps per frozen old policy
    eval_every: int  # GRPO steps between evaluations
    eval_prompts: int  # prompts per family at every evaluation
    eval_samples: int  # samples per prompt (k of pass@k)
    num_prompts: int  # fresh in-domain training prompts generated for the stage

    def config_kwargs(self) -> dict[str, float | int]:
        """The :class:`~psft_edu.engine.grpo_loop.RLConfig` fields this budget sets."""
        return {k: getattr(self, k) for k in ("steps", "lr", "updates_per_step", "eval_every", "eval_prompts",
                                              "eval_samples")}


@dataclass(frozen=True)
class Preset:
    """Size of the model and the budgets that go with it (build with keywords)."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int
    vocab_size: int | None  # None: the size of the project's tokenizer
    pretrain_steps: int
    pretrain_batch: int
    pretrain_lr: float
    compare: CompareSettings  # the comparison's main view (compare.SETTINGS)
    long: CompareSettings  # its prolonged view (compare.LONG_SETTINGS)
    rl: RLBudget  # the RL stage after fine-tuning
    bench: BenchBudget
    # GELU as PyTorch's fused kernel ("gelu_pytorch_tanh"): the same function as GPT-2's composed "gelu_new",
    # rounded differently; a fine-tuning run at `small` took 10-17% less time with it on the 2-core CPU machine.
    # `tiny` keeps "gelu_new": its shipped base and the CI notebooks' committed outputs were made with it.
    activation: str = "gelu_pytorch_tanh"


# Laptops and CI (tiny, small) share the benchmark's shapes; GPT-2 times long synthetic sequences.
_CPU_BENCH = BenchBudget(global_batch=256, mini_batch=32, max_length=64, records=2048, steps=64)

# CI evaluates fewer prompts; a GPU affords more samples at every point.
_TINY_EVAL = EvalProtocol(prompts=32, samples=2, ood_prompts=8, final_samples=4)
_GPT2_EVAL = EvalProtocol(prompts=128, samples=4, ood_prompts=32, final_samples=8)

# The comparison's views are chosen so `make compare` stays under 10 minutes on 2 CPU cores at
# `small`. In the prolonged view one global batch is the whole small demonstration set, so every
# epoch is one frozen old policy and K optimiser steps.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        # CI: every notebook in minutes on 2 CPU cores.
        Preset(
            name="tiny", n_layer=2, n_head=2, n_embd=64, n_positions=64, vocab_size=None,
            pretrain_steps=4000, pretrain_batch=64, pretrain_lr=3e-3,
            compare=CompareSettings(
                max_steps=192, global_batch=256, mini_batch=32, high_lr=1e-3, low_lr=1e-4, eval_every=24,
                eval=_TINY_EVAL, seeds=(0,),
            ),
            long=CompareSettings(
                max_steps=144, global_batch=128, mini_batch=16, high_lr=1e-3, low_lr=1e-4, eval_every=8,
                eval=_TINY_EVAL, seeds=(0,), train_records=128,
            ),
            rl=RLBudget(steps=20, lr=3e-4, updates_per_step=2, eval_every=10, eval_prompts=16, eval_samples=4,
                        num_prompts=256),
            bench=_CPU_BENCH,
            activation="gelu_new",
        ),
        # A laptop CPU: the default of `make compare`.
        Preset(
            name="small", n_layer=4, n_head=4, n_embd=128, n_positions=64, vocab_size=None,
            pretrain_steps=4000, pretrain_batch=64, pretrain_lr=2e-3,
            compare=CompareSettings(
                max_steps=160, global_batch=256, mini_batch=32, high_lr=1e-3, low_lr=1e-4, eval_every=20,
            ),
            long=CompareSettings(
                max_steps=144, global_batch=128, mini_batch=16, high_lr=1e-3, low_lr=1e-4, eval_every=8,
                seeds=(0, 1, 2), train_records=128,
            ),
            # notebooks/results/rl_small.json was made with this budget.
            rl=RLBudget(steps=60, lr=3e-4, updates_per_step=2, eval_every=20, eval_prompts=64, eval_samples=8,
                        num_prompts=512),
            bench=_CPU_BENCH,
        ),
        # GPT-2 124M (12 layers, 768 wide, 12 heads, 1024 context, GPT-2's vocabulary size): one GPU.
        Preset(
            name="gpt2", n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257,
            pretrain_steps=6000, pretrain_batch=64, pretrain_lr=6e-4,
            compare=CompareSettings(
                max_steps=400, global_batch=256, mini_batch=32, high_lr=1e-4, low_lr=1e-5, eval_every=40,
                eval=_GPT2_EVAL, seeds=(0, 1, 2),
            ),
            long=CompareSettings(
                max_steps=288, global_batch=256, mini_batch=32, high_lr=1e-4, low_lr=1e-5, eval_every=8,
                eval=_GPT2_EVAL, seeds=(0, 1, 2), train_records=256,
            ),
            # A first guess scaled from `small` (a lower rate for the larger model); not yet run on a GPU.
            rl=RLBudget(steps=100, lr=3e-5, updates_per_step=2, eval_every=20, eval_prompts=128, eval_samples=8,
                        num_prompts=1024),
            bench=BenchBudget(
                global_batch=64, mini_batch=8, max_length=1024, records=512, steps=32, synthetic_length=1024,
                from_scratch=True,
            ),
        ),
    )
}


def preset_name(name: str | None = None) -> str:
    """The preset to use: the argument, else ``$PSFT_EDU_PRESET``, else ``small``."""
    chosen = name or os.environ.get(PRESET_ENV) or DEFAULT_PRESET
    if chosen not in PRESETS:
        where = "" if name else f" (from ${PRESET_ENV})"
        raise ValueError(f"unknown preset {chosen!r}{where}; choose from {', '.join(PRESETS)}")
    return chosen


def get_preset(name: str | None = None) -> Preset:
    return PRESETS[preset_name(name)]


def preset_of_shape(n_layer: int, n_head: int, n_embd: int) -> str:
    """The name of the preset with this transformer shape (``"custom"`` if none)."""
    for name, p in PRESETS.items():
        if (n_layer, n_head, n_embd) == (p.n_layer, p.n_head, p.n_embd):
            return name
    return "custom"


__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "PRESET_ENV",
    "BenchBudget",
    "CompareSettings",
    "EvalProtocol",
    "Preset",
    "RLBudget",
    "get_preset",
    "preset_name",
]
