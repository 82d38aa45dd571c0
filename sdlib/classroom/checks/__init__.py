"""Exercise checkers: one module per lesson (sdlib.classroom.checks.lesson01, ...).

A checker takes the learner's function, runs it on cases whose answers are known (computed by
the library or by an independent formula), and either prints a line starting with "Correct" or
raises ExerciseError with what went wrong and a hint. A stub that still raises
NotImplementedError gets its own message.

Every exercise is one function between `### BEGIN SOLUTION` / `### END SOLUTION` markers, whatever
its kind; the kind is recorded on the checker with `@exercise(kind)` (unmarked checkers are
"formula") and tests/test_exercises.py counts the kinds per lesson:

* "formula": implement a formula the lesson gives (any checker without the decorator).
* "derivation": the learner derives a result the lesson does not print and returns it as a
  function; the checker compares it with the truth on many random inputs and names the typical
  mistake. `check_random_cases` does the loop:

      @exercise("derivation")
      def check_kl_diagonal(kl_diagonal):
          check_random_cases(kl_diagonal, reference, cases, what="the KL",
                             mistakes=[(wrong_fn, "what this mistake is")], hint="...")
          passed("...")

* "prediction" (predict, then run): a function of no arguments returns a number or one of a few
  choices, written before the cell that measures the answer. `compare_prediction` validates the
  answer (a stub, a wrong type, a choice not offered or a number that is not finite or out of range
  raise ExerciseError), then measures, and prints "Correct! ..." or, for a valid prediction that
  misses, the measurement, the gap and why; a wrong prediction never raises.

      @exercise("prediction")
      def check_signal_prediction(predict_more_signal):
          compare_prediction(predict_more_signal, measure, what="...", choices=("linear", "cosine"),
                             explanation="...")

* "design": a function of no arguments returns a setting chosen to meet a stated target;
  `read_answer` validates it and the checker measures the outcome (with the pretrained weights,
  so that it means the same in the quick and the full mode) and raises ExerciseError when the
  target is missed, saying by how much and which way to move.
"""
from __future__ import annotations

import math
import numbers
import traceback
from pathlib import Path
from typing import Callable, Sequence

import torch

from sdlib.runtime import validate

_HERE = Path(__file__).resolve().parent


class ExerciseError(AssertionError):
    """The learner's answer is not right yet; the message says what is wrong and hints at why."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for a failed check: the message, not the checker's source (which would show
        the answer). Where the learner's own function raised, the lines of their code come first."""
        lines = []
        cause = self.__cause__
        if cause is not None and cause.__traceback__ is not None:
            theirs = [frame for frame in traceback.extract_tb(cause.__traceback__)
                      if Path(frame.filename).resolve().parent != _HERE and "sdlib" not in Path(frame.filename).parts]
            if theirs:
                lines += ["Your function raised an error here:\n", *traceback.format_list(theirs),
                          *traceback.format_exception_only(type(cause), cause)]
        lines.append(f"ExerciseError: {self}\n")
        return "".join(lines).rstrip("\n").split("\n")


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


# -- kinds of exercise --------------------------------------------------------------------------------

KINDS = ("formula", "derivation", "prediction", "design")


