import math

import pytest
import torch

from sdlib.schedules import NoiseSchedule, cosine_alpha_bar, cosine_betas, linear_betas


@pytest.fixture(scope="module", params=["linear", "cosine"])
def schedule(request):
    return getattr(NoiseSchedule, request.param)(1000)


def test_linear_betas_match_the_ddpm_paper():
    betas = linear_betas(1000)
    assert betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.all(betas[1:] > betas[:-1])


def test_tables_are_indexed_by_t_with_a_clean_entry_zero(schedule):
    assert len(schedule.beta) == schedule.T + 1
    assert schedule.beta[0] == 0 and schedule.alpha_bar[0] == 1
    for t in [1, 2, 3, 500, 1000]:
        running_t = math.prod(  # ᾱ_t as a plain Python product
            1 - schedule.beta[s].item() for s in range(1, t + 1))
        assert schedule.alpha_bar[t].item() == pytest.approx(running_t, rel=1e-10)
    torch.testing.assert_close(schedule.alpha_bar_prev[1:], schedule.alpha_bar[:-1])
    torch.testing.assert_close(schedule.snr[1:], schedule.alpha_bar[1:] / (1 - schedule.alpha_bar[1:]))


def test_cosine_endpoints_monotonicity_and_clipping():
    T = 1000
    ab = cosine_alpha_bar(torch.arange(T + 1), T)
    assert ab[0].item() == 1.0 and ab[-1].item() < 1e-8
    assert torch.all(ab[1:] < ab[:-1])                      # strictly decreasing
    betas = cosine_betas(T)
    assert betas.max().item() == pytest.approx(0.999)       # the last step is clipped, not 1
    assert (betas == 0.999).sum() >= 1 and torch.all(betas > 0)
    s = NoiseSchedule.cosine(T)
    # Away from the clipped end the schedule reproduces f(t)/f(0) exactly.
    torch.testing.assert_close(s.alpha_bar[:T - 20], ab[:T - 20])
    assert torch.all(s.alpha_bar[1:] < s.alpha_bar[:-1])
    assert torch.all(s.log_snr()[1:] < s.log_snr()[:-1])


def test_cosine_with_s_zero_is_the_seed_formula():
    T = 200
    t = torch.arange(T + 1, dtype=torch.float64)
    torch.testing.assert_close(cosine_alpha_bar(t, T, s=0.0), torch.cos(0.5 * math.pi * t / T) ** 2)


def _z(samples, mean, var):
    n = samples.shape[0]
    return max(((samples.mean(0) - mean) / (var / n).sqrt()).abs().max().item(),
               ((samples.var(0) - var) / (var * math.sqrt(2 / (n - 1)))).abs().max().item())


