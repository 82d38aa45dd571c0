import math

import pytest
import torch

from sdlib.vae import (VAE, Autoencoder, DiagonalGaussian, KLAutoencoder, KLConfig, MLPConfig, VAEObjective,
                       kl_to_standard_normal, reconstruction_nll, vae_loss)


def digits(n=4, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def small_kl_ae():
    torch.manual_seed(0)
    return KLAutoencoder(KLConfig(channels=(8, 16), latent_channels=4))


def test_shapes():
    x = digits()
    assert Autoencoder().encode(x).shape == (4, 2)
    logits, posterior = VAE(MLPConfig(latent_dim=3))(x)
    assert logits.shape == x.shape and posterior.mean.shape == posterior.logvar.shape == (4, 3)
    ae = small_kl_ae()
    posterior = ae.encode(x)
    assert posterior.mean.shape == (4, 4, 7, 7) and ae.latent_shape == (4, 7, 7)
    out = ae.decode(posterior.sample())
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1


def test_kl_closed_form_matches_monte_carlo():
    mu, logvar = torch.tensor([[0.7, -0.4, 1.2]]), torch.tensor([[-0.5, 0.3, -1.5]])
    q = DiagonalGaussian(mu.expand(400_000, 3), logvar.expand(400_000, 3))
    z = q.sample(torch.Generator().manual_seed(0))
    log_q = (-0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi))).sum(1)
    log_p = (-0.5 * (z ** 2 + math.log(2 * math.pi))).sum(1)
    mc, se = (log_q - log_p).mean(), (log_q - log_p).std() / math.sqrt(len(z))
    assert abs(mc - kl_to_standard_normal(mu, logvar)) < 4 * se
    assert kl_to_standard_normal(torch.zeros(2, 5), torch.zeros(2, 5)).abs().max() == 0


def test_reparameterised_sample_sends_gradients_to_mean_and_std():
    mean = torch.zeros(3, 2, requires_grad=True)
    logvar = torch.zeros(3, 2, requires_grad=True)
    DiagonalGaussian(mean, logvar).sample(torch.Generator().manual_seed(0)).pow(2).sum().backward()
    assert mean.grad is not None and logvar.grad is not None and logvar.grad.abs().sum() > 0


def test_reconstruction_is_bernoulli_nll_summed_over_pixels():
    x = digits(2)
    perfect = torch.where(x > 0, 30.0, -30.0)           # confident logits
    binary = torch.where(x > 0, 1.0, -1.0)
    assert reconstruction_nll(perfect, binary).max() < 1e-6
    assert reconstruction_nll(torch.zeros_like(x), binary)[0].item() == pytest.approx(784 * math.log(2), rel=1e-5)


def test_vae_loss_parts_and_beta():
    model, x = VAE(), digits()
    g = lambda: torch.Generator().manual_seed(0)
    one, two = vae_loss(model, x, 1.0, g()), vae_loss(model, x, 2.0, g())
    assert torch.allclose(one.loss, one.reconstruction + one.kl)
    assert torch.allclose(two.loss, two.reconstruction + 2 * two.kl)
    assert torch.allclose(one.elbo, -(one.reconstruction + one.kl))


def test_a_few_steps_of_training_lower_the_loss():
    torch.manual_seed(0)
    model, x = small_kl_ae(), -torch.ones(32, 1, 28, 28)
    for i in range(32):                                  # bars at 4 positions: learnable structure
        x[i, 0, 4:24, 4 + 6 * (i % 4):7 + 6 * (i % 4)] = 1.0
    objective, opt = VAEObjective(1.0), torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        loss, logs = objective(model, (x,), torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert set(logs) == {"reconstruction", "kl"}
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def test_latent_scale_gives_unit_variance_and_round_trips():
    ae, x = small_kl_ae(), digits(64)
    scale = ae.set_latent_scale(x)
    assert ae.latent_scale.item() == pytest.approx(scale)
    z = ae.encode_scaled(x)
    assert z.std().item() == pytest.approx(1.0, rel=1e-3)
    assert torch.allclose(ae.decode_scaled(z), ae.decode(ae.encode(x).mode()), atol=1e-5)
    assert "latent_scale" in ae.state_dict()                       # saved with the weights


def test_bad_inputs_are_refused_clearly():
    ae = small_kl_ae()
    with pytest.raises(ValueError, match="28x28"):
        ae.encode(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="1 channel"):
        ae.encode(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*batch dimension"):
        ae.encode(torch.zeros(1, 28, 28))
    with pytest.raises(ValueError, match=r"\[-1, 1\].*to_model_range"):
        ae.encode(torch.full((2, 1, 28, 28), 255.0))
    with pytest.raises(TypeError, match="floating-point"):
        ae.encode(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"latents must have shape \(B, 4, 7, 7\)"):
        ae.decode(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"z must have shape \(B, 2\)"):
        VAE().decode(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="beta .* must be >= 0"):
        VAEObjective(-0.5)
    with pytest.raises(ValueError, match="finite"):
        vae_loss(VAE(), digits(), float("nan"))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_other_float_dtypes_are_converted_in_and_out(dtype):
    ae, x = small_kl_ae(), digits()
    with torch.no_grad():
        posterior = ae.encode(x.to(dtype))
        assert posterior.mean.dtype == dtype
        torch.testing.assert_close(posterior.mean.float(), ae.encode(x).mean, atol=2e-2, rtol=2e-2)
        assert ae.decode(posterior.mean).dtype == dtype
        assert VAE().decode(torch.zeros(2, 2, dtype=dtype)).dtype == dtype
    assert vae_loss(VAE(), x.to(dtype), generator=torch.Generator().manual_seed(0)).loss.isfinite()


def test_empty_batches_nan_latents_and_mismatched_pairs():
    ae = small_kl_ae()
    with pytest.raises(ValueError, match="images is an empty batch"):
        ae.encode(torch.zeros(0, 1, 28, 28))
    with pytest.raises(ValueError, match="latents is an empty batch"):
        ae.decode(torch.zeros(0, 4, 7, 7))
    with pytest.raises(ValueError, match="latents contains NaN"):
        ae.decode(torch.full((1, 4, 7, 7), float("nan")))
    with pytest.raises(ValueError, match="images contains NaN"):
        ae.encode(torch.full((1, 1, 28, 28), float("nan")))
    with pytest.raises(TypeError, match="z_scaled must be a floating-point tensor"):
        ae.decode_scaled(torch.zeros(1, 4, 7, 7, dtype=torch.uint8))
    with pytest.raises(ValueError, match="logits and x must have the same shape"):
        reconstruction_nll(torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 14, 14))
    with pytest.raises(ValueError, match="logits contains NaN"):
        reconstruction_nll(torch.full((2, 1, 28, 28), float("nan")), torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"x must lie in \[-1, 1\].*to_model_range"):
        reconstruction_nll(torch.zeros(2, 1, 28, 28), torch.full((2, 1, 28, 28), 255.0))
    with pytest.raises(ValueError, match="logvar contains infinite"):
        kl_to_standard_normal(torch.zeros(2, 3), torch.full((2, 3), float("inf")))
    with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
        kl_to_standard_normal(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mean and logvar must have the same shape"):
        DiagonalGaussian(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 3)).sample(0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        ae.set_latent_scale(digits(), batch_size=True)
