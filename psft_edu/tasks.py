"""A small world of verifiable tasks, written as plain text prompts and completions.

Five families; each has a seeded prompt generator, a verifier and (all are finite
here) the set of valid answers for a prompt:

============  ===================================  =================  =============
family        example prompt -> completion         valid answers      role
============  ===================================  =================  =============
``make_sum``  ``make 12 from 3 9 5:`` `` 3+9``     two (both orders)  in-domain
``add``       ``add 23 48:`` `` 71``               exactly one        out-of-domain
``reverse``   ``reverse abcde:`` `` edcba``        exactly one        out-of-domain
``sort``      ``sort 5 2 9 1:`` `` 1 2 5 9``       exactly one        out-of-domain
``even``      ``even between 12 and 30:`` `` 18``  many               out-of-domain
============  ===================================  =================  =============

The base model learns every family from a pretraining mixture (:func:`pretrain_completion`).
Four families are clean: answers drawn uniformly from the valid set, a spread-out "own"
distribution. The in-domain family is *noisy*, like a skill picked up from web text full of
mistakes: only a minority of its pretraining answers are valid (spread over every valid
pair, in both orders); the rest pair two listed numbers whose sum is wrong. The base model
so learns the format and, latently, which pairs are right, but answers correctly only part
of the time. The SFT teacher answers ``make_sum`` correctly and in one canonical style the
base never saw: the pair with the smallest first number, written with its total, e.g.
`` 2+12=14``. The verifier accepts both styles.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

LETTERS = "abcdefgh"
IN_DOMAIN = "make_sum"
SUM_COUNT = 3  # numbers listed in a make_sum prompt (one pair sums to the target)
SUM_MAX = 9  # the numbers are distinct, from 1 to SUM_MAX
PRETRAIN_SUM_CORRECT = 0.3  # share of valid make_sum answers in the pretraining mixture


@dataclass(frozen=True)
class Example:
    family: str
    prompt: str
    answers: tuple[str, ...]  # every valid completion in the base style, sorted

    def as_record(self, completion: str) -> dict[str, str]:
        return {"prompt": self.prompt, "completion": completion}


def _check_rng(rng: random.Random) -> None:
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")


def _check_ints(family: str, **values: object) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{family}: {name} must be an int, got {type(value).__name__} {value!r}")


# ---------------------------------------------------------------- make_sum (in-domain)

def _sum_pairs(numbers: tuple[int, ...], target: int) -> list[tuple[int, int]]:
    return sorted(
        (numbers[i], numbers[j])
        for i in range(len(numbers))
        for j in range(len(numbers))
        if i != j and numbers[i] + numbers[j] == target
    )


def make_sum(rng: random.Random, count: int = SUM_COUNT, max_value: int = SUM_MAX, min_pairs: int = 1) -> Example:
    """``make T from n1 n2 ...:`` -> `` a+b`` where a, b are two of the numbers and a+b = T.

    Both orders count as different answers, so a target reachable by p pairs has 2p
    valid completions. ``min_pairs`` asks for targets with at least that many pairs.
    """
    _check_rng(rng)
    _check_ints("make_sum", count=count, max_value=max_value, min_pairs=min_pairs)
    if not 3 <= count <= max_value:
        raise ValueError(f"make_sum: count must be in [3, max_value={max_value}], got {count}")
    if min_pairs < 1 or min_pairs > count // 2:
        raise ValueError(f"make_sum: min_pairs must be in [1, {count // 2}], got {min_pairs}")
    while True:
        numbers = tuple(rng.sample(range(1, max_value + 1), count))
        sums = sorted({a + b for i, a in enumerate(numbers) for b in numbers[i + 1 :]})
        target = rng.choice(sums)
        pairs = _sum_pairs(numbers, target)
        if len(pairs) >= 2 * min_pairs:
            break
    prompt = f"make {target} from {' '.join(map(str, numbers))}:"
    return Example("make_sum", prompt, tuple(f" {a}+{b}" for a, b in pairs))


def teacher_completion(example: Example) -> str:
    """The SFT teacher's single canonical answer: smallest first number, with its total."""
    if example.family != "make_sum":
        raise ValueError(f"the teacher only answers make_sum, not {example.family}")
    target = int(example.prompt.split()[1])
    first = min(int(a.split("+")[0]) for a in example.answers)
    return f" {first}+{target - first}={target}"


def sum_numbers(prompt: str) -> list[int]:
    """The listed numbers of a ``make_sum`` prompt."""
    return [int(n) for n in prompt.split(" from ", 1)[1].rstrip(":").split()]


