"""The main experiment: base -> SFT and base -> PSFT on the same data, side by side.

Two views, each over several seeds, written to one ``summary.json``:

* **main**: the full demonstration set for a few epochs, SFT and PSFT each at two learning
  rates. That gives three comparisons: matched at the higher rate, matched at the lower
  rate, and the paper's pairing (SFT at the higher rate, PSFT at the lower one: the paper ran
  PSFT 20x lower), which mixes the objective with the learning rate. The matched pairs answer
  the learners' question "is PSFT just a smaller learning rate?".
* **long** (prolonged training, the paper's toy regime): a small demonstration set seen for
  many epochs, where SFT's fixed point on a one-answer teacher (a one-hot policy) shows.

Every evaluation point of a view uses one protocol (:class:`~psft_edu.presets.EvalProtocol`): exact
accuracy on each seed's own draw of held-out prompts, and entropy, exact KL to the base and answer
style on the model's own samples; the final point adds sampled accuracy. Each metric is reported as
mean, standard deviation, 95% interval over seeds and per-seed values; SFT - PSFT differences are
paired by seed (:mod:`psft_edu.stats`). The runs are independent, so they run side by side in
one-thread worker processes (:mod:`psft_edu.engine.workers`); each finished run keeps ``result.json`` in
its folder, and ``resume`` reuses those. Writes ``summary.json``, ``report.md`` and PNG figures.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import tasks
from ..data import atomic_write_bytes, eval_prompts, load_split
from ..engine.evaluate import make_eval_fn, sample
from ..engine.train import TrainConfig, Trainer
from ..engine.workers import Task, WorkerPool
from ..models import load_model, weights_fingerprint
from ..objectives import PSFT_CLIP
from ..presets import DEFAULT_PRESET, PRESETS, CompareSettings, get_preset
from .results import run_name, summarise_view


@dataclass(frozen=True)
class RunSpec:
    """One fine-tuning arm: an objective, a learning rate and what else differs from the view's budget."""

    name: str
    objective: str
    lr: float
    never_refresh: bool = False
    clip: float | None = None
    global_batch: int | None = None  # K = global_batch / mini_batch (None: the view's)
    sft_warmup: int = 0  # PSFT after this many steps of SFT (the authors' toy run)
    max_steps: int | None = None  # None: the view's
    eval_every: int | None = None  # None: the view's
    teacher: str = "canonical"  # "canonical" (` 3+9=12`) or "base-style" (the same answer written ` 3+9`)

    def refresh_every(self, settings: CompareSettings) -> int | None:
        """K for this arm (None: the old policy is never refreshed)."""
        return None if self.never_refresh else (self.global_batch or settings.global_batch) // settings.mini_batch


# The main view and the prolonged view of each preset: their budgets live with the preset (presets.py).
SETTINGS: dict[str, CompareSettings] = {name: p.compare for name, p in PRESETS.items()}
LONG_SETTINGS: dict[str, CompareSettings] = {name: p.long for name, p in PRESETS.items()}
TEACHERS = ("canonical", "base-style")


# One evaluation point costs about as much as training on this many sequences per prompt it evaluates
# (measured at `small`: a point on 5 x 64 prompts takes as long as 13 optimiser steps of 32 sequences).
EVAL_COST_PER_PROMPT = 1.3


def run_cost(spec: RunSpec, settings: CompareSettings) -> float:
    """A run's relative size, for starting the largest first: sequences trained on plus its evaluations."""
    steps = spec.max_steps or settings.max_steps
    points = steps // (spec.eval_every or settings.eval_every) + 4  # the final point costs about four more
    return steps * settings.mini_batch + points * EVAL_COST_PER_PROMPT * len(tasks.FAMILIES) * settings.eval.prompts


def run_specs(settings: CompareSettings) -> list[RunSpec]:
    """SFT and PSFT at the higher and the lower learning rate."""
    return [RunSpec(run_name(o, lr), o, lr) for lr in (settings.high_lr, settings.low_lr) for o in ("sft", "psft")]


def long_specs(settings: CompareSettings) -> list[RunSpec]:
    """The prolonged view: SFT at the higher rate, PSFT at both (matched pair and paper pairing)."""
    return [
        RunSpec(run_name("sft", settings.high_lr), "sft", settings.high_lr),
        RunSpec(run_name("psft", settings.high_lr), "psft", settings.high_lr),
        RunSpec(run_name("psft", settings.low_lr), "psft", settings.low_lr),
    ]


def demonstrations(settings: CompareSettings, teacher: str = "canonical") -> list[dict]:
    """The view's training records; ``"base-style"`` writes each teacher answer without its total,
    as the base model itself writes answers (the same skill without a change of style)."""
    if teacher not in TEACHERS:
        raise ValueError(f"unknown teacher {teacher!r}; choose from {', '.join(TEACHERS)}")
    records = load_split("sft_train")[: settings.train_records or None]
    if teacher == "base-style":
        records = [{**r, "completion": r["completion"].split("=")[0]} for r in records]
    return records


