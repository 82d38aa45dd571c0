"""Autoencoders and VAEs for MNIST (lesson 04), and the KL autoencoder that latent diffusion uses (08).

- `Autoencoder` and `VAE`: the same small MLP encoder and decoder around a low-dimensional latent
  (2-D by default, to look at). The autoencoder maps an image to one point; the VAE maps it to a
  Gaussian q(z|x) = N(mu, sigma²) and samples from it with z = mu + sigma * eps.
- `vae_loss`: reconstruction and KL, reported separately, with the weight beta on the KL.
- `KLAutoencoder`: a convolutional VAE that turns a 28×28 digit into a 4×7×7 latent (4× fewer
  numbers), with a `DiagonalGaussian` posterior and a `latent_scale` measured on the data so that
  scaled latents have roughly unit variance, as Stable Diffusion's 0.18215 does for its VAE.

Images are (B, 1, 28, 28) in [-1, 1]. Decoders return logits of each pixel being ink; `decode`
maps them back to [-1, 1]. The reconstruction term is the Bernoulli cross-entropy (BCE) of those
logits against the ink levels (x + 1) / 2, summed over pixels. It is -log p(x | z) in nats only when
every pixel is 0 or 1; for MNIST's grey pixels it is not a normalised likelihood (a perfect decoder
still pays the grey pixels' entropy), so reconstruction + KL is the VAE loss, a negative ELBO only
for binary images. Inputs in another floating dtype than the model's (float64, half) are computed
in the model's dtype and answered in theirs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sdlib import runtime
from sdlib.probability import kl_normal
from sdlib.runtime import validate


def check_images(x: torch.Tensor, name: str = "images") -> torch.Tensor:
    return validate.images(x, name, channels=1, size=(28, 28))


def check_beta(beta) -> float:
    beta = validate.finite_number(beta, "beta")
    if beta < 0:
        raise ValueError(f"beta weighs the KL term and must be >= 0, got {beta}")
    return beta


def _check_batch_pair(a, b, names: tuple[str, str]) -> None:
    """Two float batches (B, ...) of the same shape (shapes only: no value is read back)."""
    for x, name in zip((a, b), names):
        validate.floating(x, name)
        if x.dim() < 2:
            raise ValueError(f"{name} must be a batch (B, ...) with one row per image, got shape {tuple(x.shape)}")
        validate.nonempty(x, name)
    validate.like(a, b, *names)


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bernoulli cross-entropy per image of the logits against the ink levels (x + 1)/2, summed over pixels:
    -log p(x | z) in nats when every pixel is 0 or 1; for grey pixels not a normalised likelihood."""
    _check_batch_pair(logits, x, ("logits", "x"))
    validate.finite(logits, "logits")
    validate.values_in(x, "x", validate.MODEL_RANGE)
    ink = ((x + 1) / 2).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, ink, reduction="none").flatten(1).sum(1)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image (nats) = ½ Σ (mu² + σ² − 1 − log σ²)."""
    _check_batch_pair(mu, logvar, ("mu", "logvar"))
    validate.finite(mu, "mu")
    validate.finite(logvar, "logvar")
    return kl_normal(mu, logvar.exp()).flatten(1).sum(1)


class DiagonalGaussian:
    """q(z | x) = N(mean, diag(exp(logvar))): sample with the reparameterisation trick, or take the mode."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        _check_batch_pair(mean, logvar, ("mean", "logvar"))
        self.mean, self.logvar = mean, logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mean + std * eps, eps ~ N(0, I): the randomness sits in eps, so gradients reach mean and std."""
        validate.generator(generator)
        eps = runtime.randn(self.mean.shape, generator, self.mean.device, self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per image, in nats."""
        return kl_to_standard_normal(self.mean, self.logvar)


# -- the small MLP models of the first half of lesson 04 ---------------------------------------

@dataclass
class MLPConfig:
    latent_dim: int = 2
    hidden: tuple[int, ...] = (512, 256)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])                      # no activation after the last layer