def pretrain_completion(example: Example, rng: random.Random, sum_correct: float = PRETRAIN_SUM_CORRECT) -> str:
    """The answer the pretraining mixture shows for ``example``.

    Clean families: a valid answer drawn uniformly. ``make_sum``: with probability
    ``sum_correct`` a valid answer drawn uniformly, otherwise an ordered pair of two listed
    numbers whose sum misses the target (a plausible mistake).
    """
    if example.family != "make_sum" or rng.random() < sum_correct:
        return rng.choice(example.answers)
    numbers, valid = sum_numbers(example.prompt), set(example.answers)
    wrong = [f" {a}+{b}" for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j]
    wrong = [w for w in wrong if w not in valid]
    return rng.choice(wrong) if wrong else rng.choice(example.answers)


_SUM_PROMPT = re.compile(r"^make (\d+) from ((?:\d+ )*\d+):\Z")
# Plain ASCII numbers without leading zeros, as the prompts write them (" 03+11" is not an answer);
# \Z, not $, so a trailing newline is not accepted either.
_NUMBER = r"(0|[1-9][0-9]*)"
_SUM_ANSWER = re.compile(rf"^ {_NUMBER}\+{_NUMBER}(?:={_NUMBER})?\Z")


def _verify_make_sum(prompt: str, completion: str) -> bool:
    p, a = _SUM_PROMPT.match(prompt), _SUM_ANSWER.match(completion)
    if not p or not a:
        return False
    target, numbers = int(p.group(1)), [int(n) for n in p.group(2).split()]
    x, y = int(a.group(1)), int(a.group(2))
    if a.group(3) is not None and int(a.group(3)) != target:
        return False
    if x + y != target or x not in numbers:
        return False
    rest = list(numbers)
    rest.remove(x)
    return y in rest


# ---------------------------------------------------------------- add

def add(rng: random.Random, max_value: int = 49) -> Example:
    """``add a b:`` -> `` a+b`` (one answer)."""
    _check_rng(rng)
    _check_ints("add", max_value=max_value)
    if max_value < 1:
        raise ValueError(f"add: max_value must be >= 1, got {max_value}")
    a, b = rng.randint(0, max_value), rng.randint(0, max_value)
    return Example("add", f"add {a} {b}:", (f" {a + b}",))


# ---------------------------------------------------------------- reverse

