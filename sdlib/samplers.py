"""Samplers: turn a noise predictor ε_θ(x_t, t) into images, one step at a time.

The loop is short enough to write out, and the lessons do:

    x = torch.randn(shape)                       # x_T ~ N(0, I)
    for t in sampler.timesteps:                  # T, ..., 1 (DDPM) or a subset (DDIM)
        eps_pred = model(x, t)
        x = sampler.step(eps_pred, t, x).x_prev

- `DDPMSampler`: Algorithm 2 of Ho et al. (2020), with σ_t² = β_t, or the posterior variance β̃_t.
- `DDIMSampler`: Song et al. (2021): any number of steps, η = 0 deterministic, η = 1 like DDPM.
- `sample()`: that loop, with a progress bar, a seeded generator and an optional trajectory.
- `ClassifierFreeGuidance`: ε = w·(ε_cond − ε_uncond) + ε_uncond as one batched denoiser (lesson 07).
All images are in model range ([-1, 1] for pixels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import validate
from .schedules import NoiseSchedule


@dataclass
class StepOutput:
    x_prev: torch.Tensor      # the sample one step less noisy
    x0_pred: torch.Tensor     # the model's current guess of the clean image


def randn(shape, generator: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise drawn with `generator` (on the generator's own device), moved to `device`."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)


def _check_step_inputs(eps_pred, x_t):
    validate.floating(eps_pred, "eps_pred")
    validate.floating(x_t, "x_t")
    if eps_pred.shape != x_t.shape:
        raise ValueError(f"eps_pred and x_t must have the same shape, got {tuple(eps_pred.shape)} and {tuple(x_t.shape)}")


class DDPMSampler:
    """Ancestral sampling, Algorithm 2 of the DDPM paper:

        x_{t-1} = 1/sqrt(alpha_t) · (x_t − (1 − alpha_t)/sqrt(1 − ᾱ_t) · ε_θ(x_t, t)) + σ_t z,
        z ~ N(0, I) if t > 1 else 0,

    variance="beta": σ_t² = β_t (the paper's choice); "beta_tilde": σ_t² = β̃_t, the posterior variance.
    clip_x0=True clips the implied x0 to [-1, 1] before stepping (a common fix for early, rough models;
    off by default so that the step is exactly Algorithm 2).
    """

    def __init__(self, schedule: NoiseSchedule, variance: str = "beta", clip_x0: bool = False):
        if variance not in ("beta", "beta_tilde"):
            raise ValueError(f"variance must be 'beta' or 'beta_tilde', got {variance!r}")
        self.schedule, self.variance, self.clip_x0 = schedule, variance, clip_x0
        self.timesteps = list(range(schedule.T, 0, -1))            # T, T-1, ..., 1

    def __repr__(self):
        return f"DDPMSampler({self.schedule.T} steps, variance={self.variance!r}, clip_x0={self.clip_x0})"

    def sigma(self, t: int) -> float:
        s = self.schedule
        return math.sqrt((s.beta if self.variance == "beta" else s.beta_tilde)[t].item())

    def step(self, eps_pred: torch.Tensor, t: int, x_t: torch.Tensor,
             generator: torch.Generator | None = None) -> StepOutput:
        _check_step_inputs(eps_pred, x_t)
        t = int(t)
        if not 1 <= t <= self.schedule.T:
            raise ValueError(f"t must lie in [1, {self.schedule.T}], got {t}")
        s = self.schedule
        x0_pred = (x_t - s.sqrt_one_minus_alpha_bar[t].item() * eps_pred) / s.sqrt_alpha_bar[t].item()
        if self.clip_x0:
            x0_pred = x0_pred.clamp(-1, 1)
            mean = s.posterior_coef_x0[t].item() * x0_pred + s.posterior_coef_xt[t].item() * x_t
        else:
            mean = (x_t - (s.beta[t].item() / s.sqrt_one_minus_alpha_bar[t].item()) * eps_pred) / math.sqrt(s.alpha[t].item())
        if t > 1:
            mean = mean + self.sigma(t) * randn(x_t.shape, generator, x_t.device, x_t.dtype)
        return StepOutput(mean, x0_pred)


class DDIMSampler:
    """DDIM (Song et al. 2021) on `steps` evenly spaced time steps T = τ_1 > τ_2 > ... > τ_S ≥ 1:

        x0_pred = (x_t − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t)
        σ = η · sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)) · sqrt(1 − ᾱ_t/ᾱ_prev)
        x_prev = sqrt(ᾱ_prev) x0_pred + sqrt(1 − ᾱ_prev − σ²) ε + σ z

    η = 0 is deterministic (the same x_T always gives the same image); η = 1 with all T steps has
    σ² = β̃_t and is the DDPM posterior step. The time steps start exactly at T (x_T ~ N(0, I)).
    """

    def __init__(self, schedule: NoiseSchedule, steps: int = 50, eta: float = 0.0, clip_x0: bool = False):
        validate.positive_int(steps, "steps", minimum=1, maximum=schedule.T)
        eta = validate.finite_number(eta, "eta")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM-like), got {eta}")
        self.schedule, self.steps, self.eta, self.clip_x0 = schedule, steps, eta, clip_x0
        grid = torch.linspace(schedule.T, 0, steps + 1).round().long().tolist()   # T, ..., 0
        self.timesteps = grid[:-1]
        self.previous = dict(zip(grid[:-1], grid[1:]))

    def __repr__(self):
        return f"DDIMSampler({self.steps} steps, eta={self.eta}, clip_x0={self.clip_x0})"

    def step(self, eps_pred: torch.Tensor, t: int, x_t: torch.Tensor,
             generator: torch.Generator | None = None) -> StepOutput:
        _check_step_inputs(eps_pred, x_t)
        t = int(t)
        if t not in self.previous:
            raise ValueError(f"t={t} is not one of this sampler's {self.steps} time steps "
                             f"({self.timesteps[0]}, {self.timesteps[1] if self.steps > 1 else ''}...)")
        s = self.schedule
        ab, ab_prev = s.alpha_bar[t].item(), s.alpha_bar[self.previous[t]].item()
        x0_pred = (x_t - math.sqrt(1 - ab) * eps_pred) / math.sqrt(ab)
        if self.clip_x0:
            x0_pred = x0_pred.clamp(-1, 1)
            eps_pred = (x_t - math.sqrt(ab) * x0_pred) / math.sqrt(1 - ab)
        sigma = self.eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(max(0.0, 1 - ab / ab_prev))
        x_prev = math.sqrt(ab_prev) * x0_pred + math.sqrt(max(0.0, 1 - ab_prev - sigma ** 2)) * eps_pred
        if sigma > 0:
            x_prev = x_prev + sigma * randn(x_t.shape, generator, x_t.device, x_t.dtype)
        return StepOutput(x_prev, x0_pred)


@dataclass
class Trajectory:
    """What a sampling run went through: time steps, the samples x_t and the predicted x0 (on the CPU)."""

    t: list[int] = field(default_factory=list)
    xt: list[torch.Tensor] = field(default_factory=list)
    x0_pred: list[torch.Tensor] = field(default_factory=list)


class ClassifierFreeGuidance:
    """A denoiser that mixes a conditional and an unconditional prediction (lesson 07):

        ε = w · (ε(x_t, t, prompt) − ε(x_t, t, ∅)) + ε(x_t, t, ∅)

    w = 1 is the plain conditional model (no guidance), w = 0 the unconditional one, w > 1 pushes
    further toward the prompt. ∅ is the U-Net's learned empty prompt or, for a negative prompt, that
    prompt's context. Both branches run in one forward pass on a doubled batch.
    """

    def __init__(self, model, context: torch.Tensor, w: float, context_mask: torch.Tensor | None = None,
                 negative_context: torch.Tensor | None = None, negative_mask: torch.Tensor | None = None):
        self.w = validate.finite_number(w, "guidance scale w")
        validate.floating(context, "context")
        if context.dim() != 3:
            raise ValueError(f"context must have shape (B, L, width), got {tuple(context.shape)}")
        for name, c, m in (("context_mask", context, context_mask), ("negative_mask", negative_context, negative_mask)):
            if m is not None and (c is None or tuple(m.shape) != tuple(c.shape[:2])):
                raise ValueError(f"{name} must have shape (B, L) = {None if c is None else tuple(c.shape[:2])} to "
                                 f"match its context, got {tuple(m.shape)}")
        width = getattr(getattr(model, "config", None), "context_dim", None)
        if width is not None and context.shape[2] != width:
            raise ValueError(f"context must have shape (B, L, {width}) for this U-Net (config.context_dim), "
                             f"got {tuple(context.shape)}: was it made by a different text encoder?")
        if negative_context is not None and (negative_context.dim() != 3 or negative_context.shape[2] != context.shape[2]):
            raise ValueError(f"negative_context must have shape (B, L, {context.shape[2]}) like the context, "
                             f"got {tuple(negative_context.shape)}")
        self.model, self.context, self.context_mask = model, context, context_mask
        if negative_context is not None and negative_context.shape[0] != context.shape[0]:
            raise ValueError(f"the negative prompt batch has {negative_context.shape[0]} entries but the prompts "
                             f"have {context.shape[0]}: give one negative prompt, or one per prompt")
        self.negative_context, self.negative_mask = negative_context, negative_mask

    def select(self, index: slice) -> "ClassifierFreeGuidance":
        """The same guidance for a slice of the prompts (used by `sample` to work in batches)."""
        part = lambda x: None if x is None else x[index]
        return ClassifierFreeGuidance(self.model, self.context[index], self.w, part(self.context_mask),
                                      part(self.negative_context), part(self.negative_mask))

    def _uncond_context(self, b):
        if self.negative_context is not None:
            return self.negative_context, self.negative_mask
        null = self.model.null_context
        return null.expand(b, self.context.shape[1], -1), self._null_mask(b)

    def _null_mask(self, b):
        mask = torch.zeros(b, self.context.shape[1], dtype=torch.bool, device=self.context.device)
        mask[:, 0] = True                                   # one real token: the learned empty prompt
        return mask

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if self.context.shape[0] != b:
            raise ValueError(f"the batch has {b} images but the context has {self.context.shape[0]} prompts")
        if self.w == 1.0:                                   # w = 1: the conditional model alone
            return self.model(x, t, self.context, self.context_mask)
        uncond, uncond_mask = self._uncond_context(b)
        if self.w == 0.0:                                   # w = 0: the unconditional (or negative) branch alone
            return self.model(x, t, uncond, uncond_mask)
        cond_mask = self.context_mask
        if cond_mask is None and uncond_mask is not None:
            cond_mask = torch.ones(self.context.shape[:2], dtype=torch.bool, device=x.device)
        if uncond_mask is None and cond_mask is not None:
            uncond_mask = torch.ones(uncond.shape[:2], dtype=torch.bool, device=x.device)
        length = max(self.context.shape[1], uncond.shape[1])
        ctx = torch.cat([_pad(self.context, length), _pad(uncond, length)])
        mask = torch.cat([_pad_mask(cond_mask, length), _pad_mask(uncond_mask, length)]) if cond_mask is not None else None
        eps_cond, eps_uncond = self.model(torch.cat([x, x]), torch.cat([t, t]), ctx, mask).chunk(2)
        return guidance(eps_cond, eps_uncond, self.w)


def guidance(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance: w · (eps_cond − eps_uncond) + eps_uncond (w = 1: no guidance)."""
    return w * (eps_cond - eps_uncond) + eps_uncond


