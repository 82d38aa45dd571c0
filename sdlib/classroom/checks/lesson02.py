"""Checkers for lesson 02 (the forward noising process)."""
from __future__ import annotations

import math

import torch

from sdlib.classroom.checks import ExerciseError, as_tensor, call, compare_prediction, exercise, expect_close, passed
from sdlib.classroom.quiz import Question
from sdlib.schedules import NoiseSchedule, cosine_alpha_bar


def _same(got: torch.Tensor, table: torch.Tensor) -> bool:
    return got.shape == table.shape and torch.allclose(got.double(), table.double())


def check_alpha_bar(alpha_bar_from_betas) -> None:
    """alpha_bar_from_betas(betas) -> the table of ᾱ_t = prod_{s<=t} (1 - beta_s) for t = 0..T.

    betas: (T,) tensor holding beta_1..beta_T (position 0 holds beta_1, as a paper lists them).
    The answer is indexed by t, like NoiseSchedule.alpha_bar: T + 1 entries, entry 0 = ᾱ_0 = 1
    (the clean image), entry t = ᾱ_t.
    """
    for schedule in [NoiseSchedule.linear(1000), NoiseSchedule.cosine(50), NoiseSchedule.linear(10, 0.05, 0.3)]:
        betas = schedule.beta[1:].clone()                    # (T,): beta_1..beta_T
        T = len(betas)
        want = schedule.alpha_bar                            # (T + 1,): want[t] = ᾱ_t, want[0] = 1
        got = call(alpha_bar_from_betas, betas.clone())
        got_t = as_tensor(got, "ᾱ", like=want)
        one = torch.ones(1, dtype=torch.float64)
        for wrong, message in [
            (torch.cumprod(betas, 0), "You multiplied the betas; ᾱ_t multiplies the alphas, alpha_t = 1 - beta_t."),
            (1 - torch.cumsum(betas, 0), "1 - Σ beta is only a first-order approximation: ᾱ_t is a product, "
                                         "prod_s (1 - beta_s) (torch.cumprod)."),
        ]:
            if _same(got_t, wrong) or _same(got_t, torch.cat([one, wrong])):
                raise ExerciseError(message)
        if _same(got_t, want[1:]) or (got_t.shape == want.shape and _same(got_t[:-1], want[1:])):
            raise ExerciseError(
                f"The t / t-1 trap: your table holds ᾱ_1 at index 0, so alpha_bar[t] is ᾱ_(t+1), one step too "
                f"noisy. Index the table by t, as every table in the course is: T + 1 = {T + 1} entries, entry 0 "
                f"= ᾱ_0 = 1 (the clean image, nothing multiplied yet), then ᾱ_1..ᾱ_T: "
                f"torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1 - betas, 0)]).")
        if got_t.shape == want.shape and _same(got_t[1:], want[1:]) and not math.isclose(got_t[0].item(), 1.0):
            raise ExerciseError(f"Entry 0 should be ᾱ_0 = 1 (the clean image keeps all its signal), "
                                f"got {got_t[0].item():.6g}.")
        expect_close(got, want, f"ᾱ_0..ᾱ_T for T={T}",
                     hint=f"Return T + 1 = {T + 1} values indexed by t: alpha_bar[0] = 1 and alpha_bar[t] = "
                          f"(1 - beta_1)(1 - beta_2)...(1 - beta_t), the cumulative product of 1 - betas "
                          f"(torch.cumprod) with a 1 in front.",
                     rtol=1e-6, atol=1e-9)
    passed("ᾱ_t = Π_{s<=t} (1 - beta_s) in a table indexed by t: alpha_bar[0] = 1 (the clean image), "
           "alpha_bar[t] = ᾱ_t.")


def check_cosine_alpha_bar(cosine_alpha_bar_fn) -> None:
    """cosine_alpha_bar_fn(t, T, s) -> Nichol & Dhariwal's ᾱ_t = f(t)/f(0)."""
    for T, s in [(1000, 0.008), (50, 0.0), (200, 0.02)]:
        t = torch.arange(0, T + 1)
        got = call(cosine_alpha_bar_fn, t.clone(), T, s)
        want = cosine_alpha_bar(t, T, s)
        got_t = as_tensor(got, "ᾱ_t", like=want)
        if got_t.shape == want.shape and s > 0:
            f = torch.cos((t.double() / T + s) / (1 + s) * math.pi / 2) ** 2
            if torch.allclose(got_t.double(), f, atol=1e-7) and not torch.allclose(f, want, atol=1e-7):
                raise ExerciseError("Divide by f(0) so that ᾱ_0 = 1 exactly: the clean image has all its signal.")
        expect_close(got, want, f"ᾱ_t for T={T}, s={s}",
                     hint="f(t) = cos(((t/T + s) / (1 + s)) · π/2)², ᾱ_t = f(t) / f(0).", rtol=1e-5, atol=1e-7)
    passed("the cosine schedule: ᾱ_0 = 1, falling smoothly to ~0 at t = T.")


