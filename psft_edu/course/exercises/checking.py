"""Shared machinery of the exercise checkers: reporting, reading a learner's answer, and the two
generic checkers (:func:`check_implementation`, :func:`check_prediction`) every notebook's checkers build on."""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


def report(ok: bool, message: str) -> bool:
    print(("Correct: " if ok else "Not yet: ") + message)
    return ok


def not_attempted(answer: Any, hint: str) -> bool:
    """True (after printing that the exercise was not attempted, with a hint) when ``answer`` is None."""
    if answer is None:
        print("Not attempted yet. Hint: " + hint)
        return True
    return False


def close_to(a: float, b: float, tol: float = 1e-4) -> bool:
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)


def _scalar(answer: Any) -> float | None:
    """A single number (int, float, NumPy scalar, one-element tensor) as a float; None for anything else."""
    if isinstance(answer, (str, bytes, bool)):
        return None
    try:
        value = float(answer.item() if hasattr(answer, "item") else answer)
    except (TypeError, ValueError, RuntimeError):
        return None
    return value if math.isfinite(value) else None


def _not_a_number(answer: Any) -> bool:
    return report(False, f"the answer should be a single number, got {answer!r}.")


def _flat_floats(answer: Any) -> list[float] | None:
    """A list, tuple, NumPy array or tensor of numbers as a flat list of floats (None if it is not one)."""
    if hasattr(answer, "detach"):
        answer = answer.detach().cpu()
    if hasattr(answer, "tolist"):
        answer = answer.tolist()
    if isinstance(answer, (int, float)):
        return [float(answer)]
    try:
        return [float(x) for x in answer]
    except (TypeError, ValueError):
        return None


def _per_item(answer: Any, count: int, what: str, example: str = "a list of numbers") -> list[float] | None:
    """``answer`` as ``count`` floats, or None after telling the learner to give one ``what`` per item."""
    values = _flat_floats(answer)
    if values is None or len(values) != count:
        report(False, f"give one {what} ({count} in all), e.g. {example}.")
        return None
    return values


def as_number(answer: Any) -> float | None:
    """A single number (Python, NumPy or a one-element tensor) as a float; None if it is not one."""
    values = _flat_floats(answer)
    return values[0] if values is not None and len(values) == 1 and not isinstance(answer, (str, bytes)) else None


def judge(
    value: float, expected: float, right: str, mistakes: list[tuple[float, str]], otherwise: str, tol: float = 1e-4
) -> bool:
    """True, with ``right``, when ``value`` is ``expected``; otherwise False with the message of the first
    known mistake ``value`` matches (``mistakes``: what that mistake gives, what it means), else ``otherwise``."""
    if close_to(value, expected, tol):
        return report(True, right)
    return report(False, next((message for wrong, message in mistakes if close_to(value, wrong, tol)), otherwise))


class _Verdict(Exception):
    """Ends a checker early with ``result``: None (not attempted) or False (not a usable answer)."""

    def __init__(self, result: bool | None) -> None:
        super().__init__(result)
        self.result = result


