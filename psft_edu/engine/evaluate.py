"""Sampling from a model and measuring it with the task verifiers.

Two kinds of measurement:

* **Exact** (no sampling noise): every family's verifier accepts a small, finite set of answers
  (:func:`psft_edu.tasks.accepted_answers`), so the probability that the model answers a prompt
  correctly at temperature 1 is the probability mass it puts on that set, computed by teacher
  forcing (:func:`exact_accuracy`). Its mean over prompts is what sampled accuracy estimates.
* **On the model's own samples**: the token entropy of the distributions the samples were drawn
  from, the exact KL to the base model at those same states (the whole vocabulary summed; the base
  reads the finished samples), the answer style (the teacher's `` a+b=c`` or the base's `` a+b``), and
  sampled accuracy, pass@k and distinct valid answers.

:func:`make_eval_fn` bundles both into the protocol every evaluation point of an experiment uses.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from .. import tasks
from ..data import collate, encode_records, eval_prompts
from ..objectives import exact_kl, kl_to_reference, masked_mean, token_entropy, token_logprobs
from ..presets import EvalProtocol


@dataclass
class Samples:
    """Completions for a list of prompts: ``texts[i][j]`` is sample j of prompt i."""

    texts: list[list[str]]
    token_ids: list[list[list[int]]]  # generated ids, eos included when produced
    entropies: list[list[list[float]]]  # entropy of the distribution each token was drawn from
    logprobs: list[list[list[float]]]  # log-prob of each drawn token under the sampling policy
    kls: list[list[list[float]]] | None = None  # exact KL(model || reference) at each drawn token's state


def _forward(model: torch.nn.Module, input_ids: torch.Tensor, attention: torch.Tensor, cache=None):
    out = model(input_ids=input_ids, attention_mask=attention, cache=cache, use_cache=True)
    return out.cache, out.logits[:, -1].float()


EVAL_NEW_TOKENS = 12  # longest sampled completion when evaluating, in tokens


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    num_samples: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = EVAL_NEW_TOKENS,
    seed: int = 0,
    reference: torch.nn.Module | None = None,
) -> Samples:
    """Draw ``num_samples`` completions per prompt (``temperature=0``: greedy), with a KV cache.

    Prompts are grouped by token length so no padding is needed; sampling uses its own
    seeded generator, so results do not depend on the global RNG. With ``reference`` (the base
    model) ``kls`` holds the exact KL(model || reference) of the two next-token distributions at
    every drawn token's state (the model's distribution at temperature 1); the reference reads each
    group's finished sequences in one forward pass rather than one token at a time.
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    eos = tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(encoded):
        by_length[len(ids)].append(i)

    texts: list[list[str]] = [[] for _ in prompts]
    token_ids: list[list[list[int]]] = [[] for _ in prompts]
    entropies: list[list[list[float]]] = [[] for _ in prompts]
    logprobs: list[list[list[float]]] = [[] for _ in prompts]
    kls: list[list[list[float]]] | None = [[] for _ in prompts] if reference is not None else None
    was_training = model.training
    model.eval()
    for length in sorted(by_length):
        rows = [i for i in by_length[length] for _ in range(num_samples)]
        input_ids = torch.tensor([encoded[i] for i in rows], device=device)
        attention = torch.ones_like(input_ids)
        cache, logits = _forward(model, input_ids, attention)
        finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
        drawn, step_entropy, step_logp, step_logits = [], [], [], []
        for _ in range(max_new_tokens):
            logp_all = torch.log_softmax(logits if temperature == 0 else logits / temperature, dim=-1)
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                nxt = torch.multinomial(logp_all.exp().cpu(), 1, generator=generator).squeeze(-1).to(device)
            step_entropy.append(-(logp_all.exp() * logp_all).sum(-1))
            step_logp.append(logp_all.gather(-1, nxt[:, None]).squeeze(-1))
            if reference is not None:
                step_logits.append(logits)
            nxt = torch.where(finished, torch.full_like(nxt, eos), nxt)
            drawn.append(nxt)
            finished |= nxt == eos
            if bool(finished.all()):
                break
            attention = torch.cat([attention, torch.ones_like(nxt[:, None])], dim=1)
            cache, logits = _forward(model, nxt[:, None], attention, cache)
        drawn_ids = torch.stack(drawn, 1)
        kl_rows = None
        if reference is not None:  # the reference at the same states: the prompt and every drawn token but the last
            states = torch.cat([input_ids, drawn_ids[:, :-1]], dim=1)
            ref_logits = reference(input_ids=states, attention_mask=torch.ones_like(states)).logits[:, length - 1 :]
            kl_rows = exact_kl(torch.stack(step_logits, 1), ref_logits).tolist()
        ids = drawn_ids.tolist()
        ent = torch.stack(step_entropy, 1).tolist()
        lps = torch.stack(step_logp, 1).tolist()
        for row, prompt_index in enumerate(rows):
            seq = ids[row]
            n = seq.index(eos) + 1 if eos in seq else len(seq)
            token_ids[prompt_index].append(seq[:n])
            entropies[prompt_index].append(ent[row][:n])
            logprobs[prompt_index].append(lps[row][:n])
            if kls is not None:
                kls[prompt_index].append(kl_rows[row][:n])
            texts[prompt_index].append(tokenizer.decode([t for t in seq[:n] if t != eos]))
    model.train(was_training)
    return Samples(texts, token_ids, entropies, logprobs, kls)


