"""sdlib's schedules and samplers checked against a trusted outside implementation: diffusers'
DDPMScheduler and DDIMScheduler (the way micrograd checks its gradients against PyTorch).

No model and no pretrained weights: every comparison feeds both libraries the same fixed, seeded
tensors (x_t, a predicted ε, and the same Gaussian noise) and compares what comes out, in float64.

The two libraries write the same math with different conventions. Each difference has a helper
or a comment below, and the tests in the last section pin each one down:

1. Time index.  sdlib follows the DDPM paper: t = 1..T, its tables have T + 1 entries and entry 0
   is the clean image (β_0 = 0, ᾱ_0 = 1). diffusers indexes from 0: its timestep k = 0..T-1 and
   its tables have T entries. diffusers' k is sdlib's t = k + 1 (`k_of`, `t_of`, `diffusers_table`).
2. Precision.  diffusers builds its tables in float32; sdlib keeps them in float64. The tables are
   compared at float32 precision; the steps run with diffusers' tables redone in float64 from the
   same betas (`float64_scheduler`), so the steps can be compared to ~1e-12.
3. DDIM time steps.  sdlib's grid is `linspace(T, 0, steps + 1).round()`: T, ..., τ_S, then 0.
   diffusers' "trailing" spacing gives exactly that grid minus one ("leading", its default, and
   "linspace" do not). diffusers' DDIM step always goes from k to k - T // steps; sdlib goes to the
   next grid point. The two agree when `steps` divides T (50 and 10 of 1000, the steps tested here).
4. The last DDIM step.  sdlib's last step goes to t = 0, where ᾱ_0 = 1; diffusers' goes to k = -1
   and takes ᾱ from `final_alpha_cumprod`: 1 with set_alpha_to_one=True (as sdlib), ᾱ at k = 0
   (sdlib's ᾱ_1) with set_alpha_to_one=False.
5. Defaults.  diffusers clips x̂_0 by default (clip_sample=True); sdlib does not (clip_x0=False).
   DDPMScheduler's default variance is "fixed_small" (β̃_t); DDPMSampler's is "beta" (β_t =
   diffusers' "fixed_large"). Every scheduler below is built with these settings spelled out.
6. Clipping in DDIM.  sdlib's clip_x0 clips x̂_0 and then recomputes ε from it: diffusers'
   clip_sample=True with use_clipped_model_output=True. diffusers' default
   (use_clipped_model_output=False) keeps the model's ε in the direction term, which sdlib never does.
7. Noise.  diffusers' DDIM step takes the noise itself (variance_noise=z), so sdlib is given a
   generator and the same z is drawn from an identically seeded one. diffusers' DDPM step only takes
   a generator, so both are given identically seeded generators; that both then draw the same z is
   itself checked (`test_both_libraries_draw_the_same_noise_from_the_same_seed`).
8. The fixed_large variance.  diffusers computes it as 1 - ᾱ_k/ᾱ_{k-1} (not from its betas table),
   and at its first index k = 0 (sdlib's t = 1, the last denoising step) neither library adds
   noise, so the variance there (which the original DDPM code replaced with β̃_2) never matters.
9. Cosine schedule.  diffusers' "squaredcos_cap_v2" hard-codes s = 0.008 and max_beta = 0.999: the
   same as sdlib's cosine_betas defaults. Only β_T is clipped (1 -> 0.999) at T = 1000, so ᾱ_T is
   the cumulative product of the clipped betas in both (not cosine_alpha_bar(T) ≈ 0).
"""
import pytest
import torch

diffusers = pytest.importorskip(
    "diffusers", reason="diffusers is the outside reference for these tests; install it with "
                        "`pip install -e .[test]` (or `pip install diffusers`)")
from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402
from diffusers.utils.torch_utils import randn_tensor  # noqa: E402

from sdlib.samplers import DDIMSampler, DDPMSampler, randn
from sdlib.schedules import NoiseSchedule, cosine_alpha_bar