def checker(fn: Callable[..., bool | None]) -> Callable[..., bool | None]:
    """Decorate a checker so that :func:`attempt`, :func:`as_items`, :func:`one_number` and
    :func:`one_scalar` may end it early; each prints its own message first."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> bool | None:
        try:
            return fn(*args, **kwargs)
        except _Verdict as verdict:
            return verdict.result

    return run


def attempt(answer: Any, hint: str) -> None:
    """End the checker with None, after the hint, while ``answer`` is still None."""
    if not_attempted(answer, hint):
        raise _Verdict(None)


def as_items(answer: Any, count: int, what: str, example: str = "a list of numbers") -> list[float]:
    """``answer`` as ``count`` floats; otherwise end the checker with False (see :func:`_per_item`)."""
    values = _per_item(answer, count, what, example)
    if values is None:
        raise _Verdict(False)
    return values


def one_number(answer: Any, complaint: str) -> float:
    """``answer`` as one float (:func:`as_number`); otherwise end the checker with False after ``complaint``."""
    value = as_number(answer)
    if value is None:
        raise _Verdict(report(False, complaint))
    return value


def one_scalar(answer: Any) -> float:
    """``answer`` as one finite float (:func:`_scalar`); otherwise end the checker with False."""
    value = _scalar(answer)
    if value is None:
        raise _Verdict(_not_a_number(answer))
    return value


# ================================================================ generic machinery (01-05, 09; reusable in 06-08)
#
# Notebook-specific checkers for 06-08 belong next to these: build them on check_implementation and
# check_prediction so that every exercise behaves the same (None: "not attempted", returns None).


def _as_tensor(value: Any) -> Any:
    import torch

    if isinstance(value, (tuple, list)):
        parts = [_as_tensor(v) for v in value]
        if all(isinstance(p, torch.Tensor) for p in parts):
            return (
                torch.stack([p.reshape(()) if p.numel() == 1 else p for p in parts])
                if all(p.numel() == 1 for p in parts)
                else parts
            )
        return parts
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.as_tensor(value)


def _same(a: Any, b: Any, atol: float, rtol: float) -> bool:
    import torch

    a, b = _as_tensor(a), _as_tensor(b)
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(_same(x, y, atol, rtol) for x, y in zip(a, b))
        )
    if a.shape != b.shape and not (a.numel() == b.numel() == 1):
        return False
    a, b = a.double().reshape(b.shape), b.double()
    return bool(torch.allclose(a, b, atol=atol, rtol=rtol, equal_nan=False))


def _short(value: Any) -> str:
    try:
        t = _as_tensor(value)
        if isinstance(t, list):
            return "[" + ", ".join(_short(v) for v in t) + "]"
        if t.numel() == 1:
            return f"{t.item():.5g}"
        return f"a tensor of shape {tuple(t.shape)}"
    except (TypeError, ValueError, RuntimeError):
        return repr(value)[:60]


def detached_message(what: str = "loss", wrt: str = "logp") -> str:
    """The one message every implement-it checker prints for an output that carries no gradient back to ``wrt``."""
    return (
        f"your {what} has no gradient: it is detached from the inputs (no gradient reaches {wrt}). .detach(), "
        f".item(), torch.tensor(<a number>) and torch.no_grad() all cut the graph, and training on it would change "
        f"nothing; compute it from {wrt} with torch operations only"
    )


@dataclass
class _Run:
    """One call of a function on one case: its output, and its gradient in the checked input (None: no path back)."""

    value: Any
    grad: Any = None


def _run(fn: Callable[..., Any], kwargs: dict, grad_of: str | None, seed: int) -> _Run:
    """Call ``fn(**kwargs)`` on fresh copies of the tensors; with ``grad_of``, differentiate the output with respect
    to that input (a vector-Jacobian product with a fixed random vector when the output is not a scalar)."""
    import torch

    inputs = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    leaf = None
    if grad_of is not None:
        leaf = inputs[grad_of].detach().clone().requires_grad_(True)
        inputs[grad_of] = leaf.clone()  # not a leaf itself, as in training: in-place edits stay possible
    value = fn(**inputs)
    if leaf is None or not isinstance(value, torch.Tensor) or not value.requires_grad:
        return _Run(value)
    direction = torch.ones_like(value)
    if value.numel() > 1:
        direction = torch.randn(value.shape, generator=torch.Generator().manual_seed(seed), dtype=value.dtype)
    (grad,) = torch.autograd.grad(value, leaf, grad_outputs=direction, allow_unused=True)
    return _Run(value, grad)


def _finite(value: Any) -> bool:
    import torch

    t = _as_tensor(value)
    if isinstance(t, list):
        return all(_finite(v) for v in t)
    return not t.is_floating_point() or bool(torch.isfinite(t).all())


class _Learner:
    """The learner's function on the cases of one check: each run once, and the mistake model it matches."""

    def __init__(self, fn: Callable[..., Any], cases: list[tuple[str, dict, str | None]], atol: float, rtol: float):
        self.fn, self.cases, self.atol, self.rtol = fn, cases, atol, rtol
        self.runs: dict[int, _Run | None] = {}

    def run(self, i: int) -> _Run:
        """Case i (raises what the learner's function raises)."""
        self.runs[i] = None
        self.runs[i] = _run(self.fn, self.cases[i][1], self.cases[i][2], seed=i)
        return self.runs[i]

    def usable(self, i: int) -> _Run | None:
        """Case i, or None where the learner's function raises or gives no finite number."""
        if i not in self.runs:
            try:
                self.run(i)
            except Exception:  # the learner's code: only the failing case reports what it raised
                pass
        run = self.runs[i]
        try:
            return run if run is not None and run.value is not None and _finite(run.value) else None
        except (TypeError, ValueError, RuntimeError):
            return None

    def agrees(self, a: _Run, b: _Run) -> bool:
        if not _same(a.value, b.value, self.atol, self.rtol):
            return False
        return a.grad is None or b.grad is None or _same(a.grad, b.grad, self.atol, self.rtol)

    def mistake(self, mistakes: list[tuple[str, Any]], failing: int) -> str | None:
        """The message of the first model that agrees with the learner on every usable case, the failing one
        included. The models run like the reference; one that raises is a bug of the checker and raises."""
        for message, wrong_fn in mistakes:
            fits = True
            for i, (_, kwargs, wrt) in enumerate(self.cases):
                mine = self.usable(i)
                if mine is None and i != failing:
                    continue
                if mine is None or not self.agrees(mine, _run(wrong_fn, kwargs, wrt, seed=i)):
                    fits = False
                    break
            if fits:
                return message
        return None


