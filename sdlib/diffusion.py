"""The training objective of a diffusion model: Algorithm 1 of Ho et al. (2020).

    repeat
        x0 ~ q(x0)                                  a batch of training images
        t ~ Uniform{1, ..., T}                      one random time step per image
        eps ~ N(0, I)
        gradient step on || eps − ε_θ(sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) eps, t) ||²
    until converged

Each term is the denoising-matching KL of the ELBO with its weight dropped ("the simple loss").
For text-conditioned models (lesson 07), `p_uncond` replaces the prompt by the U-Net's learned empty
prompt for that fraction of the batch, so that one model learns both ε(x_t, t, prompt) and ε(x_t, t).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .samplers import randn
from .schedules import NoiseSchedule


def ddpm_loss(model, schedule: NoiseSchedule, x0: torch.Tensor, generator: torch.Generator | None = None,
              context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One Monte Carlo estimate of the simple loss on a batch x0 (B, C, H, W) in model range."""
    device = x0.device
    where = generator.device if generator is not None else device
    t = torch.randint(1, schedule.T + 1, (x0.shape[0],), generator=generator, device=where).to(device)
    eps = randn(x0.shape, generator, device, x0.dtype)
    xt = schedule.add_noise(x0, eps, t)
    # .float(): under mixed precision the U-Net answers in bfloat16; the loss is taken in fp32.
    return F.mse_loss(model(xt, t, context, context_mask).float(), eps)


class DDPMObjective:
    """A `loss_fn` for sdlib.train.fit: the simple loss on the first tensor of each batch.

    encode_prompts(batch, generator) -> (context, mask), optional: turns the rest of the batch (labels,
    style codes, token ids) into the U-Net's context (e.g. sdlib.conditioning.CaptionedPrompts);
    p_uncond: fraction of prompts dropped (replaced by the empty prompt).
    """

    def __init__(self, schedule: NoiseSchedule, encode_prompts=None, p_uncond: float = 0.0):
        if not 0.0 <= p_uncond <= 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
        self.schedule, self.encode_prompts, self.p_uncond = schedule, encode_prompts, p_uncond

    def __call__(self, model, batch, generator):
        x0 = batch[0]
        context = mask = None
        if self.encode_prompts is not None:
            context, mask = self.encode_prompts(batch, generator)
            if self.p_uncond > 0:
                where = generator.device if generator is not None else x0.device
                drop = (torch.rand(x0.shape[0], generator=generator, device=where) < self.p_uncond).to(x0.device)
                context, mask = drop_prompts(model, context, mask, drop)
        return ddpm_loss(model, self.schedule, x0, generator, context, mask)


def drop_prompts(model, context: torch.Tensor, mask: torch.Tensor | None, drop: torch.Tensor):
    """Replace the prompts where `drop` is True by the U-Net's learned empty prompt (one token)."""
    null = model.null_context.to(context.dtype).expand(context.shape[0], context.shape[1], -1)
    context = torch.where(drop[:, None, None], null, context)
    if mask is None:
        mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
    only_first = torch.zeros_like(mask)
    only_first[:, 0] = True
    mask = torch.where(drop[:, None], only_first, mask)
    return context, mask
