"""One training loop for every objective: SFT, PSFT, SFT-KL, DFT and ASFT.

Per *global batch* the loop freezes the old policy (the log-probs of the current
model on the whole batch), then takes K = global_batch / mini_batch optimiser steps,
one per mini-batch. Only PSFT reads the old log-probs; the first mini-batch reuses
its own forward pass for them because old and current policy are still equal then,
so PSFT costs one extra no-grad forward over (K-1)/K of each global batch.

With ``log_mechanism`` every objective is also measured against that frozen old policy (SFT
pays the same extra forward for it), so each step's record says what the clip did and what
the optimiser did (:data:`MECHANISM_KEYS`).
"""

from __future__ import annotations

import copy
import hashlib
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from .. import objectives as obj
from ..config import SettingError, check_settings, setting
from ..data import Batch, collate, encode_records
from . import runs

OBJECTIVES = obj.OBJECTIVES  # the registry: name -> objectives.Objective


@dataclass
class TrainConfig:
    """Settings of one fine-tuning run; each field is also a flag of ``python -m psft_edu train``.

    Defaults suit the ``small`` preset (the comparison's gentler rate and its main view's length).
    """

    objective: str = setting("psft", "what to optimise (objectives.OBJECTIVES)", choices=lambda: list(obj.OBJECTIVES))
    lr: float = setting(1e-4, "peak learning rate (AdamW)", check="positive")
    max_steps: int = setting(160, "optimiser steps (mini-batches) in the whole run", check="positive")
    global_batch: int = setting(256, "sequences per frozen old policy (a multiple of --mini-batch)", check="positive")
    mini_batch: int = setting(32, "sequences per optimiser step; K = global_batch / mini_batch", check="positive")
    micro_batch: int | None = setting(
        None, "sequences per forward (gradient accumulation); default: the whole mini-batch", check="positive"
    )
    clip: float = setting(obj.PSFT_CLIP, "PSFT's epsilon: the ratio is clipped at 1 + epsilon", check="positive-or-inf")
    beta: float = setting(obj.KL_BETA, "KL-to-base weight of sft_kl and asft", check="non-negative")
    agg: str = setting("token-mean", "how token losses are averaged", choices=obj.AGGREGATIONS)
    never_refresh: bool = setting(False, "PSFT: keep the base model as the old policy for the whole run")
    sft_warmup: int = setting(
        0, "PSFT: train with plain SFT for this many optimiser steps first, as the authors' toy run did",
        check="non-negative",
    )
    warmup_steps: int = setting(10, "linear warm-up steps", check="non-negative")
    schedule: str = setting("constant", "learning-rate schedule after warm-up", choices=("constant", "cosine"))
    weight_decay: float = setting(0.1, "AdamW weight decay", check="non-negative")
    grad_clip: float = setting(1.0, "gradient-norm clipping threshold", check="positive")
    seed: int = setting(0, "seed of the data order and of the evaluation's sampling")
    max_length: int = setting(64, "longest sequence in tokens (prompt + completion)", check="positive")
    log_kl: bool = setting(True, "log KL to the base model every step (one extra no-grad forward)")
    log_mechanism: bool = setting(
        True,
        "log what the clip and the optimiser do every step: ratios, shares past the bound and unclippable, exact KL "
        "to the frozen old policy (for objectives without an old policy, one extra no-grad forward), gradient "
        "clipping and distances moved",
    )
    eval_every: int = setting(0, "optimiser steps between evaluations; 0: only at the end", check="non-negative")
    eval_prompts: int = setting(32, "evaluation prompts per task family", check="positive")
    eval_samples: int = setting(4, "samples per evaluation prompt (k of pass@k)", check="positive")
    save_every: int = setting(
        0, "optimiser steps between checkpoints; 0: only at the end and on Ctrl-C", check="non-negative"
    )
    compile: bool = setting(False, "torch.compile the model (CUDA only)")
    init: str = setting("", "what the model was loaded from, recorded for --resume", cli=False)

    def __post_init__(self) -> None:
        obj.get_objective(self.objective)  # ValueError for a name that is not registered
        check_settings(self)
        if self.max_length < 2:
            raise SettingError(
                f"{{0}} must be at least 2 (a prompt token and a target), got {self.max_length}", "max_length"
            )
        if self.global_batch % self.mini_batch:
            raise SettingError(
                f"{{0}} ({self.global_batch}) must be a multiple of {{1}} ({self.mini_batch})",
                "global_batch",
                "mini_batch",
            )
        if self.micro_batch is not None and self.mini_batch % self.micro_batch:
            raise SettingError(
                f"{{0}} ({self.mini_batch}) must be a multiple of {{1}} ({self.micro_batch})",
                "mini_batch",
                "micro_batch",
            )

    @property
    def refresh_every(self) -> int:
        """K: optimiser steps (mini-batches) per frozen old policy."""
        return self.global_batch // self.mini_batch