SAMPLE_PROMPTS = 4  # per family, for the side-by-side generations in the report


def sample_table(model: torch.nn.Module, tokenizer, seed: int = 0, per_prompt: int = 4) -> dict[str, list[str]]:
    """A few completions (temperature 1) for the first eval prompts of each family."""
    prompts = [p for f in tasks.FAMILIES for p in eval_prompts(f, SAMPLE_PROMPTS if f == tasks.IN_DOMAIN else 1)]
    drawn = sample(model, tokenizer, prompts, per_prompt, temperature=1.0, seed=seed)
    return dict(zip(prompts, drawn.texts))


def train_config(spec: RunSpec, settings: CompareSettings, base: str, seed: int) -> TrainConfig:
    """The trainer's settings for one arm and seed of a view."""
    return TrainConfig(
        objective=spec.objective,
        lr=spec.lr,
        max_steps=spec.max_steps or settings.max_steps,
        global_batch=spec.global_batch or settings.global_batch,
        mini_batch=settings.mini_batch,
        clip=spec.clip if spec.clip is not None else PSFT_CLIP,
        never_refresh=spec.never_refresh,
        sft_warmup=spec.sft_warmup,
        seed=seed,
        eval_every=spec.eval_every or settings.eval_every,
        log_kl=False,  # drift is measured exactly at the evaluation points instead
        init=base,
    )


def finetune(
    spec: RunSpec,
    settings: CompareSettings,
    base: str,
    seed: int,
    folder: Path | None = None,
    base_eval: dict | None = None,
    keep_model: bool = True,
) -> dict:
    """One fine-tuning run from ``base`` (a preset or a folder): its per-step metrics, evaluations and samples.

    With ``folder`` and ``keep_model`` the trainer writes its logs, checkpoint and final model there.
    """
    torch.manual_seed(seed)
    model, tokenizer = load_model(base)
    base_model = copy.deepcopy(model).requires_grad_(False)  # the frozen base, for the KL evaluations
    cfg = train_config(spec, settings, base, seed)
    evaluate = make_eval_fn(tokenizer, load_split("sft_val"), settings.eval, seed, base_model, cfg.max_steps)

    def eval_fn(m, step):
        if step == 0 and base_eval is not None:
            return base_eval["eval"]  # the base was already evaluated once for this seed, same protocol
        return evaluate(m, step)

    records = demonstrations(settings, spec.teacher)
    out = folder if keep_model else None
    trainer = Trainer(model, tokenizer, records, cfg, out=out, eval_fn=eval_fn, progress=False)
    trainer.train()
    return {"metrics": trainer.history, "evals": trainer.evals, "final": trainer.evals[-1],
            "samples": sample_table(model, tokenizer, seed)}


def evaluate_base(base: str, settings: CompareSettings, seed: int) -> dict:
    """The base model under the view's protocol for one seed (its KL to itself is zero)."""
    model, tokenizer = load_model(base)
    evaluate = make_eval_fn(tokenizer, load_split("sft_val"), settings.eval, seed, model)
    return {"eval": evaluate(model, 0), "samples": sample_table(model, tokenizer, seed)}


RESULT = "result.json"  # a finished run's result, in its folder: what `resume` reads back


@dataclass(frozen=True)
class View:
    """One set of runs over seeds: ``specs`` × ``settings.seeds``, in ``folder`` (None: nothing kept)."""

    tag: str
    settings: CompareSettings
    specs: tuple[RunSpec, ...]
    folder: Path | None = None
    keep_models: bool = True


def stored_result(folder: Path | None, key: str, resume: bool) -> dict | None:
    """A finished run's result from an earlier, interrupted call (``resume``), if its key matches."""
    if not resume or folder is None or not (folder / RESULT).exists():
        return None
    stored = json.loads((folder / RESULT).read_text())
    return stored if stored.get("key") == key else None


