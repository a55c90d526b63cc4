"""Shared machinery of the exercise checkers: reporting, reading a learner's answer, and the two
generic checkers (:func:`check_implementation`, :func:`check_prediction`) every notebook's checkers build on."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any


def _report(ok: bool, message: str) -> bool:
    print(("Correct: " if ok else "Not yet: ") + message)
    return ok


def _not_attempted(answer: Any, hint: str) -> bool:
    """True (after printing that the exercise was not attempted, with a hint) when ``answer`` is None."""
    if answer is None:
        print("Not attempted yet. Hint: " + hint)
        return True
    return False


def _close(a: float, b: float, tol: float = 1e-4) -> bool:
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
    return _report(False, f"the answer should be a single number, got {answer!r}.")


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
        _report(False, f"give one {what} ({count} in all), e.g. {example}.")
        return None
    return values


def _number(answer: Any) -> float | None:
    """A single number (Python, NumPy or a one-element tensor) as a float; None if it is not one."""
    values = _flat_floats(answer)
    return values[0] if values is not None and len(values) == 1 and not isinstance(answer, (str, bytes)) else None


def _judge(
    value: float, expected: float, right: str, mistakes: list[tuple[float, str]], otherwise: str, tol: float = 1e-4
) -> bool:
    """True, with ``right``, when ``value`` is ``expected``; otherwise False with the message of the first
    known mistake ``value`` matches (``mistakes``: what that mistake gives, what it means), else ``otherwise``."""
    if _close(value, expected, tol):
        return _report(True, right)
    return _report(False, next((message for wrong, message in mistakes if _close(value, wrong, tol)), otherwise))


class _Verdict(Exception):
    """Ends a checker early with ``result``: None (not attempted) or False (not a usable answer)."""

    def __init__(self, result: bool | None) -> None:
        super().__init__(result)
        self.result = result


def checker(fn: Callable[..., bool | None]) -> Callable[..., bool | None]:
    """Decorate a checker so that :func:`_attempt`, :func:`_items`, :func:`_one_number` and
    :func:`_one_scalar` may end it early; each prints its own message first."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> bool | None:
        try:
            return fn(*args, **kwargs)
        except _Verdict as verdict:
            return verdict.result

    return run


def _attempt(answer: Any, hint: str) -> None:
    """End the checker with None, after the hint, while ``answer`` is still None."""
    if _not_attempted(answer, hint):
        raise _Verdict(None)


def _items(answer: Any, count: int, what: str, example: str = "a list of numbers") -> list[float]:
    """``answer`` as ``count`` floats; otherwise end the checker with False (see :func:`_per_item`)."""
    values = _per_item(answer, count, what, example)
    if values is None:
        raise _Verdict(False)
    return values


def _one_number(answer: Any, complaint: str) -> float:
    """``answer`` as one float (:func:`_number`); otherwise end the checker with False after ``complaint``."""
    value = _number(answer)
    if value is None:
        raise _Verdict(_report(False, complaint))
    return value


