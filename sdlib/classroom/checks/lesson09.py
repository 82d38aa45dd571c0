"""Checkers for bonus lesson 09 (from DDPM to flow matching).

Time conventions: DDPM's t is an integer step 0..T with x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε; the flow's t is
continuous in [0, 1] with x_t = (1 − t) x0 + t ε (t = 0 the data, t = 1 the noise).
"""
from __future__ import annotations

import math

import torch

from sdlib.classroom.checks import (ExerciseError, as_tensor, call, check_random_cases, compare_prediction, exercise,
                                    expect_close, passed)
from sdlib.classroom.quiz import Question
from sdlib.flow import EulerSampler, HeunSampler, eps_from_velocity, x0_from_velocity
from sdlib.schedules import NoiseSchedule

_S = NoiseSchedule.linear(1000)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    return (a.shape == b.shape and bool(torch.isfinite(a.double()).all())
            and torch.allclose(a.detach().double().cpu(), b.detach().double().cpu(), rtol=rtol, atol=atol))


def _slip(got: torch.Tensor, wrong: torch.Tensor, right: torch.Tensor) -> bool:
    """The answer matches a typical mistake, and that mistake is not also the right answer for these inputs."""
    return _close(got, wrong) and not _close(got, right)


def _pair(result, name: str, what: tuple[str, str], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A function's answer that must be two tensors, as tensors in like's dtype."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise ExerciseError(f"{name} should return two tensors, ({what[0]}, {what[1]}); got "
                            f"{type(result).__name__}{f' of length {len(result)}' if hasattr(result, '__len__') else ''}")
    return as_tensor(result[0], what[0], like=like), as_tensor(result[1], what[1], like=like)


def _broadcast_hint(error: ExerciseError, name: str) -> ExerciseError:
    text = str(error)
    if "size of tensor" in text or "must match the size" in text or "broadcast" in text:
        return ExerciseError(f"{text}\nHint: t has shape (B,), one time per image, while x0 has shape (B, ...): "
                             f"reshape it so that it broadcasts over the other axes, "
                             f"t.reshape(-1, *[1] * (x0.dim() - 1)), before multiplying.")
    return error


# -- section 1: the score ---------------------------------------------------------------------------

def _score_cases():
    g = torch.Generator().manual_seed(90)
    cases = []
    for t in (1, 10, 100, 500, 900, 1000):
        cases.append((torch.randn(3, 1, 4, 4, generator=g), _S.alpha_bar[t].item()))
    for _ in range(10):
        ab = torch.rand((), generator=g, dtype=torch.float64).item() * 0.98 + 0.01
        cases.append((torch.randn(2, 5, generator=g), ab))
    return cases


def check_score_from_eps(score_from_eps) -> None:
    """score_from_eps(eps_pred, alpha_bar_t) -> ∇ log p_t(x_t) = −ε_θ / sqrt(1 − ᾱ_t); alpha_bar_t a number."""
    mistakes = [
        (lambda e, ab: e / math.sqrt(1 - ab),
         "The sign is missing: the score points toward more likely images, away from the noise that was added, "
         "so it is −ε/sqrt(1 − ᾱ_t)."),
        (lambda e, ab: -e / (1 - ab),
         "Divide by the noise's standard deviation sqrt(1 − ᾱ_t), not by its variance: ∇ log q(x_t | x0) = "
         "−(x_t − sqrt(ᾱ_t) x0)/(1 − ᾱ_t), and x_t − sqrt(ᾱ_t) x0 = sqrt(1 − ᾱ_t) ε, so one square root cancels."),
        (lambda e, ab: -e * math.sqrt(1 - ab),
         "Divide by sqrt(1 − ᾱ_t) instead of multiplying: the less noise, the larger the score."),
        (lambda e, ab: -e / math.sqrt(ab),
         "sqrt(ᾱ_t) scales the image; the score divides by the noise's scale, sqrt(1 − ᾱ_t)."),
        (lambda e, ab: -e,
         "The scale is missing: −ε is the direction of the score, its length is 1/sqrt(1 − ᾱ_t) times larger."),
    ]
    n = check_random_cases(score_from_eps, lambda e, ab: -e / math.sqrt(1 - ab), _score_cases(), what="the score",
                           mistakes=mistakes, hint="∇ log p_t(x) = −ε_θ(x, t) / sqrt(1 − ᾱ_t).")
    passed(f"∇ log p_t(x) = −ε_θ(x, t)/sqrt(1 − ᾱ_t) on {n} cases: a noise-predicting network is a score model, "
           f"rescaled.")


