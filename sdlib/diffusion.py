"""The training objective of a diffusion model: Algorithm 1 of Ho et al. (2020).

    repeat
        x0 ~ q(x0)                                  a batch of training images
        t ~ Uniform{1, ..., T}                      one random time step per image
        eps ~ N(0, I)
        gradient step on || eps − ε_θ(sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) eps, t) ||²
    until converged

Each term is the denoising-matching KL of the ELBO with its weight dropped ("the simple loss").
`t_probs` replaces line 3's uniform draw of t by another distribution over {1, ..., T}: drawing t with
probability p(t) is the same, in expectation, as weighting the term of step t by T · p(t), so it spends
more of the training on the noise levels where a young model is worst (see `band_timesteps`).
For text-conditioned models (lesson 07), `p_uncond` replaces the prompt by the U-Net's learned empty
prompt for that fraction of the batch, so that one model learns both ε(x_t, t, prompt) and ε(x_t, t).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sdlib.probability import kl_normal
from sdlib.runtime import randn, validate
from sdlib.schedules import NoiseSchedule, check_schedule


def band_timesteps(T: int, lo: int, hi: int, frac: float) -> torch.Tensor:
    """Probabilities p(t) for t = 1..T (a tensor of T entries): with probability `frac` draw t uniformly
    from the band {lo, ..., hi}, otherwise uniformly from {1, ..., T}. Every step keeps some training."""
    if not 1 <= lo <= hi <= T:
        raise ValueError(f"the band needs 1 <= lo <= hi <= T = {T}, got lo = {lo}, hi = {hi}")
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"frac must lie in [0, 1) so that every time step is still drawn, got {frac}")
    band = torch.zeros(T, dtype=torch.float64)
    band[lo - 1:hi] = 1.0 / (hi - lo + 1)
    return ((1 - frac) / T + frac * band).float()


def check_t_probs(t_probs: torch.Tensor, T: int) -> torch.Tensor:
    """t_probs as a float tensor of T probabilities for t = 1..T, or a ValueError saying what is wrong."""
    t_probs = torch.as_tensor(t_probs)
    if t_probs.shape != (T,) or not t_probs.is_floating_point():
        raise ValueError(f"t_probs must be a float tensor of T = {T} probabilities for t = 1..T, "
                         f"got shape {tuple(t_probs.shape)} and dtype {t_probs.dtype}")
    if not torch.isfinite(t_probs).all() or (t_probs < 0).any() or t_probs.sum() <= 0:
        raise ValueError("t_probs must be finite, non-negative and not all zero")
    return (t_probs / t_probs.sum()).float().cpu()


def draw_timesteps(schedule: NoiseSchedule, n: int, generator: torch.Generator | None, device,
                   t_probs: torch.Tensor | None = None) -> torch.Tensor:
    """n time steps in {1, ..., T}: uniform (Algorithm 1) or drawn from t_probs."""
    where = generator.device if generator is not None else device
    if t_probs is None:
        return torch.randint(1, schedule.T + 1, (n,), generator=generator, device=where).to(device)
    t_probs = check_t_probs(t_probs, schedule.T)
    return (torch.multinomial(t_probs.to(where), n, replacement=True, generator=generator) + 1).to(device)


def ddpm_loss(model, schedule: NoiseSchedule, x0: torch.Tensor, generator: torch.Generator | None = None,
              context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
              t_probs: torch.Tensor | None = None) -> torch.Tensor:
    """One Monte Carlo estimate of the simple loss on a batch x0 (B, C, H, W) in model range.

    t_probs: None draws t uniformly, as Algorithm 1; else T probabilities for t = 1..T."""
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule (e.g. NoiseSchedule.linear(1000)), "
                        f"got {type(schedule).__name__}")
    validate.model_range(x0, "x0")
    validate.generator(generator)
    device = x0.device
    t = draw_timesteps(schedule, x0.shape[0], generator, device, t_probs)
    eps = randn(x0.shape, generator, device, x0.dtype)
    xt = schedule.add_noise(x0, eps, t)
    # .float(): under mixed precision the U-Net answers in bfloat16; the loss is taken in fp32.
    return F.mse_loss(model(xt, t, context, context_mask).float(), eps)


class DDPMObjective:
    """A `loss_fn` for sdlib.train.fit: the simple loss on the first tensor of each batch.

    encode_prompts(batch, generator) -> (context, mask), optional: turns the rest of the batch (labels,
    style codes, token ids) into the U-Net's context (e.g. sdlib.captions.CaptionedPrompts);
    p_uncond: fraction of prompts dropped (replaced by the empty prompt);
    t_probs: how t is drawn (None: uniformly, as Algorithm 1; see `band_timesteps`).
    """

    def __init__(self, schedule: NoiseSchedule, encode_prompts=None, p_uncond: float = 0.0,
                 t_probs: torch.Tensor | None = None):
        if not 0.0 <= p_uncond <= 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
        self.schedule, self.encode_prompts, self.p_uncond = schedule, encode_prompts, p_uncond
        self.t_probs = None if t_probs is None else check_t_probs(t_probs, schedule.T)

    def __call__(self, model, batch, generator):
        x0 = batch[0]
        context, mask = training_prompts(model, batch, self.encode_prompts, self.p_uncond, generator)
        return ddpm_loss(model, self.schedule, x0, generator, context, mask, self.t_probs)

    def settings(self) -> dict:
        """What `fit` stores in a checkpoint and checks when it resumes: the schedule (its name and a hash
        of its betas), how t is drawn and how often prompts are dropped."""
        return {"T": self.schedule.T, "schedule": self.schedule.name, "betas_sha256": self.schedule.fingerprint(),
                "p_uncond": self.p_uncond, "t_probs": None if self.t_probs is None else self.t_probs.detach().cpu()}


class NoisyClassifierObjective:
    """A `loss_fn` for sdlib.train.fit that trains a noise-aware classifier p_φ(y | x_t, t) (classifier
    guidance, lesson 07): each image of a batch (images, labels) is noised to a uniformly drawn t, as in
    Algorithm 1, and the loss is the cross-entropy of the classifier's logits for (x_t, t)."""

    def __init__(self, schedule: NoiseSchedule):
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        self.schedule = schedule

    def __call__(self, model, batch, generator):
        x0, labels = batch[0], batch[1]
        validate.model_range(x0, "x0")
        t = draw_timesteps(self.schedule, x0.shape[0], generator, x0.device, None)
        xt = self.schedule.add_noise(x0, randn(x0.shape, generator, x0.device, x0.dtype), t)
        logits = model(xt, t).float()
        return F.cross_entropy(logits, labels), {"accuracy": (logits.argmax(1) == labels).float().mean().item()}

    def settings(self) -> dict:
        return {"T": self.schedule.T, "schedule": self.schedule.name, "betas_sha256": self.schedule.fingerprint()}


