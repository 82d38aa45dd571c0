"""Lesson 09's checkers (sdlib.classroom.checks.lesson09) against the notebook's own solutions and against typical slips.

tests/test_exercises.py holds every lesson to the same rules (the solution passes, the stub and one typical mistake
fail); here each of lesson 09's checkers also meets several slips, and each slip must get its own hint."""
from __future__ import annotations

import ast
import math

import nbformat
import pytest
import torch
from helpers import ROOT

from sdlib.classroom.checks import ExerciseError, kind_of, lesson09
from sdlib.classroom.student import has_solution, strip_solutions

NOTEBOOK = ROOT / "notebooks" / "09_flow_matching.ipynb"
CHECKERS = {"score_from_eps": "check_score_from_eps", "interpolate_and_velocity": "check_interpolant",
            "flow_time": "check_flow_time", "euler_step": "check_euler_step",
            "predict_one_step_near_a_centre": "check_one_step_prediction", "heun_step": "check_heun_step",
            "eps_and_x0_from_velocity": "check_velocity_conversion"}


def _solutions() -> dict[str, str]:
    """{function name: the source of the exercise cell that defines it}, read from the notebook."""
    found = {}
    for cell in nbformat.read(str(NOTEBOOK), as_version=4).cells:
        if cell.cell_type == "code" and has_solution(cell.source):
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.FunctionDef):
                    found[node.name] = cell.source
    return found


SOLUTIONS = _solutions()


def _define(source: str, name: str):
    namespace = {"torch": torch, "math": math}
    exec(compile(source, f"<lesson 09: {name}>", "exec"), namespace)
    return namespace[name]


def _check(name: str, fn) -> None:
    getattr(lesson09, CHECKERS[name])(fn)


def test_every_exercise_of_the_notebook_has_its_checker():
    assert set(SOLUTIONS) == set(CHECKERS)
    kinds = [kind_of(getattr(lesson09, c)) for c in CHECKERS.values()]
    assert sorted(kinds) == ["derivation", "derivation", "formula", "formula", "formula", "formula", "prediction"]


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_checker_passes_the_notebooks_solution(name, capsys):
    _check(name, _define(SOLUTIONS[name], name))
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_checker_refuses_the_stub(name):
    stub, n = strip_solutions(SOLUTIONS[name])
    assert n == 1
    with pytest.raises(ExerciseError, match="not written yet"):
        _check(name, _define(stub, name))


def _fn(signature: str, body: str) -> str:
    return f"def {signature}:\n" + "".join(f"    {line}\n" for line in body.strip().split("\n"))


_SCORE = "score_from_eps(eps_pred, alpha_bar_t)"
_PATH = "interpolate_and_velocity(x0, eps, t)"
_SHAPED = "t = t.reshape(-1, *[1] * (x0.dim() - 1))\n"
_EULER = "euler_step(xt, v_pred, t, t_prev)"
_HEUN = "heun_step(velocity, xt, t, t_prev)"
_HEUN_START = "v = velocity(xt, t)\nx_euler = xt + (t_prev - t) * v\n"
_CONVERT = "eps_and_x0_from_velocity(xt, v, t)"