# Logged every step with ``log_mechanism`` (see Trainer._mechanism and Trainer._distances).
MECHANISM_KEYS = (
    "refresh_position",  # k: optimiser steps since the old policy was frozen (0 .. K-1)
    "ratio_mean", "ratio_median", "ratio_p99", "ratio_max",  # r_t = pi / pi_old over the mini-batch's tokens
    "past_bound",  # share of tokens with r_t > 1 + clip (what PSFT clips; for SFT what it would clip)
    "unclippable",  # share of tokens whose old probability is above 1 / (1 + clip): never clippable
    "kl_old",  # exact KL(pi || pi_old) per token on the mini-batch (course-sized vocabularies only)
    "grad_clipped",  # 1 when the gradient norm was above grad_clip (the step was scaled down)
    "step_size",  # ||theta_after - theta_before|| of this optimiser step
    "refresh_distance",  # ||theta - theta at the last refresh||, after this step
    "base_distance",  # ||theta - theta of the base model||, after this step
)  # fmt: skip
KL_OLD_MAX_VOCAB = 4096  # above this, keeping the old policy's full distributions costs too much memory

RESUMABLE_SETTINGS = (
    "max_steps", "eval_every", "eval_prompts", "eval_samples", "save_every", "compile", "log_mechanism",
)  # fmt: skip


