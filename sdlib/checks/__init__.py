"""Exercise checkers: one module per lesson (sdlib.checks.lesson01, ...).

A checker takes the learner's function, runs it on cases whose answers are known (computed by
the library or by an independent formula), and either prints a line starting with "Correct" or
raises ExerciseError with what went wrong and a hint. A stub that still raises
NotImplementedError gets its own message.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import torch


class ExerciseError(AssertionError):
    """The learner's answer is not right yet; the message says what is wrong and hints at why."""


def passed(message: str) -> None:
    print(f"Correct! {message}")


def call(fn: Callable, *args, name: str | None = None, **kwargs):
    """Call the learner's function; turn a stub or a crash into an ExerciseError with the reason."""
    name = name or getattr(fn, "__name__", "your function")
    if not callable(fn):
        raise ExerciseError(f"expected a function, got {type(fn).__name__}: pass the function itself, "
                            f"without calling it")
    try:
        result = fn(*args, **kwargs)
    except NotImplementedError:
        raise ExerciseError(f"{name} is not written yet: replace the `raise NotImplementedError` line "
                            f"with your solution, run that cell, then run this check again") from None
    except ExerciseError:
        raise
    except Exception as error:
        raise ExerciseError(f"{name} raised {type(error).__name__}: {error}") from error
    if result is None:
        raise ExerciseError(f"your function returned None: {name} needs a `return` line that hands back its "
                            f"result (printing it is not enough)")
    return result


def as_tensor(value, what: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """The learner's answer as a tensor: tensors as they are, numbers, lists and arrays converted.

    like: a reference tensor; the answer is moved to its dtype and device, so that a correct answer in
    another dtype (float64 where the reference is float32, or half) compares like any other."""
    if value is None:
        raise ExerciseError(f"{what} is None: your function returned None where a tensor was expected "
                            f"(is a `return` missing?)")
    if isinstance(value, torch.Tensor):
        result = value
    elif isinstance(value, numbers.Real):
        result = torch.tensor(float(value), dtype=torch.float64)
    else:
        try:
            result = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise ExerciseError(f"{what} should be a tensor or a number, got {type(value).__name__}") from None
    if result.is_complex():
        raise ExerciseError(f"{what} should hold real numbers, got dtype {result.dtype}")
    if result.is_floating_point() and torch.finfo(result.dtype).eps > torch.finfo(torch.float32).eps:
        # float16 and bfloat16 keep 3 or 2 significant digits: a right formula would fail the comparison
        raise ExerciseError(f"{what} came back as {result.dtype}, which keeps only 2-3 significant digits: too "
                            f"coarse to compare with the answer. Compute in float32 (or float64): leave out the "
                            f".half() / .bfloat16() conversion")
    return result if like is None else result.to(like.device, like.dtype)


def expect_close(got, want, what: str, hint: str = "", rtol: float = 1e-4, atol: float = 1e-6) -> None:
    """Raise ExerciseError unless `got` matches `want` in shape and value (compared in float64, so a
    float32 or float64 answer is fine whatever the reference's dtype)."""
    got = as_tensor(got, what)
    want = as_tensor(want, "the reference")
    if got.shape != want.shape:
        raise ExerciseError(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}. {hint}".strip())
    got64, want64 = got.detach().double().cpu(), want.detach().double().cpu()
    if not torch.isfinite(got64).all():
        raise ExerciseError(f"{what} contains NaN or infinite values. {hint}".strip())
    if not torch.allclose(got64, want64, rtol=rtol, atol=atol):
        err = (got64 - want64).abs().max().item()
        example = _first_difference(got64, want64)
        raise ExerciseError(f"{what} is not right: largest difference {err:.3g}{example}. {hint}".strip())


def _first_difference(got: torch.Tensor, want: torch.Tensor) -> str:
    if got.numel() == 1:
        return f" (got {got.item():.6g}, expected {want.item():.6g})"
    diff = (got - want).abs().flatten()
    i = int(diff.argmax())
    return f" (e.g. at flat index {i}: got {got.flatten()[i].item():.6g}, expected {want.flatten()[i].item():.6g})"


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ExerciseError(message)


def isclose(a: float, b: float, rel: float = 1e-6, abs_: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)
