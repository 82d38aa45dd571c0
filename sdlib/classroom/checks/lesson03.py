"""Checkers for lesson 03 (DDPM on MNIST)."""
from __future__ import annotations

import math

import torch

from sdlib.classroom.checks import (ExerciseError, as_tensor, call, check_random_cases, compare_prediction, exercise,
                                    expect, expect_close, passed)
from sdlib.classroom.quiz import Question
from sdlib.samplers import DDIMSampler, DDPMSampler
from sdlib.schedules import NoiseSchedule

_S = NoiseSchedule.linear(1000)


class _ToyModel(torch.nn.Module):
    """A fixed stand-in for the U-Net: eps_pred = 0.5 x_t + t/1000 (enough to tell formulas apart)."""

    def forward(self, x, t, *args):
        return 0.5 * x + t.float().reshape(-1, 1, 1, 1) / 1000


def check_simple_loss(simple_loss) -> None:
    """simple_loss(model, x0, t, eps, alpha_bar_t) -> the scalar || eps - model(x_t, t) ||² (mean)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([1, 10, 500, 1000])
    ab = _S.alpha_bar[t].float().reshape(4, 1, 1, 1)
    model = _ToyModel()
    got = call(simple_loss, model, x0.clone(), t.clone(), eps.clone(), ab.clone())
    got = as_tensor(got, "the loss", like=x0)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    want = ((eps - model(xt, t)) ** 2).mean()
    expect(got.dim() == 0, f"the loss should be one number (a 0-d tensor), got shape {tuple(got.shape)}: take the mean")
    if torch.allclose(got, ((x0 - model(xt, t)) ** 2).mean(), atol=1e-6):
        raise ExerciseError("The network predicts the noise eps, not the clean image: compare its output with eps.")
    wrong_xt = ab * x0 + (1 - ab) * eps
    if torch.allclose(got, ((eps - model(wrong_xt, t)) ** 2).mean(), atol=1e-6):
        raise ExerciseError("x_t uses square roots: sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps.")
    expect_close(got, want, "the loss", hint="compare your x_t and your loss with line 5 of Algorithm 1 (section 3): "
                 "the loss is a mean over the batch and over every pixel.", rtol=1e-5, atol=1e-7)
    passed("Algorithm 1's loss: noise the image in one jump, predict the noise, squared error.")


def check_ddpm_step(ddpm_step) -> None:
    """ddpm_step(x_t, eps_pred, t, beta_t, alpha_bar_t, z) -> x_{t-1} of Algorithm 2 with sigma_t² = beta_t."""
    g = torch.Generator().manual_seed(1)
    sampler = DDPMSampler(_S)
    for t in [1000, 400, 20, 2, 1]:
        xt, eps = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
        z = torch.randn(xt.shape, generator=torch.Generator().manual_seed(t))
        try:                                                  # at t = 1 the lesson's loop passes z = None
            got = call(ddpm_step, xt.clone(), eps.clone(), t, _S.beta[t].item(), _S.alpha_bar[t].item(),
                       z.clone() if t > 1 else None)
        except ExerciseError as error:
            if t == 1 and isinstance(error.__cause__, TypeError):
                raise ExerciseError("At t = 1 the caller passes z = None, since the last step adds no noise: "
                                    "return the mean only.") from error.__cause__
            raise
        want = sampler.step(eps, t, xt, torch.Generator().manual_seed(t)).x_prev
        a, ab = 1 - _S.beta[t].item(), _S.alpha_bar[t].item()
        got_t = as_tensor(got, f"x_(t-1) at t={t}", like=want)
        if got_t.shape == want.shape and t > 1:
            with_alpha_bar = (xt - (1 - a) / math.sqrt(1 - ab) * eps) / math.sqrt(ab) + math.sqrt(1 - a) * z
            if torch.allclose(got_t, with_alpha_bar, atol=1e-5):
                raise ExerciseError("Divide by sqrt(alpha_t) (this step's alpha), not sqrt(ᾱ_t).")
        if t == 1 and got_t.shape == want.shape and not torch.allclose(got_t, want, atol=1e-5):
            raise ExerciseError("At t = 1 the last step adds no noise (z = 0): return the mean only.")
        expect_close(got, want, f"x_(t-1) at t={t}",
                     hint="compare each factor with line 4 of Algorithm 2; alpha_t = 1 - beta_t, and sigma_t is "
                          "the standard deviation sqrt(beta_t), not the variance.", rtol=1e-5, atol=1e-5)
    passed("one step of Algorithm 2, including the noise-free last step.")


def check_ddim_step(ddim_step) -> None:
    """ddim_step(x_t, eps_pred, alpha_bar_t, alpha_bar_prev) -> x_prev of deterministic DDIM (eta = 0)."""
    g = torch.Generator().manual_seed(2)
    sampler = DDIMSampler(_S, steps=20)
    for t in sampler.timesteps[::4] + [sampler.timesteps[-1]]:
        xt, eps = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
        ab, ab_prev = _S.alpha_bar[t].item(), _S.alpha_bar[sampler.previous[t]].item()
        got = call(ddim_step, xt.clone(), eps.clone(), ab, ab_prev)
        want = sampler.step(eps, t, xt).x_prev
        got_t = as_tensor(got, f"x_prev at t={t}", like=want)
        if got_t.shape == want.shape:
            x0 = (xt - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
            if torch.allclose(got_t, math.sqrt(ab_prev) * x0, atol=1e-5) and ab_prev < 1:
                raise ExerciseError("Keep the noise direction: add sqrt(1 - ᾱ_prev) · eps_pred to sqrt(ᾱ_prev) · x0_pred.")
        expect_close(got, want, f"x_prev at t={t}",
                     hint="first x0_pred, by solving x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps for x0; then put "
                          "x0_pred back at the noise level ᾱ_prev with the same eps.", rtol=1e-5, atol=1e-5)
    passed("deterministic DDIM: predict x0, then re-noise it to the earlier step with the same eps.")


class _TinyDenoiser(torch.nn.Module):
    """A small trainable stand-in for the U-Net: two convolutions, plus t/1000 so that t matters."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.a = torch.nn.Parameter(torch.randn(4, 1, 3, 3, generator=g) * 0.3)
        self.b = torch.nn.Parameter(torch.randn(1, 4, 3, 3, generator=g) * 0.3)

    def forward(self, x, t, *args):
        h = torch.nn.functional.conv2d(x, self.a, padding=1).tanh()
        return torch.nn.functional.conv2d(h, self.b, padding=1) + t.float().reshape(-1, 1, 1, 1) / 1000