# -- section 2: the straight path, and matching DDPM's noise levels -----------------------------------------

def _interpolant_cases():
    g = torch.Generator().manual_seed(91)
    cases = []
    for shape in ((5, 1, 4, 4), (5, 2), (3, 3, 2, 2)):
        x0 = torch.rand(shape, generator=g) * 2 - 1
        eps = torch.randn(shape, generator=g)
        t = torch.rand(shape[0], generator=g)
        t[0], t[-1] = 0.0, 1.0                                  # both ends of the path
        cases.append((x0, eps, t))
    return cases


def check_interpolant(interpolate_and_velocity) -> None:
    """interpolate_and_velocity(x0, eps, t) -> (x_t, v): x_t = (1 − t) x0 + t ε and v = ε − x0, with t of shape (B,)."""
    for x0, eps, t in _interpolant_cases():
        try:
            got = call(interpolate_and_velocity, x0.clone(), eps.clone(), t.clone())
        except ExerciseError as error:
            raise _broadcast_hint(error, "interpolate_and_velocity") from None
        xt, v = _pair(got, "interpolate_and_velocity", ("x_t", "v"), like=x0)
        tt = t.reshape(-1, *[1] * (x0.dim() - 1))
        want_xt, want_v = (1 - tt) * x0 + tt * eps, eps - x0
        if not _close(xt, want_xt) and _close(xt, want_v) and _close(v, want_xt):
            raise ExerciseError("Return (x_t, v) in that order: the point on the path first, then its velocity.")
        if _slip(xt, tt * x0 + (1 - tt) * eps, want_xt):
            raise ExerciseError("t = 0 is the data and t = 1 the noise in flow matching (DDPM's integer t counts "
                                "the same way): x_t = (1 − t)·x0 + t·ε. Yours starts at the noise.")
        if _slip(xt, (1 - tt).sqrt() * x0 + tt.sqrt() * eps, want_xt):
            raise ExerciseError("That is DDPM's curved path with ᾱ = 1 − t. The flow's path is the straight line "
                                "between x0 and ε: x_t = (1 − t)·x0 + t·ε, with no square roots.")
        expect_close(xt, want_xt, "x_t", hint="x_t = (1 − t)·x0 + t·ε, with t reshaped to broadcast over the image.",
                     rtol=1e-5, atol=1e-6)
        if _slip(v, x0 - eps, want_v):
            raise ExerciseError("The velocity is dx_t/dt, and x_t moves from x0 (t = 0) toward ε (t = 1) as t grows: "
                                "v = ε − x0, not x0 − ε.")
        if _slip(v, tt * (eps - x0), want_v) or _slip(v, (1 - tt) * (eps - x0), want_v):
            raise ExerciseError("The velocity does not depend on t: differentiate x_t = (1 − t)·x0 + t·ε with respect "
                                "to t, which gives ε − x0 at every point of the path.")
        expect_close(v, want_v, "v", hint="v = dx_t/dt = ε − x0.", rtol=1e-5, atol=1e-6)
    passed("x_t = (1 − t)·x0 + t·ε and its velocity v = ε − x0, the same at every t of the path.")


def _flow_time(ab: torch.Tensor) -> torch.Tensor:
    return (1 - ab).sqrt() / (ab.sqrt() + (1 - ab).sqrt())