Problem = tuple[str, str]  # (kind, message); kind: "type", "nonfinite", "value", "detached" or "gradient"


def _value_problem(name: str, description: str, got: _Run, expected: _Run, atol: float, rtol: float) -> Problem | None:
    """What is wrong with the learner's value on one case, or None if it is right."""
    try:
        got_t = _as_tensor(got.value)
    except (TypeError, ValueError, RuntimeError):
        kind = type(got.value).__name__
        return "type", f"{name} should return a number or a tensor; got {kind} (case: {description})."
    if not _finite(got.value) and _finite(expected.value):
        return "nonfinite", f"{name} returns inf or NaN on {description}."
    if _same(got.value, expected.value, atol, rtol):
        return None
    want_t = _as_tensor(expected.value)
    got_shape, want_shape = getattr(got_t, "shape", None), getattr(want_t, "shape", None)
    if (
        got_shape is not None
        and want_shape is not None
        and tuple(got_shape) != tuple(want_shape)
        and not (got_t.numel() == 1 and want_t.numel() == 1)
    ):
        return "value", f"{name} returns shape {tuple(got_shape)}, expected {tuple(want_shape)} (case: {description})."
    gives, wants = _short(got.value), _short(expected.value)
    return "value", f"on {description}, {name} gives {gives} where the package gives {wants}."


def _gradient_problem(name: str, what: str, wrt: str, description: str, got: _Run, expected: _Run, atol: float,
                      rtol: float) -> Problem | None:
    """What is wrong with the gradient of a learner's output whose value is right, or None if nothing is."""
    import torch

    if got.grad is None:
        return "detached", f"{detached_message(what, wrt)} (case: {description})."
    if not bool(torch.isfinite(got.grad).all()) and bool(torch.isfinite(expected.grad).all()):
        return "nonfinite", (
            f"the value of {name} is right, but its gradient holds inf or NaN on {description}: a product with a "
            "masked -inf still sends 0 · inf = NaN back."
        )
    if _same(got.grad, expected.grad, atol, rtol):
        return None
    return "gradient", (
        f"on {description}, {name} gives the right value but the wrong gradient with respect to {wrt}: a .detach() "
        "or a stop-gradient in the wrong place changes the gradient, not the value."
    )