def _check_latents(z, name: str, layout: str, **sizes) -> torch.Tensor:
    validate.floating(z, name)
    validate.shaped(z, name, layout, what="latent", **sizes)
    return validate.finite(z, name)


def _posterior(model: nn.Module, x: torch.Tensor) -> DiagonalGaussian:
    """q(z | x) from an encoder that outputs the mean and the log-variance stacked on dim 1, in x's dtype."""
    return DiagonalGaussian(*validate.in_model_dtype(model, model.encoder, check_images(x)).chunk(2, dim=1))


class _MLPDecoder(nn.Module):
    """What the autoencoder and the VAE share: a decoder from a latent vector to 28×28 ink logits."""

    def __init__(self, config: MLPConfig | None, encoder_out: int):
        super().__init__()
        self.config = c = config or MLPConfig()
        self.encoder = nn.Sequential(nn.Flatten(), _mlp([784, *c.hidden, encoder_out]))
        self.decoder = _mlp([c.latent_dim, *reversed(c.hidden), 784])

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        _check_latents(z, "z", "B D", D=self.config.latent_dim)
        return validate.in_model_dtype(self, self.decoder, z).view(-1, 1, 28, 28)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [-1, 1]."""
        return torch.sigmoid(self.decode_logits(z)) * 2 - 1


class Autoencoder(_MLPDecoder):
    """encoder: image -> one point z; decoder: z -> image. Trained on reconstruction alone."""

    def __init__(self, config: MLPConfig | None = None):
        super().__init__(config, encoder_out=(config or MLPConfig()).latent_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return validate.in_model_dtype(self, self.encoder, check_images(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_logits(self.encode(x))


class VAE(_MLPDecoder):
    """The same networks, but the encoder outputs a mean and a log-variance for each latent dimension."""

    def __init__(self, config: MLPConfig | None = None):
        super().__init__(config, encoder_out=2 * (config or MLPConfig()).latent_dim)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        return _posterior(self, x)                                       # (B, latent_dim) each

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Returns (reconstruction logits, posterior q(z|x))."""
        posterior = self.encode(x)
        return self.decode_logits(posterior.sample(generator)), posterior


@dataclass
class LossParts:
    loss: torch.Tensor              # what is minimised: reconstruction + beta * KL (mean per image)
    reconstruction: torch.Tensor    # the BCE at one sample z ~ q(z|x) (mean per image; see the module docstring)
    kl: torch.Tensor                # KL(q(z|x) || p(z)) (mean per image, nats)

    @property
    def elbo(self) -> torch.Tensor:
        """-(reconstruction + KL): a one-sample ELBO estimate for binary images; for grey ones, minus the
        VAE loss at beta = 1."""
        return -(self.reconstruction + self.kl)


def vae_loss(model, x: torch.Tensor, beta: float = 1.0, generator: torch.Generator | None = None) -> LossParts:
    """The VAE loss: reconstruction BCE + beta * KL (the negative ELBO when beta = 1 and the images are binary)."""
    beta = check_beta(beta)
    logits, posterior = model(x, generator)
    recon, kl = reconstruction_nll(logits, x).mean(), posterior.kl().mean()
    return LossParts(recon + beta * kl, recon, kl)


def autoencoder_loss(model, batch, generator) -> torch.Tensor:
    x = batch[0]
    return reconstruction_nll(model(x), x).mean()


class VAEObjective:
    """A loss_fn for sdlib.train.fit: the VAE loss, logging its reconstruction and KL terms."""

    def __init__(self, beta: float = 1.0):
        self.beta = check_beta(beta)

    def __call__(self, model, batch, generator):
        parts = vae_loss(model, batch[0], self.beta, generator)
        return parts.loss, {"reconstruction": parts.reconstruction.item(), "kl": parts.kl.item()}


# -- the convolutional KL autoencoder for latent diffusion --------------------------------------