def reverse(rng: random.Random, min_len: int = 3, max_len: int = 5) -> Example:
    """``reverse abc:`` -> `` cba`` (one answer)."""
    _check_rng(rng)
    _check_ints("reverse", min_len=min_len, max_len=max_len)
    if not 1 <= min_len <= max_len:
        raise ValueError(f"reverse: need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(min_len, max_len)))
    return Example("reverse", f"reverse {word}:", (f" {word[::-1]}",))


# ---------------------------------------------------------------- sort

def sort(rng: random.Random, count: int = 4) -> Example:
    """``sort 5 2 9 1:`` -> `` 1 2 5 9`` (one answer; single digits)."""
    _check_rng(rng)
    _check_ints("sort", count=count)
    if not 2 <= count <= 10:
        raise ValueError(f"sort: count must be in [2, 10], got {count}")
    digits = rng.sample(range(10), count)
    return Example("sort", f"sort {' '.join(map(str, digits))}:", (" " + " ".join(map(str, sorted(digits))),))


# ---------------------------------------------------------------- even

def even(rng: random.Random, max_value: int = 60, min_gap: int = 6) -> Example:
    """``even between a and b:`` -> any even number strictly between a and b (many answers)."""
    _check_rng(rng)
    _check_ints("even", max_value=max_value, min_gap=min_gap)
    if max_value < min_gap + 2 or min_gap < 3:
        raise ValueError(f"even: need min_gap >= 3 and max_value >= min_gap + 2, got {min_gap}, {max_value}")
    low = rng.randint(0, max_value - min_gap)
    high = rng.randint(low + min_gap, max_value)
    answers = tuple(f" {n}" for n in range(low + 1, high) if n % 2 == 0)
    return Example("even", f"even between {low} and {high}:", answers)


# ---------------------------------------------------------------- registry and verification

def _verify_in_set(example_answers: Callable[[str], tuple[str, ...] | None]) -> Callable[[str, str], bool]:
    def verify(prompt: str, completion: str) -> bool:
        answers = example_answers(prompt)
        return answers is not None and completion in answers

    return verify


def _answers_add(prompt: str) -> tuple[str, ...] | None:
    m = re.match(r"^add (\d+) (\d+):\Z", prompt)
    return (f" {int(m.group(1)) + int(m.group(2))}",) if m else None


def _answers_reverse(prompt: str) -> tuple[str, ...] | None:
    m = re.match(r"^reverse ([a-z]+):\Z", prompt)
    return (f" {m.group(1)[::-1]}",) if m else None


def _answers_sort(prompt: str) -> tuple[str, ...] | None:
    m = re.match(r"^sort ((?:\d )*\d):\Z", prompt)
    return (" " + " ".join(sorted(m.group(1).split(), key=int)),) if m else None


def _answers_even(prompt: str) -> tuple[str, ...] | None:
    m = re.match(r"^even between (\d+) and (\d+):\Z", prompt)
    if not m:
        return None
    low, high = int(m.group(1)), int(m.group(2))
    return tuple(f" {n}" for n in range(low + 1, high) if n % 2 == 0)


GENERATORS: dict[str, Callable[..., Example]] = {
    "make_sum": make_sum,
    "add": add,
    "reverse": reverse,
    "sort": sort,
    "even": even,
}
VERIFIERS: dict[str, Callable[[str, str], bool]] = {
    "make_sum": _verify_make_sum,
    "add": _verify_in_set(_answers_add),
    "reverse": _verify_in_set(_answers_reverse),
    "sort": _verify_in_set(_answers_sort),
    "even": _verify_in_set(_answers_even),
}
FAMILIES = tuple(GENERATORS)
OUT_OF_DOMAIN = tuple(f for f in FAMILIES if f != IN_DOMAIN)


def family_of(prompt: str) -> str:
    """The family a prompt belongs to, from its first word."""
    head = prompt.split(" ", 1)[0]
    name = {"make": "make_sum", "add": "add", "reverse": "reverse", "sort": "sort", "even": "even"}.get(head)
    if name is None:
        raise ValueError(f"unknown task family for prompt {prompt!r}")
    return name


def verify(prompt: str, completion: str) -> bool:
    """True when ``completion`` is a correct answer to ``prompt`` (any family)."""
    return VERIFIERS[family_of(prompt)](prompt, completion)


def _accepted_make_sum(prompt: str) -> tuple[str, ...]:
    p = _SUM_PROMPT.match(prompt)
    if not p:
        return ()
    target, numbers = int(p.group(1)), [int(n) for n in p.group(2).split()]
    pairs = sorted({(a, b) for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j and a + b == target})
    return tuple(answer for a, b in pairs for answer in (f" {a}+{b}", f" {a}+{b}={target}"))


_ANSWER_SETS: dict[str, Callable[[str], tuple[str, ...] | None]] = {
    "make_sum": _accepted_make_sum,
    "add": _answers_add,
    "reverse": _answers_reverse,
    "sort": _answers_sort,
    "even": _answers_even,
}


def accepted_answers(prompt: str) -> tuple[str, ...]:
    """Every completion the verifier accepts for ``prompt``: a small, finite set in this task world.

    ``make_sum``: each order of each right pair, with and without the total (`` 3+9``, `` 3+9=12``,
    `` 9+3``, `` 9+3=12``); ``even``: every even number strictly between the bounds; the other
    families: their one answer. So the probability that a model answers correctly at temperature 1
    is the sum of the probabilities of these strings (each followed by the end-of-sequence token):
    :func:`psft_edu.engine.evaluate.exact_accuracy` computes it without sampling.
    """
    return tuple(_ANSWER_SETS[family_of(prompt)](prompt) or ())


_TEACHER_STYLE = re.compile(rf"^ {_NUMBER}\+{_NUMBER}={_NUMBER}\Z")
_BASE_STYLE = re.compile(rf"^ {_NUMBER}\+{_NUMBER}\Z")
STYLES = ("teacher", "base", "other")


def answer_style(completion: str) -> str:
    """The format of a ``make_sum`` answer, right or wrong: ``"teacher"`` (`` a+b=c``, with a total, as the
    SFT teacher writes), ``"base"`` (`` a+b``, as the pretraining mixture writes) or ``"other"``."""
    if _TEACHER_STYLE.match(completion):
        return "teacher"
    if _BASE_STYLE.match(completion):
        return "base"
    return "other"


def operand_positions(completion: str) -> list[int]:
    """Character (= token) positions of the two operands in a ``make_sum`` answer `` a+b...``.

    These are the tokens where the model *chooses* its answer; the space, the plus sign and the
    teacher's ``=total`` follow from the format and the choice. An answer without the `` a+b``
    shape has no operand positions (empty list).
    """
    found = re.match(rf"^ {_NUMBER}\+{_NUMBER}", completion)
    if not found:
        return []
    first, second = found.span(1), found.span(2)
    return list(range(*first)) + list(range(*second))


def generate(family: str, rng: random.Random, **kwargs) -> Example:
    """One example of ``family`` drawn with ``rng``."""
    if family not in GENERATORS:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    return GENERATORS[family](rng, **kwargs)