# ---------------------------------------------------------------- exact accuracy


@torch.no_grad()
def answer_logprobs(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[str], answers: list[list[str]]
) -> list[list[float]]:
    r"""Teacher-forced :math:`\log \pi_\theta(y \mid x)` of every answer ``answers[i][j]`` to ``prompts[i]``,
    the end-of-sequence token included (the answer and nothing more, as sampling would end it).

    Each prompt is run once and its KV cache shared by all of its answers; an answer that is the
    beginning of a longer one (`` 3+9`` of `` 3+9=12``) is read off the longer one's forward pass,
    from the probability of the end token where it ends. Prompts of equal length share a batch.
    """
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    tokens = [[tokenizer(a, add_special_tokens=False)["input_ids"] for a in per_prompt] for per_prompt in answers]
    out: list[list[float]] = [[0.0] * len(a) for a in answers]
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(encoded):
        if answers[i]:
            by_length[len(ids)].append(i)
    was_training = model.training
    model.eval()
    for length, group in sorted(by_length.items()):
        cache, first = _forward(model, torch.tensor([encoded[i] for i in group], device=device),
                                torch.ones(len(group), length, dtype=torch.long, device=device))
        first = torch.log_softmax(first, dim=-1)
        rows: list[tuple[int, list[int]]] = []  # (row of the prompt in ``group``, answer tokens + eos)
        row_of: dict[tuple[int, int], int] = {}
        for g, i in enumerate(group):
            longest = sorted(range(len(tokens[i])), key=lambda j: -len(tokens[i][j]))  # noqa: B023
            for j in longest:
                t = tokens[i][j]
                found = next((r for r, (h, u) in enumerate(rows) if h == g and u[: len(t)] == t), None)
                if found is None:
                    found = len(rows)
                    rows.append((g, t + [eos]))
                row_of[(i, j)] = found
        width = max(len(t) for _, t in rows)
        ids = torch.full((len(rows), width), eos, dtype=torch.long)
        real = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (_, t) in enumerate(rows):
            ids[r, : len(t)], real[r, : len(t)] = torch.tensor(t), 1
        ids, real = ids.to(device), real.to(device)
        owner = torch.tensor([g for g, _ in rows], device=device)
        cache.reorder_cache(owner)  # each row continues its own prompt's cache
        attention = torch.cat([torch.ones(len(rows), length, dtype=torch.long, device=device), real], dim=1)
        logits = model(input_ids=ids, attention_mask=attention, cache=cache, use_cache=True).logits
        # Token 0 is predicted at the prompt's last position; token t >= 1 at answer position t - 1.
        logp = torch.cat([first[owner][:, None], torch.log_softmax(logits[:, :-1].float(), dim=-1)], dim=1)
        before = torch.cumsum(logp.gather(-1, ids[:, :, None]).squeeze(-1), dim=1)  # log-prob of tokens 0..t
        before = torch.cat([torch.zeros_like(before[:, :1]), before[:, :-1]], dim=1).tolist()  # of tokens < t
        ends = logp[..., eos].tolist()  # log-prob of ending at position t
        for (i, j), r in row_of.items():
            n = len(tokens[i][j])
            out[i][j] = before[r][n] + ends[r][n]
    model.train(was_training)
    return out


