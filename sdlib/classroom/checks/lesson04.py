"""Checkers for lesson 04 (autoencoders and VAEs)."""
from __future__ import annotations

import functools
import math

import torch

from sdlib.classroom.checks import (ExerciseError, as_tensor, call, check_random_cases, exercise, expect, expect_close,
                                    passed, read_answer)
from sdlib.classroom.quiz import Question
from sdlib.vae import kl_to_standard_normal, reconstruction_nll


def check_reparameterize(reparameterize) -> None:
    """reparameterize(mu, logvar, eps) -> z = mu + sigma * eps with sigma = exp(logvar / 2)."""
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 3, generator=g, requires_grad=True)
    logvar = torch.randn(5, 3, generator=g, requires_grad=True)
    eps = torch.randn(5, 3, generator=g)
    z = call(reparameterize, mu, logvar, eps)
    want = mu + torch.exp(0.5 * logvar) * eps
    z_t = as_tensor(z, "z", like=want)
    if z_t.shape == want.shape and torch.allclose(z_t, mu + torch.exp(logvar) * eps, atol=1e-6):
        raise ExerciseError("exp(logvar) is the variance; the noise is scaled by the standard deviation exp(logvar / 2).")
    expect_close(z, want, "z", hint="z = mu + exp(0.5 * logvar) * eps.", rtol=1e-5, atol=1e-6)
    expect(isinstance(z, torch.Tensor) and z.requires_grad,
           "z must stay connected to mu and logvar (no .detach(), no torch.no_grad) so gradients can reach them")
    z.sum().backward()
    expect(mu.grad is not None and logvar.grad is not None, "gradients must reach both mu and logvar")
    expect_close(mu.grad, torch.ones_like(mu), "dz/dmu", hint="z depends on mu with slope 1.")
    passed("z = mu + sigma * eps: the randomness is in eps, and gradients flow to mu and sigma.")


def check_kl(kl_standard_normal) -> None:
    """kl_standard_normal(mu, logvar) -> KL(N(mu, exp(logvar)) || N(0, I)) per image, summed over dimensions."""
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(6, 4, 7, 7, generator=g), torch.randn(6, 4, 7, 7, generator=g)
    got = call(kl_standard_normal, mu.clone(), logvar.clone())
    want = kl_to_standard_normal(mu, logvar)
    got_t = as_tensor(got, "the KL", like=want)
    if got_t.shape == (6, 4, 7, 7):
        raise ExerciseError("Sum over all latent dimensions of each image: the result should have shape (B,).")
    if got_t.shape == want.shape and torch.allclose(got_t, 0.5 * (mu ** 2 + logvar.exp() - logvar).flatten(1).sum(1)):
        raise ExerciseError("You dropped the -1 inside the sum: KL = ½ Σ (mu² + σ² - 1 - log σ²).")
    expect_close(got, want, "the KL", hint="KL = ½ Σ (mu² + exp(logvar) - 1 - logvar), summed per image.",
                 rtol=1e-4, atol=1e-4)
    zero = call(kl_standard_normal, torch.zeros(2, 3), torch.zeros(2, 3))
    expect_close(zero, torch.zeros(2), "KL(N(0, I) || N(0, I))", hint="It must be 0 when q is the prior.", atol=1e-6)
    passed("the closed-form KL to N(0, I), summed over the latent dimensions.")


def check_vae_loss(vae_loss_fn) -> None:
    """vae_loss_fn(logits, x, mu, logvar, beta) -> mean over the batch of (reconstruction BCE + beta * KL)."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 1, 28, 28, generator=g) * 2 - 1
    logits = torch.randn(4, 1, 28, 28, generator=g)
    mu, logvar = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    for beta in [1.0, 0.25, 4.0]:
        got = call(vae_loss_fn, logits.clone(), x.clone(), mu.clone(), logvar.clone(), beta)
        recon, kl = reconstruction_nll(logits, x), kl_to_standard_normal(mu, logvar)
        want = (recon + beta * kl).mean()
        got_t = as_tensor(got, f"the loss at beta={beta}", like=want)
        expect(got_t.dim() == 0, f"the loss should be a single number, got shape {tuple(got_t.shape)}")
        per_pixel = torch.nn.functional.binary_cross_entropy_with_logits(logits, (x + 1) / 2) + beta * kl.mean()
        if torch.allclose(got_t, per_pixel, rtol=1e-4):
            raise ExerciseError("The reconstruction term is one number per image: sum the cross-entropy over the 784 "
                                "pixels (reduction='sum' per image, or .flatten(1).sum(1)), then average over the batch.")
        if beta != 1.0 and torch.allclose(got_t, (recon + kl).mean(), rtol=1e-4):
            raise ExerciseError("Multiply the KL term by beta.")
        expect_close(got, want, f"the loss at beta={beta}",
                     hint="targets are (x + 1) / 2; loss = mean over images of [BCE summed over pixels + beta * KL].",
                     rtol=1e-4, atol=1e-3)
    passed("reconstruction (a sum over pixels) plus beta times the KL, averaged over the batch.")


def _kl_diagonal(mu_q, logvar_q, mu_p, logvar_p):
    """KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))) per image, summed over every other dimension."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1).flatten(1).sum(1)