SLIPS = [
    ("score_from_eps", _fn(_SCORE, "return eps_pred / math.sqrt(1 - alpha_bar_t)"), "sign is missing"),
    ("score_from_eps", _fn(_SCORE, "return -eps_pred / (1 - alpha_bar_t)"), "not by its variance"),
    ("score_from_eps", _fn(_SCORE, "return -eps_pred * math.sqrt(1 - alpha_bar_t)"), "instead of multiplying"),
    ("score_from_eps", _fn(_SCORE, "return -eps_pred / math.sqrt(alpha_bar_t)"), r"sqrt\(ᾱ_t\) scales the image"),
    ("score_from_eps", _fn(_SCORE, "return -eps_pred"), "scale is missing"),
    ("interpolate_and_velocity", _fn(_PATH, _SHAPED + "return t * x0 + (1 - t) * eps, eps - x0"), "t = 0 is the data"),
    ("interpolate_and_velocity", _fn(_PATH, _SHAPED + "return (1 - t).sqrt() * x0 + t.sqrt() * eps, eps - x0"),
     "DDPM's curved path"),
    ("interpolate_and_velocity", _fn(_PATH, _SHAPED + "return (1 - t) * x0 + t * eps, x0 - eps"), "not x0 − ε"),
    ("interpolate_and_velocity", _fn(_PATH, _SHAPED + "return (1 - t) * x0 + t * eps, t * (eps - x0)"),
     "does not depend on t"),
    ("interpolate_and_velocity", _fn(_PATH, _SHAPED + "return eps - x0, (1 - t) * x0 + t * eps"), "in that order"),
    ("interpolate_and_velocity", _fn(_PATH, "return (1 - t) * x0 + t * eps, eps - x0"), r"reshape"),
    ("interpolate_and_velocity", _fn(_PATH, _SHAPED + "return (1 - t) * x0 + t * eps"), "should return two tensors"),
    ("flow_time", _fn("flow_time(alpha_bar)", "return 1 - alpha_bar"), "noise variance"),
    ("flow_time", _fn("flow_time(alpha_bar)", "return (1 - alpha_bar).sqrt()"), "same noise coefficient"),
    ("flow_time", _fn("flow_time(alpha_bar)", "return 1 - alpha_bar.sqrt()"), "same signal coefficient"),
    ("flow_time", _fn("flow_time(alpha_bar)", "return alpha_bar.sqrt() / (alpha_bar.sqrt() + (1 - alpha_bar).sqrt())"),
     "This is 1 − t"),
    ("euler_step", _fn(_EULER, "return xt + (t - t_prev) * v_pred"), "wrong way"),
    ("euler_step", _fn(_EULER, "return xt - t * v_pred"), "jumped all the way"),
    ("euler_step", _fn(_EULER, "return xt - v_pred"), "size of the step"),
    ("heun_step", _fn(_HEUN, _HEUN_START + "return x_euler"), "That is Euler's step"),
    ("heun_step", _fn(_HEUN, _HEUN_START + "return xt + (t_prev - t) * velocity(x_euler, t_prev)"),
     "mean of both velocities"),
    ("heun_step", _fn(_HEUN, _HEUN_START + "return xt + (t_prev - t) * (v + velocity(x_euler, t)) / 2"),
     r"not velocity\(x̃, t\)"),
    ("heun_step", _fn(_HEUN, _HEUN_START + "return xt + (t_prev - t) * (v + velocity(xt, t_prev)) / 2"),
     "not at x_t itself"),
    ("heun_step", _fn(_HEUN, _HEUN_START + "return x_euler + (t_prev - t) * (v + velocity(x_euler, t_prev)) / 2"),
     "starts again from x_t"),
    ("heun_step", _fn(_HEUN, "v = velocity(xt, t)\nx_euler = xt + (t - t_prev) * v\n"
                             "return xt + (t - t_prev) * (v + velocity(x_euler, t_prev)) / 2"), "wrong way"),
    ("eps_and_x0_from_velocity", _fn(_CONVERT, "return xt - t * v, xt + (1 - t) * v"), "in that order"),
    ("eps_and_x0_from_velocity", _fn(_CONVERT, "return xt + t * v, xt - (1 - t) * v"), "coefficients are swapped"),
    ("eps_and_x0_from_velocity", _fn(_CONVERT, "return xt - (1 - t) * v, xt + t * v"), "A sign is off"),
    ("eps_and_x0_from_velocity", _fn(_CONVERT, "return xt + v, xt - v"), "depends on t"),
]


@pytest.mark.parametrize("name, source, message", SLIPS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(SLIPS)])
def test_checker_names_the_slip(name, source, message):
    with pytest.raises(ExerciseError, match=message):
        _check(name, _define(source, name))


def test_a_wrong_prediction_is_explained_not_failed(capsys):
    _check("predict_one_step_near_a_centre", lambda: 0.9)
    out = capsys.readouterr().out
    assert "Correct" not in out and "Measured:" in out and "You predicted 90%" in out and "E[x0]" in out


@pytest.mark.parametrize("answer", [90, -0.1, float("nan"), "most"])
def test_an_invalid_prediction_fails(answer):
    with pytest.raises(ExerciseError):
        _check("predict_one_step_near_a_centre", lambda: answer)


def test_one_exact_euler_step_lands_every_sample_on_the_data_mean():
    """The prediction's measurement: at t = 1 the exact velocity is x_1 − E[x0], and E[x0] = 0 for the circle."""
    x1 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(x1 - lesson09._toy_velocity(x1, 1.0), torch.zeros_like(x1), atol=1e-12, rtol=0)
    assert lesson09._one_step_fraction() == 0.0


def test_the_exact_toy_velocity_carries_noise_to_the_centres():
    """With many Euler steps the exact velocity of the checker's mixture does reach the eight centres."""
    x = torch.randn(400, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    times = torch.linspace(1, 0, 201, dtype=torch.float64).tolist()
    for t, t_prev in zip(times[:-1], times[1:]):
        x = x + (t_prev - t) * lesson09._toy_velocity(x, t)
    assert lesson09._near_a_centre(x) > 0.95