def exact_accuracy(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> list[float]:
    r"""Per prompt, the probability that the model's answer at temperature 1 is correct.

    .. math:: \mathrm{acc}(x) = \sum_{y \in \mathcal{A}(x)} \pi_\theta(y\,\texttt{<eos>} \mid x)

    where :math:`\mathcal{A}(x)` is the set the verifier accepts (:func:`psft_edu.tasks.accepted_answers`).
    Sampled accuracy is a noisy estimate of the mean of these numbers. Exact for the course's
    character tokenizer, where every answer has one tokenization; with a subword tokenizer it counts
    each answer's usual tokenization only, a lower bound.
    """
    answers = [list(tasks.accepted_answers(p)) for p in prompts]
    logps = answer_logprobs(model, tokenizer, prompts, answers)
    return [min(1.0, sum(torch.tensor(lp).exp().tolist())) if lp else 0.0 for lp in logps]


# ---------------------------------------------------------------- measures on own samples


def own_sample_measures(drawn: Samples) -> dict[str, float]:
    """Token entropy and (when ``drawn.kls`` is set) exact KL to the reference, averaged over every
    token of every sample; ``kl_to_base`` is per token, as in :func:`own_sample_kl`."""
    entropies = [e for per_prompt in drawn.entropies for per_sample in per_prompt for e in per_sample]
    out = {"sample_entropy": sum(entropies) / max(len(entropies), 1)}
    if drawn.kls is not None:
        kls = [k for per_prompt in drawn.kls for per_sample in per_prompt for k in per_sample]
        out["kl_to_base"] = sum(kls) / max(len(kls), 1)
    return out


def answer_measures(drawn: Samples) -> dict[str, float]:
    """For in-domain samples: the share of answers in each style (:data:`psft_edu.tasks.STYLES`), and the
    entropy and KL to the reference on the *operand* tokens only (:func:`psft_edu.tasks.operand_positions`),
    the tokens where the model chooses its answer rather than completing a format."""
    styles = [tasks.answer_style(t) for per_prompt in drawn.texts for t in per_prompt]
    out = {f"style_{s}": styles.count(s) / max(len(styles), 1) for s in tasks.STYLES}
    entropy, kl = [], []
    for i, per_prompt in enumerate(drawn.texts):
        for j, text in enumerate(per_prompt):
            for position in tasks.operand_positions(text):
                entropy.append(drawn.entropies[i][j][position])
                if drawn.kls is not None:
                    kl.append(drawn.kls[i][j][position])
    out["operand_entropy"] = sum(entropy) / len(entropy) if entropy else float("nan")
    if drawn.kls is not None:
        out["operand_kl"] = sum(kl) / len(kl) if kl else float("nan")
    return out


def evaluate_family(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    num_samples: int = 8,
    seed: int = 0,
    reference: torch.nn.Module | None = None,
) -> dict[str, float]:
    """Verifier-based metrics of one family's prompts: greedy accuracy, sampled accuracy at
    temperature 1 (= pass@1), pass@k, distinct valid answers among k samples, exact accuracy
    (:func:`exact_accuracy`) and the mean token entropy of the samples.

    With ``reference`` (the base model) the result also holds ``kl_to_base``: the exact
    KL(model || reference) of the next-token distributions, averaged over every token of
    the model's own samples (see :func:`own_sample_kl`).
    """
    greedy = sample(model, tokenizer, prompts, 1, temperature=0.0, seed=seed)
    sampled = sample(model, tokenizer, prompts, num_samples, temperature=1.0, seed=seed, reference=reference)
    n = len(prompts)
    result = {"greedy_accuracy": sum(tasks.verify(p, g[0]) for p, g in zip(prompts, greedy.texts)) / n}
    result.update(sampled_accuracy(prompts, sampled))
    result["exact_accuracy"] = sum(exact_accuracy(model, tokenizer, prompts)) / n
    result.update(own_sample_measures(sampled))
    return result


def sampled_accuracy(prompts: list[str], drawn: Samples) -> dict[str, float]:
    """Sampled accuracy, pass@k and distinct valid answers per prompt, from k samples per prompt."""
    correct = [[tasks.verify(p, s) for s in samples] for p, samples in zip(prompts, drawn.texts)]
    k = len(drawn.texts[0]) if drawn.texts else 0
    distinct = [len({s for s, ok in zip(samples, oks) if ok}) for samples, oks in zip(drawn.texts, correct)]
    n = max(len(prompts), 1)
    return {
        "sampled_accuracy": sum(sum(c) for c in correct) / max(n * k, 1),
        f"pass@{k}": sum(any(c) for c in correct) / n,
        "distinct_valid": sum(distinct) / n,
    }


@torch.no_grad()
def own_sample_kl(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    drawn: Samples,
    batch_size: int = 512,
) -> float:
    r"""Exact KL(model || reference) on the model's own samples, per token.

    .. math:: \frac{1}{N}\sum_{i,t} \sum_v \pi_\theta(v \mid s_{i,t})
              \log\frac{\pi_\theta(v \mid s_{i,t})}{\pi_\mathrm{base}(v \mid s_{i,t})},
              \qquad y_i \sim \pi_\theta(\cdot \mid x_i)

    The states are the prompts followed by each sample's tokens, so this is how far the
    model has moved *where it actually goes*. No estimator: the whole vocabulary is summed.
    (:func:`sample` with ``reference`` computes the same numbers while it samples; this
    function recomputes them from scratch with two full forward passes.)
    """
    device = next(model.parameters()).device
    ids, prompt_lengths = [], []
    for prompt, samples in zip(prompts, drawn.token_ids):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for seq in samples:
            ids.append(p + seq)  # the states each sampled token was drawn from, eos included when drawn
            prompt_lengths.append(len(p))
    total, count = 0.0, 0.0
    for start in range(0, len(ids), batch_size):
        batch = collate(
            ids[start : start + batch_size], prompt_lengths[start : start + batch_size], tokenizer.pad_token_id
        )
        batch = batch.to(device)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        ref_logits = reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        kl = exact_kl(logits, ref_logits)
        total += float((kl * batch.mask).sum())
        count += float(batch.mask.sum())
    return total / max(count, 1.0)


def evaluate_model(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts_per_family: dict[str, list[str]],
    num_samples: int = 8,
    seed: int = 0,
    reference: torch.nn.Module | None = None,
) -> dict[str, dict[str, float]]:
    """:func:`evaluate_family` for every family, plus in-domain/out-of-domain summaries.

    The ``"summary"`` entry holds ``in_domain_accuracy`` (sampled accuracy on the in-domain
    family), ``in_domain_exact``, ``ood_accuracy`` (mean sampled accuracy over the other
    families), ``ood_exact``, ``ood_greedy``, ``distinct_valid`` / ``sample_entropy`` on the
    in-domain family, ``ood_sample_entropy`` and, with ``reference``, ``kl_in_domain`` / ``kl_ood``:
    the exact KL to the reference on the model's own samples (out-of-domain: the mean over those families).
    """
    results = {
        family: evaluate_family(model, tokenizer, prompts, num_samples=num_samples, seed=seed, reference=reference)
        for family, prompts in prompts_per_family.items()
    }
    ood = [f for f in results if f != tasks.IN_DOMAIN]
    summary = {}
    if tasks.IN_DOMAIN in results:
        own = results[tasks.IN_DOMAIN]
        summary.update(
            in_domain_accuracy=own["sampled_accuracy"],
            in_domain_exact=own["exact_accuracy"],
            in_domain_greedy=own["greedy_accuracy"],
            distinct_valid=own["distinct_valid"],
            sample_entropy=own["sample_entropy"],
        )
        if reference is not None:
            summary["kl_in_domain"] = own["kl_to_base"]
    if ood:
        mean = lambda key: sum(results[f][key] for f in ood) / len(ood)  # noqa: E731
        summary["ood_accuracy"] = mean("sampled_accuracy")
        summary["ood_exact"] = mean("exact_accuracy")
        summary["ood_greedy"] = mean("greedy_accuracy")
        summary["ood_sample_entropy"] = mean("sample_entropy")
        if reference is not None:
            summary["kl_ood"] = mean("kl_to_base")
    results["summary"] = summary
    return results


@torch.no_grad()
def demonstration_metrics(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    records: list[dict[str, str]],
    reference: torch.nn.Module | None = None,
    batch_size: int = 256,
    max_length: int = 64,
) -> dict[str, float]:
    """Mean token entropy, NLL and (with ``reference``) KL to it, on demonstration completions."""
    device = next(model.parameters()).device
    ids, prompt_lengths, _ = encode_records(records, tokenizer, max_length)
    totals = {"entropy": 0.0, "nll": 0.0, "kl_to_base": 0.0}
    count = 0.0
    for start in range(0, len(ids), batch_size):
        batch = collate(
            ids[start : start + batch_size], prompt_lengths[start : start + batch_size], tokenizer.pad_token_id
        ).to(device)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        n = batch.mask.sum().item()
        logp = token_logprobs(logits, batch.targets)
        totals["entropy"] += masked_mean(token_entropy(logits), batch.mask).item() * n
        totals["nll"] += masked_mean(-logp, batch.mask).item() * n
        if reference is not None:
            ref_logits = reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            ref_logp = token_logprobs(ref_logits, batch.targets)
            totals["kl_to_base"] += kl_to_reference(logp, ref_logp, batch.mask).item() * n
        count += n
    out = {k: v / count for k, v in totals.items()}
    if reference is None:
        out.pop("kl_to_base")
    return out


# ---------------------------------------------------------------- one protocol for every evaluation point


def evaluate_point(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: dict[str, list[str]],
    protocol: EvalProtocol,
    seed: int,
    val_records: list[dict],
    reference: torch.nn.Module | None = None,
    final: bool = False,
) -> dict:
    """One evaluation point under ``protocol`` (see :class:`psft_edu.presets.EvalProtocol`).

    At every point: exact accuracy of every family on ``prompts``; on ``protocol.samples`` own
    samples per in-domain prompt, the token entropy (all tokens and operand tokens), the exact KL to
    ``reference`` (all tokens and operand tokens) and the answer styles; the same entropy and KL on the
    first ``protocol.ood_prompts`` prompts of each out-of-domain family. With ``final``, also sampled and
    greedy accuracy, pass@k and distinct valid answers from ``protocol.final_samples`` samples per prompt
    of every family, and entropy and NLL on the held-out demonstrations ``val_records``.
    """
    itself = reference is model  # the base evaluated against itself: KL is zero, no second model to run
    drawn_prompts = {f: ps if f == tasks.IN_DOMAIN else ps[: protocol.ood_prompts] for f, ps in prompts.items()}
    everything = [p for ps in drawn_prompts.values() for p in ps]  # one call: fewer, fuller batches
    drawn = sample(model, tokenizer, everything, protocol.samples, seed=seed, reference=None if itself else reference)
    if itself or reference is None:
        drawn.kls = [[[0.0] * len(e) for e in per_prompt] for per_prompt in drawn.entropies] if itself else None
    every_prompt = [p for ps in prompts.values() for p in ps]
    accuracies = iter(exact_accuracy(model, tokenizer, every_prompt))  # one call: prompts of equal length share a batch
    exact = {f: [next(accuracies) for _ in ps] for f, ps in prompts.items()}
    families: dict[str, dict] = {}
    start = 0
    for family, family_prompts in prompts.items():
        part = _slice(drawn, start, start + len(drawn_prompts[family]))
        start += len(drawn_prompts[family])
        per_prompt = exact[family]
        row = {"exact_accuracy": sum(per_prompt) / len(per_prompt), **own_sample_measures(part)}
        if family == tasks.IN_DOMAIN:
            row.update(answer_measures(part))
        if final:
            greedy = sample(model, tokenizer, family_prompts, 1, temperature=0.0, seed=seed)
            row["greedy_accuracy"] = sum(tasks.verify(p, g[0]) for p, g in zip(family_prompts, greedy.texts))
            row["greedy_accuracy"] /= len(family_prompts)
            k_samples = sample(model, tokenizer, family_prompts, protocol.final_samples, seed=seed)
            counted = sampled_accuracy(family_prompts, k_samples)
            row["pass_at_k"] = counted.pop(f"pass@{protocol.final_samples}")
            row.update(counted)
            row["exact_per_prompt"] = per_prompt
        families[family] = row
    point = {"families": families, **_point_summary(families, final)}
    if final:
        point.update({f"demo_{k}": v for k, v in demonstration_metrics(model, tokenizer, val_records).items()})
    return point


def _slice(drawn: Samples, start: int, stop: int) -> Samples:
    """The samples of prompts ``start:stop``."""
    return Samples(drawn.texts[start:stop], drawn.token_ids[start:stop], drawn.entropies[start:stop],
                   drawn.logprobs[start:stop], None if drawn.kls is None else drawn.kls[start:stop])


def _point_summary(families: dict[str, dict], final: bool) -> dict[str, float]:
    own = families.get(tasks.IN_DOMAIN, {})
    ood = [families[f] for f in families if f != tasks.IN_DOMAIN]
    mean = lambda key: sum(f[key] for f in ood) / len(ood) if ood else float("nan")  # noqa: E731
    out = {
        "in_domain_exact": own.get("exact_accuracy", float("nan")),
        "ood_exact": mean("exact_accuracy"),
        "sample_entropy": own.get("sample_entropy", float("nan")),
        "operand_entropy": own.get("operand_entropy", float("nan")),
        "kl_in_domain": own.get("kl_to_base", float("nan")),
        "operand_kl": own.get("operand_kl", float("nan")),
        **{f"style_{s}": own.get(f"style_{s}", float("nan")) for s in tasks.STYLES},
        "ood_sample_entropy": mean("sample_entropy"),
        "kl_ood": mean("kl_to_base"),
    }
    if final:
        out.update(
            in_domain_accuracy=own.get("sampled_accuracy", float("nan")),
            in_domain_greedy=own.get("greedy_accuracy", float("nan")),
            pass_at_k=own.get("pass_at_k", float("nan")),
            distinct_valid=own.get("distinct_valid", float("nan")),
            ood_accuracy=mean("sampled_accuracy"),
            ood_greedy=mean("greedy_accuracy"),
        )
    return out


def make_eval_fn(
    tokenizer: PreTrainedTokenizerBase,
    val_records: list[dict],
    protocol: EvalProtocol,
    seed: int,
    reference: torch.nn.Module | None = None,
    final_step: int | None = None,
) -> Callable[[torch.nn.Module, int], dict]:
    """``evaluate(model, step)`` under one protocol (:func:`evaluate_point`) on this seed's own draw of
    held-out prompts (:func:`psft_edu.data.eval_prompts` with ``seed``), the same at every call; the
    point at ``final_step`` (and every point when ``final_step`` is None) adds the final measures."""
    prompts = {f: eval_prompts(f, protocol.prompts, seed=seed) for f in tasks.FAMILIES}

    def evaluate(model: torch.nn.Module, step: int) -> dict:
        final = final_step is None or step == final_step
        return evaluate_point(model, tokenizer, prompts, protocol, seed, val_records, reference, final)

    return evaluate
