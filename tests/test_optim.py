import math

import pytest
import torch

from sdlib.optim import NS_COEFFICIENTS, Muon, orthogonalize


def plain_newton_schulz(g, steps=5):
    """The iteration as written in the papers, on wide matrices: X <- a X + b (X X^T) X + c (X X^T)^2 X."""
    a, b, c = NS_COEFFICIENTS
    x = g / (g.norm(dim=(-2, -1), keepdim=True) + 1e-7)      # the same guard against zero as the library
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x


@pytest.mark.parametrize("shape", [(64, 576), (3, 32, 288), (40, 300), (128, 128), (5, 20, 24)])
def test_orthogonalize_keeps_the_singular_vectors_and_sets_the_values_near_one(shape):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = g * torch.logspace(-3, 0, shape[-1], dtype=torch.float64)    # singular values over three decades
    o = orthogonalize(g)
    assert o.shape == g.shape
    p, s, qh = torch.linalg.svd(g, full_matrices=False)
    inner = p.mT @ o @ qh.mT                        # diagonal if o has g's singular vectors
    diagonal = torch.diagonal(inner, dim1=-2, dim2=-1)
    assert (inner - torch.diag_embed(diagonal)).abs().max() < 1e-8
    sv = torch.linalg.svdvals(o)
    big = s > 1e-2 * s.amax(-1, keepdim=True)       # tiny singular values need more steps to grow
    assert sv[big].min() > 0.5 and sv.max() < 1.5


def test_both_ways_of_running_the_iteration_agree():
    g = torch.randn(4, 32, 576, dtype=torch.float64, generator=torch.Generator().manual_seed(1))   # Gram way
    torch.testing.assert_close(orthogonalize(g), plain_newton_schulz(g), rtol=0, atol=1e-10)
    tall = torch.randn(2, 300, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(orthogonalize(tall), plain_newton_schulz(tall.mT).mT, rtol=0, atol=1e-10)
    square = torch.randn(48, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(3))  # plain way
    torch.testing.assert_close(orthogonalize(square), plain_newton_schulz(square), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="needs matrices"):
        orthogonalize(torch.randn(5))


def test_muon_steps_by_the_formula_and_adamw_on_the_rest():
    torch.manual_seed(0)
    kernel = torch.nn.Parameter(torch.randn(6, 2, 3, 3))         # taken as the matrix (6, 18)
    bias = torch.nn.Parameter(torch.randn(6))
    twin = torch.nn.Parameter(bias.detach().clone())
    lr, mu = 0.01, 0.95
    opt = Muon([{"params": [kernel], "muon": True}, {"params": [bias], "muon": False}], lr=lr, momentum=mu)
    reference = torch.optim.AdamW([twin], lr=lr, weight_decay=0.0)
    w, m = kernel.detach().clone(), torch.zeros_like(kernel)
    for _ in range(3):
        g = torch.randn_like(kernel)
        gb = torch.randn_like(bias)
        kernel.grad, bias.grad, twin.grad = g, gb, gb.clone()
        opt.step()
        reference.step()
        m = mu * m + g
        u = (g + mu * m).reshape(6, 18)
        w = w - lr * 0.2 * math.sqrt(18) * orthogonalize(u).reshape(w.shape)
        torch.testing.assert_close(kernel.detach(), w, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bias.detach(), twin.detach(), rtol=1e-5, atol=1e-7)


def test_muon_refuses_vectors_in_a_muon_group():
    with pytest.raises(ValueError, match="muon=False"):
        Muon([torch.nn.Parameter(torch.zeros(3, 3)), torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(ValueError, match="momentum"):
        Muon([torch.nn.Parameter(torch.zeros(3, 3))], momentum=1.0)