def _flow_time_cases():
    g = torch.Generator().manual_seed(92)
    cases = [(_S.alpha_bar.clone(),),                            # the whole table, ᾱ_0 = 1 included
             (torch.tensor([0.5, 0.999, 1e-4], dtype=torch.float64),)]
    for _ in range(5):
        cases.append((torch.rand(7, generator=g, dtype=torch.float64) * 0.998 + 0.001,))
    return cases


@exercise("derivation")
def check_flow_time(flow_time) -> None:
    """flow_time(alpha_bar) -> the flow time t in [0, 1] at which x_t = (1 − t) x0 + t ε is as noisy as DDPM's
    x = sqrt(ᾱ) x0 + sqrt(1 − ᾱ) ε (the same ratio of noise to signal), for a tensor of ᾱ values."""
    mistakes = [
        (lambda ab: 1 - ab,
         "1 − ᾱ is DDPM's noise variance (t/(1 − t) = (1 − ᾱ)/ᾱ matches variances). The flow's coefficients t and "
         "1 − t multiply ε and x0 like DDPM's sqrt(1 − ᾱ) and sqrt(ᾱ), so match those ratios: t/(1 − t) = "
         "sqrt(1 − ᾱ)/sqrt(ᾱ)."),
        (lambda ab: (1 - ab).sqrt(),
         "That gives both paths the same noise coefficient, but then the signal coefficients differ (1 − t is not "
         "sqrt(ᾱ)), so the images are not equally noisy. Only the ratio noise/signal sets the noise level: solve "
         "t/(1 − t) = sqrt(1 − ᾱ)/sqrt(ᾱ) for t."),
        (lambda ab: 1 - ab.sqrt(),
         "That gives both paths the same signal coefficient, but then the noise coefficients differ. Match the "
         "ratio noise/signal instead: t/(1 − t) = sqrt(1 − ᾱ)/sqrt(ᾱ)."),
        (lambda ab: ab.sqrt() / (ab.sqrt() + (1 - ab).sqrt()),
         "This is 1 − t: the flow's t = 1 is pure noise, so t must grow as ᾱ falls (ᾱ = 1 is the clean image, t = 0)."),
    ]
    n = check_random_cases(flow_time, _flow_time, _flow_time_cases(), what="the flow time t", mistakes=mistakes,
                           hint="write both noisy images as (signal coefficient)·(x0 + σ·ε); equal noise levels mean "
                                "equal σ: t/(1 − t) = sqrt(1 − ᾱ)/sqrt(ᾱ).", rtol=1e-6, atol=1e-9)
    passed(f"t = sqrt(1 − ᾱ)/(sqrt(ᾱ) + sqrt(1 − ᾱ)) = σ/(1 + σ) with σ = sqrt(1 − ᾱ)/sqrt(ᾱ), on {n} cases: ᾱ = 1 "
           f"(clean) is t = 0, ᾱ → 0 (pure noise) is t → 1, and ᾱ = 1/2 is t = 1/2.")


# -- section 3: Euler ------------------------------------------------------------------------------------

def _step_cases():
    g = torch.Generator().manual_seed(93)
    cases = []
    for t, t_prev in ((0.5, 0.25), (1.0, 0.9), (0.1, 0.0), (1.0, 0.0), (0.75, 0.7)):
        cases.append((torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g), t, t_prev))
    cases.append((torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g), 0.6, 0.4))
    return cases


