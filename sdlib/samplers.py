"""Samplers: turn a noise predictor ε_θ(x_t, t) into images, one step at a time.

The loop is short enough to write out, and the lessons do:

    x = torch.randn(shape)                       # x_T ~ N(0, I)
    for t in sampler.timesteps:                  # T, ..., 1 (DDPM) or a subset (DDIM)
        eps_pred = model(x, t)
        x = sampler.step(eps_pred, t, x).x_prev

- `DDPMSampler`: Algorithm 2 of Ho et al. (2020), with σ_t² = β_t, or the posterior variance β̃_t.
- `DDIMSampler`: Song et al. (2021): any number of steps, η = 0 deterministic, η = 1 like DDPM.
- `sample()`: that loop, the one in the library: noise per sample (`SampleNoise`), batches, a start part
  way down (`timesteps`, image-to-image), a per-step hook (`on_step`, inpainting), a trajectory.
- `ClassifierFreeGuidance`: ε = w·(ε_cond − ε_uncond) + ε_uncond as one batched denoiser (lesson 07),
  and `generate()`: guided samples for a list of prompts.
The samplers of flow matching (sdlib.flow.EulerSampler, HeunSampler) run in the same `sample()`.
All images are in model range ([-1, 1] for pixels).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from sdlib import runtime
from sdlib.runtime import DEFAULT_SEED, SampleNoise, validate  # noqa: F401  (sdlib.samplers.DEFAULT_SEED)
from sdlib.schedules import NoiseSchedule, check_schedule, schedule_of  # noqa: F401  (sdlib.samplers.schedule_of)


@dataclass
class StepOutput:
    x_prev: torch.Tensor      # the sample one step less noisy
    x0_pred: torch.Tensor     # the model's current guess of the clean image


randn = runtime.randn          # generator-aware noise, defined once (a SampleNoise draws per sample)


def _check_step_inputs(eps_pred, xt):
    validate.floating(eps_pred, "eps_pred")
    validate.floating(xt, "xt")
    validate.like(xt, eps_pred, "xt", "eps_pred")


class DDPMSampler:
    """Ancestral sampling, Algorithm 2 of the DDPM paper:

        x_{t-1} = 1/sqrt(alpha_t) · (x_t − (1 − alpha_t)/sqrt(1 − ᾱ_t) · ε_θ(x_t, t)) + σ_t z,
        z ~ N(0, I) if t > 1 else 0,

    variance="beta": σ_t² = β_t; "beta_tilde": σ_t² = β̃_t, the posterior variance (Ho et al. tried both and
    found similar samples).
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

    def step(self, eps_pred: torch.Tensor, t: int, xt: torch.Tensor, generator=None,
             t_prev: int | None = None) -> StepOutput:
        """x_{t-1} from x_t. generator: a torch.Generator or a SampleNoise; t_prev, if given, must be t - 1."""
        _check_step_inputs(eps_pred, xt)
        t = validate.timestep(t, self.schedule.T)
        if t_prev is not None and t_prev != t - 1:
            raise ValueError(f"DDPM steps from t to t - 1 only, got t={t}, t_prev={t_prev}: use DDIMSampler to skip")
        x0_pred = self.schedule.x0_from_eps(xt, eps_pred, t)
        if self.clip_x0:
            x0_pred = x0_pred.clamp(-1, 1)
        mean = self.schedule.posterior_mean(x0_pred, xt, t)       # at x̂₀: Algorithm 2's mean
        if t > 1:
            mean = mean + self.sigma(t) * randn(xt.shape, generator, xt.device, xt.dtype)
        return StepOutput(mean, x0_pred)