def _kl_cases(g: torch.Generator):
    for shape in [(5, 3), (4, 2, 3, 3), (2, 1), (3, 16)]:
        mu_q, mu_p = torch.randn(shape, generator=g) * 2, torch.randn(shape, generator=g)
        logvar_q, logvar_p = torch.randn(shape, generator=g), torch.randn(shape, generator=g) * 1.5
        yield mu_q.double(), logvar_q.double(), mu_p.double(), logvar_p.double()
    zeros = torch.zeros(3, 4, dtype=torch.float64)                 # p = N(0, I): Exercise 2's KL
    yield torch.randn(3, 4, generator=g).double(), torch.randn(3, 4, generator=g).double(), zeros, zeros


@exercise("derivation")
def check_kl_diagonal(kl_diagonal) -> None:
    """kl_diagonal(mu_q, logvar_q, mu_p, logvar_p) -> KL(q || p) for two diagonal Gaussians, one value per image
    (summed over every dimension but the first), compared with the truth on random inputs."""
    g = torch.Generator().manual_seed(3)
    flat = lambda x: x.flatten(1).sum(1)
    mistakes = [
        (lambda mq, lq, mp, lp: _kl_diagonal(mp, lp, mq, lq),
         "That is KL(p || q), the other direction: the KL is not symmetric. The expectation is over q, so q's "
         "variance is the one divided by p's: ½ Σ (log σ_p² - log σ_q² + (σ_q² + (μ_q - μ_p)²) / σ_p² - 1)."),
        (lambda mq, lq, mp, lp: flat(0.5 * (lp - lq + lq.exp() / lp.exp() + (mq - mp) ** 2 - 1)),
         "Divide the squared distance of the means by σ_p² too: E_q[(z - μ_p)²] / σ_p² = (σ_q² + (μ_q - μ_p)²) / σ_p²."),
        (lambda mq, lq, mp, lp: flat(0.5 * (lq - lp + (lq.exp() + (mq - mp) ** 2) / lp.exp() - 1)),
         "The log term has the wrong sign: E_q[log q - log p] contributes log σ_p - log σ_q = ½ (log σ_p² - log σ_q²)."),
        (lambda mq, lq, mp, lp: 2 * _kl_diagonal(mq, lq, mp, lp),
         "Twice the KL: every term of the Gaussian log-density carries a factor ½."),
        (lambda mq, lq, mp, lp: flat(0.5 * (lp - lq + (lq.exp() + (mq - mp) ** 2) / lp.exp())),
         "The -1 is missing: it is E_q[(z - μ_q)² / σ_q²] = 1, the log q(z) term's expectation."),
    ]
    n = check_random_cases(kl_diagonal, _kl_diagonal, _kl_cases(g), what="the KL", mistakes=mistakes,
                           hint="KL = ½ Σ (log σ_p² - log σ_q² + (σ_q² + (μ_q - μ_p)²) / σ_p² - 1), summed per image.",
                           rtol=1e-5, atol=1e-6)
    passed(f"KL between diagonal Gaussians right on {n} random batches; with p = N(0, I) it is Exercise 2's KL.")


LATENT_TARGET = (0.95, 1.05)          # the std of the scaled latents of held-out digits must fall in here


@functools.lru_cache(maxsize=1)
def _latent_setting():
    """The pretrained autoencoder, 500 training digits for the learner, and the posterior means of 500 test
    digits to measure on (cached: loaded once per session)."""
    from sdlib.data import load_mnist
    from sdlib.pretrained import load_pretrained

    vae = load_pretrained("vae", device="cpu")
    train = load_mnist("train", subset=500).images
    with torch.no_grad():
        held_out = vae.encode(load_mnist("test", subset=500).images).mode()
    return vae, train, held_out