def exercise(kind: str):
    """Decorator recording a checker's kind of exercise (one of KINDS) as `checker.kind`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def mark(checker):
        checker.kind = kind
        return checker

    return mark


def kind_of(checker) -> str:
    """The kind of exercise a checker checks: "formula" unless @exercise says otherwise."""
    return getattr(checker, "kind", "formula")


# -- derivations: many random inputs, the typical mistakes named ------------------------------------

def _matches(got: torch.Tensor, want, rtol: float, atol: float) -> bool:
    want = as_tensor(want, "the reference")
    return (got.shape == want.shape and bool(torch.isfinite(got.double()).all())
            and torch.allclose(got.detach().double().cpu(), want.detach().double().cpu(), rtol=rtol, atol=atol))


def check_random_cases(fn: Callable, reference: Callable, cases, *, what: str, mistakes: Sequence = (),
                       hint: str = "", rtol: float = 1e-5, atol: float = 1e-7) -> int:
    """Compare fn(*args) with reference(*args) for every tuple of arguments in `cases`.

    mistakes: (wrong, message) pairs, `wrong` a function of the same arguments computing a typical
    mistake; an answer that matches one (and not the reference) raises ExerciseError(message).
    Arguments that are tensors are cloned before fn sees them, so an in-place change cannot leak
    into the reference. Returns the number of cases checked."""
    n = 0
    for args in cases:
        args = tuple(args)
        got = call(fn, *(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
        want = reference(*args)
        got_t = as_tensor(got, what, like=as_tensor(want, "the reference"))
        if not _matches(got_t, want, rtol, atol):
            for wrong, message in mistakes:
                if _matches(got_t, wrong(*args), rtol, atol):
                    raise ExerciseError(message)
        expect_close(got_t, want, what, hint=hint, rtol=rtol, atol=atol)
        n += 1
    return n


# -- predictions and design decisions: one answer, validated ------------------------------------------

def read_answer(fn: Callable, *args, choices: Sequence[str] | None = None, low: float | None = None,
                high: float | None = None, name: str | None = None):
    """Call a prediction's or a design decision's function (with `args`, usually none) and return its answer.

    choices: the strings allowed (compared without case or surrounding spaces; the choice is returned as
    spelled in `choices`). Otherwise the answer must be a real number (a float, an int, a NumPy scalar
    or a one-element tensor; not a bool), finite, and within [low, high] where given.
    A stub, a wrong type, a choice not offered or a number out of range raises ExerciseError."""
    name = name or getattr(fn, "__name__", "your function")
    value = call(fn, *args, name=name)
    if choices is not None:
        offered = ", ".join(repr(c) for c in choices)
        if not isinstance(value, str):
            raise ExerciseError(f"{name} should return one of the choices as a string ({offered}), got "
                                f"{type(value).__name__} {value!r}")
        lookup = {c.strip().lower(): c for c in choices}
        key = value.strip().lower()
        if key not in lookup:
            raise ExerciseError(f"{name} returned {value!r}, which is not one of the choices: {offered}")
        return lookup[key]
    try:                                              # the library's one check of a number, as an exercise error
        return validate.finite_number(value, f"the answer of {name}", low=low, high=high)
    except (TypeError, ValueError) as error:
        raise ExerciseError(str(error)) from None


def compare_prediction(predict: Callable, measure, *, what: str, choices: Sequence[str] | None = None,
                       low: float | None = None, high: float | None = None, tolerance: float = 0.0,
                       relative: bool = False, fmt: Callable = None, explanation="") -> bool:
    """Predict, then run: validate the learner's prediction, measure, and teach from the difference.

    measure: the measured answer, or a function of no arguments that measures it (called only after the
    prediction is valid). A number is right when it is within `tolerance` of the measurement (a fraction
    of it if `relative`); a choice when it is the measured choice. explanation: a string, or a function
    (prediction, measured) -> string, printed in both cases. Prints "Correct! ..." for a right
    prediction and the measurement with the gap for a wrong one; returns whether it was right. Only an
    invalid prediction (see read_answer) raises."""
    prediction = read_answer(predict, choices=choices, low=low, high=high)
    measured = measure() if callable(measure) else measure
    fmt = fmt or (str if choices is not None else (lambda v: f"{v:.3g}"))
    if choices is not None:
        right = prediction == measured
        gap = ""
    else:
        error = abs(prediction - measured)
        right = error <= (tolerance * abs(measured) if relative else tolerance)
        d = prediction - measured
        gap = f", off by {'+' if d > 0 else '-'}{fmt(abs(d))}"
        if relative and measured != 0 and prediction != 0:
            gap += f" ({prediction / measured:.2g} times the measurement)"
    why = explanation(prediction, measured) if callable(explanation) else explanation
    if right:
        passed(f"you predicted {fmt(prediction)} for {what}, and the measurement gives {fmt(measured)}. {why}".strip())
    else:
        print(f"Measured: {what} = {fmt(measured)}. You predicted {fmt(prediction)}{gap}. A prediction that misses "
              f"is not a failed exercise: the gap is the lesson. {why}".strip())
    return right