def check_add_noise(add_noise) -> None:
    """add_noise(x0, eps, alpha_bar_t) -> x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 28, 28, generator=g) * 2 - 1
    eps = torch.randn(4, 1, 28, 28, generator=g)
    schedule = NoiseSchedule.linear()
    t = torch.tensor([1, 250, 600, 1000])
    ab = schedule.alpha_bar[t].float().reshape(4, 1, 1, 1)
    got = call(add_noise, x0.clone(), eps.clone(), ab.clone())
    want = schedule.add_noise(x0, eps, t)
    got_t = as_tensor(got, "x_t", like=want)
    if got_t.shape == want.shape and torch.allclose(got_t.float(), ab * x0 + (1 - ab) * eps, atol=1e-5):
        raise ExerciseError("Those coefficients are variances: scale by their square roots, "
                            "sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps.")
    expect_close(got, want, "x_t", hint="x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps.", rtol=1e-5, atol=1e-5)
    passed("x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps: any time step in one jump.")


def _signal_explanation(prediction, measured) -> str:
    linear, cosine = NoiseSchedule.linear(1000), NoiseSchedule.cosine(1000)
    a, b = linear.alpha_bar[500].item(), cosine.alpha_bar[500].item()
    text = (f"At t = 500 the linear schedule keeps sqrt(ᾱ_500) = {math.sqrt(a):.2f} of the clean image (ᾱ_500 = {a:.3f}), "
            f"the cosine one {math.sqrt(b):.2f} (ᾱ_500 = {b:.2f}). Why: ᾱ_t = Π(1 - β_s) ≈ exp(-Σ_{{s≤t}} β_s), and the "
            f"linear betas grow with t, so their sum grows like t²: by t = 500 it is about 2.5 and ᾱ ≈ exp(-2.5). The "
            f"cosine schedule is designed through ᾱ_t itself, cos² of a quarter turn, which is still about 1/2 half-way.")
    if prediction == "same":
        text += (" Both schedules start at ᾱ_0 = 1 and end near 0, but an end-point says nothing about the middle: "
                 "compare the curves, not their ends.")
    return text


@exercise("prediction")
def check_signal_prediction(predict_more_signal_at_500) -> None:
    """predict_more_signal_at_500() -> "linear", "cosine" or "same": which schedule (T = 1000) leaves more of the
    clean image, sqrt(ᾱ_500), at t = 500. Measured on the library's two schedules."""
    def measure():
        a, b = NoiseSchedule.linear(1000).alpha_bar[500].item(), NoiseSchedule.cosine(1000).alpha_bar[500].item()
        return "same" if math.isclose(a, b, rel_tol=0.05) else ("linear" if a > b else "cosine")

    compare_prediction(predict_more_signal_at_500, measure, what="the schedule with more signal at t = 500",
                       choices=("linear", "cosine", "same"), explanation=_signal_explanation)


def _posterior_cases(g: torch.Generator):
    """(schedule, t) pairs: the linear and cosine schedules and random ones, at small, middle and late t."""
    schedules = [NoiseSchedule.linear(1000), NoiseSchedule.cosine(1000)]
    for T in (20, 100):
        schedules.append(NoiseSchedule(torch.rand(T, generator=g, dtype=torch.float64) * 0.2 + 1e-3))
    for schedule in schedules:
        ts = {2, schedule.T} | set(torch.randint(2, schedule.T + 1, (4,), generator=g).tolist())
        for t in sorted(ts):
            yield schedule, t


