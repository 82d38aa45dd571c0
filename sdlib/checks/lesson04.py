"""Checkers for lesson 04 (autoencoders and VAEs)."""
from __future__ import annotations

import torch

from ..vae import kl_to_standard_normal, reconstruction_nll
from . import ExerciseError, as_tensor, call, expect, expect_close, passed


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
