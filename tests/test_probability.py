import math

import pytest
import torch

from sdlib import probability


def test_kl_normal_matches_monte_carlo_and_is_asymmetric():
    g = torch.Generator().manual_seed(0)
    mq, vq, mp, vp = 0.5, 0.3, -0.2, 1.7
    z = mq + math.sqrt(vq) * torch.randn(400_000, generator=g, dtype=torch.float64)
    terms = probability.normal_log_prob(z, mq, vq) - probability.normal_log_prob(z, mp, vp)
    exact = probability.kl_normal(mq, vq, mp, vp)
    assert abs(terms.mean() - exact) < 5 * terms.std() / math.sqrt(len(z))
    assert not math.isclose(exact.item(), probability.kl_normal(mp, vp, mq, vq).item(), rel_tol=1e-3)
    assert probability.kl_normal(0.3, 0.2, 0.3, 0.2).abs() < 1e-12


def test_fake_identity_table_is_a_joint_distribution():
    ids = probability.fake_identities()
    assert ids.joint.shape == (90, 170)
    assert abs(ids.joint.sum().item() - 1) < 1e-12 and (ids.joint >= 0).all()
    torch.testing.assert_close(ids.joint.sum(1), probability.age_prior(ids.ages))
    a5 = ids.joint[5] / ids.joint[5].sum()          # p(height | age = 5) peaks near the typical height
    assert abs(ids.heights[a5.argmax()] - probability.typical_height(5.0)) <= 1


def test_linear_gaussian_identity_and_posterior():
    model = probability.LinearGaussian(w=1.3, b=-0.4, s=0.7)
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    pm, pv = model.posterior(x)
    # the posterior by Bayes' rule on a grid of z
    z = torch.linspace(-8, 8, 200_001, dtype=torch.float64)
    for i in range(len(x)):
        w = torch.softmax(model.log_joint(x[i], z), 0)
        m = (w * z).sum()
        assert abs(m - pm[i]) < 1e-8 and abs((w * (z - m) ** 2).sum() - pv[i]) < 1e-6
    # log p(x) = ELBO + KL(q || p(z|x)) for arbitrary q, and the evidence integrates the joint
    for qm, qv in [(0.0, 1.0), (1.5, 0.1), (-2.0, 3.0)]:
        qm_t, qv_t = torch.full_like(x, qm), torch.full_like(x, qv)
        total = model.elbo(x, qm_t, qv_t) + probability.kl_normal(qm_t, qv_t, pm, pv)
        torch.testing.assert_close(total, model.log_evidence(x), rtol=0, atol=1e-12)
    dz = z[1] - z[0]
    evidence = torch.logsumexp(model.log_joint(x[:, None], z[None, :]), 1) + torch.log(dz)
    torch.testing.assert_close(evidence, model.log_evidence(x), rtol=0, atol=1e-8)


# -- the exact diffusion chain and the linear hierarchical VAE of lesson 01 --------------------------

from sdlib.probability import GaussianChain, LinearHierarchicalVAE
from sdlib.probability import kl_normal as _kl


def _chain(**kw):
    args = dict(alpha=[0.8, 0.5, 0.3], a=[1.1, 0.9, 0.7], c=[0.05, -0.1, 0.2], v=[0.05, 0.2, 0.4])
    args.update(kw)
    return GaussianChain(**args)


def test_chain_elbo_is_log_evidence_minus_the_posterior_kl():
    chain = _chain()
    for x0 in (-1.3, 0.0, 0.7, 2.0):
        x0 = torch.tensor(x0, dtype=torch.float64)
        gap = torch.distributions.kl_divergence(chain.q_joint(x0), chain.p_posterior(x0))
        torch.testing.assert_close(chain.elbo(x0), chain.log_evidence(x0) - gap)
        assert gap > 0


def test_chain_joints_agree_with_their_steps():
    chain = _chain()
    x0 = torch.tensor(0.4, dtype=torch.float64)
    q = chain.q_joint(x0)
    for t in range(1, chain.T + 1):                       # each marginal of the joint is q(x_t | x_0)
        mean, var = chain.q_marginal(x0, t)
        torch.testing.assert_close(q.mean[t - 1], mean)
        torch.testing.assert_close(q.covariance_matrix[t - 1, t - 1], var)
    samples = chain.p_joint().sample((200_000,))          # p_theta's x_0 marginal by ancestral sampling
    joint = chain.p_joint()
    assert abs(samples[:, 0].mean() - joint.mean[0]) < 0.02
    assert abs(samples[:, 0].var() - joint.covariance_matrix[0, 0]) < 0.03
    # ancestral sampling step by step gives the same x_0 distribution
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=g, dtype=torch.float64)
    for t in range(chain.T, 0, -1):
        mean, var = chain.p_step(x, t)
        x = mean + var.sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
    assert abs(x.mean() - joint.mean[0]) < 0.02 and abs(x.var() - joint.covariance_matrix[0, 0]) < 0.03


def test_chain_prior_matching_vanishes_with_alpha_bar():
    x0 = torch.tensor(0.7, dtype=torch.float64)
    values = [_chain(alpha=[a] * 3).elbo_terms(x0)["prior_matching"].item() for a in (0.9, 0.5, 0.1, 0.01)]
    assert all(b < a for a, b in zip(values, values[1:])) and values[-1] < 1e-6


def test_chain_refuses_bad_parameters():
    with pytest.raises(ValueError, match="one entry per step"):
        GaussianChain(alpha=[0.5, 0.5], a=[1.0], c=[0.0, 0.0], v=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        _chain(alpha=[1.2, 0.5, 0.3])


def test_hierarchical_vae_bound_sits_under_the_exact_evidence():
    torch.manual_seed(0)
    model = LinearHierarchicalVAE(latent_dim=2, T=3)
    x = torch.linspace(-1, 2, 7, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x, g) for _ in range(4000)])
        log_px = model.log_evidence(x)
    se = elbo.std(0) / math.sqrt(len(elbo))
    assert (elbo.mean(0) <= log_px + 4 * se).all()
    # the evidence is a density over x: it integrates to 1
    grid = torch.linspace(-30, 30, 20001, dtype=torch.float64)
    with torch.no_grad():
        total = torch.trapezoid(model.log_evidence(grid).exp(), grid)
    assert abs(total.item() - 1) < 1e-6


def test_hierarchical_vae_with_a_fixed_encoder_is_the_diffusion_chain():
    alphas = [0.6, 0.5, 0.4]
    model = LinearHierarchicalVAE(latent_dim=1, T=3, fixed_alpha=alphas)
    assert not any(n.startswith(("E", "f", "u")) for n, _ in model.named_parameters())
    x = torch.tensor([-0.5, 0.3, 1.2], dtype=torch.float64)
    ab = 0.6 * 0.5 * 0.4
    with torch.no_grad():
        torch.testing.assert_close(model.prior_matching(x), _kl(math.sqrt(ab) * x, torch.tensor(1 - ab, dtype=torch.float64)))
    with pytest.raises(ValueError, match="latent_dim must be 1"):
        LinearHierarchicalVAE(latent_dim=2, T=3, fixed_alpha=alphas)
