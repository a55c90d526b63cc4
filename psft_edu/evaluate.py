"""Sampling from a model and measuring it with the task verifiers.

For one family: greedy accuracy, sampled accuracy at temperature 1 (= pass@1),
pass@k, the number of distinct valid answers among k samples, the mean token
entropy on the model's own samples and, given the base model, the exact KL to it on
those samples; separately, entropy and KL on demonstrations.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from . import tasks
from .data import collate, encode_records, eval_prompts
from .objectives import exact_kl, kl_to_reference, masked_mean, token_entropy, token_logprobs


@dataclass
class Samples:
    """Completions for a list of prompts: ``texts[i][j]`` is sample j of prompt i."""

    texts: list[list[str]]
    token_ids: list[list[list[int]]]  # generated ids, eos included when produced
    entropies: list[list[list[float]]]  # entropy of the distribution each token was drawn from
    logprobs: list[list[list[float]]]  # log-prob of each drawn token under the sampling policy


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    num_samples: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 12,
    seed: int = 0,
) -> Samples:
    """Draw ``num_samples`` completions per prompt (``temperature=0``: greedy), with a KV cache.

    Prompts are grouped by token length so no padding is needed; sampling uses its own
    seeded generator, so results do not depend on the global RNG.
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
    was_training = model.training
    model.eval()
    for length in sorted(by_length):
        rows = [i for i in by_length[length] for _ in range(num_samples)]
        input_ids = torch.tensor([encoded[i] for i in rows], device=device)
        attention = torch.ones_like(input_ids)
        out = model(input_ids=input_ids, attention_mask=attention, use_cache=True)
        cache, logits = out.cache, out.logits[:, -1]
        finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
        drawn, step_entropy, step_logp = [], [], []
        for _ in range(max_new_tokens):
            logits = logits.float()
            logp_all = torch.log_softmax(logits if temperature == 0 else logits / temperature, dim=-1)
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                nxt = torch.multinomial(logp_all.exp().cpu(), 1, generator=generator).squeeze(-1).to(device)
            step_entropy.append(-(logp_all.exp() * logp_all).sum(-1))
            step_logp.append(logp_all.gather(-1, nxt[:, None]).squeeze(-1))
            nxt = torch.where(finished, torch.full_like(nxt, eos), nxt)
            drawn.append(nxt)
            finished |= nxt == eos
            if bool(finished.all()):
                break
            attention = torch.cat([attention, torch.ones_like(nxt[:, None])], dim=1)
            out = model(input_ids=nxt[:, None], attention_mask=attention, cache=cache, use_cache=True)
            cache, logits = out.cache, out.logits[:, -1]
        ids = torch.stack(drawn, 1).tolist()
        ent = torch.stack(step_entropy, 1).tolist()
        lps = torch.stack(step_logp, 1).tolist()
        for row, prompt_index in enumerate(rows):
            seq = ids[row]
            n = seq.index(eos) + 1 if eos in seq else len(seq)
            token_ids[prompt_index].append(seq[:n])
            entropies[prompt_index].append(ent[row][:n])
            logprobs[prompt_index].append(lps[row][:n])
            texts[prompt_index].append(tokenizer.decode([t for t in seq[:n] if t != eos]))
    model.train(was_training)
    return Samples(texts, token_ids, entropies, logprobs)


def evaluate_family(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    num_samples: int = 8,
    seed: int = 0,
    reference: torch.nn.Module | None = None,
) -> dict[str, float]:
    """Verifier-based metrics of one family's prompts (see the module docstring).

    With ``reference`` (the base model) the result also holds ``kl_to_base``: the exact
    KL(model || reference) of the next-token distributions, averaged over every token of
    the model's own samples (see :func:`own_sample_kl`).
    """
    greedy = sample(model, tokenizer, prompts, 1, temperature=0.0, seed=seed)
    sampled = sample(model, tokenizer, prompts, num_samples, temperature=1.0, seed=seed)
    greedy_ok = [tasks.verify(p, g[0]) for p, g in zip(prompts, greedy.texts)]
    correct = [[tasks.verify(p, s) for s in samples] for p, samples in zip(prompts, sampled.texts)]
    distinct = [len({s for s, ok in zip(samples, oks) if ok}) for samples, oks in zip(sampled.texts, correct)]
    token_entropies = [e for per_prompt in sampled.entropies for per_sample in per_prompt for e in per_sample]
    n = len(prompts)
    result = {
        "greedy_accuracy": sum(greedy_ok) / n,
        "sampled_accuracy": sum(sum(c) for c in correct) / (n * num_samples),
        f"pass@{num_samples}": sum(any(c) for c in correct) / n,
        "distinct_valid": sum(distinct) / n,
        "sample_entropy": sum(token_entropies) / max(len(token_entropies), 1),
    }
    if reference is not None:
        result["kl_to_base"] = own_sample_kl(model, reference, tokenizer, prompts, sampled)
    return result


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
    family), ``ood_accuracy`` (mean sampled accuracy over the other families), ``ood_greedy``,
    ``distinct_valid`` / ``sample_entropy`` on the in-domain family, ``ood_sample_entropy``
    and, with ``reference``, ``kl_in_domain`` / ``kl_ood``: the exact KL to the reference on
    the model's own samples (out-of-domain: the mean over those families).
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
            in_domain_greedy=own["greedy_accuracy"],
            distinct_valid=own["distinct_valid"],
            sample_entropy=own["sample_entropy"],
        )
        if reference is not None:
            summary["kl_in_domain"] = own["kl_to_base"]
    if ood:
        mean = lambda key: sum(results[f][key] for f in ood) / len(ood)  # noqa: E731
        summary["ood_accuracy"] = mean("sampled_accuracy")
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


def make_eval_fn(
    tokenizer, val_records: list[dict], prompts: int, samples: int, seed: int, reference: torch.nn.Module | None = None
) -> Callable:
    """One evaluation protocol: verifier metrics, entropy and exact KL to ``reference`` on own samples,
    and entropy/NLL on held-out demonstrations. Every call uses the same prompts and sampling seed."""
    per_family = {f: eval_prompts(f, prompts) for f in tasks.FAMILIES}

    def evaluate(model: torch.nn.Module, step: int) -> dict:  # noqa: ARG001 (the trainer passes the step)
        result = evaluate_model(model, tokenizer, per_family, samples, seed=seed, reference=reference)
        demo = demonstration_metrics(model, tokenizer, val_records)
        families = {f: r for f, r in result.items() if f != "summary"}
        return {"families": families, **result["summary"], **{f"demo_{k}": v for k, v in demo.items()}}

    return evaluate