@checker
def check_implementation(
    user_fn: Any,
    reference_fn: Any,
    make_inputs: Any,
    name: str,
    mistakes: list[tuple[str, Any]] | None = None,
    hint: str = "",
    nonfinite_hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-4,
    grad_of: str | None = None,
    what: str = "loss",
) -> bool | None:
    """Compare a learner's function with the package's on the same inputs, in value and (with ``grad_of``) in
    gradient; name the first mismatch and, when it recognises it, the mistake behind it.

    ``make_inputs()`` returns ``(description, kwargs)`` cases (random tensors first, edge cases after); a third
    element ``False`` compares that case's value only (ratios that sit exactly on a kink of the loss, where either
    one-sided slope is right). Both functions are called with keywords, on fresh copies of the tensors.

    With ``grad_of`` (the name of an input, e.g. ``"logp"``), that input requires grad and the gradient of the
    output with respect to it must agree with the package's too: an output that carries no gradient back (a
    ``.detach()``, an ``.item()`` turned into a new tensor) fails with :func:`detached_message`, and one whose value
    is right but whose gradient is not (a stop-gradient in the wrong place) is named as such.

    ``mistakes`` are ``(message, wrong_fn)`` pairs: known wrong implementations with the reference's signature.
    When the learner's function disagrees with the package, the first model that agrees with it on every case
    (value, and gradient where both have one; cases where the learner's output is not finite are left out) gives
    the message. A model is never skipped: one that raises is a bug of the checker and raises.
    Returns None when ``user_fn`` is None (not attempted), True when every case agrees, else False.
    """
    attempt(user_fn, hint or f"write the function {name} and pass it (the function itself, not a call).")
    if not callable(user_fn):
        return report(False, f"pass a function: {name} itself (no parentheses), not {user_fn!r}.")
    cases = [(c[0], c[1], grad_of if (len(c) < 3 or c[2]) else None) for c in make_inputs()]
    learner = _Learner(user_fn, cases, atol, rtol)
    for i, (description, kwargs, wrt) in enumerate(cases):
        expected = _run(reference_fn, kwargs, wrt, seed=i)
        try:
            got = learner.run(i)
        except Exception as error:  # the learner's code: report whatever it raised
            return report(False, f"{name} raised {type(error).__name__}: {error} (case: {description}).")
        if got.value is None and expected.value is not None:  # the template's body is still `return None`
            not_attempted(None, hint or f"fill in the body of {name} so that it returns its result.")
            return None
        problem = _value_problem(name, description, got, expected, atol, rtol)
        if problem is None and wrt is not None:
            problem = _gradient_problem(name, what, wrt, description, got, expected, atol, rtol)
        if problem is None:
            continue
        kind, text = problem
        if kind in ("value", "gradient"):
            message = learner.mistake(mistakes or [], i)
            if message:
                return report(False, f"{message} (first seen on: {description}).")
        advice = {"nonfinite": nonfinite_hint, "value": hint and f"Hint: {hint}", "gradient": hint and f"Hint: {hint}"}
        return report(False, f"{text} {advice.get(kind, '')}".rstrip())
    checked = " in value and gradient" if grad_of else ""
    return report(True, f"{name} agrees with the package{checked} on all {len(cases)} cases, edge cases included.")


# ---------------------------------------------------------------- predict, then run


def _measured_text(measured: Any) -> str:
    if isinstance(measured, bool) or type(measured).__name__ == "bool_":
        return str(bool(measured))
    if isinstance(measured, str):
        return repr(measured)
    value = _scalar(measured)
    return f"{value:.4g}" if value is not None else repr(measured)