@dataclass
class KLConfig:
    channels: tuple[int, ...] = (32, 64)    # widths at 28×28 and 14×14 (and 7×7 the last)
    latent_channels: int = 4
    groups: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


class _Res(nn.Module):
    def __init__(self, c: int, groups: int):
        super().__init__()
        self.block = nn.Sequential(nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
                                   nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.block(x)


class KLAutoencoder(nn.Module):
    """28×28×1 images <-> 4×7×7 latents. `encode` returns a DiagonalGaussian, `decode` images in [-1, 1].

    `latent_scale` (a buffer, saved with the weights) multiplies latents on the way to the diffusion
    model and divides them on the way back; `set_latent_scale` measures it on data.
    """

    def __init__(self, config: KLConfig | None = None):
        super().__init__()
        self.config = c = config or KLConfig()
        c1, c2 = c.channels
        g = c.groups
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), _Res(c1, g),                              # (B, c1, 28, 28)
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), _Res(c2, g),                   # (B, c2, 14, 14)
            nn.Conv2d(c2, c2, 3, stride=2, padding=1), _Res(c2, g),                   # (B, c2, 7, 7)
            nn.GroupNorm(g, c2), nn.SiLU(), nn.Conv2d(c2, 2 * c.latent_channels, 3, padding=1))  # mean, logvar
        self.decoder = nn.Sequential(
            nn.Conv2d(c.latent_channels, c2, 3, padding=1), _Res(c2, g),              # (B, c2, 7, 7)
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c2, c2, 3, padding=1), _Res(c2, g),   # 14×14
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c2, c1, 3, padding=1), _Res(c1, g),   # 28×28
            nn.GroupNorm(g, c1), nn.SiLU(), nn.Conv2d(c1, 1, 3, padding=1))           # ink logits
        self.register_buffer("latent_scale", torch.tensor(1.0))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.config.latent_channels, 7, 7)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z | x) for images x in [-1, 1] (a learner's call warns on images in [0, 1]; a training step does not)."""
        if not (self.training and torch.is_grad_enabled()):
            validate.unit_range_warning(check_images(x), "the images to encode")
        return _posterior(self, x)                                       # (B, 4, 7, 7) each

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        _check_latents(z, "latents", "B C H W", C=self.latent_shape[0], H=self.latent_shape[1], W=self.latent_shape[2])
        return validate.in_model_dtype(self, self.decoder, z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (unscaled) -> images in [-1, 1]."""
        return torch.sigmoid(self.decode_logits(z)) * 2 - 1

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        posterior = self.encode(x)
        return self.decode_logits(posterior.sample(generator)), posterior

    # latent diffusion works on scaled latents of roughly unit variance
    @torch.no_grad()
    def set_latent_scale(self, images: torch.Tensor, batch_size: int = 1000) -> float:
        """latent_scale = 1 / (standard deviation of the posterior means over `images`)."""
        check_images(images)
        batch_size = validate.positive_int(batch_size, "batch_size")
        device = next(self.parameters()).device
        means = torch.cat([self.encode(chunk.to(device)).mean for chunk in images.split(batch_size)])
        std = means.std().item()
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"the latent means of these images have standard deviation {std}, so no scale makes it 1: "
                             f"measure it on many different images (e.g. a few thousand training digits)")
        self.latent_scale.fill_(1.0 / std)
        return self.latent_scale.item()

    @torch.no_grad()
    def encode_scaled(self, x: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """Images in [-1, 1] -> latents scaled to about unit variance: the posterior's mean (or a sample)."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample else posterior.mode()
        return z * self.latent_scale

    @torch.no_grad()
    def decode_scaled(self, z_scaled: torch.Tensor) -> torch.Tensor:
        validate.floating(z_scaled, "z_scaled")          # before the division, which would make ints float
        return self.decode(z_scaled / self.latent_scale)


def build_vae(config: dict) -> KLAutoencoder:
    """Builder used by sdlib.pretrained."""
    return KLAutoencoder(KLConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}))
