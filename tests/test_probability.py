import math

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