def run_views(
    views: list[View], base: str, workers: int | None = None, progress: bool = True, resume: bool = False
) -> tuple[dict[str, tuple[dict[str, list[dict]], list[dict]]], dict]:
    """Every run of every view, side by side in ``workers`` processes; returns per view
    ``(results by run name, one per seed; base evaluations, one per seed)`` and the timing.

    The base is evaluated first (once per view and seed); then every fine-tuning run, the longest
    first. With ``resume``, runs whose ``result.json`` exists with the same settings are read back.
    """
    fingerprint = weights_fingerprint(base)
    phases: list[list[tuple[Task, tuple, Path | None, str]]] = [[], []]
    for view in views:
        for seed in view.settings.seeds:
            folder = view.folder / f"base_seed{seed}" if view.folder else None
            key = json.dumps(["base", fingerprint, asdict(view.settings.eval), seed], sort_keys=True)
            phases[0].append((Task(f"{view.tag} base seed {seed}", evaluate_base,
                                   {"base": base, "settings": view.settings, "seed": seed}),
                              (view.tag, "base", seed), folder, key))
    done: dict[tuple, dict] = {}
    timing = {"phases": []}
    hint = "run the same command with --resume to reuse them" if any(v.folder for v in views) else ""
    with WorkerPool(workers, progress=progress, resume_hint=hint) as pool:
        _run_phases(phases, views, base, fingerprint, resume, pool, done, timing)
    out = {}
    for view in views:
        results = {s.name: [done[(view.tag, s.name, seed)] for seed in view.settings.seeds] for s in view.specs}
        out[view.tag] = (results, [done[(view.tag, "base", seed)] for seed in view.settings.seeds])
    return out, timing


def _run_phases(phases, views, base, fingerprint, resume, pool, done, timing) -> None:
    """Phase 0 evaluates the base for every view and seed; phase 1 fine-tunes (it reuses those evaluations).

    Tasks with the same key are the same computation (the base under one protocol and seed, in both views):
    each runs once and its result is kept in every folder that asked for it."""
    for phase in range(2):
        if phase == 1:
            for view in views:
                for seed in view.settings.seeds:
                    for spec in view.specs:
                        folder = view.folder / f"{spec.name}_seed{seed}" if view.folder else None
                        key = json.dumps(["run", fingerprint, asdict(view.settings), asdict(spec), seed],
                                         sort_keys=True)
                        cost = run_cost(spec, view.settings)
                        kwargs = {"spec": spec, "settings": view.settings, "base": base, "seed": seed,
                                  "folder": folder, "base_eval": done[(view.tag, "base", seed)],
                                  "keep_model": view.keep_models}
                        phases[1].append((Task(f"{view.tag} {spec.name} seed {seed}", finetune, kwargs, cost),
                                          (view.tag, spec.name, seed), folder, key))
        todo = []
        for task, where, folder, key in phases[phase]:
            stored = stored_result(folder, key, resume)
            if stored is not None:
                done[where] = stored
            else:
                todo.append((task, where, folder, key))
        unique: dict[str, tuple] = {}  # key -> the first task with it: equal keys run once
        for entry in todo:
            unique.setdefault(entry[3], entry)
        tasks = [replace(t, fn=keep_result, kwargs={"fn": t.fn, "key": key, "folder": folder, "kwargs": t.kwargs})
                 for t, _, folder, key in unique.values()]
        results, phase_timing = pool.run(tasks, "evaluating the base" if phase == 0 else "fine-tuning")
        timing["phases"].append({"reused": len(phases[phase]) - len(todo), "shared": len(todo) - len(unique),
                                 **phase_timing})
        by_key = dict(zip(unique, results))
        for _, where, folder, key in todo:
            done[where] = by_key[key]
            if folder is not None and folder != unique[key][2]:  # the same evaluation, kept in this folder too
                atomic_write_bytes(folder / RESULT, json.dumps(by_key[key]).encode())


def keep_result(fn, key: str, folder: Path | None, kwargs: dict) -> dict:
    """Run ``fn(**kwargs)`` and keep its result, stamped with ``key``, in ``folder/result.json``."""
    result = fn(**kwargs)
    result["key"] = key
    if folder is not None:
        atomic_write_bytes(folder / RESULT, json.dumps(result).encode())
    return result


def run_view(
    preset: str, settings: CompareSettings, specs: list[RunSpec], tag: str, out: Path | None, progress: bool,
    workers: int | None = None,
) -> dict:
    """One view on its own: every run over every seed, summarised (see :func:`compare` for both views)."""
    started = time.time()
    results, timing = run_views([View(tag, settings, tuple(specs), out)], preset, workers, progress)
    view = summarise_view(preset, settings, *results[tag], specs)
    view["seconds"] = round(time.time() - started, 1)
    view["timing"] = timing
    return view