T = 1000
F64 = torch.float64
SHAPE = (4, 3, 8, 8)
# Both sides run in float64 on identical inputs, so they should agree to rounding (~1e-16 relative).
# 1e-11 leaves room for the two libraries' different but equivalent orders of operations; the
# largest value compared is x̂_0 at t = T of the cosine schedule (1/sqrt(ᾱ_T) ≈ 2e4 times the input).
# (The largest gap measured with diffusers 0.42.1 is 1e-12, on the cosine schedule's DDIM steps.)
TIGHT = dict(rtol=1e-11, atol=1e-11)
SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}   # sdlib name -> diffusers beta_schedule


# -- convention 1: the time index ------------------------------------------------------------------
def k_of(t: int) -> int:
    """sdlib's t (1..T; 0 is the clean image) as diffusers' timestep k (0..T-1)."""
    return t - 1


def t_of(k: int) -> int:
    """diffusers' timestep k (0..T-1; -1 is its 'before the first step') as sdlib's t."""
    return k + 1


def diffusers_table(table: torch.Tensor) -> torch.Tensor:
    """An sdlib table (T + 1 entries, entry 0 = the clean image) laid out like diffusers' (T entries)."""
    return table[1:]


# -- convention 2: precision -----------------------------------------------------------------------
def float64_scheduler(cls, schedule: NoiseSchedule, beta_schedule: str, **config):
    """A diffusers scheduler for `schedule`, with its tables redone in float64.

    diffusers builds betas, alphas and alphas_cumprod in float32. The scheduler is built with its
    own named schedule (checked here to match sdlib's betas at float32 precision, as in
    test_betas_match), then its table lines are redone in float64 from sdlib's float64 betas,
    exactly as diffusers' __init__ writes them, so that the steps compare to float64 rounding.
    """
    sched = cls(num_train_timesteps=schedule.T, beta_schedule=beta_schedule, **config)
    betas = diffusers_table(schedule.beta)
    torch.testing.assert_close(sched.betas, betas.float(), rtol=1.2e-7, atol=0)
    sched.betas = betas.clone()
    sched.alphas = 1.0 - sched.betas
    sched.alphas_cumprod = torch.cumprod(sched.alphas, dim=0)
    if cls is DDIMScheduler:   # convention 4: where the last step lands
        sched.final_alpha_cumprod = (torch.tensor(1.0, dtype=F64) if sched.config.set_alpha_to_one
                                     else sched.alphas_cumprod[0])
    else:
        sched.one = torch.tensor(1.0, dtype=F64)
    return sched


def ddim_scheduler(schedule, beta_schedule, steps, **config):
    """diffusers' DDIM on sdlib's grid (convention 3: "trailing"), clipping off unless asked (convention 5)."""
    config = {"clip_sample": False, "set_alpha_to_one": True, "timestep_spacing": "trailing", **config}
    sched = float64_scheduler(DDIMScheduler, schedule, beta_schedule, **config)
    sched.set_timesteps(steps)
    return sched


# -- the inputs ------------------------------------------------------------------------------------
def inputs(schedule: NoiseSchedule, t: int, seed: int = 0):
    """x_t drawn from q(x_t | x_0) and an imperfect ε prediction, in float64.

    x_0 is uniform in [-1.3, 1.3] and the prediction misses the true noise by 0.3 N(0, I), so the
    predicted x̂_0 falls partly outside [-1, 1]: clipping changes some values and not others.
    """
    g = torch.Generator().manual_seed(1000 * seed + t)
    x0 = (torch.rand(SHAPE, generator=g, dtype=F64) * 2 - 1) * 1.3
    eps = torch.randn(SHAPE, generator=g, dtype=F64)
    x_t = schedule.add_noise(x0, eps, t)
    eps_pred = eps + 0.3 * torch.randn(SHAPE, generator=g, dtype=F64)
    return x_t, eps_pred


def noise(seed: int) -> torch.Tensor:
    """The z that sdlib draws from a generator seeded `seed` (convention 7)."""
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=F64)


def partly_clipped(schedule, x_t, eps_pred, t) -> bool:
    x0 = schedule.predict_x0(x_t, eps_pred, t)
    outside = (x0.abs() > 1).sum().item()
    return 0 < outside < x0.numel()


