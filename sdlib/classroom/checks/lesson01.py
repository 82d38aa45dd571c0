"""Checkers for lesson 01 (probability and the ELBO)."""
from __future__ import annotations

import math

import torch

from sdlib.classroom.checks import (ExerciseError, as_tensor, call, check_random_cases, compare_prediction, exercise,
                                    expect, expect_close, passed)
from sdlib.classroom.quiz import Question
from sdlib.probability import LinearGaussian, fake_identities, kl_normal, normal_log_prob


def _random_joint(rows: int, cols: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    table = torch.rand(rows, cols, generator=g, dtype=torch.float64) ** 3
    return table / table.sum()


def check_marginal_height(marginal_height) -> None:
    """marginal_height(joint) -> p(height) for a table joint[age, height]."""
    cases = [_random_joint(5, 7, 0), _random_joint(9, 4, 1), fake_identities().joint]
    for joint in cases:
        got = call(marginal_height, joint.clone())
        expect_close(got, joint.sum(dim=0), "p(height)",
                     hint="Rows are ages and columns heights: p(height) sums the joint over the ages, "
                          "so it has one entry per column.")
    passed("p(height) = Σ_age p(age, height): you summed out the age.")


def check_posterior_age(posterior_age) -> None:
    """posterior_age(joint, h) -> p(age | height = heights[h]) for a table joint[age, height]."""
    for seed, (rows, cols) in enumerate([(6, 5), (4, 9), (12, 3)]):
        joint = _random_joint(rows, cols, 10 + seed)
        for h in range(cols):
            got = call(posterior_age, joint.clone(), h)
            want = joint[:, h] / joint[:, h].sum()
            got_t = as_tensor(got, f"p(age | height index {h})", like=want)
            if got_t.shape == want.shape and torch.allclose(got_t.double(), joint[:, h], atol=1e-12):
                raise ExerciseError("You returned p(age, height) for that height, not p(age | height): "
                                    "divide by the evidence p(height) so the posterior sums to 1.")
            likelihood = joint[:, h] / joint.sum(dim=1)
            if got_t.shape == want.shape and torch.allclose(got_t.double(), likelihood, atol=1e-12):
                raise ExerciseError("That is the likelihood p(height | age), not the posterior p(age | height): "
                                    "multiply by the prior p(age) and divide by the evidence p(height).")
            expect_close(got, want, f"p(age | height index {h})",
                         hint="Bayes: p(age | h) = p(h | age) p(age) / p(h), and p(h | age) p(age) = p(age, h).")
            expect(abs(float(as_tensor(got, "the posterior").sum()) - 1) < 1e-6, "a posterior must sum to 1 over the ages")
    passed("p(age | height) = p(height | age) p(age) / p(height): prior times likelihood over evidence.")


def check_kl_gaussians(kl_gaussians) -> None:
    """kl_gaussians(mu_q, sigma_q, mu_p, sigma_p) -> KL(N(mu_q, sigma_q²) || N(mu_p, sigma_p²))."""
    g = torch.Generator().manual_seed(3)
    mu_q, mu_p = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    sigma_q = torch.rand(6, generator=g, dtype=torch.float64) * 2 + 0.2
    sigma_p = torch.rand(6, generator=g, dtype=torch.float64) * 2 + 0.2
    got = call(kl_gaussians, mu_q.clone(), sigma_q.clone(), mu_p.clone(), sigma_p.clone())
    want = kl_normal(mu_q, sigma_q ** 2, mu_p, sigma_p ** 2)
    got_t = as_tensor(got, "KL(q || p)", like=want)
    if got_t.shape == want.shape:
        swapped = kl_normal(mu_p, sigma_p ** 2, mu_q, sigma_q ** 2)
        if torch.allclose(got_t.double(), swapped, rtol=1e-6):
            raise ExerciseError("You computed KL(p || q) instead of KL(q || p): the KL divergence is not symmetric; "
                                "the expectation is taken under the first distribution, q.")
        as_var = kl_normal(mu_q, sigma_q, mu_p, sigma_p)
        if torch.allclose(got_t.double(), as_var, rtol=1e-6):
            raise ExerciseError("The arguments are standard deviations σ; the formula needs variances σ². "
                                "Square them first.")
    expect_close(got, want, "KL(q || p)",
                 hint="KL = log(σ_p/σ_q) + (σ_q² + (μ_q - μ_p)²) / (2 σ_p²) - 1/2.")
    same = call(kl_gaussians, mu_q.clone(), sigma_q.clone(), mu_q.clone(), sigma_q.clone())
    expect_close(same, torch.zeros(6, dtype=torch.float64), "KL(q || q)", hint="A distribution is at KL 0 from itself.",
                 atol=1e-9)
    passed("KL(q || p) in closed form matches, and KL(q || q) = 0.")


def check_elbo(elbo) -> None:
    """elbo(x, q_mean, q_var, w, b, s) -> the ELBO of q(z|x) = N(q_mean, q_var) under LinearGaussian(w, b, s)."""
    for w, b, s in [(2.0, 1.0, 0.5), (-0.7, 0.3, 1.3)]:
        model = LinearGaussian(w, b, s)
        g = torch.Generator().manual_seed(5)
        x = torch.randn(8, generator=g, dtype=torch.float64) * 2
        q_mean = torch.randn(8, generator=g, dtype=torch.float64)
        q_var = torch.rand(8, generator=g, dtype=torch.float64) + 0.1
        got = call(elbo, x.clone(), q_mean.clone(), q_var.clone(), w, b, s)
        want = model.elbo(x, q_mean, q_var)
        got_t = as_tensor(got, "the ELBO", like=want)
        if got_t.shape == want.shape:
            no_kl = model.reconstruction(x, q_mean, q_var)
            if torch.allclose(got_t.double(), no_kl, rtol=1e-6):
                raise ExerciseError("That is only the reconstruction term E_q[log p(x|z)]: subtract the prior-matching "
                                    "term KL(q(z|x) || p(z)).")
            if torch.allclose(got_t.double(), no_kl + kl_normal(q_mean, q_var), rtol=1e-6):
                raise ExerciseError("The KL term has the wrong sign: ELBO = reconstruction - KL(q || p(z)).")
        expect_close(got, want, "the ELBO",
                     hint="ELBO = E_q[log p(x|z)] - KL(q(z|x) || N(0,1)); with z = m + sqrt(v) ε, "
                          "E_q[(x - b - w z)²] = (x - b - w m)² + w² v.")
        post_mean, post_var = model.posterior(x)
        at_posterior = as_tensor(call(elbo, x.clone(), post_mean, post_var, w, b, s), "the ELBO at q = p(z|x)")
        expect_close(at_posterior, model.log_evidence(x), "the ELBO at q = p(z|x)",
                     hint="When q is the true posterior the bound is tight: ELBO = log p(x).")
    passed("your ELBO matches, and it equals log p(x) exactly when q is the true posterior.")


def _standard_error_ratio(seed: int = 11) -> float:
    """How many times smaller the Monte Carlo standard error of KL(q || p) is with 1,000,000 samples than
    with 10,000, for the lesson's two Gaussians q = N(1, 0.5²), p = N(0, 1.5²)."""
    g = torch.Generator().manual_seed(seed)
    errors = []
    for n in (10_000, 1_000_000):
        z = 1.0 + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
        terms = normal_log_prob(z, 1.0, 0.25) - normal_log_prob(z, 0.0, 2.25)
        errors.append(terms.std().item() / math.sqrt(n))
    return errors[0] / errors[1]


@exercise("prediction")
def check_standard_error_prediction(predict_shrink_factor) -> None:
    """predict_shrink_factor() -> how many times smaller the Monte Carlo estimate's standard error becomes
    when the number of samples grows from 10,000 to 1,000,000 (100 times more). Measured by sampling."""
    def why(prediction, measured):
        text = ("The standard error of a mean of n independent samples is (their standard deviation) / sqrt(n): "
                "100 times more samples shrink it by sqrt(100) = 10, not 100. Halving the error costs 4 times "
                "the samples, which is why Monte Carlo estimates are cheap to get roughly and dear to get exactly.")
        if prediction > 50:
            text += " A factor near 100 treats the error as if it fell like 1/n."
        return text

    compare_prediction(predict_shrink_factor, _standard_error_ratio, low=0.0,
                       what="the factor by which the standard error shrinks", tolerance=0.15, relative=True,
                       fmt=lambda v: f"{v:.3g}", explanation=why)


def _chain_truth(x0, alphas):
    alpha_bar = torch.prod(alphas, dim=-1)
    return alpha_bar.sqrt() * x0, 1 - alpha_bar


@exercise("derivation")
def check_chain_marginal(chain_marginal) -> None:
    """chain_marginal(x0, alphas) -> (mean, variance) of x_T after the steps q(x_t | x_{t-1}) =
    N(sqrt(alpha_t) x_{t-1}, 1 - alpha_t), t = 1..T, started at x0; alphas holds alpha_1..alpha_T."""
    g = torch.Generator().manual_seed(21)
    cases = []
    for T in (1, 2, 3, 5, 10, 50):
        x0 = torch.randn(4, generator=g, dtype=torch.float64)
        alphas = torch.rand(T, generator=g, dtype=torch.float64) * 0.9 + 0.05
        cases.append((x0, alphas))

    def as_pair(fn):
        def wrapped(x0, alphas):
            out = call(fn, x0, alphas, name="chain_marginal")
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise ExerciseError("chain_marginal should return two things: (mean, variance)")
            mean, var = (as_tensor(v, "the mean and variance").double() for v in out)
            return torch.cat([mean.reshape(-1), var.reshape(-1)])
        return wrapped

    def pack(mean, var, x0):
        return torch.cat([torch.as_tensor(mean, dtype=torch.float64).expand_as(x0).reshape(-1),
                          torch.as_tensor(var, dtype=torch.float64).reshape(-1)])

    def truth(x0, alphas):
        mean, var = _chain_truth(x0, alphas)
        return pack(mean, var, x0)

    def variances_added(x0, alphas):
        return pack(_chain_truth(x0, alphas)[0], (1 - alphas).sum(), x0)

    def mean_not_rooted(x0, alphas):
        return pack(torch.prod(alphas) * x0, _chain_truth(x0, alphas)[1], x0)

    def product_of_noises(x0, alphas):
        return pack(_chain_truth(x0, alphas)[0], torch.prod(1 - alphas), x0)

    def matches_with_scalar_variance(fn):
        def wrapped(x0, alphas):
            got = as_pair(fn)(x0, alphas)
            n = x0.numel()
            if got.numel() == 2 * n:                     # a variance per element: keep the first (they are equal)
                got = torch.cat([got[:n], got[n:n + 1]])
            return got
        return wrapped

    check_random_cases(matches_with_scalar_variance(chain_marginal), truth, cases, what="(mean, variance) of x_T",
                       mistakes=[(variances_added, "The variances do not simply add: each later step scales what "
                                  "came before by sqrt(alpha_t), which multiplies its variance by alpha_t. Carry "
                                  "(mean, variance) through one step at a time: v -> alpha_t v + (1 - alpha_t)."),
                                 (mean_not_rooted, "The mean is scaled by sqrt(alpha_t) at each step, so after T "
                                  "steps by sqrt(alpha_1 ... alpha_T), not by the product of the alphas."),
                                 (product_of_noises, "Noise variances do not multiply: one step maps the variance "
                                  "v to alpha_t v + (1 - alpha_t).")],
                       hint="One step maps (m, v) to (sqrt(alpha_t) m, alpha_t v + 1 - alpha_t); show by induction "
                            "that after T steps m = sqrt(ᾱ_T) x0 and v = 1 - ᾱ_T with ᾱ_T = alpha_1 ... alpha_T.")
    passed("q(x_T | x_0) = N(sqrt(ᾱ_T) x_0, 1 - ᾱ_T) with ᾱ_T = alpha_1 ... alpha_T: the whole chain in one "
           "jump. It goes to N(0, 1) exactly when ᾱ_T goes to 0, restriction 3.")


QUIZ = [
    Question("The forger draws an age from p(age) and, separately, a height from p(height). Why are about one "
             "identity in five impossible people?",
             options=["The marginal distributions were computed wrongly.",
                      "Drawing each variable on its own ignores how height depends on age.",
                      "2,000 samples are too few to see the right proportions.",
                      "The table's grid of ages and heights is too coarse."],
             answer=1,
             explanations=["No: the marginals are exact sums of the joint table; each one alone is right.",
                           "Yes: the product p(age) p(height) is a different distribution from p(age, height) unless "
                           "they are independent; it pairs toddlers with adult heights.",
                           "No: more samples would estimate the same wrong product distribution more precisely.",
                           "No: a finer grid changes nothing about the missing dependence."]),
    Question("A network is trained with a squared error to output the image of a 7 given the label 7. What does it "
             "learn to output?",
             options=["One of the training sevens, picked at random.",
                      "The most common seven in the training set.",
                      "The pixel-wise mean of all the training sevens: a blur.",
                      "Nothing useful: a squared error cannot be minimised for images."],
             answer=2,
             explanations=["No: a deterministic predictor gives the same output every time; nothing in it is random.",
                           "No: the squared error is minimised by the mean, not the mode.",
                           "Yes: the constant that minimises the average squared distance to many images is their "
                           "mean, and the mean of many different sevens is a blur.",
                           "No: it is minimised easily; the minimiser is just not a sample."]),
    Question("You choose q(z | x) equal to the true posterior p(z | x). What is the ELBO then?",
             options=["Exactly log p(x).", "Zero.", "Larger than log p(x).",
                      "log p(x) minus KL(q(z | x) || p(z))."],
             answer=0,
             explanations=["Yes: log p(x) = ELBO + KL(q || p(z | x)), and that KL is zero when q is the posterior.",
                           "No: the ELBO is a log-probability bound, usually negative; it is zero only if p(x) = 1.",
                           "No: the KL is never negative, so the ELBO can never exceed log p(x).",
                           "No: KL(q || p(z)) is the prior-matching term inside the ELBO, not the gap to log p(x); the "
                           "gap is KL(q || p(z | x))."]),
    Question("Why does training a diffusion model never change the prior-matching term KL(q(x_T | x_0) || N(0, I))?",
             options=["It is too expensive to compute.",
                      "It holds no trainable parameter: the forward process is fixed and p(x_T) = N(0, I).",
                      "It is exactly zero for every schedule.",
                      "The U-Net learns it implicitly through the other terms."],
             answer=1,
             explanations=["No: it has a closed form (section 10 computes it for a whole batch of digits).",
                           "Yes: restriction 2 fixes the encoder and restriction 3 fixes p(x_T), so nothing in the term "
                           "can move; the schedule only makes it small.",
                           "No: it is tiny for a good schedule (ᾱ_T near 0) but not zero; with α_t = 0.9 and T = 3 it is "
                           "large.",
                           "No: the U-Net appears only in the reconstruction and denoising-matching terms."]),
]