def training_prompts(model, batch, encode_prompts, p_uncond: float, generator):
    """The context of a training batch: (None, None) for an unconditional model; else the encoded prompts,
    each replaced by the empty prompt with probability p_uncond (drawn from `generator`, one draw per image)."""
    if encode_prompts is None:
        return None, None
    x0 = batch[0]
    context, mask = encode_prompts(batch, generator)
    if p_uncond > 0:
        where = generator.device if generator is not None else x0.device
        drop = (torch.rand(x0.shape[0], generator=generator, device=where) < p_uncond).to(x0.device)
        context, mask = drop_prompts(model, context, mask, drop)
    return context, mask


def drop_prompts(model, context: torch.Tensor, mask: torch.Tensor | None, drop: torch.Tensor):
    """Replace the prompts where `drop` is True by the U-Net's learned empty prompt (`UNet.empty_prompt`)."""
    null, null_mask = model.empty_prompt(context.shape[0], context.shape[1])
    context = torch.where(drop[:, None, None], null.to(context.dtype), context)
    if mask is None:
        mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
    return context, torch.where(drop[:, None], null_mask, mask)


# -- the likelihood bound of a trained model ------------------------------------------------------

@dataclass(frozen=True)
class VariationalBound:
    """The negative ELBO of a model on a batch of images, in bits per dimension (lower is better):
    bits_per_dim = prior + denoising + reconstruction, averaged over the images.

    prior: L_T = KL(q(x_T | x_0) || N(0, I)); denoising: Σ_{t=2}^T L_{t-1}, each the expected KL from
    q(x_{t-1} | x_t, x_0) to p_θ(x_{t-1} | x_t); reconstruction: L_0 = -log p_θ(x_0 | x_1).
    standard_error: of bits_per_dim, over the images (it holds the Monte Carlo noise of t and x_t too)."""
    bits_per_dim: float
    prior: float
    denoising: float
    reconstruction: float
    standard_error: float
    variance: str
    n_images: int
    n_t: int | None

    def __str__(self) -> str:
        return (f"{self.bits_per_dim:.3f} ± {self.standard_error:.3f} bits/dim (σ_t² = "
                f"{'β_t' if self.variance == 'beta' else 'β̃_t'}; L_T {self.prior:.4f} + Σ L_t-1 "
                f"{self.denoising:.3f} + L_0 {self.reconstruction:.3f}; {self.n_images} images)")