def compare(
    preset: str = DEFAULT_PRESET,
    seeds: tuple[int, ...] | None = None,
    out: str | Path = "runs/compare",
    settings: CompareSettings | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    long: bool = True,
    long_settings: CompareSettings | None = None,
    model: str | None = None,
    midtrain_steps: int | None = None,
    workers: int | None = None,
    resume: bool = False,
) -> dict:
    """Run both views and write ``summary.json``, ``report.md`` and figures to ``out``.

    ``seeds`` and ``max_steps`` override the main view's budget (for quick runs); the prolonged
    view keeps its own unless ``long_settings`` is given, and ``long=False`` skips it.
    ``model`` (a folder or ``hf:<id>`` with its own tokenizer) replaces the preset's base: it is
    mid-trained on the task world first (``midtrain_steps``) and perplexity on held-out English
    is reported too (:mod:`psft_edu.experiments.pretrained`); the preset then only sets the budgets.
    ``workers`` runs that many runs at once (default: one per usable core; 1: one after another,
    in this process); ``resume`` reuses the runs an interrupted call into the same ``out`` finished.
    """
    from .plots import save_compare_figures
    from .report import write_report

    p = get_preset(preset)
    settings = settings or SETTINGS[p.name]
    if seeds:
        settings = replace(settings, seeds=tuple(seeds))
    if max_steps:
        settings = replace(settings, max_steps=max_steps, eval_every=min(settings.eval_every, max_steps))
    if not model:  # a missing base is built (or refused in one line) before any folder or worker
        from .build_base import ensure_base

        ensure_base(p.name, progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    base = p.name
    if model:  # a pretrained model, taught the task world first, is the base of every run
        from .pretrained import midtrain

        base = str(midtrain(model, out / "base", steps=midtrain_steps, progress=progress))
    views = [View("main", settings, tuple(run_specs(settings)), out / "main")]
    if long:
        long_settings = long_settings or LONG_SETTINGS[p.name]
        views.append(View("long", long_settings, tuple(long_specs(long_settings)), out / "long"))
    results, timing = run_views(views, base, workers, progress, resume)
    summary = summarise_view(base, settings, *results["main"], list(views[0].specs))
    summary["preset"] = p.name
    if long:
        summary["long"] = summarise_view(base, long_settings, *results["long"], list(views[1].specs))
        summary["long"]["preset"] = p.name
    summary["threads"] = 1
    summary["timing"] = timing
    summary["seconds"] = round(time.time() - started, 1)
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=1).encode())
    figures = save_compare_figures(summary, out)
    write_report(summary, out / "report.md", figures)
    if model:
        from .pretrained import report_lm_retention
        from .results import pairings

        # Perplexity on English, added to summary.json and report.md.
        report_lm_retention(summary, model, base, out, pairings)
    return summary


# ---------------------------------------------------------------- committed caches

CACHE_CURVES = (
    "entropy", "clip_fraction", "grad_norm", "ratio_median", "ratio_p99", "ratio_max", "past_bound", "unclippable",
    "kl_old", "grad_clipped", "step_size", "refresh_distance", "base_distance",
)  # per-step curves kept by :func:`slim` (fmt: skip)


def slim(
    summary: dict, keep: tuple[str, ...] = CACHE_CURVES, digits: int = 6, step_intervals: bool = True,
    max_points: int | None = None,
) -> dict:
    """A smaller copy of a summary for committing: only the per-step curves named in ``keep``.

    Evaluation curves (``eval_*``), finals, per-family finals, paired differences and samples
    stay (in the prolonged view ``long`` too); every float is rounded to ``digits`` significant
    digits (the notebooks print 3 or 4). ``step_intervals=False`` also drops the 95% intervals
    of the per-step curves (with one seed there are none). ``max_points`` thins every per-step curve
    to at most about that many points, evenly spaced, the last step always kept (evaluation curves are
    never thinned).
    """

    def rounded(x):
        if isinstance(x, float):
            return float(f"{x:.{digits}g}")
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        if isinstance(x, list):
            return [rounded(v) for v in x]
        return x

    out = copy.deepcopy(summary)
    for view in (out, out.get("long", {})):
        for run in view.get("runs", {}).values():
            run["curves"] = {k: c for k, c in run["curves"].items() if k.startswith("eval_") or k in keep}
            for key, curve in run["curves"].items():
                if key.startswith("eval_"):
                    continue
                if not step_intervals:
                    curve.pop("ci95", None)
                if max_points:
                    _thin(curve, max_points)
    return rounded(out)


def _thin(curve: dict, max_points: int) -> None:
    """Keep every n-th entry of a per-step curve's lists (n chosen for about ``max_points``), the last one too."""
    length = len(curve["step"])
    stride = -(-length // max_points)
    if stride <= 1:
        return
    index = sorted(set(range(0, length, stride)) | {length - 1})
    for key, values in curve.items():
        if isinstance(values, list) and len(values) == length:
            curve[key] = [values[i] for i in index]


def write_cache(summary: dict, path: str | Path) -> Path:
    """:func:`slim` a comparison's summary and write it (compact JSON) to ``path``, e.g. the
    committed ``notebooks/results/compare_small.json`` that notebook 06 reads."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(slim(summary, digits=5), separators=(",", ":")) + "\n").encode())
    return path
