"""Attention: the one implementation used by the U-Net (lessons 06-08) and the CLIP text encoder (05).

    scores = Q Kᵀ / sqrt(d)        (B, heads, L_q, L_k): how much each query looks at each key
    weights = softmax(scores)      masked keys (padding, the future) get weight 0
    output = weights V             (B, heads, L_q, d)

Self-attention takes Q, K and V from the same sequence; cross-attention takes Q from the image
features and K, V from the text context, so that every pixel position can look at every word.
`attention()` writes the formula out; the modules call PyTorch's fused
`F.scaled_dot_product_attention`, which computes the same thing faster (the tests check both
against each other and against `nn.MultiheadAttention`), unless the attention weights are asked
for, to draw attention maps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sdlib.runtime import validate


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention, written out. Returns (output, weights).

    q: (B, heads, Lq, d); k, v: (B, heads, Lk, d); mask: (B, Lk) bool, True for keys that may be
    attended to (False for padding); causal: query i may only see keys <= i (text encoders).
    """
    _check_qkv(q, k, v, mask)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])          # (B, heads, Lq, Lk)
    allowed = _allowed(mask, causal, q.shape[-2], k.shape[-2], q.device)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def _check_qkv(q, k, v, mask) -> None:
    """Shapes and dtypes only: this runs inside every attention layer, where reading values back would stall a GPU."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        validate.floating(x, name)
        if x.dim() != 4:
            raise ValueError(f"{name} must have shape (B, heads, L, d), got {tuple(x.shape)}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k and v must have the same dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    if k.shape[:2] != q.shape[:2] or v.shape[:3] != k.shape[:3] or k.shape[-1] != q.shape[-1]:
        raise ValueError(f"q (B, heads, Lq, d), k (B, heads, Lk, d) and v (B, heads, Lk, dv) do not fit together: "
                         f"got {tuple(q.shape)}, {tuple(k.shape)} and {tuple(v.shape)}")
    if mask is not None:
        validate.mask(mask, "mask", (k.shape[0], k.shape[2]), of="the keys", read_values=False)


def _allowed(mask, causal, lq, lk, device):
    """Boolean (B or 1, 1, Lq, Lk) of which query-key pairs may interact, or None for all."""
    allowed = None
    if mask is not None:
        allowed = mask[:, None, None, :].bool()                          # (B, 1, 1, Lk)
    if causal:
        tril = torch.ones(lq, lk, dtype=torch.bool, device=device).tril()[None, None]
        allowed = tril if allowed is None else allowed & tril
    return allowed


class MultiHeadAttention(nn.Module):
    """Multi-head attention. Without `context` it is self-attention; with it, cross-attention.

    dim: width of the queries' sequence; context_dim: width of the context (default dim).
    """

    def __init__(self, dim: int, heads: int = 4, context_dim: int | None = None, bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads, self.dim = heads, dim
        self.context_dim = context_dim or dim
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(self.context_dim, dim, bias=bias)
        self.to_v = nn.Linear(self.context_dim, dim, bias=bias)
        self.to_out = nn.Linear(dim, dim, bias=bias)
        self.last_weights: torch.Tensor | None = None    # filled when keep_weights is True
        self.keep_weights = False

    def _split(self, x):                                  # (B, L, dim) -> (B, heads, L, dim/heads)
        b, l, _ = x.shape
        return x.view(b, l, self.heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                causal: bool = False) -> torch.Tensor:
        """x: (B, L, dim); context: (B, Lc, context_dim) or None; mask: (B, Lc or L) bool. The answer
        comes in x's dtype (computed in the layer's)."""
        validate.shaped(validate.floating(x, "x"), "x", "B L C", C=self.dim)
        source = x if context is None else validate.floating(context, "context")
        if source.dim() != 3 or source.shape[0] != x.shape[0]:
            raise ValueError(f"context must have shape (B, L, {self.context_dim}) with B = {x.shape[0]}, "
                             f"got {tuple(source.shape)}")
        if source.shape[-1] != self.context_dim:
            what = "context" if context is not None else "x"
            raise ValueError(f"{what} has width {source.shape[-1]}, this attention layer expects {self.context_dim}")
        if mask is not None:
            validate.mask(mask, "mask", source.shape[:2], of="the keys", read_values=False)
        x_dtype = x.dtype
        x, source = validate.to_model_dtype(x, self), validate.to_model_dtype(source, self)
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(source)), self._split(self.to_v(source))
        if self.keep_weights:
            out, self.last_weights = attention(q, k, v, mask, causal)
            self.last_weights = self.last_weights.detach()
        else:
            allowed = _allowed(mask, causal, q.shape[-2], k.shape[-2], q.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        b, _, l, _ = out.shape
        out = self.to_out(out.transpose(1, 2).reshape(b, l, self.dim))        # (B, L, dim)
        return out if x.dtype == x_dtype else out.to(x_dtype)


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__(nn.Linear(dim, dim * mult), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * mult, dim))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: self-attention, then (with a context) cross-attention, then an MLP,
    each added back to its input (residual connections)."""

    def __init__(self, dim: int, heads: int = 4, context_dim: int | None = None, mlp_mult: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1, self.self_attn = nn.LayerNorm(dim), MultiHeadAttention(dim, heads)
        self.cross_attn = None
        if context_dim is not None:
            self.norm2, self.cross_attn = nn.LayerNorm(dim), MultiHeadAttention(dim, heads, context_dim)
        self.norm3, self.mlp = nn.LayerNorm(dim), FeedForward(dim, mlp_mult, dropout)

    def forward(self, x, context=None, context_mask=None, mask=None, causal=False):
        x = x + self.self_attn(self.norm1(x), mask=mask, causal=causal)
        if self.cross_attn is not None and context is not None:
            x = x + self.cross_attn(self.norm2(x), context, mask=context_mask)
        return x + self.mlp(self.norm3(x))


class SpatialTransformer(nn.Module):
    """A transformer block over the pixels of a feature map: (B, C, H, W) -> H·W tokens of width C ->
    back to (B, C, H, W), added to the input. The output projection starts at zero, so a new block
    begins as the identity and does not disturb the U-Net around it."""

    def __init__(self, channels: int, heads: int = 4, context_dim: int | None = None, groups: int = 8):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.block = TransformerBlock(channels, heads, context_dim)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x, context=None, context_mask=None):
        validate.shaped(validate.floating(x, "x"), "x", "B C H W", C=self.proj_in.in_channels)
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)    # (B, HW, C)
        tokens = self.block(tokens, context, context_mask)
        return x + self.proj_out(tokens.reshape(b, h, w, c).permute(0, 3, 1, 2))