def discretized_gaussian_log_likelihood(x0: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log p(x0) per element for 8-bit pixels in [-1, 1] under N(mean, std²) integrated over each pixel's bin
    [x - 1/255, x + 1/255] (the outer bins reach to -∞ and +∞), as the DDPM paper's decoder (Ho et al. 2020,
    eq. 13). Float64; the probability of a bin is floored at 1e-12."""
    x0, mean, std = x0.double(), mean.double(), std.double()
    upper = torch.where(x0 > 1 - 1e-3, torch.ones_like(x0), torch.special.ndtr((x0 + 1 / 255 - mean) / std))
    lower = torch.where(x0 < -1 + 1e-3, torch.zeros_like(x0), torch.special.ndtr((x0 - 1 / 255 - mean) / std))
    return torch.log((upper - lower).clamp_min(1e-12))


@torch.no_grad()
def variational_bound(model, schedule: NoiseSchedule, x0: torch.Tensor, *, variance: str = "beta",
                      n_t: int | None = 100, generator: torch.Generator | None = None,
                      context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> VariationalBound:
    """The negative ELBO -log p(x_0) <= L_T + Σ_{t=2}^T L_{t-1} + L_0 of an ε-prediction model, in bits per
    dimension, averaged over the images x0 (B, C, H, W): 8-bit images in [-1, 1].

    p_θ(x_{t-1} | x_t) = N(μ_θ(x_t, t), σ_t² I) with σ_t² = β_t (variance="beta") or β̃_t ("beta_tilde"),
    μ_θ from the model's ε as in Algorithm 2. L_{t-1} is the KL of two Gaussians, in closed form given x_t;
    x_t is drawn from q(x_t | x_0). The sum over t is estimated from n_t draws of t ~ Uniform{2..T} per
    image ((T - 1) times their mean); n_t=None sums over every t (T - 1 model calls per image).
    L_0 uses a discretised Gaussian decoder (Ho et al. 2020, §3.3): the probability of each pixel's 8-bit
    bin under N(μ_θ(x_1, 1), β_1), with variance β_1 for both settings, since β̃_1 = 0.
    Bits per dimension = nats / (number of pixels · ln 2)."""
    _check_bound_inputs(model, schedule, x0, variance, n_t, generator)
    # The bound is summed over hundreds of terms, so its arithmetic runs in float64 on the CPU (MPS has no
    # float64); only the model runs on its own device.
    device = next((p.device for p in model.parameters()), x0.device)
    x0 = x0.detach().cpu().double()

    def reverse_mean(xt, t):                      # μ_θ(x_t, t): the posterior mean at the model's x̂₀
        x = xt.to(device, torch.float32)
        eps = validate.in_model_dtype(model, lambda v: model(v, t.to(device), context, context_mask), x)
        return schedule.posterior_mean(schedule.x0_from_eps(xt, eps.double().cpu(), t), xt, t)

    B, T = x0.shape[0], schedule.T
    sigma2 = schedule.beta if variance == "beta" else schedule.beta_tilde
    prior = schedule.prior_kl(x0)
    denoising_kl = lambda t: _denoising_kl(reverse_mean, schedule, sigma2, x0, t, generator)   # noqa: E731
    if n_t is None:
        denoising = sum(denoising_kl(torch.full((B,), t, dtype=torch.long)) for t in range(2, T + 1))
    else:
        draws = [denoising_kl(torch.randint(2, T + 1, (B,), generator=generator)) for _ in range(n_t)]
        denoising = (T - 1) * torch.stack(draws).mean(0)
    one = torch.ones(B, dtype=torch.long)
    x1 = schedule.add_noise(x0, randn(x0.shape, generator, "cpu", torch.float64), one)
    std = NoiseSchedule.gather(schedule.beta, one, x0).sqrt().expand_as(x0)
    reconstruction = -discretized_gaussian_log_likelihood(x0, reverse_mean(x1, one), std).flatten(1).sum(1)

    to_bits = 1.0 / (x0[0].numel() * math.log(2.0))
    total = (prior + denoising + reconstruction) * to_bits
    se = (total.std() / math.sqrt(B)).item() if B > 1 else float("nan")
    return VariationalBound(bits_per_dim=total.mean().item(), prior=(prior * to_bits).mean().item(),
                            denoising=(denoising * to_bits).mean().item(),
                            reconstruction=(reconstruction * to_bits).mean().item(), standard_error=se,
                            variance=variance, n_images=B, n_t=n_t)


def _denoising_kl(reverse_mean, schedule: NoiseSchedule, sigma2: torch.Tensor, x0: torch.Tensor, t: torch.Tensor,
                  generator) -> torch.Tensor:
    """L_{t-1} per image, for one x_t ~ q(x_t | x_0) each: KL(q(x_{t-1} | x_t, x_0) || N(μ_θ(x_t, t), σ_t² I))."""
    xt = schedule.add_noise(x0, randn(x0.shape, generator, "cpu", torch.float64), t)
    mu_tilde, beta_tilde = schedule.posterior(x0, xt, t)
    kl = kl_normal(mu_tilde, beta_tilde, reverse_mean(xt, t), NoiseSchedule.gather(sigma2, t, x0))
    return kl.flatten(1).sum(1)


def _check_bound_inputs(model, schedule, x0, variance, n_t, generator) -> None:
    """variational_bound's door."""
    if variance not in ("beta", "beta_tilde"):
        raise ValueError(f"variance must be 'beta' or 'beta_tilde', got {variance!r}")
    if n_t is not None:
        validate.positive_int(n_t, "n_t")
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    check_schedule(model, schedule)
    validate.eight_bit_images(x0, "x0")
    validate.unit_range_warning(x0, "x0")
    validate.generator(generator)
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("variational_bound draws its noise on the CPU: pass a CPU generator, "
                         "torch.Generator().manual_seed(seed)")