def check_euler_step(euler_step) -> None:
    """euler_step(xt, v_pred, t, t_prev) -> x at t_prev: one Euler step of dx/dt = v from t down to t_prev."""
    for xt, v, t, t_prev in _step_cases():
        got = as_tensor(call(euler_step, xt.clone(), v.clone(), t, t_prev), f"x at t_prev={t_prev}", like=xt)
        want = EulerSampler(10).step(v, t, xt, t_prev=t_prev).x_prev
        if _slip(got, xt + (t - t_prev) * v, want):
            raise ExerciseError("The step goes the wrong way: sampling runs from t = 1 (noise) down to t = 0 (data), "
                                "so the step t_prev − t is negative and x_prev = x_t + (t_prev − t)·v. Yours moved "
                                "back toward the noise.")
        if t_prev > 0 and _slip(got, xt - t * v, want):
            raise ExerciseError("You jumped all the way to t = 0 (x_t − t·v is x̂0, where the velocity points). One "
                                "Euler step goes only as far as t_prev: x_t + (t_prev − t)·v.")
        if _slip(got, xt - v, want):
            raise ExerciseError("Multiply the velocity by the size of the step: x_t + (t_prev − t)·v.")
        expect_close(got, want, f"x at t_prev={t_prev} (from t={t})", hint="x_prev = x_t + (t_prev − t)·v_pred.",
                     rtol=1e-5, atol=1e-6)
    passed("x_prev = x_t + (t_prev − t)·v: one step along the predicted velocity, toward the data.")


# -- section 3: the prediction (one Euler step on the eight Gaussians) -------------------------------------

# The lesson's toy data: eight Gaussians of standard deviation SPREAD on a circle of radius RADIUS.
RADIUS, SPREAD, N_TOY = 2.0, 0.2, 1000


def _toy_centres() -> torch.Tensor:
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)


def _toy_velocity(x: torch.Tensor, t: float) -> torch.Tensor:
    """The exact flow velocity E[ε − x0 | x_t = x] of the toy mixture, x_t = (1 − t) x0 + t ε (t > 0)."""
    centres, a, b = _toy_centres(), 1 - t, t
    var = a ** 2 * SPREAD ** 2 + b ** 2
    weights = (-((x[:, None] - a * centres) ** 2).sum(-1) / (2 * var)).softmax(dim=1)     # p(centre | x_t)
    means = centres + (a * SPREAD ** 2 / var) * (x[:, None] - a * centres)               # E[x0 | x_t, centre]
    x0 = (weights[..., None] * means).sum(1)
    return (x - a * x0) / b - x0


def _near_a_centre(x: torch.Tensor) -> float:
    distance = (x[:, None] - _toy_centres()).norm(dim=-1).min(dim=1).values
    return (distance < 3 * SPREAD).double().mean().item()


def _one_step_fraction() -> float:
    x1 = torch.randn(N_TOY, 2, generator=torch.Generator().manual_seed(94), dtype=torch.float64)
    return _near_a_centre(x1 + (0.0 - 1.0) * _toy_velocity(x1, 1.0))


@exercise("prediction")
def check_one_step_prediction(predict_one_step_near_a_centre) -> None:
    """predict_one_step_near_a_centre() -> a fraction in [0, 1]: of 1,000 samples of the eight Gaussians made by one
    Euler step from t = 1 to t = 0 with the exact velocity, how many land within 3·SPREAD of a centre. Right within
    0.05."""
    def why(prediction, measured):
        text = ("At t = 1 the point x_1 is pure noise and says nothing about which data point it will become, so the "
                "best velocity there is the average over all of them: v(x_1, 1) = x_1 − E[x0]. One Euler step lands at "
                "x_1 − v = E[x0], the mean of the data, which for eight Gaussians around a circle is its centre, far "
                "from every mode. Each training path is straight, but the learned velocity is their average, and the "
                "average path bends: it heads for the mean first and turns toward a mode once x_t says which. The "
                "table above shows how many steps the turn needs.")
        if prediction > 0.5:
            text += (" (A straight path needs one Euler step only if the velocity stays the same along it; a "
                     "single data point would give exactly that.)")
        return text

    compare_prediction(predict_one_step_near_a_centre, _one_step_fraction, low=0.0, high=1.0, tolerance=0.05,
                       what="the fraction of one-step samples near a centre", fmt=lambda v: f"{v:.0%}",
                       explanation=why)


# -- section 5: Heun, and what a velocity implies ----------------------------------------------------------

def _heun_velocity(x: torch.Tensor, t) -> torch.Tensor:
    """A known velocity field, nonlinear in x and t, so that each slip in Heun's step gives another answer."""
    if isinstance(t, torch.Tensor):
        t = t.reshape(-1, *[1] * (x.dim() - 1)) if t.numel() > 1 else t.reshape(()).item()
    return torch.sin(2 * x) * (1 + t) - t * x + 0.3