@exercise("derivation")
def check_posterior(posterior_mean_var) -> None:
    """posterior_mean_var(x0, xt, beta_t, alpha_bar_t, alpha_bar_prev) -> (mean, variance) of q(x_{t-1} | x_t, x_0),
    compared with the truth on random images, random schedules and random t, each typical mistake named."""
    g = torch.Generator().manual_seed(1)
    n = 0
    for schedule, t in _posterior_cases(g):
        x0 = torch.rand(3, 5, generator=g, dtype=torch.float64) * 2 - 1
        xt = schedule.add_noise(x0, torch.randn(3, 5, generator=g, dtype=torch.float64), t)
        beta, ab, ab_prev = (schedule.beta[t].item(), schedule.alpha_bar[t].item(), schedule.alpha_bar_prev[t].item())
        got = call(posterior_mean_var, x0.clone(), xt.clone(), beta, ab, ab_prev)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise ExerciseError("return two things: (mean, variance)")
        mean, var = schedule.posterior(x0, xt, t)
        var = var.flatten()[0]
        got_var = as_tensor(got[1], "the variance").double()
        got_mean = as_tensor(got[0], "the mean").double()
        where = f"(t = {t} of a schedule with T = {schedule.T})"
        same = lambda a, b: a.shape == torch.as_tensor(b).shape and torch.allclose(a, torch.as_tensor(b, dtype=torch.float64), rtol=1e-6, atol=1e-12)
        if got_var.numel() == 1 and not same(got_var.reshape(()), var):
            v = got_var.reshape(()).item()
            if math.isclose(v, beta, rel_tol=1e-6):
                raise ExerciseError(f"{where} The posterior variance is not beta_t: knowing x_0 as well as x_t makes the "
                                    f"step back less uncertain than the step forward. Add the precisions (1/variance) of "
                                    f"the two Gaussian factors in x_(t-1).")
            if math.isclose(v, (1 - ab) / (1 - ab_prev) * beta, rel_tol=1e-6):
                raise ExerciseError(f"{where} The variance has the ratio upside down: it is (1 - ᾱ_(t-1)) / (1 - ᾱ_t) · "
                                    f"beta_t, a little less than beta_t.")
            if math.isclose(v, 1 / (1 / beta + 1 / (1 - ab_prev)), rel_tol=1e-6):
                raise ExerciseError(f"{where} As a function of x_(t-1), N(x_t; sqrt(alpha_t) x_(t-1), beta_t) has precision "
                                    f"alpha_t / beta_t, not 1 / beta_t: the square of the coefficient of x_(t-1) enters.")
        expect_close(got_var, var if got_var.dim() == 0 else var.expand_as(x0), f"the variance {where}",
                     hint="1 / variance = alpha_t / beta_t + 1 / (1 - ᾱ_(t-1)); simplify with 1 - ᾱ_t = "
                          "alpha_t (1 - ᾱ_(t-1)) + beta_t.", rtol=1e-6, atol=1e-12)
        alpha = 1 - beta
        coef_x0, coef_xt = math.sqrt(ab_prev) * beta / (1 - ab), math.sqrt(alpha) * (1 - ab_prev) / (1 - ab)
        for wrong, message in [
            (coef_xt * x0 + coef_x0 * xt, "the two coefficients of the mean are swapped: x_0 gets "
                                          "sqrt(ᾱ_(t-1)) beta_t / (1 - ᾱ_t), the small one at small t."),
            (math.sqrt(ab) * beta / (1 - ab) * x0 + coef_xt * xt,
             "x_0's coefficient uses sqrt(ᾱ_t); the factor q(x_(t-1) | x_0) has mean sqrt(ᾱ_(t-1)) x_0: the "
             "t / t-1 trap."),
            (coef_x0 * x0 + alpha * (1 - ab_prev) / (1 - ab) * xt,
             "x_t's coefficient has alpha_t where sqrt(alpha_t) belongs (the step scales x_(t-1) by sqrt(alpha_t))."),
            (coef_x0 * x0 + (1 - ab_prev) / (1 - ab) * xt / math.sqrt(alpha),
             "x_t's coefficient divides by sqrt(alpha_t): the precision-weighted mean multiplies x_t by "
             "sqrt(alpha_t) / beta_t, so sqrt(alpha_t) ends up in the numerator."),
        ]:
            if same(got_mean, wrong) and not same(got_mean, mean):
                raise ExerciseError(f"{where} The mean is not right: {message}")
        expect_close(got_mean, mean, f"the mean {where}",
                     hint="mean = variance · (sqrt(alpha_t) / beta_t · x_t + sqrt(ᾱ_(t-1)) / (1 - ᾱ_(t-1)) · x_0), the "
                          "precision-weighted average of what each factor says about x_(t-1).", rtol=1e-6, atol=1e-10)
        n += 1
    passed(f"q(x_(t-1) | x_t, x_0): mean and variance right in all {n} cases (linear, cosine and random schedules, "
           f"t from 2 to T).")