def _reference_loop(model, optimizer, images, alpha_bar, steps, batch_size, generator, *, t_low=1, sqrt=True,
                    reduction="mean", zero_grad=True, target="eps", eps_first=False):
    """Algorithm 1 as the exercise asks, and (with the keyword arguments) the usual ways to get it wrong."""
    T, losses = len(alpha_bar) - 1, []
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch_size,), generator=generator)
        if eps_first:
            eps = torch.randn(images[idx].shape, generator=generator)
        t = torch.randint(t_low, T + t_low, (batch_size,), generator=generator)
        x0 = images[idx]
        if not eps_first:
            eps = torch.randn(x0.shape, generator=generator)
        ab = alpha_bar[t].float().reshape(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps if sqrt else ab * x0 + (1 - ab) * eps
        loss = torch.nn.functional.mse_loss(model(xt, t), eps if target == "eps" else x0, reduction=reduction)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _run_loop(loop, **mistake):
    """Run `loop` (the learner's or the reference with a mistake) from the same start: (losses, weights)."""
    model = _TinyDenoiser()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    images = torch.rand(32, 1, 6, 6, generator=torch.Generator().manual_seed(3)) * 2 - 1
    args = (model, optimizer, images, _S.alpha_bar.clone(), 4, 8, torch.Generator().manual_seed(11))
    losses = loop(*args, **mistake) if loop is _reference_loop else call(loop, *args, name="train_ddpm")
    return losses, torch.cat([p.detach().flatten() for p in model.parameters()])


_LOOP_MISTAKES = [
    (dict(t_low=0), "t must be drawn from {1, ..., T}: torch.randint(1, T + 1, ...) (randint's upper end is "
                    "left out). You drew it from 0..T-1, where t = 0 is the clean image."),
    (dict(sqrt=False), "x_t uses square roots: sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps, not ᾱ_t x0 + (1 - ᾱ_t) eps."),
    (dict(reduction="sum"), "The loss should be the mean squared error (F.mse_loss), not the sum: a sum makes the "
                            "step size depend on the batch and image size."),
    (dict(zero_grad=False), "Call optimizer.zero_grad() before loss.backward(): without it the gradients of every "
                            "earlier step pile up in .grad."),
    (dict(target="x0"), "The network predicts the noise eps: the loss compares model(x_t, t) with eps, not x0."),
    (dict(eps_first=True), "Draw the random numbers in the order the docstring gives (batch indices, then t, then "
                           "eps), so that the check can replay them."),
]


def check_training_loop(train_ddpm) -> None:
    """train_ddpm(model, optimizer, images, alpha_bar, steps, batch_size, generator) -> list of the losses:
    Algorithm 1 for `steps` steps, drawing (batch indices, t, eps) in that order from `generator`."""
    try:
        got, got_weights = _run_loop(train_ddpm)
    except ExerciseError as error:
        if isinstance(error.__cause__, RuntimeError) and "Double" in str(error.__cause__):
            raise ExerciseError("train_ddpm mixed float64 and float32: alpha_bar is the schedule's table, kept in "
                                "float64; after indexing it, convert it with .float() before it meets the "
                                "images.") from error.__cause__
        raise
    want, want_weights = _run_loop(_reference_loop)
    if not isinstance(got, (list, tuple)) or len(got) != len(want):
        raise ExerciseError(f"return the list of the {len(want)} losses, one float per step (losses.append("
                            f"loss.item())), got {type(got).__name__} of length {len(got) if hasattr(got, '__len__') else '?'}")
    got_losses = as_tensor([float(v) for v in got], "the losses", like=torch.tensor(want, dtype=torch.float64))
    if torch.allclose(got_weights, torch.cat([p.detach().flatten() for p in _TinyDenoiser().parameters()])):
        raise ExerciseError("The weights did not change: call optimizer.step() after loss.backward().")
    if torch.allclose(got_losses, torch.tensor(want, dtype=torch.float64), rtol=1e-4, atol=1e-6) \
            and torch.allclose(got_weights, want_weights, rtol=1e-4, atol=1e-6):
        passed("your loop is Algorithm 1: a batch, t ~ Uniform{1..T}, eps, x_t in one jump, the simple loss, "
               "a gradient step.")
        return
    with torch.random.fork_rng(devices=[]):      # two seeds of torch's global generator, then its state back
        runs = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            runs.append(torch.tensor([float(v) for v in _run_loop(train_ddpm)[0]], dtype=torch.float64))
    if not torch.allclose(*runs):
        raise ExerciseError("Two runs with the same `generator` gave different losses: some of your random numbers "
                            "come from torch's global generator. Pass generator=generator to every torch.randint "
                            "and torch.randn in the loop.")
    for mistake, message in _LOOP_MISTAKES:
        losses, weights = _run_loop(_reference_loop, **mistake)
        if torch.allclose(got_losses, torch.tensor(losses, dtype=torch.float64), rtol=1e-4, atol=1e-6) \
                and torch.allclose(got_weights, weights, rtol=1e-4, atol=1e-6):
            raise ExerciseError(message)
    first = next(i for i, (a, b) in enumerate(zip(got_losses.tolist(), want)) if not math.isclose(a, b, rel_tol=1e-4,
                                                                                                abs_tol=1e-6)) \
        if not torch.allclose(got_losses, torch.tensor(want, dtype=torch.float64), rtol=1e-4, atol=1e-6) else None
    where = (f"the loss of step {first + 1} is {got_losses[first]:.5f}, expected {want[first]:.5f}" if first is not None
             else "the losses match but the weights do not: take one optimizer.step() per loss, on that loss")
    raise ExerciseError(f"{where}. Check each line against Algorithm 1 in section 3, in the docstring's order: "
                        f"the batch's indices, t, eps, x_t, the loss, zero_grad, backward, step.")


# -- the weight of the ELBO's denoising terms ----------------------------------------------------------

def _weight_cases():
    g = torch.Generator().manual_seed(30)
    cases = []
    for schedule in (NoiseSchedule.linear(1000), NoiseSchedule.cosine(1000)):
        for t in (2, 10, 250, 999):
            beta, alpha, ab = (schedule.beta[t], schedule.alpha[t], schedule.alpha_bar[t])
            for sigma2 in (beta, schedule.beta_tilde[t]):
                cases.append((beta.item(), alpha.item(), ab.item(), sigma2.item()))
    for _ in range(20):                                          # random numbers that fit together
        beta = torch.rand((), generator=g, dtype=torch.float64).item() * 0.3 + 1e-3
        ab = torch.rand((), generator=g, dtype=torch.float64).item() * (1 - beta) * 0.95 + 1e-3
        sigma2 = torch.rand((), generator=g, dtype=torch.float64).item() * beta + 1e-4
        cases.append((beta, 1 - beta, ab, sigma2))
    return cases


def _lam(beta, alpha, ab, sigma2):
    return torch.tensor(beta ** 2 / (2 * sigma2 * alpha * (1 - ab)), dtype=torch.float64)


@exercise("derivation")
def check_elbo_weight(elbo_weight) -> None:
    """elbo_weight(beta_t, alpha_t, alpha_bar_t, sigma2_t) -> λ_t such that ||μ̃_t − μ_θ||² / (2 σ_t²) =
    λ_t ||ε − ε_θ||², compared with the truth on the linear and cosine schedules and random numbers."""
    mistakes = [
        (lambda b, a, ab, s: torch.tensor(b ** 2 / (2 * s * (1 - ab)), dtype=torch.float64),
         "α_t is missing: both means carry the factor 1/sqrt(α_t), so their squared difference carries 1/α_t."),
        (lambda b, a, ab, s: torch.tensor(b / (2 * s * a * (1 - ab)), dtype=torch.float64),
         "β_t should be squared: the means differ by β_t / sqrt(α_t (1 − ᾱ_t)) · (ε − ε_θ), and the difference is squared."),
        (lambda b, a, ab, s: torch.tensor(b ** 2 / (2 * s * a * (1 - ab) ** 2), dtype=torch.float64),
         "(1 − ᾱ_t) enters once, not squared: the coefficient of ε is β_t / sqrt(1 − ᾱ_t), and squaring a square root "
         "gives (1 − ᾱ_t)."),
        (lambda b, a, ab, s: torch.tensor(b ** 2 / (s * a * (1 - ab)), dtype=torch.float64),
         "The KL of two Gaussians with the same variance is ||μ1 − μ2||² / (2 σ²): the factor 2 is missing."),
    ]
    n = check_random_cases(lambda *args: elbo_weight(*args), _lam, _weight_cases(), what="λ_t", mistakes=mistakes,
                           hint="write μ̃_t and μ_θ in the same form, (x_t − β_t / sqrt(1 − ᾱ_t) · ε) / sqrt(α_t), "
                                "subtract, square and divide by 2 σ_t².", rtol=1e-6, atol=0.0)
    passed(f"λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t)) on {n} cases. With σ_t² = β_t it is β_t / (2 α_t (1 − ᾱ_t)): "
           f"large at small t, so the ELBO cares most about the last, finest steps.")


# -- predict the cost of fewer sampling steps ------------------------------------------------------------

def _recorded_fid_ratio() -> float:
    from sdlib.pretrained import entry
    table = {row["steps"]: row["classifier_fid"] for row in entry("ddpm")["metrics"]["table"]}
    return table[10] / table[100]


@exercise("prediction")
def check_ddim_fid_prediction(predict_fid_ratio) -> None:
    """predict_fid_ratio() -> how many times DDIM-10's classifier FID is DDIM-100's, for the pretrained model
    (the recipe's table, 1,000 samples per row)."""
    def why(prediction, measured):
        text = (f"Ten steps cost a tenth of the time but jump across ~100 time steps each; the x̂_0 guesses of the "
                f"first jumps are blurry averages and the later steps cannot fully repair them, so the distance to "
                f"real digits grows by about {measured:.1f}x. From 100 down to 25 steps DDIM loses much less: the "
                f"table above shows where the curve bends.")
        if prediction < 1:
            text += " A ratio below 1 would mean fewer steps give better samples; the integration error only grows."
        return text

    compare_prediction(predict_fid_ratio, _recorded_fid_ratio, what="FID(DDIM-10) / FID(DDIM-100)", low=0.0,
                       tolerance=0.25, relative=True, fmt=lambda v: f"{v:.2f}", explanation=why)


QUIZ = [
    Question("Algorithm 1 drops the weights λ_t of the ELBO's denoising terms. What does gradient descent on that "
             "simple loss then maximise?",
             options=["The ELBO itself.",
                      "A reweighted bound, which gives the large-t (noisy) steps more weight than the ELBO does.",
                      "The exact log-likelihood log p(x_0).",
                      "Nothing in particular: the simple loss is a heuristic with no link to the ELBO."],
             answer=1,
             explanations=["No: only the λ_t-weighted sum is the ELBO; equal weights are a different objective.",
                           "Yes: λ_t is largest at small t, so equal weights move emphasis toward the noisy steps, "
                           "which helps samples and costs a little likelihood.",
                           "No: even the ELBO is only a lower bound on log p(x_0).",
                           "No: each term is the ELBO's own KL term up to its weight, so it is a reweighted bound."]),
    Question("Why does the network predict the noise ε rather than the mean μ_θ of the reverse step directly?",
             options=["Predicting μ_θ is impossible for a U-Net.",
                      "ε does not depend on x_0, so the network never needs to see the image.",
                      "It makes sampling deterministic.",
                      "μ_θ written with ε turns each KL term into a weighted squared error on ε, a target of the same "
                      "scale at every t, which trains well."],
             answer=3,
             explanations=["No: predicting μ_θ works too, it just trained worse in Ho et al.'s experiments.",
                           "No: the network sees x_t, which holds x_0; ε is what separates the two.",
                           "No: sampling with DDPM stays stochastic; determinism comes from DDIM with η = 0.",
                           "Yes: the two means differ by a known factor times (ε − ε_θ); ε ~ N(0, I) has unit scale at "
                           "every noise level."]),
    Question("DDIM with η = 0 and DDPM use the same trained network. What is different when sampling?",
             options=["DDIM is deterministic given x_T and can skip time steps; DDPM adds fresh noise at each of its T steps.",
                      "DDIM needs a network trained with another loss.",
                      "DDIM samples are always better.",
                      "DDPM cannot use the x̂_0 prediction."],
             answer=0,
             explanations=["Yes: the η = 0 update moves along the predicted x̂_0 and ε with no new noise, so it can jump "
                           "many steps at once.",
                           "No: DDIM reuses the ε-prediction model trained by Algorithm 1 unchanged.",
                           "No: with few steps DDIM's quality drops (the table in section 7), and DDPM with all T "
                           "steps is a strong baseline.",
                           "No: the DDPM mean can be written with x̂_0 as well; lesson 02's posterior mean does that."]),
    Question("The classifier says 95% of your samples are confident digits, but the histogram shows 40% are 1s. What "
             "does that tell you?",
             options=["The model is excellent: confidence is what matters.",
                      "The classifier is broken.",
                      "The model has collapsed toward some classes: clear digits, poor coverage of the data.",
                      "Nothing: histograms of samples are always uneven."],
             answer=2,
             explanations=["No: confidence measures how clear each sample is, not whether the samples cover all digits.",
                           "No: the same classifier gives 10% per class on real test digits.",
                           "Yes: each class should be near 10%; confidence and balance measure different failures, "
                           "which is why the lesson prints both (and a classifier FID, which sees both).",
                           "No: with 1,000 samples the spread around 10% is a point or two, not thirty."]),
]