def test_closed_form_matches_the_iterated_chain():
    """Run the chain step by step on 20,000 copies of 8 values and compare moments with the closed
    form at several t, in units of standard errors. The closed form at a time step 20% later, a nearby
    wrong answer, must fail the same test (so the tolerance cannot pass by accident)."""
    s = NoiseSchedule.linear(1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.linspace(-1, 1, 8, dtype=torch.float64)
    x = x0.expand(20_000, -1).clone()
    checked = 0
    for t in range(1, 1001):
        x = s.step_forward(x, torch.randn(x.shape, generator=g, dtype=torch.float64), t)
        if t in (5, 50, 200, 600):
            ab = s.alpha_bar[t]
            assert _z(x, ab.sqrt() * x0, (1 - ab).expand(8)) < 6
            wrong = s.alpha_bar[int(1.2 * t) + 1]
            assert _z(x, wrong.sqrt() * x0, (1 - wrong).expand(8)) > 6
            # and the library's one-jump sampler produces the same moments
            jump = s.add_noise(x0.expand(20_000, -1), torch.randn(x.shape, generator=g, dtype=torch.float64), t)
            assert _z(jump, ab.sqrt() * x0, (1 - ab).expand(8)) < 6
            checked += 1
    assert checked == 4


def test_posterior_matches_bayes_rule_on_1d_gaussians(schedule):
    """Compare with two independent computations: precision-weighted Gaussian algebra, and the
    product q(x_t | x_{t-1}) q(x_{t-1} | x_0) evaluated on a grid and normalised numerically."""
    x0 = torch.tensor([[0.7], [-0.3]], dtype=torch.float64)
    xt = torch.tensor([[0.2], [1.1]], dtype=torch.float64)
    grid = torch.linspace(-4, 4, 400_001, dtype=torch.float64)
    for t in [2, 10, 100, 700]:
        mean, var = schedule.posterior(x0, xt, t)
        a, b = schedule.alpha[t].item(), schedule.beta[t].item()
        ab_prev = schedule.alpha_bar[t - 1].item()
        precision = a / b + 1 / (1 - ab_prev)
        want_mean = (math.sqrt(a) * xt / b + math.sqrt(ab_prev) * x0 / (1 - ab_prev)) / precision
        torch.testing.assert_close(mean, want_mean, rtol=1e-9, atol=1e-12)
        assert var.flatten()[0].item() == pytest.approx(1 / precision, rel=1e-9)
        for i in range(2):
            log_w = (-(xt[i, 0] - math.sqrt(a) * grid) ** 2 / (2 * b)
                     - (grid - math.sqrt(ab_prev) * x0[i, 0]) ** 2 / (2 * (1 - ab_prev)))
            w = torch.softmax(log_w, 0)
            m = (w * grid).sum()
            assert m.item() == pytest.approx(mean[i, 0].item(), abs=1e-7)
            assert (w * (grid - m) ** 2).sum().item() == pytest.approx(var.flatten()[0].item(), rel=1e-3)


def test_predict_x0_inverts_add_noise(schedule):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.rand(4, 1, 28, 28, generator=g) * 2 - 1, torch.randn(4, 1, 28, 28, generator=g)
    t = torch.tensor([1, 10, 500, 900])
    torch.testing.assert_close(schedule.predict_x0(schedule.add_noise(x0, eps, t), eps, t), x0, atol=2e-3, rtol=0)


def test_results_follow_the_input_dtype(schedule):
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(2, 3, dtype=dtype)
        assert schedule.add_noise(x, x, 5).dtype == dtype
        mean, var = schedule.posterior(x, x, 5)
        assert mean.dtype == dtype and var.dtype == dtype
    half = torch.zeros(2, 3, dtype=torch.bfloat16)
    assert schedule.add_noise(half, half, torch.tensor([1, 2])).dtype == torch.bfloat16


@pytest.mark.parametrize("t, error, message", [
    (1001, ValueError, r"t must lie in \[0, 1000\].*got values in \[1001, 1001\]"),
    (-1, ValueError, r"t must lie in \[0, 1000\]"),
    (torch.tensor([1.0, 2.0]), TypeError, "integer time steps"),
    (torch.tensor([[1], [2]]), ValueError, r"shape \(B,\)"),
    (torch.tensor([1, 2, 3]), ValueError, "3 entries but the batch has 2 images"),
    ([1, 2], TypeError, "int or an integer tensor"),
    (True, TypeError, "bool"),
])
def test_bad_time_steps_are_refused_clearly(t, error, message):
    s = NoiseSchedule.linear(1000)
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(error, match=message):
        s.add_noise(x, x, t)


def test_other_bad_inputs():
    s = NoiseSchedule.linear(100)
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="same shape"):
        s.add_noise(x, torch.zeros(2, 1, 4, 5), 3)
    with pytest.raises(TypeError, match="floating-point"):
        s.add_noise(x.long(), x.long(), 3)
    with pytest.raises(ValueError, match=r"\[1, 100\]"):
        s.posterior(x, x, 0)                                  # no posterior at t = 0
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        NoiseSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError, match="0 < beta_start <= beta_end < 1"):
        linear_betas(10, 0.5, 0.1)


def test_prior_kl_is_tiny_and_matches_the_per_pixel_formula():
    for s in (NoiseSchedule.linear(), NoiseSchedule.cosine()):
        x0 = torch.rand(5, 1, 28, 28, dtype=torch.float64) * 2 - 1
        kl = s.prior_kl(x0)
        ab = s.alpha_bar[-1]
        per_pixel = 0.5 * ((1 - ab) + ab * x0 ** 2 - 1 - torch.log(1 - ab))
        torch.testing.assert_close(kl, per_pixel.flatten(1).sum(1))
        assert kl.max() < 1e-2