QUIZ = [
    Question(
        "Training needs x_t at a random t millions of times. Why may it draw x_t in one jump from x_0 instead of "
        "running t steps of the chain?",
        options=["The chain is deterministic once β_t is fixed, so its result can be computed in one go.",
                 "Each step adds independent Gaussian noise to a scaled copy of the last, and sums of independent "
                 "Gaussians are Gaussian: q(x_t | x_0) is exactly N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I).",
                 "The β_t are small, so t small steps are approximately one step of size Σ β_s.",
                 "The network learns to skip steps during training."],
        answer=1,
        explanations=["No: every step draws fresh noise, so x_t is random. What is fixed is its distribution.",
                      "Yes: the variances of the noises add (scaled by the later alphas), and the result is exact, "
                      "as the z-score test of section 2 showed.",
                      "No: the closed form is exact, not a small-β approximation; 1 - ᾱ_t is not Σ β_s (Exercise 1's "
                      "checker names that mistake).",
                      "No: the forward process has no network at all; q is fixed."]),
    Question(
        "You double every β_t of the linear schedule (T = 1000 stays). What happens to ᾱ_500, about 0.079 before?",
        options=["It halves, to about 0.04.",
                 "It stays about the same: only the end point ᾱ_T matters.",
                 "It doubles, to about 0.16.",
                 "It is roughly squared, to about 0.006."],
        answer=3,
        explanations=["No: ᾱ_t is a product of (1 - β_s), not a sum, so doubling the betas does not halve it.",
                      "No: every ᾱ_t changes; the schedule's whole curve, not its end, decides how the steps are spent.",
                      "No: more noise per step can only lower ᾱ_t, never raise it.",
                      "Yes: log ᾱ_t = Σ log(1 - β_s) ≈ -Σ β_s, so doubling every β doubles the log and squares ᾱ_t: "
                      "0.079² ≈ 0.006. The signal is gone much earlier."]),
    Question(
        "Why does one forward step scale x_(t-1) by sqrt(1 - β_t) before adding noise of variance β_t?",
        options=["So that a unit-variance x_(t-1) gives a unit-variance x_t, and the chain ends at N(0, I) "
                 "whatever the image.",
                 "To keep the pixels inside [-1, 1].",
                 "To make the step invertible without knowing the noise.",
                 "So that the signal-to-noise ratio grows with t."],
        answer=0,
        explanations=["Yes: (1 - β_t) · 1 + β_t = 1. Without the scaling the variance would grow with every step and "
                      "x_T would have no fixed distribution to start sampling from.",
                      "No: Gaussian noise leaves [-1, 1] at once; the model never assumes that range for x_t.",
                      "No: once noise is added, going back needs the noise (section 6); scaling does not change that.",
                      "No: the SNR ᾱ_t / (1 - ᾱ_t) falls with t; the scaling is what makes the signal shrink."]),
    Question(
        "The posterior q(x_(t-1) | x_t, x_0) has variance β̃_t, smaller than the forward step's β_t. Why smaller?",
        options=["Because removing noise must add less noise than adding it did.",
                 "Because of rounding in float32 at small t.",
                 "Because it conditions on x_0 as well as x_t: two Gaussian factors in x_(t-1) multiply, their "
                 "precisions add, and more information can only narrow a Gaussian.",
                 "Because ᾱ_(t-1) > ᾱ_t, so x_(t-1) holds no noise."],
        answer=2,
        explanations=["No: that is a slogan, not a reason; without x_0 the step back, q(x_(t-1) | x_t), is wider.",
                      "No: the formula is exact; the grid and the sampling checks agree with it in float64.",
                      "Yes: 1/β̃_t = α_t/β_t + 1/(1 - ᾱ_(t-1)), a sum of precisions; both Bayes on a grid and "
                      "sampling confirmed the number.",
                      "No: x_(t-1) holds noise of variance 1 - ᾱ_(t-1) > 0 for t > 1; ᾱ_(t-1) > ᾱ_t only says it "
                      "holds a little less than x_t."]),
]