def _one_scalar(answer: Any) -> float:
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
) -> bool | None:
    """Compare a learner's function with the package's on the same inputs; name the first mismatch.

    ``make_inputs()`` returns a list of ``(description, kwargs)`` cases (random tensors first, edge cases
    after). Each case's tensors are cloned before each call, so an in-place change cannot leak. On the
    first case where ``user_fn(**kwargs)`` differs from ``reference_fn(**kwargs)`` (shape, value within
    ``atol``/``rtol``, non-finite output, or an exception), the checker says which case it was, and if the
    output matches one of ``mistakes`` (``(message, wrong_fn)`` pairs) it prints that message.
    Returns None when ``user_fn`` is None (not attempted), True when every case agrees, else False.
    """
    import torch

    _attempt(user_fn, hint or f"write the function {name} and pass it (the function itself, not a call).")
    if not callable(user_fn):
        return _report(False, f"pass a function: {name} itself (no parentheses), not {user_fn!r}.")

    def clone(kwargs: dict) -> dict:
        return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}

    cases = list(make_inputs())
    for description, kwargs in cases:
        expected = reference_fn(**clone(kwargs))
        try:
            got = user_fn(**clone(kwargs))
        except Exception as error:  # the learner's code: report whatever it raised
            return _report(False, f"{name} raised {type(error).__name__}: {error} (case: {description}).")
        if got is None and expected is not None:  # the template's body is still `return None`
            _not_attempted(None, hint or f"fill in the body of {name} so that it returns its result.")
            return None
        try:
            got_t = _as_tensor(got)
        except (TypeError, ValueError, RuntimeError):
            return _report(
                False, f"{name} should return a number or a tensor; got {type(got).__name__} (case: {description})."
            )
        if isinstance(got_t, torch.Tensor) and got_t.is_floating_point() and not torch.isfinite(got_t).all():
            finite_expected = (
                torch.isfinite(_as_tensor(expected)).all() if isinstance(_as_tensor(expected), torch.Tensor) else True
            )
            if finite_expected:
                return _report(False, f"{name} returns inf or NaN on {description}. {nonfinite_hint}".rstrip())
        if _same(got, expected, atol, rtol):
            continue
        for message, wrong_fn in mistakes or []:
            try:
                if _same(got, wrong_fn(**clone(kwargs)), atol, rtol):
                    return _report(False, f"{message} (first seen on: {description}).")
            except Exception:  # a mistake model that does not apply to this case
                continue
        got_shape = getattr(got_t, "shape", None)
        want_shape = getattr(_as_tensor(expected), "shape", None)
        if (
            got_shape is not None
            and want_shape is not None
            and tuple(got_shape) != tuple(want_shape)
            and not (got_t.numel() == 1 and _as_tensor(expected).numel() == 1)
        ):
            return _report(
                False, f"{name} returns shape {tuple(got_shape)}, expected {tuple(want_shape)} (case: {description})."
            )
        return _report(
            False,
            f"on {description}, {name} gives {_short(got)} where the package gives {_short(expected)}. "
            + (f"Hint: {hint}" if hint else ""),
        )
    return _report(True, f"{name} agrees with the package on all {len(cases)} cases, edge cases included.")


@checker
def check_prediction(
    prediction: Any,
    measured: Any,
    name: str,
    tolerance: float | None = None,
    explanation: str = "",
    options: Sequence[str] | None = None,
) -> bool | None:
    """Compare a prediction written BEFORE an experiment with what the experiment measured.

    ``measured`` is a number (then ``tolerance``, absolute, says how close counts as right), a string
    choice (compared case-insensitively; ``options``, when given, are the answers allowed), or a
    boolean. Returns None when ``prediction`` is None.
    """
    listed = ", ".join(repr(o) for o in options or ())
    _attempt(
        prediction,
        f"write down your prediction for {name} before running the experiment"
        + (f", one of {listed}." if options else "."),
    )
    if options is not None and (
        not isinstance(prediction, str) or prediction.strip().lower() not in [o.lower() for o in options]
    ):
        return _report(False, f"answer with one of {listed} (you wrote {prediction!r}).")
    if isinstance(measured, bool) or type(measured).__name__ == "bool_":
        if type(prediction).__name__ not in ("bool", "bool_"):
            return _report(False, f"predict True or False for {name}.")
        ok = bool(prediction) == bool(measured)
        shown = str(bool(measured))
    elif isinstance(measured, str):
        ok = str(prediction).strip().lower() == measured.strip().lower()
        shown = repr(measured)
    else:
        value = _one_scalar(prediction)
        tol = 1e-6 if tolerance is None else tolerance
        ok = abs(value - float(measured)) <= tol
        shown = f"{float(measured):.4g} (within ±{tol:g} counts)"
    lead = f"you predicted {prediction!r}; the experiment gave {shown}."
    return _report(ok, lead + (" " + explanation if explanation else ""))