@pytest.mark.parametrize("make, error, message", [
    (lambda x: (torch.full_like(x, 255.0), x), ValueError, r"x0 has values in \[255, 255\].*to_model_range"),
    (lambda x: (torch.full_like(x, float("nan")), x), ValueError, "x0 contains NaN"),
    (lambda x: (x, torch.full_like(x, float("inf"))), ValueError, "eps contains infinite"),
    (lambda x: (x[:0], x[:0]), ValueError, "x0 is an empty batch"),
    (lambda x: (x.to(torch.uint8), x), TypeError, r"to_model_range\(x\)"),
])
def test_add_noise_refuses_pixels_nan_and_empty_batches(make, error, message):
    x0, eps = make(torch.zeros(2, 1, 4, 4))
    with pytest.raises(error, match=message):
        NoiseSchedule.linear(100).add_noise(x0, eps, 3)


def test_every_method_checks_its_inputs():
    s = NoiseSchedule.linear(100)
    x, nan = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), float("nan"))
    pixels = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    with pytest.raises(TypeError, match="xt must be a floating-point tensor"):          # not a NaN result
        s.predict_x0(pixels, pixels, 5)
    with pytest.raises(ValueError, match="xt contains NaN"):
        s.predict_x0(nan, x, 5)
    with pytest.raises(ValueError, match="x_prev contains NaN"):
        s.step_forward(nan, x, 5)
    with pytest.raises(ValueError, match="xt contains NaN"):
        s.posterior(x, nan, 5)
    with pytest.raises(TypeError, match="not truncated"):
        s.posterior(x, x, 2.7)
    with pytest.raises(ValueError, match=r"x0 has values in \[255, 255\]"):
        s.prior_kl(torch.full((2, 1, 4, 4), 255.0))
    assert s.prior_kl(torch.zeros(3, dtype=torch.float64)).shape == (3,)           # a batch of scalars


def test_bad_schedule_settings_are_refused_clearly():
    with pytest.raises(TypeError, match="T must be an int, got bool"):
        linear_betas(True)
    with pytest.raises(TypeError, match="beta_start must be a number, got str"):
        linear_betas(10, "0.1", 0.2)
    with pytest.raises(ValueError, match="beta_end must be a finite number"):
        linear_betas(10, 0.1, float("nan"))
    with pytest.raises(ValueError, match="s must be >= 0"):
        cosine_betas(10, s=-1.0)
    with pytest.raises(ValueError, match="max_beta must lie strictly between 0 and 1"):
        cosine_betas(10, max_beta=2.0)
    with pytest.raises(ValueError, match="betas contains NaN"):
        NoiseSchedule(torch.tensor([0.1, float("nan")]))
    with pytest.raises(TypeError, match="betas must be a tensor or a list of numbers"):
        NoiseSchedule("0.1")
    with pytest.raises(TypeError, match="betas must be real numbers"):
        NoiseSchedule(torch.tensor([True, True]))
    with pytest.raises(TypeError, match="t must hold real time steps"):
        cosine_alpha_bar(torch.tensor([True]), 10)
    assert cosine_alpha_bar(5, 10).item() == pytest.approx(cosine_alpha_bar(torch.tensor([5]), 10).item())


def test_the_schedules_conversions_invert_each_other_and_give_algorithm_2s_mean():
    # x0_from_eps and eps_from_x0 solve x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps for x0 and for eps; the posterior mean
    # at x0_from_eps is Algorithm 2's (x_t - β_t / sqrt(1 - ᾱ_t) eps) / sqrt(α_t), written out here independently
    s = NoiseSchedule.linear(1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1, torch.randn(3, 1, 4, 4, generator=g,
                                                                                             dtype=torch.float64)
    for t in (1, 37, 500, 1000):
        xt = s.add_noise(x0, eps, t)
        torch.testing.assert_close(s.x0_from_eps(xt, eps, t), x0, rtol=0, atol=1e-9 if t < 1000 else 1e-6)
        torch.testing.assert_close(s.eps_from_x0(xt, x0, t), eps, rtol=0, atol=1e-9)
        a, ab, beta = s.alpha[t].item(), s.alpha_bar[t].item(), s.beta[t].item()
        algorithm_2 = (xt - beta / math.sqrt(1 - ab) * eps) / math.sqrt(a)
        torch.testing.assert_close(s.posterior_mean(s.x0_from_eps(xt, eps, t), xt, t), algorithm_2, rtol=1e-9, atol=1e-9)
