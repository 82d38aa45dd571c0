"""Flow matching (rectified flow): a straight path from data to noise, and a network that learns its velocity
(Lipman et al. 2023, Liu et al. 2023; the objective of Stable Diffusion 3, Esser et al. 2024). Bonus lesson 09.

    x_t = (1 − t) · x0 + t · ε,      t ∈ [0, 1]: t = 0 is the data, t = 1 the noise ε ~ N(0, I)
    v   = dx_t/dt = ε − x0           the velocity along the path: the same at every t

    repeat
        x0 ~ q(x0),  t ~ p(t),  ε ~ N(0, I)
        gradient step on || v − v_θ(x_t, t) ||²
    until converged

The network sees only x_t, so it learns the average velocity of all the paths through x_t, v_θ(x_t, t) ≈
E[ε − x0 | x_t]; integrating dx/dt = v_θ(x, t) from t = 1 (noise) down to t = 0 turns noise into data.
The U-Net is the course's own, built with `UNetConfig(time_input="continuous")` (t in [0, 1] instead of a
step 0..T); the samplers run in `sdlib.samplers.sample`, classifier-free guidance included:

    x = torch.randn(shape)                       # x_1 ~ N(0, I)
    for t in sampler.timesteps:                  # 1, 1 − 1/steps, ..., 1/steps
        v_pred = model(x, t)
        x = sampler.step(v_pred, t, x).x_prev    # Euler: x + (t_prev − t) · v_pred

- `interpolate`, `velocity_target`, `flow_loss`: the path, its velocity and the loss;
- `draw_times`: t uniform, or SD3's logit-normal, which trains more on the middle of the path;
- `FlowMatchingObjective`: the loss as a `loss_fn` for sdlib.train.fit, with prompts and prompt dropout;
- `EulerSampler`, `HeunSampler`: first- and second-order ODE solvers for sdlib.samplers.sample;
- `x0_from_velocity`, `eps_from_velocity`: the clean image and the noise that a velocity implies.
All images are in model range ([-1, 1] for pixels).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sdlib.diffusion import training_prompts
from sdlib.runtime import randn, validate
from sdlib.samplers import StepOutput

TIME_DISTRIBUTIONS = ("uniform", "logit_normal")


def _per_sample(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) times shaped (B, 1, 1, ...) to broadcast against `like`, in like's dtype and device."""
    return t.to(like.device, like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


# -- the path and the loss ------------------------------------------------------------------------

def interpolate(x0: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """x_t = (1 − t) · x0 + t · ε: the point at time t on the straight line from the data x0 (t = 0) to
    the noise ε (t = 1). x0: (B, ...) in model range; eps: shaped like x0; t: a number or (B,) in [0, 1]."""
    validate.model_range(x0, "x0")
    validate.floating(validate.like(x0, eps, "x0", "eps"), "eps")
    validate.finite(eps, "eps")
    t = _per_sample(validate.continuous_times(t, x0.shape[0]), x0)
    return (1 - t) * x0 + t * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """v = dx_t/dt = ε − x0: what the network learns to predict (the same at every t of a path)."""
    validate.floating(x0, "x0")
    validate.floating(validate.like(x0, eps, "x0", "eps"), "eps")
    return eps - x0


def flow_loss(model, x0: torch.Tensor, t, eps: torch.Tensor, context: torch.Tensor | None = None,
              context_mask: torch.Tensor | None = None) -> torch.Tensor:
    """|| v − v_θ(x_t, t) ||², the mean over every element, for given t and ε (`FlowMatchingObjective`
    draws them). x0: (B, C, H, W) in model range; t: (B,) in [0, 1]; eps: shaped like x0."""
    validate.model_range(x0, "x0")
    t = validate.continuous_times(t, x0.shape[0])
    xt = interpolate(x0, eps, t)
    # .float(): under mixed precision the U-Net answers in bfloat16; the loss is taken in fp32.
    return F.mse_loss(model(xt, t.to(x0.device), context, context_mask).float(), velocity_target(x0, eps).float())


# -- which times to train on ----------------------------------------------------------------------

def _check_distribution(distribution: str, m, s) -> tuple[float, float]:
    if distribution not in TIME_DISTRIBUTIONS:
        raise ValueError(f"the time distribution must be one of {', '.join(map(repr, TIME_DISTRIBUTIONS))}, "
                         f"got {distribution!r}")
    m = validate.finite_number(m, "m (the logit-normal's mean)")
    if not validate.finite_number(s, "s (the logit-normal's standard deviation)") > 0:
        raise ValueError(f"s (the logit-normal's standard deviation) must be positive, got {s}")
    return m, float(s)


def draw_times(n: int, distribution: str = "uniform", generator: torch.Generator | None = None, device=None, *,
               m: float = 0.0, s: float = 1.0) -> torch.Tensor:
    """n times t in [0, 1] as a (n,) float32 tensor, drawn on the generator's device then moved to `device`.

    "uniform": t ~ U[0, 1);
    "logit_normal": t = sigmoid(m + s · u), u ~ N(0, 1): logit(t) is normal with mean m and standard
        deviation s (Esser et al. 2024 §3.1; m = 0, s = 1 is their rf/lognorm(0.00, 1.00)). Its values lie in
        (0, 1) (up to float32 rounding when |m + s·u| > 17) and their density peaks near t = sigmoid(m), so
        training spends more of its steps in the middle of the path, where v is hardest to predict."""
    validate.positive_int(n, "the number of times n")
    validate.generator(generator)
    m, s = _check_distribution(distribution, m, s)
    where = generator.device if generator is not None else device
    if distribution == "uniform":
        t = torch.rand((n,), generator=generator, device=where)
    else:
        t = torch.sigmoid(m + s * torch.randn((n,), generator=generator, device=where))
    return t.to(device)


class FlowMatchingObjective:
    """A `loss_fn` for sdlib.train.fit: the flow-matching loss on the first tensor of each batch, with
    t ~ `distribution` ("uniform" or "logit_normal" with m, s: see `draw_times`) and ε ~ N(0, I).

    encode_prompts(batch, generator) -> (context, mask), optional: turns the rest of the batch into the
    U-Net's context, as for sdlib.diffusion.DDPMObjective; p_uncond: fraction of prompts replaced by the
    U-Net's empty prompt (sdlib.diffusion.drop_prompts), so that one model learns v(x_t, t, prompt) and
    v(x_t, t), as classifier-free guidance needs. The model: a U-Net with config.time_input = "continuous".
    """

    def __init__(self, encode_prompts=None, p_uncond: float = 0.0, distribution: str = "uniform", *,
                 m: float = 0.0, s: float = 1.0):
        self.p_uncond = validate.finite_number(p_uncond, "p_uncond", low=0.0, high=1.0)
        self.m, self.s = _check_distribution(distribution, m, s)
        self.encode_prompts, self.distribution = encode_prompts, distribution

    def __call__(self, model, batch, generator):
        x0 = batch[0]
        context, mask = training_prompts(model, batch, self.encode_prompts, self.p_uncond, generator)   # as DDPM's
        t = draw_times(x0.shape[0], self.distribution, generator, x0.device, m=self.m, s=self.s)
        eps = randn(x0.shape, generator, x0.device, x0.dtype)
        return flow_loss(model, x0, t, eps, context, mask)

    def settings(self) -> dict:
        """What `fit` stores in a checkpoint and checks when it resumes."""
        return {"objective": "flow_matching", "distribution": self.distribution, "m": self.m, "s": self.s,
                "p_uncond": self.p_uncond}


# -- what a velocity implies ----------------------------------------------------------------------

def x0_from_velocity(xt: torch.Tensor, v: torch.Tensor, t) -> torch.Tensor:
    """x̂0 = x_t − t · v: the clean image that the velocity v at (x_t, t) points to.

    From x_t = (1 − t) x0 + t ε and v = ε − x0:
        x_t − t v = (1 − t) x0 + t ε − t ε + t x0 = x0.
    (One Euler step from t straight down to 0 lands there.) t: a number or (B,) in [0, 1]."""
    validate.floating(validate.like(xt, v, "xt", "v"), "v")
    return xt - _per_sample(validate.continuous_times(t, xt.shape[0]), xt) * v


def eps_from_velocity(xt: torch.Tensor, v: torch.Tensor, t) -> torch.Tensor:
    """ε̂ = x_t + (1 − t) · v: the noise that the velocity v at (x_t, t) points to, the ε-prediction of a
    diffusion model.

    From x_t = (1 − t) x0 + t ε and v = ε − x0:
        x_t + (1 − t) v = (1 − t) x0 + t ε + (1 − t) ε − (1 − t) x0 = ε.
    (One Euler step from t up to 1 lands there.) t: a number or (B,) in [0, 1]."""
    validate.floating(validate.like(xt, v, "xt", "v"), "v")
    return xt + (1 - _per_sample(validate.continuous_times(t, xt.shape[0]), xt)) * v


# -- samplers: integrate dx/dt = v_θ(x, t) from t = 1 to t = 0 ------------------------------------

def time_of_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """The flow time t whose x_t is as noisy as DDPM's x_t at ᾱ, elementwise: the two are equally noisy
    when their ratios of noise to signal agree, t / (1 − t) = sqrt(1 − ᾱ) / sqrt(ᾱ). alpha_bar: a float
    tensor of values in (0, 1]; ᾱ = 1 gives t = 0."""
    validate.within(validate.floating(alpha_bar, "alpha_bar"), "alpha_bar", 0.0, 1.0, low_open=True)
    sigma = (1 - alpha_bar).sqrt() / alpha_bar.sqrt()
    return sigma / (1 + sigma)


def shifted_times(steps: int, shift: float = 1.0) -> list[float]:
    """The time grid 1 = t_0 > t_1 > ... > t_steps = 0 of a flow sampler: u = 1, 1 − 1/steps, ..., 0 evenly
    spaced, then t = shift·u / (1 + (shift − 1)·u), Stable Diffusion 3's time shift (Esser et al. 2024,
    Eq. 23). shift = 1: evenly spaced; shift > 1 moves the steps toward the noise (t = 1), < 1 toward the data."""
    steps = validate.positive_int(steps, "steps")
    shift = validate.finite_number(shift, "shift")
    if shift <= 0:
        raise ValueError(f"shift must be positive (1 for an evenly spaced grid, SD3 uses 3), got {shift:g}")
    grid = [(steps - i) / steps for i in range(steps + 1)]          # 1.0, ..., 1/steps, 0.0
    return [u if shift == 1 else shift * u / (1 + (shift - 1) * u) for u in grid]


class _FlowSampler:
    """The time grid 1 = t_0 > t_1 > ... > t_steps = 0 (evenly spaced, or shifted toward the noise as in
    Stable Diffusion 3: `shifted_times`), and the checks both solvers share."""

    calls_model = False            # True: step() evaluates the model again itself (sample() passes model=)

    def __init__(self, steps: int = 50, shift: float = 1.0):
        grid = shifted_times(steps, shift)
        self.steps, self.shift = int(steps), float(shift)
        self.timesteps = grid[:-1]
        self.previous = dict(zip(grid[:-1], grid[1:]))

    def __repr__(self):
        shift = "" if self.shift == 1 else f", shift {self.shift:g}"
        return f"{type(self).__name__}({self.steps} steps{shift}, {self.nfe} network evaluations)"

    def check_model(self, denoiser) -> None:
        """Refuse a U-Net of integer time steps (an ε-prediction model): it has no velocity to integrate."""
        model = getattr(denoiser, "model", denoiser)            # the U-Net inside a ClassifierFreeGuidance
        config = getattr(model, "config", None)
        if getattr(config, "time_input", "continuous") != "continuous":
            raise ValueError(f"{type(self).__name__} integrates a velocity v_θ(x, t) with t in [0, 1], but this U-Net "
                             f"takes integer time steps 0..{config.max_t} (config.time_input = "
                             f"{config.time_input!r}): sample an ε-prediction model with DDPMSampler or DDIMSampler; "
                             f"a flow model is built with UNetConfig(time_input='continuous')")

    def _check(self, v_pred, t, xt, t_prev) -> tuple[float, float]:
        validate.floating(v_pred, "v_pred")
        validate.floating(xt, "xt")
        validate.like(xt, v_pred, "xt", "v_pred")
        t = validate.finite_number(t, "t", low=0.0, high=1.0)
        if t_prev is None:
            if t not in self.previous:
                shown = ", ".join(f"{u:.4g}" for u in self.timesteps[:3])
                raise ValueError(f"t={t} is not one of this sampler's {self.steps} times ({shown}, ...); pass t_prev "
                                 f"to step from another t")
            t_prev = self.previous[t]
        t_prev = validate.finite_number(t_prev, "t_prev", low=0.0, high=1.0)
        if t_prev >= t:
            raise ValueError(f"t_prev must be below t (sampling runs from t = 1, noise, to t = 0, data), "
                             f"got t={t}, t_prev={t_prev}")
        return t, t_prev


class EulerSampler(_FlowSampler):
    """Euler's method for dx/dt = v_θ(x, t) from t = 1 to t = 0 in `steps` steps (equal ones, or shifted
    toward the noise with `shift` > 1, as Stable Diffusion 3 samples: see `shifted_times`):

        x_{t_prev} = x_t + (t_prev − t) · v_θ(x_t, t)

    One network evaluation per step (nfe = steps). Exact in one step when the paths are straight lines
    whose velocity the model knows; curved paths (the model's average velocity bends them) need more.
    """

    @property
    def nfe(self) -> int:
        return self.steps

    def step(self, v_pred: torch.Tensor, t: float, xt: torch.Tensor, generator=None,
             t_prev: float | None = None) -> StepOutput:
        """x_{t_prev} from x_t and v_pred = v_θ(x_t, t). t_prev: by default the next time of the grid.
        generator: unused (the ODE is deterministic); accepted like the other samplers' steps."""
        t, t_prev = self._check(v_pred, t, xt, t_prev)
        return StepOutput(xt + (t_prev - t) * v_pred, x0_from_velocity(xt, v_pred, t))


class HeunSampler(_FlowSampler):
    """Heun's method (the explicit trapezoidal rule, second order) for dx/dt = v_θ(x, t), t from 1 to 0:

        x̃      = x_t + (t_prev − t) · v_θ(x_t, t)                          predictor: an Euler step
        x_prev = x_t + (t_prev − t) · (v_θ(x_t, t) + v_θ(x̃, t_prev)) / 2   corrector: the mean velocity

    The last step, to t = 0, is a plain Euler step, as in Karras et al. (2022, Algorithm 1), so there are
    2 · steps − 1 network evaluations per sample (nfe). Halving the step size divides the error by about
    4 (Euler's: by 2). step() evaluates the model at (x̃, t_prev) itself: sample() passes it as `model`.
    """

    calls_model = True

    @property
    def nfe(self) -> int:
        return 2 * self.steps - 1

    def step(self, v_pred: torch.Tensor, t: float, xt: torch.Tensor, generator=None,
             t_prev: float | None = None, model=None) -> StepOutput:
        """x_{t_prev} from x_t and v_pred = v_θ(x_t, t); model(x, t) -> v (t a (B,) float tensor) gives the
        corrector's second evaluation. generator: unused (the ODE is deterministic)."""
        t, t_prev = self._check(v_pred, t, xt, t_prev)
        x0_pred = x0_from_velocity(xt, v_pred, t)
        x_euler = xt + (t_prev - t) * v_pred
        if t_prev == 0.0:                                       # the last step: Euler
            return StepOutput(x_euler, x0_pred)
        if model is None:
            raise ValueError("Heun's corrector evaluates the model a second time, at (x̃, t_prev): pass model=, "
                             "the network (or guidance) that gave v_pred")
        v_next = model(x_euler, torch.full((xt.shape[0],), t_prev, device=xt.device, dtype=torch.float32))
        validate.like(xt, v_next, "xt", "the model's velocity")
        return StepOutput(xt + (t_prev - t) * (v_pred + v_next) / 2, x0_pred)