def _pad(context, length):
    return context if context.shape[1] == length else torch.nn.functional.pad(context, (0, 0, 0, length - context.shape[1]))


def _pad_mask(mask, length):
    return mask if mask.shape[1] == length else torch.nn.functional.pad(mask, (0, length - mask.shape[1]), value=False)


@torch.no_grad()
def sample(denoiser: Callable, sampler, shape=None, *, x_T: torch.Tensor | None = None,
           generator: torch.Generator | None = None, device=None, progress: bool = True,
           trajectory: bool = False, trajectory_every: int = 1, batch_size: int | None = None):
    """Run `sampler` from x_T ~ N(0, I) down to x_0 with `denoiser(x_t, t) -> eps_pred` (a U-Net, or a
    ClassifierFreeGuidance). Returns the samples, or (samples, Trajectory) if trajectory=True.

    shape: (N, C, H, W) of the samples (or give x_T); batch_size: split N into batches of this size.
    """
    if x_T is None:
        if shape is None:
            raise ValueError("give the shape of the samples, or x_T")
        if device is None:
            params = getattr(denoiser, "parameters", None) or getattr(getattr(denoiser, "model", None), "parameters", None)
            device = next(params()).device if params else torch.device("cpu")
        x_T = randn(tuple(shape), generator, device)
    validate.floating(x_T, "x_T")
    if x_T.dim() != 4:
        raise ValueError(f"x_T must have shape (N, C, H, W), got {tuple(x_T.shape)}")
    if batch_size is not None and batch_size < len(x_T):
        if trajectory:
            raise ValueError("trajectory=True needs all samples in one batch (batch_size=None)")
        # A denoiser that holds one prompt per image (ClassifierFreeGuidance) is cut to match each batch.
        part = getattr(denoiser, "select", lambda index: denoiser)
        return torch.cat([sample(part(slice(i, i + batch_size)), sampler, x_T=x_T[i:i + batch_size],
                                 generator=generator, progress=progress) for i in range(0, len(x_T), batch_size)])
    from tqdm.auto import tqdm

    x, record = x_T, Trajectory()
    steps = sampler.timesteps
    for i, t in enumerate(tqdm(steps, desc=type(sampler).__name__.replace("Sampler", ""), disable=not progress,
                               leave=False)):
        t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps_pred = denoiser(x, t_batch)
        out = sampler.step(eps_pred, t, x, generator)
        if trajectory and (i % trajectory_every == 0 or i == len(steps) - 1):
            record.t.append(t)
            record.xt.append(x.detach().cpu())
            record.x0_pred.append(out.x0_pred.detach().cpu())
        x = out.x_prev
    return (x, record) if trajectory else x
