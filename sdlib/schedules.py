"""The forward (noising) process: beta schedules and everything derived from them.

Time steps follow the DDPM paper: t = 1, ..., T, with t = 0 the clean image x0. Every table
below has T + 1 entries and is indexed by t directly, so `alpha_bar[t]` is ᾱ_t as written in
the math; entry 0 is the clean image (beta_0 = 0, alpha_bar_0 = 1).

    q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I),        alpha_t = 1 - beta_t
    q(x_t | x_0)     = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), alpha_bar_t = prod_{s<=t} alpha_s
    q(x_{t-1} | x_t, x_0) = N(coef0_t x_0 + coef_t_t x_t, beta_tilde_t I)

Tables are kept in float64; what a method returns follows the dtype and device of its input.

The schedule owns every conversion between the model's ε, the clean image x̂₀ and the posterior, so each
formula is written once: `x0_from_eps`, `eps_from_x0`, `posterior_mean` (and with them the DDPM reverse
mean, the posterior mean at x̂₀). These trust their inputs, since samplers call them at every step; the
public methods `add_noise`, `predict_x0`, `posterior` and `prior_kl` check theirs first.
"""
from __future__ import annotations

import math

import torch

from sdlib.probability import kl_normal
from sdlib.runtime import validate


def linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """The DDPM paper's schedule: beta_t rising linearly from beta_start to beta_end, t = 1..T."""
    validate.positive_int(T, "T")
    beta_start = validate.finite_number(beta_start, "beta_start")
    beta_end = validate.finite_number(beta_end, "beta_end")
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_alpha_bar(t: torch.Tensor, T: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's ᾱ_t = f(t)/f(0), f(t) = cos(((t/T + s)/(1 + s)) · π/2)².

    With s = 0 this is the seed notes' ᾱ_t = cos(0.5 π t/T)²; the small offset s keeps beta_1
    from being vanishingly small. t may be any real time (a tensor or a number) in [0, T].
    """
    T, s = validate.positive_int(T, "T"), validate.non_negative(s, "s")
    if not isinstance(t, torch.Tensor):
        t = torch.tensor(validate.finite_number(t, "t"), dtype=torch.float64)
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"t must hold real time steps, got dtype {t.dtype}")
    validate.finite(t.to(torch.float64), "t")
    f = lambda u: torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2
    return f(t.to(torch.float64)) / f(torch.zeros((), dtype=torch.float64))


def cosine_betas(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """betas of the cosine schedule: beta_t = 1 - ᾱ_t/ᾱ_{t-1}, clipped at max_beta.

    The clipping matters at the very end, where ᾱ_t -> 0 would make beta_T = 1 (a singular
    last step); Nichol & Dhariwal clip at 0.999.
    """
    validate.positive_int(T, "T")
    max_beta = validate.finite_number(max_beta, "max_beta")
    if not 0 < max_beta < 1:
        raise ValueError(f"max_beta must lie strictly between 0 and 1 (Nichol & Dhariwal use 0.999), got {max_beta}")
    alpha_bar = cosine_alpha_bar(torch.arange(T + 1), T, s)
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


class NoiseSchedule:
    """β_1..β_T and everything the forward process and the samplers derive from them.

    Attributes (float64 tensors of length T + 1, indexed by t, entry 0 = the clean image):
        beta, alpha (= 1 - beta), alpha_bar (cumulative product of alpha), alpha_bar_prev
        (ᾱ_{t-1}), sqrt_alpha_bar, sqrt_one_minus_alpha_bar, beta_tilde (posterior variance),
        posterior_coef_x0 and posterior_coef_xt (posterior mean coefficients), snr (ᾱ/(1-ᾱ)).
    """

    def __init__(self, betas: torch.Tensor, name: str = "custom"):
        if isinstance(betas, torch.Tensor) and (betas.dtype == torch.bool or betas.is_complex()):
            raise TypeError(f"betas must be real numbers, got a {betas.dtype} tensor")
        try:
            betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"betas must be a tensor or a list of numbers, got {type(betas).__name__}") from None
        if betas.numel() < 1:
            raise ValueError("betas must hold at least one value")
        validate.finite(betas, "betas")
        if not torch.all((betas > 0) & (betas < 1)):
            raise ValueError(f"every beta_t must lie strictly between 0 and 1, got values in "
                             f"[{betas.min().item():.3g}, {betas.max().item():.3g}]")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        self.name = name
        self.T = betas.numel()
        zero = torch.zeros(1, dtype=torch.float64)
        self.beta = torch.cat([zero, betas])                          # beta_0 = 0: x_0 is clean
        self.alpha = 1.0 - self.beta
        self.alpha_bar = torch.cumprod(self.alpha, dim=0)             # alpha_bar_0 = 1
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        self.sqrt_alpha_bar = self.alpha_bar.sqrt()
        self.sqrt_one_minus_alpha_bar = (1.0 - self.alpha_bar).sqrt()
        # q(x_{t-1} | x_t, x_0): variance beta_tilde_t = (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · beta_t,
        # mean = sqrt(ᾱ_{t-1}) beta_t / (1 - ᾱ_t) · x_0 + sqrt(alpha_t) (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · x_t.
        # (Entry 0 has no posterior; it is set to 0 rather than 0/0.)
        one_minus = (1.0 - self.alpha_bar).clamp(min=1e-300)
        self.beta_tilde = torch.where(self.beta > 0, (1.0 - self.alpha_bar_prev) / one_minus * self.beta, 0.0)
        self.posterior_coef_x0 = torch.where(self.beta > 0, self.alpha_bar_prev.sqrt() * self.beta / one_minus, 0.0)
        self.posterior_coef_xt = torch.where(self.beta > 0,
                                             self.alpha.sqrt() * (1.0 - self.alpha_bar_prev) / one_minus, 0.0)
        self.snr = self.alpha_bar / one_minus                          # signal-to-noise ratio ᾱ/(1-ᾱ)

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        return cls(linear_betas(T, beta_start, beta_end), name="linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        return cls(cosine_betas(T, s, max_beta), name="cosine")

    def __repr__(self) -> str:
        return (f"NoiseSchedule({self.name}, T={self.T}, beta_1={self.beta[1]:.2e}, beta_T={self.beta[-1]:.3g}, "
                f"alpha_bar_T={self.alpha_bar[-1]:.2e})")

    def fingerprint(self) -> str:
        """A short SHA-256 of the betas: two schedules with the same fingerprint noise identically."""
        import hashlib
        return hashlib.sha256(self.beta.numpy().tobytes()).hexdigest()[:16]

    def __len__(self) -> int:
        return self.T

    # -- the math -----------------------------------------------------------------------------
    def check_t(self, t, batch: int | None = None, *, lowest: int = 0, name: str = "t") -> torch.Tensor:
        """t as a 1-D int64 tensor (one entry per image), after checking type, shape and range [lowest, T]."""
        return validate.timesteps(t, self.T, batch, lowest=lowest, name=name)

    def _check_inputs(self, x, other, t, names: tuple[str, str], lowest: int) -> torch.Tensor:
        """x: a batch in model range (B, ...); other: finite, shaped like x (noise, or a second batch);
        t: as check_t. Returns t as a (B,) int64 tensor."""
        validate.model_range(x, names[0])
        validate.floating(validate.like(x, other, *names), names[1])
        validate.finite(other, names[1])
        return self.check_t(t, x.shape[0], lowest=lowest)

    @staticmethod
    def gather(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """table[t] shaped (B, 1, 1, ...) to broadcast against `like`, in like's dtype and device."""
        values = table.to(like.dtype).to(like.device)[t.to(like.device)]    # dtype first: MPS has no float64
        return values.reshape(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
        """Sample q(x_t | x_0) in closed form: x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps.

        x0: clean images (B, C, H, W) in [-1, 1] (or any batch of vectors (B, ...));
        eps: standard Gaussian noise of the same shape; t: int or (B,) int tensor in [0, T].
        """
        t = self._check_inputs(x0, eps, t, ("x0", "eps"), lowest=0)
        return self.gather(self.sqrt_alpha_bar, t, x0) * x0 + self.gather(self.sqrt_one_minus_alpha_bar, t, x0) * eps

    def step_forward(self, x_prev: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
        """One step of the chain q(x_t | x_{t-1}): x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps."""
        t = self._check_inputs(x_prev, eps, t, ("x_prev", "eps"), lowest=1)
        return self.gather(self.alpha.sqrt(), t, x_prev) * x_prev + self.gather(self.beta.sqrt(), t, x_prev) * eps

    def x0_from_eps(self, xt: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
        """x̂₀ = (x_t − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t): the closed form q(x_t | x_0) solved for x_0 (Ho et al. eq. 4).
        t: an int or a (B,) tensor of time steps, unchecked."""
        t = torch.as_tensor(t)
        return (xt - self.gather(self.sqrt_one_minus_alpha_bar, t, xt) * eps) / self.gather(self.sqrt_alpha_bar, t, xt)

    def eps_from_x0(self, xt: torch.Tensor, x0: torch.Tensor, t) -> torch.Tensor:
        """ε = (x_t − sqrt(ᾱ_t) x̂₀) / sqrt(1 − ᾱ_t): the same closed form solved for the noise, unchecked."""
        t = torch.as_tensor(t)
        return (xt - self.gather(self.sqrt_alpha_bar, t, xt) * x0) / self.gather(self.sqrt_one_minus_alpha_bar, t, xt)

    def posterior_mean(self, x0: torch.Tensor, xt: torch.Tensor, t) -> torch.Tensor:
        """μ̃_t(x_t, x_0) = sqrt(ᾱ_{t-1}) β_t/(1 − ᾱ_t) x_0 + sqrt(α_t)(1 − ᾱ_{t-1})/(1 − ᾱ_t) x_t (Ho et al. eq. 7),
        unchecked. At x_0 = x0_from_eps(x_t, ε_θ, t) it is the reverse mean of Algorithm 2,
        (x_t − β_t/sqrt(1 − ᾱ_t) ε_θ)/sqrt(α_t) (eq. 11)."""
        t = torch.as_tensor(t)
        return self.gather(self.posterior_coef_x0, t, xt) * x0 + self.gather(self.posterior_coef_xt, t, xt) * xt

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0), for t in [1, T].

        The variance beta_tilde_t is returned shaped (B, 1, 1, 1) to broadcast against the mean.
        """
        t = self._check_inputs(x0, xt, t, ("x0", "xt"), lowest=1)
        return self.posterior_mean(x0, xt, t), self.gather(self.beta_tilde, t, x0)

    def predict_x0(self, xt: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
        """Invert the closed form: x0 = (x_t - sqrt(1 - ᾱ_t) eps) / sqrt(ᾱ_t) (checked; see x0_from_eps)."""
        t = self._check_inputs(xt, eps, t, ("xt", "eps"), lowest=1)
        return self.x0_from_eps(xt, eps, t)

    def log_snr(self) -> torch.Tensor:
        """log(ᾱ_t / (1 - ᾱ_t)) for t = 1..T (t = 0 has infinite SNR and is left out)."""
        return self.snr[1:].log()

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """KL(q(x_T | x_0) || N(0, I)) per image, in nats: the prior-matching term of the ELBO, with
        q(x_T | x_0) = N(sqrt(ᾱ_T) x_0, (1 − ᾱ_T) I), summed over the pixels of each image."""
        validate.model_range(x0, "x0")
        ab = self.alpha_bar[-1]
        kl = kl_normal(ab.sqrt() * x0.double(), 1.0 - ab)
        return kl.reshape(len(kl), -1).sum(1).to(x0.dtype)


def check_schedule(denoiser, schedule: NoiseSchedule) -> None:
    """Refuse a sampler whose schedule is not the one the model was trained with: its T (config.max_t) and,
    where the model knows it (pretrained models: from the manifest), the schedule's name."""
    model = getattr(denoiser, "model", denoiser)           # a U-Net, or the U-Net inside a guidance
    if getattr(getattr(model, "config", None), "time_input", "discrete") == "continuous":
        raise ValueError("the model takes continuous times t in [0, 1] (config.time_input = 'continuous', a flow "
                         "model): sample it with sdlib.flow.EulerSampler or HeunSampler, not a sampler on a noise schedule")
    max_t = getattr(getattr(model, "config", None), "max_t", None)
    if max_t is not None and max_t != schedule.T:
        raise ValueError(f"the model was trained with T = {max_t} time steps but the sampler's schedule has "
                         f"T = {schedule.T}: build the sampler on NoiseSchedule.linear({max_t}) (or the model's schedule)")
    trained = getattr(model, "schedule", None)
    if trained is not None and schedule.name not in (trained.name, "custom"):
        raise ValueError(f"the model was trained with the {trained.name!r} schedule but the sampler uses "
                         f"{schedule.name!r}: sampling with another schedule gives noise, not images")


def schedule_of(model) -> NoiseSchedule:
    """The schedule a U-Net was trained with: the one it carries (a pretrained model's, from the manifest), else
    the linear schedule of DDPM on its config.max_t."""
    return getattr(model, "schedule", None) or NoiseSchedule.linear(model.config.max_t)