def objective_loss(
    cfg: TrainConfig,
    logp: torch.Tensor,
    mask: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    step: int = 0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The configured objective (:data:`psft_edu.objectives.OBJECTIVES`) on one (micro-)batch: ``(loss, stats)``.

    During ``cfg.sft_warmup`` steps (``step`` below it) plain SFT is used instead.
    """
    name = "sft" if step < cfg.sft_warmup else cfg.objective
    loss = obj.get_objective(name).loss
    return loss(logp, mask, old_logp, ref_logp, clip=cfg.clip, beta=cfg.beta, agg=cfg.agg)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then constant or cosine decay to zero at ``max_steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class Trainer:
    """Fine-tunes ``model`` on prompt/completion ``records`` with one of :data:`OBJECTIVES`.

    ``out`` (optional) receives ``metrics.jsonl``, ``evals.jsonl``, ``config.json``,
    ``checkpoint.pt`` and the final ``model/``; ``eval_fn(model, step)`` (optional)
    returns a dict that is appended to ``evals.jsonl``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        records: list[dict[str, str]],
        cfg: TrainConfig,
        out: str | Path | None = None,
        eval_fn: Callable[[torch.nn.Module, int], dict] | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg, self.tokenizer, self.eval_fn, self.progress = cfg, tokenizer, eval_fn, progress
        self.out = Path(out) if out else None
        self.device = next(model.parameters()).device
        self.model = model
        self.model.train()
        needs_ref = obj.get_objective(cfg.objective).needs_reference or cfg.log_kl or cfg.never_refresh
        self.reference = copy.deepcopy(model).eval().requires_grad_(False) if needs_ref else None
        self.ids, self.prompt_lengths, self.truncated = encode_records(records, tokenizer, cfg.max_length)
        if len(self.ids) < cfg.global_batch:
            fitted = len(self.ids) // cfg.mini_batch * cfg.mini_batch
            if fitted == 0:
                raise ValueError(
                    f"{len(self.ids)} record(s) are fewer than one mini-batch ({cfg.mini_batch}); "
                    "lower --mini-batch and --global-batch or add data"
                )
            print(
                f"note: {len(self.ids)} records are fewer than --global-batch {cfg.global_batch}; "
                f"using a global batch of {fitted} ({fitted // cfg.mini_batch} mini-batches of {cfg.mini_batch})",
                file=sys.stderr,
            )
            cfg.global_batch = fitted  # in place: the caller's config and config.json show what runs
        fused = self.device.type == "cuda"
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=(0.9, 0.999),
            fused=fused,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg))
        self.forward_model = self._compiled(model)
        self.step = 0
        self.epoch, self.position = 0, 0  # data order: permutation of epoch, next index in it
        self.history: list[dict] = []
        self.evals: list[dict] = []
        self._pending: list[tuple[str, dict]] = []
        self._fingerprint: str | None = None
        self._stop = runs.StopSignals()
        # The parameters the run starts from, for base_distance (log_mechanism); set before any resume.
        self._base_params = [p.detach().clone() for p in model.parameters()] if cfg.log_mechanism else []
        self._refresh_start: list[torch.Tensor] = self._base_params

    # ------------------------------------------------------------ helpers
    def _compiled(self, model: torch.nn.Module) -> torch.nn.Module:
        return runs.maybe_compile(model, self.cfg.compile)

    def _autocast(self):
        return runs.autocast(self.device)

    def _order(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch)
        return torch.randperm(len(self.ids), generator=gen).tolist()

    def _next_global_batch(self) -> list[int]:
        order = self._order(self.epoch)
        if self.position + self.cfg.global_batch > len(order):
            self.epoch, self.position = self.epoch + 1, 0
            order = self._order(self.epoch)
        picked = order[self.position : self.position + self.cfg.global_batch]
        self.position += self.cfg.global_batch
        return picked

    def _batch(self, indices: list[int]) -> Batch:
        return collate(
            [self.ids[i] for i in indices], [self.prompt_lengths[i] for i in indices], self.tokenizer.pad_token_id
        ).to(self.device)

    def _logits(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        with self._autocast():
            return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits

    @torch.no_grad()
    def _frozen_logprobs(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return obj.token_logprobs(self._logits(model, batch), batch.targets)

    # ------------------------------------------------------------ one global batch
    def _frozen_policy(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The old policy on ``batch``: target log-probs, and (small vocabularies) the full log-distributions."""
        with torch.no_grad():
            logits = self._logits(model, batch)
            full = torch.log_softmax(logits.float(), dim=-1) if logits.shape[-1] <= KL_OLD_MAX_VOCAB else None
            return obj.token_logprobs(logits, batch.targets), full

    def _train_global_batch(self, indices: list[int]) -> list[dict]:
        cfg = self.cfg
        K, size = cfg.refresh_every, cfg.mini_batch
        batch = self._batch(indices)  # one padded width for the whole global batch
        minis = [batch[k * size : (k + 1) * size] for k in range(K)]
        old: list[tuple[torch.Tensor, torch.Tensor | None] | None] = [None] * K
        if obj.get_objective(cfg.objective).needs_old_logprobs or cfg.log_mechanism:
            # Freeze the old policy: mini-batch 0 reuses its own forward (see module docstring).
            # One no-grad forward per mini-batch: larger ones were slower on CPU and risk memory on GPU.
            source = self.reference if cfg.never_refresh else self.forward_model
            self.model.eval()
            for k in range(0 if cfg.never_refresh else 1, K):
                old[k] = self._frozen_policy(source, minis[k])
            self.model.train()
        if cfg.log_mechanism:
            self._refresh_start = [p.detach().clone() for p in self.model.parameters()]
        records = []
        for k, mini in enumerate(minis):
            if self.step >= cfg.max_steps:
                break
            records.append(self._optimiser_step(mini, old[k], k))
        return records

    def _optimiser_step(self, mini: Batch, old: tuple[torch.Tensor, torch.Tensor | None] | None, k: int) -> dict:
        cfg = self.cfg
        micro = cfg.micro_batch or cfg.mini_batch
        total_tokens = mini.mask.sum()
        total_seqs = (mini.mask.sum(-1) > 0).sum()
        old_logp, old_full = old if old is not None else (None, None)
        sums: dict[str, torch.Tensor] = {}
        current: list[tuple[torch.Tensor, torch.Tensor]] = []  # (target log-probs, logits) per micro-batch
        for start in range(0, len(mini), micro):
            part = mini[start : start + micro]
            logits = self._logits(self.forward_model, part)
            logp = obj.token_logprobs(logits, part.targets)
            old_part = logp.detach() if old_logp is None else old_logp[start : start + micro]
            if cfg.never_refresh and old_logp is not None:
                ref = old_part  # the old policy is the base model: its log-probs are already here
            else:
                ref = self._frozen_logprobs(self.reference, part) if self.reference is not None else None
            loss, stats = objective_loss(cfg, logp, part.mask, old_part, ref, self.step)
            # Weight each micro-batch so the accumulated gradient equals the full mini-batch's.
            if cfg.agg == "token-mean":
                weight = part.mask.sum() / total_tokens
            else:
                weight = (part.mask.sum(-1) > 0).sum() / total_seqs
            (loss * weight).backward()
            with torch.no_grad():
                values = {"loss": loss.detach(), "entropy": obj.masked_mean(obj.token_entropy(logits), part.mask)}
                # With log_mechanism the ratio statistics come from _mechanism, over the whole mini-batch.
                values.update({key: v for key, v in stats.items() if not (cfg.log_mechanism and key in MECHANISM_KEYS)})
                if ref is not None and cfg.log_kl:
                    values["kl_to_base"] = obj.kl_to_reference(logp.detach(), ref, part.mask)
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value.float() * weight
            if cfg.log_mechanism:
                current.append((logp.detach(), logits.detach()))
        if cfg.log_mechanism:
            sums.update(self._mechanism(mini, current, old_logp, old_full, k))
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        keys = list(sums)
        numbers = torch.stack([sums[k] for k in keys] + [grad_norm.float()]).tolist()  # one sync per step
        record = {"step": self.step + 1, **dict(zip(keys, numbers[:-1])), "grad_norm": numbers[-1], "lr": lr}
        what = f"loss or gradient (loss={record['loss']})"
        runs.check_finite(self.step + 1, numbers, what, self.out, self.optimizer)
        before = [p.detach().clone() for p in self.model.parameters()] if cfg.log_mechanism else None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        if cfg.log_mechanism:
            record["grad_clipped"] = float(record["grad_norm"] > cfg.grad_clip)
            record.update(self._distances(before))
        # Ratio statistics only exist for PSFT (or with log_mechanism); keep a stable key set for everyone.
        record.setdefault("clip_fraction", 0.0)
        record.setdefault("ratio_mean", 1.0)
        record.setdefault("ratio_max", 1.0)
        return record

    @torch.no_grad()
    def _mechanism(
        self,
        mini: Batch,
        current: list[tuple[torch.Tensor, torch.Tensor]],
        old_logp: torch.Tensor | None,
        old_full: torch.Tensor | None,
        k: int,
    ) -> dict[str, torch.Tensor]:
        """The mini-batch against the frozen old policy, before this step's update (:data:`MECHANISM_KEYS`)."""
        clip, mask = self.cfg.clip, mini.mask
        logp = torch.cat([lp for lp, _ in current])
        old_logp = logp if old_logp is None else old_logp  # mini-batch 0: the old policy is the current one
        log_ratio = torch.clamp(logp - old_logp, -obj.LOG_RATIO_LIMIT, obj.LOG_RATIO_LIMIT)
        ratio = torch.exp(log_ratio)
        out = {
            "refresh_position": torch.tensor(float(k)),
            "ratio_mean": obj.masked_mean(ratio, mask),
            **obj.ratio_quantiles(ratio, mask),
            "past_bound": obj.masked_mean((ratio > 1.0 + clip).float(), mask),
            "unclippable": obj.masked_mean(obj.unclippable(old_logp, clip).float(), mask),
        }
        if current[0][1].shape[-1] <= KL_OLD_MAX_VOCAB:
            logits = torch.cat([lg for _, lg in current])
            kl = torch.zeros_like(mask) if old_full is None else obj.exact_kl(logits, old_full)
            out["kl_old"] = obj.masked_mean(kl, mask)
        return out

    @torch.no_grad()
    def _distances(self, before: list[torch.Tensor]) -> dict[str, float]:
        """How far the parameters moved: this step, since the last refresh and since the base model."""

        def distance(reference: list[torch.Tensor]) -> float:
            return math.sqrt(sum(float((p - q).pow(2).sum()) for p, q in zip(self.model.parameters(), reference)))

        return {
            "step_size": distance(before),
            "refresh_distance": distance(self._refresh_start),
            "base_distance": distance(self._base_params),
        }

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            **runs.rng_state(),
            "config": asdict(self.cfg),
            "reference": self.reference.state_dict() if self.reference is not None else None,
            "data": self.data_fingerprint(),
        }

    def data_fingerprint(self) -> str:
        """SHA-256 of the encoded training sequences: a resumed run must see the same data."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for seq, start in zip(self.ids, self.prompt_lengths):
                digest.update(f"{start}:{','.join(map(str, seq))};".encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def save_checkpoint(self) -> None:
        if self.out is None:
            return
        self._flush_metrics()
        runs.write_checkpoint(self.state_dict(), self.out / "checkpoint.pt")

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from ``path`` (loaded with ``weights_only=True``).

        Refuses a checkpoint whose saved config differs from this trainer's in anything but
        :data:`RESUMABLE_SETTINGS` (how long to train, how often to evaluate and save). With
        ``schedule="cosine"`` ``max_steps`` sets the decay, so it must match too.
        """
        state = runs.read_checkpoint(path, self.device)
        may_change = (
            RESUMABLE_SETTINGS
            if self.cfg.schedule == "constant"
            else tuple(k for k in RESUMABLE_SETTINGS if k != "max_steps")
        )
        differences = runs.config_differences(state["config"], asdict(self.cfg), may_change)
        if differences:
            raise runs.RunError(f"{path}: --resume with other settings than the saved run ({'; '.join(differences)})")
        if state["step"] > self.cfg.max_steps:
            raise runs.RunError(
                f"{path}: the checkpoint is at step {state['step']}, past --max-steps {self.cfg.max_steps}"
            )
        if state.get("data") not in (None, self.data_fingerprint()):
            raise runs.RunError(
                f"{path}: --resume with other training data than the saved run (--data or its contents differ)"
            )
        runs.restore_state(path, "model weights", self.model, state["model"])
        runs.restore_state(path, "optimizer state", self.optimizer, state["optimizer"])
        runs.restore_state(path, "schedule", self.scheduler, state["scheduler"])
        if self.reference is not None and state.get("reference") is not None:
            runs.restore_state(path, "reference model", self.reference, state["reference"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        runs.restore_rng(state)
        if self.out is not None:
            # The run's history so far; log lines written after the checkpoint are dropped (they come again).
            self.history = runs.read_log_until(self.out / "metrics.jsonl", self.step)
            self.evals = runs.read_log_until(self.out / "evals.jsonl", self.step)

    # ------------------------------------------------------------ logging
    _pending: list[tuple[str, dict]]

    def _log(self, name: str, record: dict) -> None:
        if name == "metrics.jsonl":
            self.history.append(record)
        if self.out is not None:
            self._pending.append((name, record))

    def _flush_metrics(self) -> None:
        if self.out is None or not self._pending:
            return
        by_file: dict[str, list[dict]] = {}
        for name, record in self._pending:
            by_file.setdefault(name, []).append(record)
        for name, records in by_file.items():
            runs.append_records(self.out / name, records)
        self._pending = []

    def _evaluate(self) -> None:
        if self.eval_fn is None:
            return
        self.model.eval()
        result = {"step": self.step, **self.eval_fn(self.model, self.step)}
        self.model.train()
        self._log("evals.jsonl", result)
        self.evals.append(result)

    # ------------------------------------------------------------ the loop
    @property
    def _interrupted(self) -> bool:
        """Whether a stop was asked for (Ctrl-C, SIGTERM or :meth:`request_stop`)."""
        return self._stop.requested

    @_interrupted.setter
    def _interrupted(self, value: bool) -> None:
        self._stop.requested = value

    def request_stop(self) -> None:
        """Stop as Ctrl-C would: after the current global batch, with a checkpoint."""
        self._stop.requested = True

    def train(self, resume: bool = False) -> list[dict]:
        """Run to ``max_steps``; returns the per-step metric records (on resume, earlier steps included)."""
        cfg = self.cfg
        self._pending, self.evals = [], []
        if self.out is not None:
            if runs.start_run_folder(self.out, resume):
                self.load_checkpoint(self.out / "checkpoint.pt")
            runs.write_run_header(self.out, cfg)
        if self.truncated:
            print(
                f"note: {self.truncated} example(s) longer than {cfg.max_length} tokens were truncated", file=sys.stderr
            )
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc=cfg.objective, disable=not self.progress, leave=False)
        try:
            with self._stop as stop:
                self._loop(bar, stop)
                self._evaluate()
                self.save_checkpoint()
                if self.out is not None:
                    runs.save_model_atomic(self.model, self.tokenizer, self.out / "model")
        finally:
            bar.close()
            self._flush_metrics()
        return self.history

    def _loop(self, bar: tqdm, stop: runs.StopSignals) -> None:
        """Global batches until ``max_steps``; evaluations, checkpoints and Ctrl-C act between them,
        where the state is fully described by the model, optimiser and data position."""
        cfg = self.cfg
        if self.step == 0 and cfg.eval_every:
            self._evaluate()
        while self.step < cfg.max_steps:
            before = self.step
            for record in self._train_global_batch(self._next_global_batch()):
                self._log("metrics.jsonl", record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", entropy=f"{record['entropy']:.3f}")
            self._flush_metrics()  # one append per global batch keeps the log current and cheap
            crossed = lambda every: every > 0 and self.step // every > before // every  # noqa: B023
            if crossed(cfg.eval_every) and self.step < cfg.max_steps:
                self._evaluate()
            if crossed(cfg.save_every):
                self.save_checkpoint()
            if stop.requested:
                self.save_checkpoint()
                raise stop.interrupted(self.step, self.out)


__all__ = [
    "MECHANISM_KEYS", "OBJECTIVES", "RESUMABLE_SETTINGS", "TrainConfig", "Trainer", "lr_factor", "objective_loss",
]  # fmt: skip