def check_heun_step(heun_step) -> None:
    """heun_step(velocity, xt, t, t_prev) -> x at t_prev by Heun's method; velocity(x, t) -> v with t a number."""
    g = torch.Generator().manual_seed(95)
    f = _heun_velocity
    for t, t_prev in ((1.0, 0.8), (0.5, 0.3), (0.3, 0.29), (0.9, 0.05)):
        xt = torch.randn(3, 1, 4, 4, generator=g)
        got = as_tensor(call(heun_step, f, xt.clone(), t, t_prev), f"x at t_prev={t_prev}", like=xt)
        dt, v = t_prev - t, f(xt, t)
        x_euler = xt + dt * v
        want = xt + dt * (v + f(x_euler, t_prev)) / 2
        library = HeunSampler(10).step(v, t, xt, t_prev=t_prev, model=f).x_prev
        torch.testing.assert_close(want, library)                 # the checker's reference is the library's step
        if _slip(got, x_euler, want):
            raise ExerciseError("That is Euler's step (the predictor). Heun then evaluates the velocity again where "
                                "it landed, v(x̃, t_prev), and steps from x_t with the mean of the two velocities.")
        if _slip(got, xt + dt * f(x_euler, t_prev), want):
            raise ExerciseError("Step with the mean of both velocities, (v(x_t, t) + v(x̃, t_prev))/2, not the second "
                                "one alone.")
        if _slip(got, xt + dt * (v + f(x_euler, t)) / 2, want):
            raise ExerciseError("The corrector's velocity is taken at the time the predictor reached, t_prev: "
                                "velocity(x̃, t_prev), not velocity(x̃, t).")
        if _slip(got, xt + dt * (v + f(xt, t_prev)) / 2, want):
            raise ExerciseError("The corrector evaluates at the Euler point x̃ = x_t + (t_prev − t)·v(x_t, t), not at "
                                "x_t itself.")
        if _slip(got, x_euler + dt * (v + f(x_euler, t_prev)) / 2, want):
            raise ExerciseError("The corrected step starts again from x_t, not from the Euler point x̃: x_prev = x_t + "
                                "(t_prev − t)·(v(x_t, t) + v(x̃, t_prev))/2.")
        if _slip(got, xt - dt * (v + f(xt - dt * v, t_prev)) / 2, want):
            raise ExerciseError("The steps go the wrong way: from t down to t_prev the step is t_prev − t, negative.")
        expect_close(got, want, f"x at t_prev={t_prev} (from t={t})",
                     hint="x̃ = x_t + (t_prev − t)·v(x_t, t); x_prev = x_t + (t_prev − t)·(v(x_t, t) + v(x̃, t_prev))/2.",
                     rtol=1e-5, atol=1e-6)
    passed("Heun: an Euler step to predict, a second velocity where it lands, and a step with their mean. "
           "Two network evaluations per step, and an error that falls with the square of the step size.")


def _conversion_cases():
    g = torch.Generator().manual_seed(96)
    cases = []
    for t in (0.0, 0.1, 0.5, 0.9, 1.0):                       # from a real pair (x0, ε), so both can be recovered
        x0, eps = torch.rand(2, 1, 4, 4, generator=g) * 2 - 1, torch.randn(2, 1, 4, 4, generator=g)
        cases.append(((1 - t) * x0 + t * eps, eps - x0, t))
    for t in (0.3, 0.7):                                      # any velocity at all
        cases.append((torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g), t))
    return cases