@pytest.fixture(scope="module", params=list(SCHEDULES))
def named(request):
    """(sdlib schedule, the diffusers beta_schedule of the same name)."""
    return getattr(NoiseSchedule, request.param)(T), SCHEDULES[request.param]


# -- schedules -------------------------------------------------------------------------------------
def test_betas_match(named):
    schedule, beta_schedule = named
    reference = DDPMScheduler(num_train_timesteps=T, beta_schedule=beta_schedule)
    ours = diffusers_table(schedule.beta)
    assert reference.betas.dtype == torch.float32 and reference.betas.shape == ours.shape == (T,)
    if beta_schedule == "squaredcos_cap_v2":
        # diffusers computes these in Python floats (float64) and rounds once: bit-identical in float32.
        assert torch.equal(reference.betas, ours.float())
    else:
        # diffusers runs linspace in float32 itself: at most one float32 unit of rounding apart.
        torch.testing.assert_close(reference.betas, ours.float(), rtol=1.2e-7, atol=0)


def test_alpha_bar_matches(named):
    schedule, beta_schedule = named
    reference = DDPMScheduler(num_train_timesteps=T, beta_schedule=beta_schedule)
    ours = diffusers_table(schedule.alpha_bar)
    # diffusers' ᾱ is a float32 running product of 1000 factors: rounding adds up to ~1e-6 relative.
    torch.testing.assert_close(reference.alphas_cumprod[:-1].double(), ours[:-1], rtol=1e-6, atol=0)
    # ...and its last cosine factor 1 - 0.999 is computed from a float32 0.999 (error 3e-8), which
    # alone is 3e-5 relative: the one place the tolerance has to be loose.
    rtol_last = 5e-5 if beta_schedule == "squaredcos_cap_v2" else 1e-6
    torch.testing.assert_close(reference.alphas_cumprod[-1:].double(), ours[-1:], rtol=rtol_last, atol=0)
    # In float64, the same betas give bit-identical tables (sdlib's extra entry 0 multiplies by 1).
    assert torch.equal(torch.cumprod(1 - diffusers_table(schedule.beta), 0), ours)


def test_cosine_uses_the_same_s_and_max_beta():
    # Convention 9: "squaredcos_cap_v2" = s 0.008, max_beta 0.999, the defaults of sdlib's cosine.
    reference = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    assert torch.equal(reference.betas, diffusers_table(NoiseSchedule.cosine(T, s=0.008, max_beta=0.999).beta).float())
    assert reference.betas.max().item() == pytest.approx(0.999)          # the cap, reached at β_T only
    assert (reference.betas >= 0.999 - 1e-7).sum().item() == 1
    other_s = diffusers_table(NoiseSchedule.cosine(T, s=0.004).beta).float()
    assert not torch.allclose(reference.betas, other_s, rtol=1e-3, atol=0)
    other_cap = diffusers_table(NoiseSchedule.cosine(T, max_beta=0.99).beta).float()
    assert not torch.equal(reference.betas, other_cap)
    # ᾱ_T of the schedule is the product of the clipped betas, not the unclipped closed form.
    schedule = NoiseSchedule.cosine(T)
    assert cosine_alpha_bar(torch.tensor(T), T).item() < 1e-30
    assert schedule.alpha_bar[T].item() == pytest.approx(schedule.alpha_bar[T - 1].item() * (1 - 0.999), rel=1e-12)


