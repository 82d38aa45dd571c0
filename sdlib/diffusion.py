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

import torch
import torch.nn.functional as F

from . import validate
from .runtime import randn
from .schedules import NoiseSchedule


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
        context = mask = None
        if self.encode_prompts is not None:
            context, mask = self.encode_prompts(batch, generator)
            if self.p_uncond > 0:
                where = generator.device if generator is not None else x0.device
                drop = (torch.rand(x0.shape[0], generator=generator, device=where) < self.p_uncond).to(x0.device)
                context, mask = drop_prompts(model, context, mask, drop)
        return ddpm_loss(model, self.schedule, x0, generator, context, mask, self.t_probs)

    def settings(self) -> dict:
        """What `fit` stores in a checkpoint and checks when it resumes: the schedule (its name and a hash
        of its betas), how t is drawn and how often prompts are dropped."""
        return {"T": self.schedule.T, "schedule": self.schedule.name, "betas_sha256": self.schedule.fingerprint(),
                "p_uncond": self.p_uncond, "t_probs": None if self.t_probs is None else self.t_probs.detach().cpu()}


def drop_prompts(model, context: torch.Tensor, mask: torch.Tensor | None, drop: torch.Tensor):
    """Replace the prompts where `drop` is True by the U-Net's learned empty prompt (`UNet.empty_prompt`)."""
    null, null_mask = model.empty_prompt(context.shape[0], context.shape[1])
    context = torch.where(drop[:, None, None], null.to(context.dtype), context)
    if mask is None:
        mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
    return context, torch.where(drop[:, None], null_mask, mask)