@exercise("derivation")
def check_velocity_conversion(eps_and_x0_from_velocity) -> None:
    """eps_and_x0_from_velocity(xt, v, t) -> (ε̂, x̂0): the noise and the clean image that the velocity v at (x_t, t)
    implies, for x_t = (1 − t) x0 + t ε and v = ε − x0; t a number in [0, 1]."""
    for xt, v, t in _conversion_cases():
        got = call(eps_and_x0_from_velocity, xt.clone(), v.clone(), t)
        eps_hat, x0_hat = _pair(got, "eps_and_x0_from_velocity", ("ε̂", "x̂0"), like=xt)
        want_eps, want_x0 = eps_from_velocity(xt, v, t), x0_from_velocity(xt, v, t)
        right = _close(eps_hat, want_eps) and _close(x0_hat, want_x0)
        if not right and _close(eps_hat, want_x0) and _close(x0_hat, want_eps):
            raise ExerciseError("Return (ε̂, x̂0) in that order: the noise first, then the clean image.")
        if not right and _close(eps_hat, xt + t * v) and _close(x0_hat, xt - (1 - t) * v):
            raise ExerciseError("The coefficients are swapped. x_t is t·v away from the data along the velocity, so "
                                "x̂0 = x_t − t·v, and (1 − t)·v away from the noise, so ε̂ = x_t + (1 − t)·v.")
        if (_slip(x0_hat, xt + t * v, want_x0) or _slip(eps_hat, xt - (1 - t) * v, want_eps)
                or _slip(x0_hat, xt + (1 - t) * v, want_x0) or _slip(eps_hat, xt - t * v, want_eps)):
            raise ExerciseError("A sign is off: v = ε − x0 points from the data toward the noise, so x̂0 lies against "
                                "it (x_t − t·v) and ε̂ along it (x_t + (1 − t)·v).")
        if _slip(x0_hat, xt - v, want_x0) or _slip(eps_hat, xt + v, want_eps):
            raise ExerciseError("The distance along the velocity depends on t: x_t is t·v away from the data "
                                "(x̂0 = x_t − t·v) and (1 − t)·v away from the noise (ε̂ = x_t + (1 − t)·v).")
        expect_close(eps_hat, want_eps, f"ε̂ at t={t}", hint="solve x_t = (1 − t)·x0 + t·ε and v = ε − x0 for ε.",
                     rtol=1e-5, atol=1e-6)
        expect_close(x0_hat, want_x0, f"x̂0 at t={t}", hint="solve x_t = (1 − t)·x0 + t·ε and v = ε − x0 for x0.",
                     rtol=1e-5, atol=1e-6)
    passed("ε̂ = x_t + (1 − t)·v and x̂0 = x_t − t·v: a velocity model is also a noise model and a denoiser, and "
           "ε̂ gives its score, −ε̂/t.")