class DDIMSampler:
    """DDIM (Song et al. 2021) on `steps` evenly spaced time steps T = τ_1 > τ_2 > ... > τ_S ≥ 1:

        x0_pred = (x_t − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t)
        σ = η · sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)) · sqrt(1 − ᾱ_t/ᾱ_prev)
        x_prev = sqrt(ᾱ_prev) x0_pred + sqrt(1 − ᾱ_prev − σ²) ε + σ z          (Song et al. 2021, eq. 12 and 16)

    η = 0 is deterministic (the same x_T always gives the same image); η = 1 with all T steps has
    σ² = β̃_t and is the DDPM posterior step. The time steps start exactly at T (x_T ~ N(0, I)).
    """

    def __init__(self, schedule: NoiseSchedule, steps: int = 50, eta: float = 0.0, clip_x0: bool = False):
        validate.positive_int(steps, "steps", minimum=1, maximum=schedule.T)
        eta = validate.finite_number(eta, "eta", low=0.0, high=1.0)
        self.schedule, self.steps, self.eta, self.clip_x0 = schedule, steps, eta, clip_x0
        grid = torch.linspace(schedule.T, 0, steps + 1).round().long().tolist()   # T, ..., 0
        self.timesteps = grid[:-1]
        self.previous = dict(zip(grid[:-1], grid[1:]))

    def __repr__(self):
        return f"DDIMSampler({self.steps} steps, eta={self.eta}, clip_x0={self.clip_x0})"

    def step(self, eps_pred: torch.Tensor, t: int, xt: torch.Tensor, generator=None,
             t_prev: int | None = None) -> StepOutput:
        """x_{t_prev} from x_t. t_prev: by default the next step of this sampler's grid; any 0 <= t_prev < t
        is allowed (image-to-image starts at the exact t its strength selects). generator: a torch.Generator
        or a SampleNoise."""
        _check_step_inputs(eps_pred, xt)
        t = validate.timestep(t, self.schedule.T)
        if t_prev is None:
            if t not in self.previous:
                raise ValueError(f"t={t} is not one of this sampler's {self.steps} time steps "
                                 f"({self.timesteps[0]}, {self.timesteps[1] if self.steps > 1 else ''}...); "
                                 f"pass t_prev to step from another t")
            t_prev = self.previous[t]
        t_prev = validate.timestep(t_prev, self.schedule.T, lowest=0, name="t_prev")
        if t_prev >= t:
            raise ValueError(f"t_prev must be below t, got t={t}, t_prev={t_prev}")
        s = self.schedule
        ab, ab_prev = s.alpha_bar[t].item(), s.alpha_bar[t_prev].item()
        x0_pred = s.x0_from_eps(xt, eps_pred, t)
        if self.clip_x0:
            x0_pred = x0_pred.clamp(-1, 1)
            eps_pred = s.eps_from_x0(xt, x0_pred, t)
        sigma = self.eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(max(0.0, 1 - ab / ab_prev))
        x_prev = math.sqrt(ab_prev) * x0_pred + math.sqrt(max(0.0, 1 - ab_prev - sigma ** 2)) * eps_pred
        if sigma > 0:
            x_prev = x_prev + sigma * randn(xt.shape, generator, xt.device, xt.dtype)
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
    further toward the prompt (the convention of Imagen and Stable Diffusion; Ho & Salimans (2022) write
    (1 + w')·ε(prompt) − w'·ε(∅), the same with w = 1 + w'). ∅ is the U-Net's learned empty prompt or,
    for a negative prompt, that prompt's context. Both branches run in one forward pass on a doubled batch.
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

    condition_name, scale_name = "prompts", "guidance scale w"     # what sample()'s messages call them

    @property
    def n_conditions(self) -> int:
        return self.context.shape[0]

    @property
    def scale_value(self) -> float:
        return self.w

    def select(self, index: slice) -> "ClassifierFreeGuidance":
        """The same guidance for a slice of the prompts (used by `sample` to work in batches)."""
        part = lambda x: None if x is None else x[index]
        return ClassifierFreeGuidance(self.model, self.context[index], self.w, part(self.context_mask),
                                      part(self.negative_context), part(self.negative_mask))

    def _uncond_context(self, b):
        if self.negative_context is not None:
            return self.negative_context, self.negative_mask
        return self.model.empty_prompt(b, self.context.shape[1])

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


class ClassifierGuidance:
    """A denoiser that steers an ε-prediction model toward class `labels` with the gradient of a noise-aware
    classifier (Dhariwal & Nichol 2021, their Algorithm 2, the form for ε-prediction samplers):

        ε̂ = ε_θ(x_t, t) − s · sqrt(1 − ᾱ_t) · ∇_{x_t} log p_φ(y | x_t, t)

    ε is a scaled score, ε = −sqrt(1 − ᾱ_t) ∇ log p(x_t), so this adds s times the classifier's score to the
    model's: sampling from p(x_t) p_φ(y | x_t)^s. s = 0 is the model alone. Any sampler of this module runs
    it through `sample()`, like ClassifierFreeGuidance.

    model: an ε-prediction U-Net (unconditional, or conditional on its empty prompt);
    classifier: a classifier of noisy images with the time step as input (`sdlib.unet.NoisyClassifier`,
        `load_pretrained("noisy_classifier")`), trained on the same schedule;
    labels: (B,) digit classes, one per sample; scale: s; schedule: the model's noise schedule.
    """

    def __init__(self, model, classifier, labels, scale: float, schedule: NoiseSchedule):
        self.scale = validate.finite_number(scale, "classifier guidance scale")
        if not getattr(classifier, "takes_time", False):
            raise TypeError(f"classifier guidance needs a classifier of noisy images x_t that takes the time step t "
                            f"as a second input, p(y | x_t, t) (e.g. load_pretrained('noisy_classifier')); a "
                            f"{type(classifier).__name__} was trained on clean images only and has no time input")
        validate.instance(schedule, NoiseSchedule, "schedule")
        classes = getattr(getattr(classifier, "config", None), "classes", 10)
        if not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(labels)
        validate.labels(labels, "labels", labels.shape[0] if labels.dim() else None, classes)
        max_t = getattr(getattr(classifier, "config", None), "max_t", schedule.T)
        if max_t != schedule.T:
            raise ValueError(f"the classifier was trained with T = {max_t} time steps but the schedule has "
                             f"T = {schedule.T}")
        self.model, self.classifier, self.labels, self.schedule = model, classifier, labels, schedule

    condition_name, scale_name = "labels", "classifier guidance scale"

    @property
    def n_conditions(self) -> int:
        return len(self.labels)

    @property
    def scale_value(self) -> float:
        return self.scale

    def select(self, index: slice) -> "ClassifierGuidance":
        """The same guidance for a slice of the labels (used by `sample` to work in batches)."""
        return ClassifierGuidance(self.model, self.classifier, self.labels[index], self.scale, self.schedule)

    def classifier_score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """∇_{x_t} log p_φ(y | x_t, t) for each sample's label, shaped like x."""
        with torch.enable_grad():
            x = x.detach().float().requires_grad_(True)
            log_p = torch.log_softmax(self.classifier(x, t).float(), dim=1)
            chosen = log_p.gather(1, self.labels.to(x.device)[:, None]).sum()
            return torch.autograd.grad(chosen, x)[0]

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if len(self.labels) != x.shape[0]:
            raise ValueError(f"the batch has {x.shape[0]} images but {len(self.labels)} labels were given")
        eps = self.model(x, t)
        if self.scale == 0.0:
            return eps
        scale = self.schedule.gather(self.schedule.sqrt_one_minus_alpha_bar, t, eps)
        return eps - self.scale * scale * self.classifier_score(x, t).to(eps.dtype)


def guidance(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance: w · (eps_cond − eps_uncond) + eps_uncond (w = 1: no guidance, w = 0: unconditional).

    This is the form of Imagen (Saharia et al. 2022) and Stable Diffusion. Ho & Salimans (2022) write
    (1 + w') · eps_cond − w' · eps_uncond, with w' = 0 for no guidance: the same prediction when w = 1 + w'.
    """
    return w * (eps_cond - eps_uncond) + eps_uncond


def _pad(context, length):
    return context if context.shape[1] == length else torch.nn.functional.pad(context, (0, 0, 0, length - context.shape[1]))


def _pad_mask(mask, length):
    return mask if mask.shape[1] == length else torch.nn.functional.pad(mask, (0, length - mask.shape[1]), value=False)


def _model_of(denoiser):
    """The network inside a denoiser (a U-Net, or the U-Net of a ClassifierFreeGuidance)."""
    return getattr(denoiser, "model", denoiser)


def _check_result(x: torch.Tensor, denoiser, limit: float = 50.0) -> None:
    """Samples live in [-1, 1] (latents within a few units): non-finite is an error, far outside a warning. The
    message names the guidance scale when the denoiser carries one, the usual cause."""
    peak = x.abs().max().item() if x.numel() else 0.0
    if math.isfinite(peak) and peak <= limit:
        return
    name = getattr(denoiser, "scale_name", None)                  # a guidance: its scale is the usual cause
    if name is not None and abs(denoiser.scale_value) > 20:
        cause = f"the {name} = {denoiser.scale_value:g} is probably too large"
    else:
        cause = "a guidance scale or a step size too large, or a schedule that does not match the model?"
    if not math.isfinite(peak):
        raise FloatingPointError(f"sampling diverged: the samples hold NaN or infinite values; {cause}")
    warnings.warn(f"sampling diverged: the samples reach {peak:.3g} (they should lie within a few units of "
                  f"[-1, 1]); {cause}", RuntimeWarning, stacklevel=4)


def _start(denoiser, sampler, shape, x_T, generator, seed, device, timesteps):
    """sample()'s door: check what it was given and draw x_T. Returns (noise, x_T, timesteps)."""
    if getattr(sampler, "schedule", None) is not None:
        check_schedule(denoiser, sampler.schedule)
    if hasattr(sampler, "check_model"):                 # a flow sampler: a model of continuous time
        sampler.check_model(denoiser)
    n = len(x_T) if x_T is not None else (shape[0] if shape is not None else None)
    if n is None:
        raise ValueError("give the shape of the samples, or x_T")
    carried = getattr(denoiser, "n_conditions", None)      # prompts or labels, one per sample
    if carried is not None and carried != n:
        raise ValueError(f"the denoiser carries {carried} {denoiser.condition_name} but {n} samples are asked for: "
                         f"give a shape (or x_T) with {carried} samples, or one {denoiser.condition_name[:-1]} "
                         f"per sample")
    noise = generator if isinstance(generator, SampleNoise) else SampleNoise(n, seed, generator)
    if len(noise) != n:
        raise ValueError(f"the noise has {len(noise)} samples but {n} are asked for")
    if x_T is None:
        if len(shape) != 4:
            raise ValueError(f"shape must be (N, C, H, W), got {tuple(shape)}")
        if device is None:
            params = getattr(_model_of(denoiser), "parameters", None)
            device = next(params()).device if params else torch.device("cpu")
        device = validate.device(device)
        x_T = noise.randn(tuple(shape), device)
    validate.floating(x_T, "x_T")
    validate.shaped(x_T, "x_T", "B C H W", what="sample")
    validate.finite(x_T, "x_T")
    timesteps = list(sampler.timesteps if timesteps is None else timesteps)
    if not timesteps or any(b >= a for a, b in zip(timesteps, timesteps[1:])):
        raise ValueError(f"timesteps must be a non-empty list from high to low, got {timesteps[:5]}...")
    return noise, x_T, timesteps


@torch.no_grad()
def sample(denoiser: Callable, sampler, shape=None, *, x_T: torch.Tensor | None = None,
           generator: torch.Generator | SampleNoise | None = None, seed: int | None = None, device=None,
           progress: bool = True, trajectory: bool = False, trajectory_every: int = 1, batch_size: int | None = None,
           timesteps: list[int] | None = None, on_step: Callable | None = None):
    """Run `sampler` from x_T ~ N(0, I) down to x_0 with `denoiser(x_t, t) -> eps_pred` (a U-Net, or a
    ClassifierFreeGuidance). Returns the samples, or (samples, Trajectory) if trajectory=True.
    A flow sampler (sdlib.flow.EulerSampler, HeunSampler) runs the same loop from t = 1 to t = 0 with float
    times, and its denoiser predicts a velocity v instead of ε.

    shape: (N, C, H, W) of the samples (or give x_T); batch_size: work in batches of this size (the result
        does not depend on it: every sample has its own noise, see SampleNoise);
    seed / generator: where the noise comes from (not both; neither: torch's global random state);
    timesteps: the time steps to visit, from high to low (default: the sampler's); image-to-image starts
        part way down, at the t its strength selects;
    on_step(t, t_prev, x) -> x: called after each step with the new sample (inpainting puts the known
        region back here). A hook or denoiser with a `select(slice)` method is cut to match each batch.
    """
    noise, x_T, timesteps = _start(denoiser, sampler, shape, x_T, generator, seed, device, timesteps)
    n = len(x_T)
    batch_size = n if batch_size is None else validate.positive_int(batch_size, "batch_size")
    parts = []
    for i in range(0, n, batch_size):
        part = slice(i, i + batch_size)
        cut = lambda obj: obj.select(part) if obj is not None and hasattr(obj, "select") else obj   # noqa: E731
        parts.append(_loop(cut(denoiser), sampler, x_T[part], noise.select(part), timesteps, cut(on_step),
                           progress, trajectory, trajectory_every))
    x = torch.cat([p[0] for p in parts])
    _check_result(x, denoiser)
    if not trajectory:
        return x
    record = Trajectory(t=parts[0][1].t, xt=[torch.cat(a) for a in zip(*[p[1].xt for p in parts])],
                        x0_pred=[torch.cat(a) for a in zip(*[p[1].x0_pred for p in parts])])
    return x, record


def _loop(denoiser, sampler, x, noise, timesteps, on_step, progress, trajectory, trajectory_every):
    """The sampling loop itself, on one batch."""
    from tqdm.auto import tqdm

    record = Trajectory()
    # a second-order sampler (sdlib.flow.HeunSampler) calls the model again inside its step
    extra = {"model": denoiser} if getattr(sampler, "calls_model", False) else {}
    bar = tqdm(timesteps, desc=type(sampler).__name__.replace("Sampler", ""), disable=not progress, leave=False)
    with validate.inside_loop():                 # checked at the door: no value read back per step
        for i, t in enumerate(bar):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else 0
            dtype = torch.float32 if isinstance(t, float) else torch.long      # flow samplers: float t in [0, 1]
            eps_pred = denoiser(x, torch.full((x.shape[0],), t, device=x.device, dtype=dtype))
            out = sampler.step(eps_pred, t, x, noise, t_prev=t_prev, **extra)
            if trajectory and (i % trajectory_every == 0 or i == len(timesteps) - 1):
                record.t.append(t)
                record.xt.append(x.detach().cpu())
                record.x0_pred.append(out.x0_pred.detach().cpu())
            x = out.x_prev if on_step is None else on_step(t, t_prev, out.x_prev)
    return x, record


@torch.no_grad()
def generate(model, encoder, prompts: list[str], w: float = 3.0, sampler=None, *,
             negative_prompt: str | list[str] | None = None, generator: torch.Generator | None = None,
             batch_size: int = 250, shape: tuple[int, int, int] | None = None, progress: bool = False) -> torch.Tensor:
    """Samples for `prompts` with classifier-free guidance scale w (1: none, 0: unconditional), in model range.

    sampler: default DDIM with 50 steps (η = 0) on the model's schedule (`schedule_of`);
    negative_prompt: one prompt for all, or one per prompt, used in place of the empty prompt.
    """
    sampler = sampler or DDIMSampler(schedule_of(model), 50)
    device = next(model.parameters()).device
    denoiser = prompt_guidance(model, encoder.to(device), prompts, w, negative_prompt)
    c = model.config
    shape = shape or (c.in_channels, c.image_size, c.image_size)
    x = sample(denoiser, sampler, (denoiser.n_conditions, *shape), generator=generator, progress=progress,
               batch_size=batch_size, device=device)
    return x.clamp(-1, 1)


def prompt_guidance(model, encoder, prompts, w: float, negative_prompt=None) -> ClassifierFreeGuidance:
    """The guided denoiser for a list of prompts, encoded by the frozen text encoder: the one text-to-image
    set-up, shared by `generate` and the pipeline. negative_prompt: one for all prompts, or one per prompt."""
    prompts = validate.prompts(prompts)
    negatives = validate.negative_prompts(negative_prompt, len(prompts))
    context, mask = encoder(prompts)
    negative = encoder(negatives) if negatives is not None else (None, None)
    return ClassifierFreeGuidance(model, context, w, mask, *negative)