def _folded_measurement(hint: str, measured: str, explanation: str) -> dict[str, str]:
    """The not-attempted output of a predict-then-run cell: the hint in plain text (terminals, nbval's text view)
    and, in HTML, the hint above the measurement folded in a closed ``<details>`` element."""
    plain = "Not attempted yet. Hint: " + hint
    body = f"The experiment gave {measured}." + (" " + explanation if explanation else "")
    html_text = (
        f"<p>{html.escape(plain, quote=False)}</p>\n"
        "<details><summary>Measured value (open it after you have written your prediction)</summary>\n"
        f"<p>{html.escape(body, quote=False)}</p>\n</details>"
    )
    return {"text/plain": plain, "text/html": html_text}


def _show(output: dict[str, str]) -> None:
    """Display ``output`` (MIME type -> text) as one rich output inside a Jupyter kernel; print its plain text
    anywhere else (a script, a terminal IPython, the tests)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        print(output["text/plain"])
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        print(output["text/plain"])
        return
    display(output, raw=True)


@checker
def check_prediction(
    prediction: Any,
    measured: Any,
    name: str = "this question",
    tolerance: float | None = None,
    explanation: str = "",
    options: Sequence[str] | None = None,
) -> bool | None:
    """Compare a prediction written BEFORE an experiment with what the experiment measured.

    ``measured`` is a number (then ``tolerance``, absolute, says how close counts as right; exact by default), a
    string choice (compared case-insensitively; ``options``, when given, are the answers allowed, and ``measured``
    must be one of them: ``ValueError`` otherwise, a mistake of the notebook), or a boolean. ``explanation`` follows
    the measured value.

    Not attempted (``prediction`` is None): returns None and shows the hint. In a Jupyter kernel the output is one
    display with two forms. Its HTML form (what Jupyter, Colab and the course site render) holds the hint and,
    below it, the measured value and the explanation inside a closed ``<details>`` element ("Measured value (open
    it after you have written your prediction)"): a reader of the committed notebook or of the site can open it, a
    learner who runs the cell first sees a closed fold. Its plain-text form (terminals, nbval's text view) is the
    hint alone and does not reveal the value. Outside a kernel only the plain text is printed. The cells carry
    ``# NBVAL_CHECK_OUTPUT``, so nbval compares both forms: the value is printed with 4 significant digits and must
    come from a deterministic experiment.

    Attempted: prints "Correct: ..." or "Not yet: ..." with the prediction, the measured value and the
    explanation, and returns True or False.
    """
    name = name or "this question"
    listed = ", ".join(repr(o) for o in options or ())
    allowed = [o.strip().lower() for o in options or ()]
    if options is not None and isinstance(measured, str) and measured.strip().lower() not in allowed:
        raise ValueError(f"the outcome {measured!r} is not one of the options {list(options)}")
    shown = _measured_text(measured)
    if prediction is None:
        hint = f"write down your prediction for {name} before running the experiment" + (
            f", one of {listed}." if options else "."
        )
        _show(_folded_measurement(hint, shown, explanation))
        return None
    if options is not None and (not isinstance(prediction, str) or prediction.strip().lower() not in allowed):
        return report(False, f"answer with one of {listed} (you wrote {prediction!r}).")
    if isinstance(measured, bool) or type(measured).__name__ == "bool_":
        if type(prediction).__name__ not in ("bool", "bool_"):
            return report(False, f"predict True or False for {name}.")
        ok = bool(prediction) == bool(measured)
    elif isinstance(measured, str):
        ok = str(prediction).strip().lower() == measured.strip().lower()
    else:
        value = one_scalar(prediction)
        tol = 1e-6 if tolerance is None else tolerance
        ok = abs(value - float(measured)) <= tol
        shown = f"{shown} (within ±{tol:g} counts)"
    lead = f"you predicted {prediction!r}; the experiment gave {shown}."
    return report(ok, lead + (" " + explanation if explanation else ""))


def run_names(summary: dict) -> str:
    return ", ".join(repr(n) for n in summary["runs"])
