"""Muon for the weight matrices, AdamW for the rest: the optimizer `fit` uses with `TrainConfig(optimizer="muon")`.

Muon (MomentUm Orthogonalized by Newton-Schulz; K. Jordan et al., 2024) keeps a Nesterov momentum M of
each weight matrix's gradient, as SGD does, but steps along the orthogonalised momentum instead:

    M <- mu M + G,   U = G + mu M,   W <- W - lr · s · orth(U),   orth(U) = P Q^T where U = P S Q^T (SVD)

orth(U) keeps U's singular directions and sets every singular value to 1, so that no direction of
the update is drowned by a few dominant ones. It is computed without an SVD, by five steps of the
odd polynomial X <- a X + b (X X^T) X + c (X X^T)^2 X from X = U / ||U||_F, which pushes every
singular value into roughly [0.5, 1.5] (`orthogonalize`). A convolution's kernel (out, in, k, k) is
treated as the matrix (out, in·k·k). s = 0.2 · sqrt(max(rows, cols)) gives the update the RMS size of
a typical AdamW step (J. Liu et al., 2025), so the same learning rate and schedule serve both.
Biases, norm scales and other vectors have no matrix to orthogonalise: they take AdamW steps.

Why it is here: on a fixed CPU budget it trains lesson 03's U-Net further than AdamW (docs/measured.md).
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # a, b, c of the quintic Newton-Schulz step (Jordan et al.)


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately P Q^T for each matrix of g (..., m, n) = P S Q^T: every singular value pushed
    near 1 (into roughly [0.5, 1.5] after 5 steps), singular vectors kept.

    Each step X <- a X + b (X X^T) X + c (X X^T)^2 X multiplies X on the left by a polynomial in its
    Gram matrix G = X X^T, and all these polynomials commute with G. So the steps can run on the small
    m x m matrices alone (G <- M G M, with M = a I + b G + c G^2) and X be multiplied once at the end:
    the same result as the plain iteration, for about a third of the arithmetic when n is several times m
    (used when n >= 4 m; the plain iteration otherwise; the cost of both is in docs/measured.md).
    """
    if g.dim() < 2:
        raise ValueError(f"orthogonalize needs matrices (..., m, n), got a tensor of shape {tuple(g.shape)}")
    a, b, c = NS_COEFFICIENTS
    wide = g.shape[-2] <= g.shape[-1]
    x = g if wide else g.mT                       # iterate on the smaller Gram matrix X X^T
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)   # all singular values now <= 1
    if x.shape[-1] < 4 * x.shape[-2]:             # nearly square: the plain iteration is cheaper
        for _ in range(steps):
            gram = x @ x.mT
            x = a * x + (b * gram + c * gram @ gram) @ x
        return x if wide else x.mT
    gram = x @ x.mT
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    total = None
    for k in range(steps):
        m = a * eye + b * gram + c * (gram @ gram)
        total = m if total is None else m @ total
        if k < steps - 1:
            gram = m @ gram @ m
    x = total @ x
    return x if wide else x.mT


class Muon(torch.optim.Optimizer):
    """Muon on the parameter groups with `muon=True` (each parameter a matrix, or a kernel taken as
    one), AdamW on the others. Matrices of the same shape are orthogonalised together in one batch.

    lr, weight_decay (decoupled, as AdamW), betas and eps (for the AdamW groups), momentum and
    ns_steps (for the Muon groups) can be set per group, as for any torch optimizer.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.95, ns_steps: int = 5, muon: bool = True):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, ns_steps=ns_steps, muon=muon))
        for group in self.param_groups:
            if group["muon"]:
                flat = [tuple(p.shape) for p in group["params"] if p.dim() < 2]
                if flat:
                    raise ValueError(f"a Muon group holds only matrices and kernels (2 or more dimensions); "
                                     f"got parameters of shape {flat[:3]}: put them in a group with muon=False")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._muon if group["muon"] else self._adamw)(group, params)
        return loss

    def _muon(self, group, params):
        mu, lr = group["momentum"], group["lr"]
        grads = [p.grad for p in params]
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            bufs.append(state["momentum_buffer"])
        torch._foreach_mul_(bufs, mu)
        torch._foreach_add_(bufs, grads)
        updates = torch._foreach_add(grads, bufs, alpha=mu)          # Nesterov: G + mu M
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        by_shape = defaultdict(list)
        for i, u in enumerate(updates):
            by_shape[(u.shape[0], u[0].numel(), u.dtype, u.device)].append(i)
        for (rows, cols, _, _), index in by_shape.items():
            ortho = orthogonalize(torch.stack([updates[i].reshape(rows, cols) for i in index]), group["ns_steps"])
            scale = -lr * 0.2 * math.sqrt(max(rows, cols))
            torch._foreach_add_([params[i] for i in index], [o.view_as(params[i]) for o, i in zip(ortho, index)],
                                alpha=scale)

    def _adamw(self, group, params):
        beta1, beta2 = group["betas"]
        lr, eps = group["lr"], group["eps"]
        grads = [p.grad for p in params]
        m, v = [], []
        for p in params:
            state = self.state[p]
            if "exp_avg" not in state:
                state["step"] = 0
                state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
            state["step"] += 1
            m.append(state["exp_avg"])
            v.append(state["exp_avg_sq"])
        step = self.state[params[0]]["step"]
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        torch._foreach_lerp_(m, grads, 1 - beta1)                      # m <- beta1 m + (1 - beta1) g
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)     # v <- beta2 v + (1 - beta2) g^2
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, math.sqrt(1 - beta2 ** step))
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, m, denom, value=-lr / (1 - beta1 ** step))
