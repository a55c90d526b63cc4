"""PSFT inside TRL: a drop-in ``SFTTrainer`` that optimises the proximal objective.

Install the ``trl`` extra first: in a clone ``make setup`` (or ``pip install -e ".[trl]"``), elsewhere
``pip install "psft-edu[trl] @ <source>"`` with the install source named in ``psft_edu/course/home.json`` (the course
is not on a package index). This module imports ``trl`` at import time, and nothing else in ``psft_edu``
imports this module.

.. code-block:: python

    from datasets import Dataset
    from trl import SFTConfig
    from psft_edu.integrations import PSFTTrainer

    data = Dataset.from_list([{"prompt": "add 23 48:", "completion": " 71"}, ...])
    trainer = PSFTTrainer(
        model=model, processing_class=tokenizer, train_dataset=data,
        args=SFTConfig(output_dir="out", learning_rate=1e-6, per_device_train_batch_size=32),
        objective="psft", clip=0.28, refresh_every=8,
    )
    trainer.train()

Why a subclass of TRL's ``SFTTrainer`` (and not of ``transformers.Trainer``)
----------------------------------------------------------------------------
Everything except the loss is what SFT users already rely on: turning a
prompt/completion data set into token ids with an end-of-sequence token, labels of
``-100`` on the prompt (``completion_only_loss``), the padding collator, packing,
PEFT, and TRL's fused LM head, which returns the log-probability of every label
without building the ``[batch, length, vocab]`` logits. Only ``compute_loss`` (and
the batch fetching, below) is replaced. The per-token log-probabilities, the mask
(``label_mask``: the label is not ``-100``) and the normalisation are the ones TRL's
own loss uses: a sum over completion tokens divided by ``num_items_in_batch`` (the
completion tokens of every micro-batch of the optimiser step, on every process),
times the number of processes because DDP averages gradients. So gradient
accumulation and data parallelism give the token-mean of the whole step, exactly
as TRL's SFT loss does; each objective's token-mean comes from
:mod:`psft_edu.objectives` and is rescaled by ``local tokens / num_items_in_batch``.

Objectives
----------
* ``"psft"`` (default): :func:`psft_edu.objectives.psft_loss`, token-mean, clip
  ``epsilon = clip`` (0.28). Its value is ``-mean(min(r, clip(r)))``, so about ``-1``
  whenever the ratio is near 1; watch the gradient and the logged ``nll`` instead.
  At ratio 1 its gradient equals SFT's gradient (``d(-r) = -r d log p``).
* ``"sft"``: the negative log-likelihood, the same value TRL's SFT loss gives.
* ``"dft"``: each token's NLL weighted by its own detached probability.
* ``"sft_kl"``: NLL plus ``beta`` times the per-token KL estimate to a frozen
  reference, by default a copy of the model as it was when the trainer was built.
* any other name in :data:`psft_edu.objectives.OBJECTIVES` (``"asft"``, or one you
  register): the registry says whether it needs old log-probs or a reference.

Evaluation (``eval_loss``) always reports the completion NLL: there is no old policy
outside training, and one scale makes runs with different objectives comparable.

How the old policy is kept: look-ahead log-probs, not a frozen copy
-------------------------------------------------------------------
Two ways fit a Hugging Face trainer. (a) Keep a frozen snapshot of the model,
copied every ``refresh_every`` optimiser steps, and run it forward on every batch.
(b) Do what the paper's implementation does: when the old policy is frozen, fetch
the batches of the next ``refresh_every`` optimiser steps (one "global batch") and
compute their log-probabilities under the current weights in one no-grad pass;
those are the old log-probs for the following steps. This class does (b) by
overriding ``Trainer.get_batch_samples``, the method the training loop calls once
per optimiser step to fetch its micro-batches:

* no second model: (a) holds a full extra copy of the weights on every device, and
  under FSDP or ZeRO-3 a plain copy is not sharded at all; (b) stores only
  ``[batch, length]`` float tensors, and its forward pass is the trained model's
  own (the module inside DDP; the sharded model under FSDP or ZeRO-3);
* the same forward as training: under mixed precision (``SFTConfig`` turns bf16 on
  by default where the hardware has it, the CPU included) accelerate wraps the
  trained model's forward in autocast. (b) computes the old log-probs through that
  very forward, so the ratio is exactly 1 right after a refresh; a plain copy runs
  in float32 and, on the tiny preset under CPU bf16, disagreed with it by up to
  0.04 nats per token, enough to move tokens across the clip boundary;
* the first step after a refresh needs no extra forward pass, because old and
  current policy are equal there (the old log-probs are the detached current ones);
  the remaining ``refresh_every - 1`` steps cost one no-grad forward each, which (a)
  pays on every step, plus a weight copy per refresh;
* both give the same numbers: in float32 the two variants ended 20 steps with
  bit-identical weights.

Measured on the tiny preset (2 layers, 64 wide; float32, one CPU thread,
per-device batch 8, ``refresh_every=8``; CPU time of 80 optimiser steps, median of
5 runs): TRL's ``SFTTrainer`` 56 steps/s; this class with ``objective="sft"`` 54;
PSFT with look-ahead (b) 45 steps/s (0.8x of SFT); PSFT with a snapshot model (a)
44 steps/s, and one more copy of the weights. At this size the fixed per-step cost
of the trainer dominates, so (a) and (b) cost about the same time; the reasons for
(b) are memory, sharding and autocast. For large models the extra no-grad forward
is about a third of a training step (forward plus backward is roughly three
forward passes).

Caveats: a refresh happens every ``refresh_every`` optimiser steps counted from the
start of each epoch (the last global batch of an epoch may be shorter); after
resuming from a checkpoint the first refresh happens at the resumed step. Context
and sequence parallelism shard batches inside ``training_step`` and are refused.
The tests (``tests/test_integrations.py``, ``tests/test_examples.py``) cover, on the CPU:
prompt/completion data with padding, chat-format (``messages``) data with TRL's
assistant-only loss, LoRA through PEFT, gradient accumulation and two-process DDP (gloo).
Packing, padding-free batches, FSDP, DeepSpeed and multi-GPU NCCL runs go through TRL's
and accelerate's code unchanged but are not tested here.

Logged metrics (through TRL's metric log, averaged between logging steps): TRL's
``entropy``, ``mean_token_accuracy`` and ``num_tokens``, plus ``nll``; for PSFT
``clip_fraction`` (share of completion tokens whose ratio is past ``1 + clip``, i.e.
with zero gradient of their own), ``ratio_mean``, the ratio quantiles ``ratio_median``,
``ratio_p99`` and ``ratio_max`` (:func:`psft_edu.objectives.ratio_quantiles`; each the
largest over processes, and ``ratio_max`` the largest since the last log) and
``unclippable`` (share of tokens whose old probability is above ``1 / (1 + clip)``, which
no ratio can push past the clip: :func:`psft_edu.objectives.unclippable`); for SFT-KL
``kl_to_ref``. The logged ``loss`` of PSFT is ``-mean(min(r, clip(r)))``, near ``-1``.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import torch
from accelerate.utils import is_peft_model
from trl import SFTTrainer
from trl.models.utils import prepare_deepspeed, prepare_fsdp
from trl.trainer.utils import add_fused_lm_head

from . import objectives

OBJECTIVES = objectives.OBJECTIVES  # every registered objective
OLD_LOGPROBS_KEY = "old_log_probs"
# Logged PSFT statistics: token-weighted means over processes, and ratio quantiles (largest over processes).
TOKEN_MEAN_STATS = ("clip_fraction", "ratio_mean", "unclippable")
RATIO_QUANTILES = ("ratio_median", "ratio_p99", "ratio_max")


class PSFTTrainer(SFTTrainer):
    """TRL's ``SFTTrainer`` with the PSFT objective (or any registered one: SFT, DFT, SFT-KL, ASFT) as its loss.

    Takes every argument ``SFTTrainer`` takes, plus these keyword arguments:

    Args:
        objective: a name in :data:`psft_edu.objectives.OBJECTIVES`: ``"psft"`` (default),
            ``"sft"``, ``"dft"``, ``"sft_kl"``, ``"asft"``, ...
        clip: PSFT's epsilon; tokens whose ratio exceeds ``1 + clip`` get no gradient.
        refresh_every: K, optimiser steps per frozen old policy (``1``: ratio is always 1
            and PSFT's gradient is SFT's). One global batch is ``refresh_every *
            gradient_accumulation_steps * per_device_train_batch_size * num_processes``
            sequences.
        beta: weight of the KL term of ``"sft_kl"`` and ``"asft"``.
        ref_model: the reference of an objective that needs one; default, a frozen copy of ``model``.
    """

    def __init__(
        self,
        model: Any,
        args: Any = None,
        *positional: Any,
        objective: str = "psft",
        clip: float = objectives.PSFT_CLIP,
        refresh_every: int = 8,
        beta: float = objectives.KL_BETA,
        ref_model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        self.spec = objectives.get_objective(objective)  # ValueError for an unknown name
        if not (math.isfinite(clip) and clip > 0):
            raise ValueError(f"clip must be a positive finite number, got {clip}")
        if isinstance(refresh_every, bool) or not isinstance(refresh_every, int) or refresh_every < 1:
            raise ValueError(f"refresh_every must be an integer >= 1, got {refresh_every!r}")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {beta}")
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError("PSFTTrainer computes its own loss; pass objective=... instead of compute_loss_func")
        if args is not None and getattr(args, "loss_type", "nll") != "nll":
            raise ValueError("PSFTTrainer ignores SFTConfig.loss_type; use objective='dft' for DFT")
        if args is not None and getattr(args, "label_smoothing_factor", 0.0) > 0:
            raise ValueError("label smoothing is not supported by PSFTTrainer")
        self.objective = objective
        self.clip = float(clip)
        self.refresh_every = refresh_every
        self.beta = float(beta)
        super().__init__(model, args, *positional, **kwargs)

        parallelism = getattr(self.accelerator, "parallelism_config", None)
        if parallelism is not None and (
            getattr(parallelism, "cp_enabled", False) or getattr(parallelism, "sp_enabled", False)
        ):
            raise ValueError("PSFTTrainer does not support context or sequence parallelism")

        # Old-policy look-ahead: micro-batch groups of the coming optimiser steps, and the
        # epoch iterator they came from (a new iterator means a new epoch: start afresh).
        self._lookahead: deque[tuple[list, Any]] = deque()
        self._lookahead_source: Iterator | None = None

        self.ref_model = None
        if self.spec.needs_reference:
            self.ref_model = self._build_reference(ref_model)

    # ------------------------------------------------------------------ reference model

    def _build_reference(self, ref_model: torch.nn.Module | None) -> torch.nn.Module:
        if ref_model is None:
            if is_peft_model(self.model):
                raise ValueError(f"objective={self.objective!r} with a PEFT model: pass ref_model= (the base model)")
            if self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
                raise ValueError(f"objective={self.objective!r} under ZeRO-3: pass ref_model= (loaded separately)")
            ref_model = copy.deepcopy(self.model)
            # The copy carries the fused-head forward patched onto self.model, whose closure
            # still points at the original model; drop it and patch the copy afresh.
            ref_model.__dict__.pop("forward", None)
        if "forward" not in ref_model.__dict__:
            add_fused_lm_head(ref_model)
        ref_model.eval()
        ref_model.requires_grad_(False)
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(ref_model, self.accelerator)
        if self.is_fsdp_enabled:
            return prepare_fsdp(ref_model, self.accelerator)
        return self.accelerator.prepare_model(ref_model, evaluation_mode=True)

    # ------------------------------------------------------------------ old policy

    @torch.no_grad()
    def policy_log_probs(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """Per-label log-probabilities ``[batch, length - 1]`` of ``model`` (eval mode, no grad).

        Zero where the label is ``-100``, like TRL's fused LM head that computes them.
        """
        inputs = self._prepare_inputs({k: v for k, v in inputs.items() if k != OLD_LOGPROBS_KEY})
        inputs.update(use_cache=False, fused_lm_head=True)
        was_training = model.training
        model.eval()
        try:
            outputs = model(**inputs)
        finally:
            model.train(was_training)
        return outputs.log_probs.detach()

    def get_batch_samples(self, epoch_iterator: Iterator, num_batches: int, device: torch.device) -> tuple[list, Any]:
        """Micro-batches of the next optimiser step; every ``refresh_every`` steps, freeze the old policy.

        At a refresh, the micro-batches of the next ``refresh_every`` steps are fetched at
        once and, except those of the first step, get ``old_log_probs`` under the current
        weights. The first step's old log-probs are its own detached log-probs.
        """
        if not self.spec.needs_old_logprobs or self.refresh_every == 1:
            return super().get_batch_samples(epoch_iterator, num_batches, device)
        if epoch_iterator is not self._lookahead_source or not self._lookahead:
            self._lookahead.clear()
            self._lookahead_source = epoch_iterator
            wanted = num_batches
            for index in range(self.refresh_every):
                batches, num_items = super().get_batch_samples(epoch_iterator, wanted, device)
                if not batches:
                    break
                if index > 0:
                    for batch in batches:
                        batch[OLD_LOGPROBS_KEY] = self.policy_log_probs(self.model, batch)
                self._lookahead.append((batches, num_items))
                if len(batches) < wanted:  # the epoch's data ran out
                    break
                wanted = self.args.gradient_accumulation_steps
            if not self._lookahead:
                return [], None
        return self._lookahead.popleft()

    # ------------------------------------------------------------------ loss

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        mode = "train" if self.model.training else "eval"
        old_logp = inputs.pop(OLD_LOGPROBS_KEY, None)
        inputs["use_cache"] = False
        if self.aux_loss_enabled:
            inputs["output_router_logits"] = True

        outputs = model(**inputs, fused_lm_head=True)
        logp, mask = outputs.log_probs, outputs.label_mask
        count = mask.sum()
        denom = count if num_items_in_batch is None else num_items_in_batch
        # token-mean over this micro-batch * (its tokens / tokens of the whole step) = sum / num_items_in_batch
        share = count / torch.as_tensor(denom, device=logp.device).clamp(min=1)
        has_tokens = bool(count.item() > 0)
        stats: dict[str, torch.Tensor] = {}
        # Every rank runs the reference forward, tokens or not: a sharded reference needs all ranks.
        needs_ref = mode == "train" and self.spec.needs_reference
        ref_logp = self.policy_log_probs(self.ref_model, inputs) if needs_ref else None

        if not has_tokens:
            loss = logp.sum() * 0.0  # stays connected to the graph, so DDP still reduces
        elif mode == "eval":
            loss = objectives.sft_loss(logp, mask) * share
        else:
            old = None
            if self.spec.needs_old_logprobs:
                old = logp.detach() if old_logp is None else old_logp.to(logp.device)
            value, stats = self.spec.loss(logp, mask, old, ref_logp, clip=self.clip, beta=self.beta)
            loss = value * share
            if ref_logp is not None:
                stats = {**stats, "kl_to_ref": objectives.kl_to_reference(logp.detach(), ref_logp, mask)}

        # Like TRL: num_items_in_batch counts every process's tokens and DDP averages gradients.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        if self.aux_loss_enabled:
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss / steps

        self._record_metrics(mode, inputs, outputs, stats, has_tokens)

        if return_outputs:
            with torch.no_grad():
                outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            return loss, outputs
        return loss

    def _record_metrics(self, mode: str, inputs: dict[str, Any], outputs: Any, stats: dict, has_tokens: bool) -> None:
        """Token-weighted metrics summed over processes, appended to TRL's metric log.

        The ratio quantiles cannot be summed: each process's ``ratio_median``, ``ratio_p99`` and
        ``ratio_max`` is gathered and the largest is kept (for the median and p99 an upper reading).
        """
        gather = self.accelerator.gather
        mask = outputs.label_mask
        count = mask.sum().float()
        weight = count if has_tokens else torch.zeros_like(count)
        device = count.device
        zero = torch.zeros((), device=device)
        local = torch.stack(
            [
                count,
                -(outputs.log_probs.detach() * mask).sum(),
                outputs.entropy.detach().sum(),
                outputs.is_top1.float().sum(),
                *(stats[k].float().to(device) * weight if k in stats else zero for k in TOKEN_MEAN_STATS),
                stats["kl_to_ref"].float().to(device) * weight if "kl_to_ref" in stats else zero,
            ]
        )
        totals = gather(local[None]).reshape(-1, local.numel()).sum(0)
        n = totals[0].clamp(min=1)
        metrics = self._metrics[mode]
        metrics["nll"].append((totals[1] / n).item())
        metrics["entropy"].append((totals[2] / n).item())
        metrics["mean_token_accuracy"].append((totals[3] / n).item())
        if "clip_fraction" in stats or (mode == "train" and self.spec.needs_old_logprobs):
            for index, key in enumerate(TOKEN_MEAN_STATS, start=4):
                metrics[key].append((totals[index] / n).item())
            quantiles = torch.stack([stats[k].float().to(device) if k in stats else zero for k in RATIO_QUANTILES])
            largest = gather(quantiles[None]).reshape(-1, len(RATIO_QUANTILES)).amax(0)
            for key, value in zip(RATIO_QUANTILES, largest.tolist()):
                metrics[key].append(value)
        if "kl_to_ref" in stats:
            metrics["kl_to_ref"].append((totals[4 + len(TOKEN_MEAN_STATS)] / n).item())

        if mode == "train":
            if "attention_mask" in inputs:
                local_tokens = inputs["attention_mask"].sum()
            else:
                local_tokens = torch.tensor(inputs["input_ids"].numel(), device=inputs["input_ids"].device)
            self._total_train_tokens += gather(local_tokens[None]).sum().item() // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's log, except that ``ratio_max`` is the largest since the last log, not the mean of the step maxima."""
        metrics = self._metrics["train" if self.model.training else "eval"]
        if metrics.get("ratio_max"):
            metrics["ratio_max"] = [max(metrics["ratio_max"])]
        super().log(logs, start_time)