@exercise("design")
def check_latent_scale(choose_latent_scale) -> None:
    """choose_latent_scale(autoencoder, images) -> one number s: the pretrained convolutional autoencoder and 500
    training digits are given; s times the posterior means of 500 *test* digits must have a standard deviation
    within LATENT_TARGET of 1 (measured here with the pretrained weights)."""
    vae, train, held_out = _latent_setting()
    scale_before = vae.latent_scale.clone()
    try:
        s = read_answer(choose_latent_scale, vae, train.clone(), low=0.0, name="choose_latent_scale")
    finally:
        vae.latent_scale.copy_(scale_before)          # set_latent_scale may have changed the cached model
    if s <= 0:
        raise ExerciseError("the scale must be positive: a factor of 0 erases the latents")
    std = (held_out * s).std().item()
    lo, hi = LATENT_TARGET
    if not lo <= std <= hi:
        means_std = held_out.std().item()
        with torch.no_grad():
            sample_std = vae.encode(train[:200]).sample(torch.Generator().manual_seed(0)).std().item()
        hint = ""
        if math.isclose(s, 1 / sample_std, rel_tol=0.1):
            hint = (f" Your factor is about 1 / the spread of *samples* z = μ + σ ε ({sample_std:.2f}). The diffusion model is "
                    f"trained on the posterior means (encode(x).mode()), whose spread is only {means_std:.2f}: three of the "
                    f"four channels collapsed to the prior, so their samples are almost pure N(0, 1) noise.")
        elif math.isclose(s, 1 / means_std ** 2, rel_tol=0.1):
            hint = " You divided by the variance; unit variance needs 1 / standard deviation."
        elif math.isclose(s, means_std, rel_tol=0.1):
            hint = " You multiplied by the standard deviation; divide by it."
        raise ExerciseError(f"with your factor {s:.4g} the scaled latents of 500 held-out test digits have standard "
                            f"deviation {std:.3f}; the target is between {lo} and {hi}: "
                            f"{'smaller' if std > hi else 'larger'} factor needed.{hint}")
    passed(f"factor {s:.4g}: the scaled latents of 500 held-out test digits have standard deviation {std:.3f} "
           f"(the recipe's factor, measured on 60,000 digits: {scale_before.item():.4g}).")


QUIZ = [
    Question(
        "A plain autoencoder reconstructs digits well from a 2-D code. Why can it still not generate new digits?",
        options=["Its decoder is too small to draw a digit from two numbers.",
                 "Nothing organises its code space: the codes form streaks with holes between them, and no known "
                 "distribution says where to draw a new code.",
                 "It was trained with cross-entropy instead of squared error.",
                 "Its encoder is deterministic, so it cannot be run backwards."],
        answer=1,
        explanations=["No: the same decoder decodes the codes of real digits well; the trouble is where a *new* code "
                      "comes from.",
                      "Yes: a random code usually lands in a hole and decodes to no digit. The VAE's KL term packs the "
                      "codes into N(0, I), which also says how to draw a new one.",
                      "No: the loss of the reconstruction does not organise the code space either way.",
                      "No: generating needs only the decoder and a code; the encoder is not run backwards in a VAE either."]),
    Question(
        "What does the reparameterisation z = μ + σ ⊙ ε make possible?",
        options=["Sampling z without random numbers.",
                 "Learning ε as a parameter of the model.",
                 "Making the KL term zero.",
                 "Backpropagating through the sampling: z is a differentiable function of μ and σ, and through them "
                 "of the encoder's weights φ, while the randomness sits in ε."],
        answer=3,
        explanations=["No: ε ~ N(0, I) is still random; only where the randomness enters has moved.",
                      "No: ε is an input drawn afresh every time, with nothing to learn (it has no gradient).",
                      "No: the KL depends on μ and σ, not on how z is sampled.",
                      "Yes: the gradient of the expected loss becomes the average of the gradients of single samples, "
                      "each flowing through μ and σ into φ."]),
    Question(
        "Training a VAE with a much larger β (weight on the KL), what do you expect?",
        options=["Blurrier reconstructions and codes packed more tightly into N(0, I); in the extreme, codes that say "
                 "nothing about the digit.",
                 "Sharper reconstructions and codes that spread out.",
                 "No change: β only rescales the loss.",
                 "The KL becomes negative."],
        answer=0,
        explanations=["Yes: each nat of information the code carries costs β; with β large the encoder stays near the "
                      "prior and the decoder draws an average digit (section 3's comparison).",
                      "No: that is the small-β side, which drifts back toward a plain autoencoder.",
                      "No: β changes the balance between the two terms, so it changes the minimum, not only its value.",
                      "No: a KL divergence is never negative, whatever its weight."]),
    Question(
        "Three of the four channels of the convolutional autoencoder's latent have posterior means near 0 and "
        "standard deviations near 1 for every digit. What does that mean?",
        options=["Those channels carry most of the digit's information.",
                 "The encoder is broken and must be retrained.",
                 "Posterior collapse: for those channels q(z | x) equals the prior whatever x, so they carry no "
                 "information, and the digit travels in the remaining channel.",
                 "Those channels hold the noise that the diffusion model removes."],
        answer=2,
        explanations=["No: a posterior that does not depend on x can tell the decoder nothing about x.",
                      "No: the reconstructions are good; this is what the β = 1 objective chose, not a failure.",
                      "Yes: with β = 1 spending nats in those channels did not buy enough reconstruction; their KL is near "
                      "0. Stable Diffusion weighs its KL far less to keep every channel in use.",
                      "No: the diffusion model adds and removes its own noise; these channels are simply constant means."]),
]