QUIZ = [
    Question(
        "A DDPM's network ε_θ(x_t, t) was trained with the simple loss of lesson 03. How is it related to the score "
        "∇ log p_t(x_t) of the noisy images?",
        options=["It is the score.",
                 "The score is −ε_θ(x_t, t)/sqrt(1 − ᾱ_t): the network's best guess of the noise, turned around and "
                 "rescaled.",
                 "The score is ε_θ(x_t, t)·sqrt(1 − ᾱ_t).",
                 "They are unrelated: a score model needs a separate network and loss."],
        answer=1,
        explanations=["No: the score points toward more likely images, while ε_θ points toward the noise; they differ "
                      "in sign and in scale.",
                      "Yes: ∇ log p_t(x) = E[∇ log q(x_t | x0) | x_t = x] = −E[ε | x_t = x]/sqrt(1 − ᾱ_t), and the "
                      "simple loss's minimiser is E[ε | x_t].",
                      "No: the score grows as the noise shrinks, so sqrt(1 − ᾱ_t) divides; and the sign is reversed.",
                      "No: denoising score matching is the simple loss up to a weight per t (Vincent 2011; Song et al. "
                      "2021); section 1 checks the identity on a mixture where the score is exact."]),
    Question(
        "DDIM with η = 0 in 10 steps on a DDPM, and Euler in 10 steps on a flow model: what do they have in common?",
        options=["Both add fresh noise at every step.",
                 "Both need a network that predicts a velocity.",
                 "Nothing: DDIM is a Markov chain and Euler an ODE solver.",
                 "Both take first-order steps of a probability-flow ODE: DDIM in the variables σ = sqrt(1 − ᾱ)/sqrt(ᾱ) "
                 "and x/sqrt(ᾱ), Euler in the flow's t and x."],
        answer=3,
        explanations=["No: both are deterministic; the same starting noise gives the same sample.",
                      "No: DDIM uses the ε-prediction, which a velocity converts to (ε̂ = x_t + (1 − t)·v) and back.",
                      "No: DDIM with η = 0 has no randomness after x_T; its update is an Euler step, to float precision.",
                      "Yes: section 1 showed DDIM's update is exactly x̄' = x̄ + (σ' − σ)·ε_θ, and section 2 that the "
                      "flow's ODE is the same ODE written in other variables; they differ in the network's target and "
                      "where the steps fall."]),
    Question(
        "Every training pair (x0, ε) of flow matching moves along a straight line. Why do the sampler's paths, which "
        "follow the learned velocity, still curve?",
        options=["The network sees only x_t, so it learns the average velocity of all the pairs whose lines pass "
                 "through x_t; that average changes direction as x_t reveals which data point it is heading to.",
                 "Because Euler's method makes them curve.",
                 "Because the U-Net is too small to learn a straight line.",
                 "They do not: the learned paths are straight lines too."],
        answer=0,
        explanations=["Yes: v_θ(x, t) ≈ E[ε − x0 | x_t = x]. Near t = 1 every data point is equally likely, so paths head "
                      "for the data's mean, then turn toward one mode (the one-step prediction of section 3).",
                      "No: the exact ODE, solved with many steps, curves as well; Euler's error is a separate matter.",
                      "No: even the exact velocity of section 3's eight Gaussians gives curved paths.",
                      "No: only for a single data point (or after rectifying the pairs, Liu et al. 2023) are the "
                      "paths straight; section 3 measured the curvature."]),
    Question(
        "HeunSampler(10) makes 19 network evaluations, Euler(10) makes 10. What does Heun buy with the extra nine?",
        options=["Nothing: same accuracy, twice the cost.",
                 "Exact solutions, whatever the number of steps.",
                 "A second-order method: halving the step divides its error by about 4 instead of 2, so it can reach "
                 "a given accuracy with fewer evaluations than Euler.",
                 "Randomness that corrects the model's errors, as in DDPM."],
        answer=2,
        explanations=["No: section 5 measured the error falling about four times per halving for Heun, twice for "
                      "Euler.",
                      "No: it is exact only for velocities linear in t along the path; its error shrinks with the "
                      "square of the step.",
                      "Yes: it averages the velocity at both ends of the step (the trapezoidal rule); the last step to "
                      "t = 0 is a plain Euler step, hence 2·10 − 1 evaluations.",
                      "No: Heun on the ODE is deterministic; DDPM's randomness comes from its stochastic steps."]),
    Question(
        "Stable Diffusion 3 draws the training time t from a logit-normal distribution instead of uniformly in "
        "[0, 1]. What does that change?",
        options=["The sampler, which must then use logit-normal time steps.",
                 "Where training spends its steps: more often in the middle of the path, where the velocity is "
                 "hardest to predict, and less near t = 0 and t = 1.",
                 "The regression target, which becomes logit(t)·(ε − x0).",
                 "Nothing at all: any distribution of t gives the same trained network."],
        answer=1,
        explanations=["No: sampling still integrates the same ODE from t = 1 to 0 on any grid; only training changes.",
                      "Yes: near t = 0 the velocity is nearly ε (hard but unimportant) and near t = 1 nearly x_1 − E[x0] "
                      "(easy); the middle is where the network decides the image. The manifest's comparison measured "
                      "both on the lesson's budget.",
                      "No: the target stays v = ε − x0; the distribution only weights the times.",
                      "No: a finite network cannot be perfect at every t, so the weighting decides where its capacity "
                      "and training steps go."]),
]