def test_add_noise_matches(named):
    schedule, beta_schedule = named
    reference = float64_scheduler(DDPMScheduler, schedule, beta_schedule)
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(SHAPE, generator=g, dtype=F64) * 2 - 1
    eps = torch.randn(SHAPE, generator=g, dtype=F64)
    t = torch.tensor([1, 2, 500, T])                                    # one time step per image
    ours = schedule.add_noise(x0, eps, t)
    theirs = reference.add_noise(x0, eps, torch.tensor([k_of(int(s)) for s in t]))
    assert ours.dtype == theirs.dtype == F64
    torch.testing.assert_close(ours, theirs, **TIGHT)
    # In float32 the two round differently: sdlib takes sqrt(1 - ᾱ) in float64 and rounds the result;
    # diffusers rounds ᾱ to float32 first, and 1 - ᾱ then cancels (ᾱ_1 = 0.9999 leaves ~4 digits of
    # 1 - ᾱ_1). So sdlib's float32 result is float32-close to the float64 one and diffusers' is 1e-5-close.
    ours32 = schedule.add_noise(x0.float(), eps.float(), t)
    theirs32 = reference.add_noise(x0.float(), eps.float(), torch.tensor([k_of(int(s)) for s in t]))
    assert ours32.dtype == theirs32.dtype == torch.float32
    torch.testing.assert_close(ours32.double(), ours, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(theirs32, ours32, rtol=0, atol=1e-5)


# -- the noise both libraries draw (convention 7) --------------------------------------------------
def test_both_libraries_draw_the_same_noise_from_the_same_seed():
    """The DDPM comparison gives both libraries identically seeded generators; this is what makes
    that a comparison of the same noise: sdlib's randn and diffusers' randn_tensor both come down to
    one torch.randn of the sample's shape and dtype on the generator."""
    for seed in (0, 1, 12345):
        ours = randn(SHAPE, torch.Generator().manual_seed(seed), "cpu", F64)
        theirs = randn_tensor(SHAPE, generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"),
                              dtype=F64)
        assert torch.equal(ours, theirs) and torch.equal(ours, noise(seed))


# -- DDPM ------------------------------------------------------------------------------------------
DDPM_VARIANCE = {"beta": "fixed_large", "beta_tilde": "fixed_small"}      # sdlib -> diffusers variance_type
DDPM_STEPS = [T, T - 1, 700, 500, 100, 10, 3, 2, 1]   # t = 1 is diffusers' k = 0: no noise in either


@pytest.mark.parametrize("clip", [False, True], ids=["no_clip", "clip"])
@pytest.mark.parametrize("variance", list(DDPM_VARIANCE))
def test_ddpm_step_matches(named, variance, clip):
    schedule, beta_schedule = named
    ours = DDPMSampler(schedule, variance=variance, clip_x0=clip)
    # Convention 5: both the variance and the clipping spelled out (diffusers' defaults differ).
    theirs = float64_scheduler(DDPMScheduler, schedule, beta_schedule, variance_type=DDPM_VARIANCE[variance],
                               clip_sample=clip, clip_sample_range=1.0)
    # The full chain, T, ..., 1 = diffusers' default timesteps T-1, ..., 0 (no set_timesteps call).
    assert [t_of(k) for k in theirs.timesteps.tolist()] == ours.timesteps
    clipped_somewhere = False
    for t in DDPM_STEPS:
        x_t, eps_pred = inputs(schedule, t)
        clipped_somewhere |= partly_clipped(schedule, x_t, eps_pred, t)
        for seed in (7, 8):   # the same seed for both libraries: the same z (see the test above)
            a = ours.step(eps_pred, t, x_t, torch.Generator().manual_seed(seed))
            b = theirs.step(eps_pred, k_of(t), x_t, generator=torch.Generator().manual_seed(seed))
            torch.testing.assert_close(a.x0_pred, b.pred_original_sample, **TIGHT)
            torch.testing.assert_close(a.x_prev, b.prev_sample, **TIGHT)
        if t == 1:   # convention 8: the last step adds no noise in either library, whatever the variance
            again = theirs.step(eps_pred, k_of(t), x_t, generator=torch.Generator().manual_seed(9)).prev_sample
            torch.testing.assert_close(again, b.prev_sample, rtol=0, atol=0)
    assert clipped_somewhere   # the clip comparison did compare clipping


def test_ddpm_fixed_large_variance_is_beta_t():
    """Convention 8: diffusers' fixed_large is 1 - ᾱ_k/ᾱ_{k-1}, which is sdlib's β_t to rounding,
    at every step including its first index (k = 0, where ᾱ_{-1} = 1 and the result is β_1)."""
    schedule = NoiseSchedule.linear(T)
    theirs = float64_scheduler(DDPMScheduler, schedule, "linear", variance_type="fixed_large")
    for t in [T, 500, 2, 1]:
        assert theirs._get_variance(k_of(t)).item() == pytest.approx(DDPMSampler(schedule, "beta").sigma(t) ** 2,
                                                                     rel=1e-11)
    small = float64_scheduler(DDPMScheduler, schedule, "linear", variance_type="fixed_small")
    for t in [T, 500, 2]:
        assert small._get_variance(k_of(t)).item() == pytest.approx(schedule.beta_tilde[t].item(), rel=1e-11)


# -- DDIM ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("clip", [False, True], ids=["no_clip", "clip"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("steps", [50, 10])
def test_ddim_step_matches(named, steps, eta, clip):
    schedule, beta_schedule = named
    ours = DDIMSampler(schedule, steps=steps, eta=eta, clip_x0=clip)
    # Convention 6: sdlib's clip_x0 is clip_sample with use_clipped_model_output=True.
    theirs = ddim_scheduler(schedule, beta_schedule, steps, clip_sample=clip)
    assert [t_of(k) for k in theirs.timesteps.tolist()] == ours.timesteps          # convention 3
    clipped_somewhere = False
    for i, t in enumerate(ours.timesteps):     # every step of the grid, the last one (to t = 0) included
        x_t, eps_pred = inputs(schedule, t)
        clipped_somewhere |= partly_clipped(schedule, x_t, eps_pred, t)
        a = ours.step(eps_pred, t, x_t, torch.Generator().manual_seed(i))
        b = theirs.step(eps_pred, k_of(t), x_t, eta=eta, use_clipped_model_output=True, variance_noise=noise(i))
        torch.testing.assert_close(a.x0_pred, b.pred_original_sample, **TIGHT)
        torch.testing.assert_close(a.x_prev, b.prev_sample, **TIGHT)
    assert clipped_somewhere


class ToyDenoiser:
    """A fixed, t-dependent stand-in for a trained ε-model (no weights): an index slip changes its output."""

    def __call__(self, x, t):
        t = torch.as_tensor(t, dtype=F64).reshape(-1, *([1] * (x.dim() - 1)))
        return torch.tanh(x) * (t / T) + 0.1 * torch.sin(t + x)


@pytest.mark.parametrize("clip", [False, True], ids=["no_clip", "clip"])
def test_whole_ddim_run_matches(clip):
    """Ten DDIM steps with η = 0.5 chained from the same x_T: the grid, the index shift and the
    last step all have to line up for the two runs to end on the same x_0."""
    schedule, model = NoiseSchedule.linear(T), ToyDenoiser()
    ours = DDIMSampler(schedule, steps=10, eta=0.5, clip_x0=clip)
    theirs = ddim_scheduler(schedule, "linear", 10, clip_sample=clip)
    x_T = noise(100)
    x = y = x_T
    for i, (t, k) in enumerate(zip(ours.timesteps, theirs.timesteps.tolist())):
        assert k == k_of(t)
        x = ours.step(model(x, t), t, x, torch.Generator().manual_seed(i)).x_prev
        y = theirs.step(model(y, t_of(k)), k, y, eta=0.5, use_clipped_model_output=True,
                        variance_noise=noise(i)).prev_sample
    torch.testing.assert_close(x, y, **TIGHT)
    assert not torch.allclose(x, x_T)


@pytest.mark.parametrize("variance", list(DDPM_VARIANCE))
def test_whole_ddpm_run_matches(variance):
    """The full DDPM chain of a short (T = 50) linear schedule, clipped, from the same x_T."""
    schedule, model = NoiseSchedule.linear(50), ToyDenoiser()
    ours = DDPMSampler(schedule, variance=variance, clip_x0=True)
    theirs = float64_scheduler(DDPMScheduler, schedule, "linear", variance_type=DDPM_VARIANCE[variance],
                               clip_sample=True)
    x = y = noise(200)
    for t, k in zip(ours.timesteps, theirs.timesteps.tolist()):
        assert k == k_of(t)
        x = ours.step(model(x, t), t, x, torch.Generator().manual_seed(t)).x_prev
        y = theirs.step(model(y, t_of(k)), k, y, generator=torch.Generator().manual_seed(t)).prev_sample
    torch.testing.assert_close(x, y, **TIGHT)


# -- the conventions, pinned down ------------------------------------------------------------------
def test_ddim_grid_is_diffusers_trailing_spacing_shifted_by_one():
    """Convention 3. sdlib: T, ..., τ_S (then 0). diffusers "trailing": T-1, ..., τ_S - 1 (then -1)."""
    schedule = NoiseSchedule.linear(T)
    for steps in [1, 2, 3, 7, 10, 16, 30, 50, 64, 100, 333, 999, 1000]:
        theirs = DDIMScheduler(num_train_timesteps=T, timestep_spacing="trailing")
        theirs.set_timesteps(steps)
        assert [t_of(k) for k in theirs.timesteps.tolist()] == DDIMSampler(schedule, steps=steps).timesteps
    ours = DDIMSampler(schedule, steps=50).timesteps
    for spacing in ["leading", "linspace"]:     # "leading" is diffusers' default: 981, ..., 1 after the shift
        theirs = DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
        theirs.set_timesteps(50)
        assert [t_of(k) for k in theirs.timesteps.tolist()] != ours


def test_ddim_previous_step_agrees_only_when_steps_divide_T():
    """Convention 3, second half: diffusers steps from k to k - T // steps whatever the grid; sdlib to the
    next grid point. Same pairs when steps divides T; when it does not, some pairs differ."""
    schedule = NoiseSchedule.linear(T)
    for steps, agree in [(10, True), (50, True), (100, True), (30, False), (64, False), (7, False)]:
        ours = DDIMSampler(schedule, steps=steps)
        theirs = {t: t_of(k_of(t) - T // steps) for t in ours.timesteps}     # t_of(-1) = 0: the last step
        assert (theirs == ours.previous) is agree, steps


def test_set_alpha_to_one():
    """Convention 4: sdlib's last step goes to ᾱ_0 = 1, i.e. set_alpha_to_one=True. With False, diffusers'
    last step goes to ᾱ at k = 0, sdlib's ᾱ_1, and the results differ."""
    schedule = NoiseSchedule.linear(T)
    ours = DDIMSampler(schedule, steps=10)
    t = ours.timesteps[-1]
    assert ours.previous[t] == 0
    x_t, eps_pred = inputs(schedule, t)
    to_one = ddim_scheduler(schedule, "linear", 10, set_alpha_to_one=True)
    to_first = ddim_scheduler(schedule, "linear", 10, set_alpha_to_one=False)
    assert to_one.final_alpha_cumprod.item() == schedule.alpha_bar[0].item() == 1.0
    assert to_first.final_alpha_cumprod.item() == schedule.alpha_bar[1].item()
    a = ours.step(eps_pred, t, x_t).x_prev
    torch.testing.assert_close(a, to_one.step(eps_pred, k_of(t), x_t).prev_sample, **TIGHT)
    assert not torch.allclose(a, to_first.step(eps_pred, k_of(t), x_t).prev_sample, rtol=1e-6, atol=1e-6)


def test_set_alpha_to_one_false_is_a_last_step_to_t_1():
    """With an explicit t_prev (DDIMSampler.step's optional argument), sdlib reproduces diffusers'
    set_alpha_to_one=False last step, and diffusers' steps for a `steps` that does not divide T
    (compared step by step on diffusers' own (t, t_prev) pairs)."""
    schedule = NoiseSchedule.linear(T)
    ours = DDIMSampler(schedule, steps=10, eta=0.5)
    t = ours.timesteps[-1]
    x_t, eps_pred = inputs(schedule, t)
    to_first = ddim_scheduler(schedule, "linear", 10, set_alpha_to_one=False)
    a = ours.step(eps_pred, t, x_t, torch.Generator().manual_seed(0), t_prev=1).x_prev
    b = to_first.step(eps_pred, k_of(t), x_t, eta=0.5, variance_noise=noise(0)).prev_sample
    torch.testing.assert_close(a, b, **TIGHT)
    # steps = 30: diffusers' own (k, k - 33) pairs, fed to sdlib as (t, t_prev).
    ours, theirs = DDIMSampler(schedule, steps=30, eta=0.5), ddim_scheduler(schedule, "linear", 30)
    for i, k in enumerate(theirs.timesteps.tolist()):
        t, t_prev = t_of(k), t_of(max(k - T // 30, -1))
        x_t, eps_pred = inputs(schedule, t)
        a = ours.step(eps_pred, t, x_t, torch.Generator().manual_seed(i), t_prev=t_prev).x_prev
        b = theirs.step(eps_pred, k, x_t, eta=0.5, variance_noise=noise(i)).prev_sample
        torch.testing.assert_close(a, b, **TIGHT)


def test_diffusers_default_ddim_clipping_is_not_sdlib_clip_x0():
    """Convention 6: with use_clipped_model_output=False diffusers keeps the model's ε after clipping x̂_0,
    so wherever clipping changes x̂_0 its step differs from sdlib's clip_x0 (the x̂_0 itself agrees)."""
    schedule = NoiseSchedule.linear(T)
    ours = DDIMSampler(schedule, steps=10, clip_x0=True)
    theirs = ddim_scheduler(schedule, "linear", 10, clip_sample=True)
    t = 500
    x_t, eps_pred = inputs(schedule, t)
    assert partly_clipped(schedule, x_t, eps_pred, t)
    a = ours.step(eps_pred, t, x_t)
    b = theirs.step(eps_pred, k_of(t), x_t, use_clipped_model_output=False)
    torch.testing.assert_close(a.x0_pred, b.pred_original_sample, **TIGHT)
    assert not torch.allclose(a.x_prev, b.prev_sample, rtol=1e-6, atol=1e-6)


def test_diffusers_defaults_differ_from_sdlib_defaults():
    """Convention 5: why every scheduler above is built with its settings spelled out."""
    assert DDPMScheduler().config.clip_sample and DDIMScheduler().config.clip_sample
    assert not DDPMSampler(NoiseSchedule.linear(T)).clip_x0
    assert DDPMScheduler().config.variance_type == "fixed_small"
    assert DDPMSampler(NoiseSchedule.linear(T)).variance == "beta"        # = "fixed_large"
    assert DDIMScheduler().config.timestep_spacing == "leading"


# -- the comparisons can fail ----------------------------------------------------------------------
def test_an_index_slip_is_caught():
    """The same comparisons as above, with diffusers' timestep not shifted (k = t instead of t - 1):
    every one of them must notice."""
    schedule = NoiseSchedule.linear(T)
    theirs = float64_scheduler(DDPMScheduler, schedule, "linear", variance_type="fixed_large", clip_sample=False)
    x0, eps = torch.rand(SHAPE, dtype=F64) * 2 - 1, noise(0)
    t = torch.full((SHAPE[0],), 500)
    torch.testing.assert_close(schedule.add_noise(x0, eps, t), theirs.add_noise(x0, eps, t - 1), **TIGHT)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(schedule.add_noise(x0, eps, t), theirs.add_noise(x0, eps, t), **TIGHT)

    x_t, eps_pred = inputs(schedule, 500)
    a = DDPMSampler(schedule).step(eps_pred, 500, x_t, torch.Generator().manual_seed(0)).x_prev
    b = theirs.step(eps_pred, 500, x_t, generator=torch.Generator().manual_seed(0)).prev_sample
    with pytest.raises(AssertionError):
        torch.testing.assert_close(a, b, **TIGHT)

    ddim = ddim_scheduler(schedule, "linear", 1000)   # every k is on diffusers' grid, so k = t runs
    a = DDIMSampler(schedule, steps=1000, eta=0.5).step(eps_pred, 500, x_t, torch.Generator().manual_seed(0)).x_prev
    b = ddim.step(eps_pred, 500, x_t, eta=0.5, variance_noise=noise(0)).prev_sample
    with pytest.raises(AssertionError):
        torch.testing.assert_close(a, b, **TIGHT)
    # ...and the gap is far above the tolerance, not a near miss
    assert (a - b).abs().max().item() > 1e-5
