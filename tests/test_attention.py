import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sdlib.attention import MultiHeadAttention, SpatialTransformer, TransformerBlock, attention


def test_written_out_attention_equals_pytorch_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g), torch.randn(2, 3, 7, 8, generator=g),
               torch.randn(2, 3, 7, 8, generator=g))
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    out, weights = attention(q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :]))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))
    assert weights[1, :, :, 4:].abs().max() == 0                        # padding gets no attention
    qs = torch.randn(2, 3, 6, 8, generator=g)
    out, weights = attention(qs, qs, qs, causal=True)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(qs, qs, qs, is_causal=True))
    assert torch.all(weights.triu(1) == 0)                              # no looking ahead


def _copy_into_torch(mine: MultiHeadAttention, kdim=None):
    ref = nn.MultiheadAttention(mine.dim, mine.heads, batch_first=True, kdim=kdim, vdim=kdim)
    with torch.no_grad():
        if kdim is None:
            ref.in_proj_weight.copy_(torch.cat([mine.to_q.weight, mine.to_k.weight, mine.to_v.weight]))
        else:
            ref.q_proj_weight.copy_(mine.to_q.weight)
            ref.k_proj_weight.copy_(mine.to_k.weight)
            ref.v_proj_weight.copy_(mine.to_v.weight)
        ref.in_proj_bias.copy_(torch.cat([mine.to_q.bias, mine.to_k.bias, mine.to_v.bias]))
        ref.out_proj.weight.copy_(mine.to_out.weight)
        ref.out_proj.bias.copy_(mine.to_out.bias)
    return ref


def test_self_attention_equals_nn_multiheadattention():
    torch.manual_seed(0)
    mine = MultiHeadAttention(16, heads=4)
    ref = _copy_into_torch(mine)
    x = torch.randn(3, 9, 16)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    want, _ = ref(x, x, x, key_padding_mask=~mask)
    torch.testing.assert_close(mine(x, mask=mask), want, atol=1e-5, rtol=1e-4)
    mine.keep_weights = True                                           # the written-out path agrees too
    torch.testing.assert_close(mine(x, mask=mask), want, atol=1e-5, rtol=1e-4)
    assert mine.last_weights.shape == (3, 4, 9, 9)


def test_cross_attention_equals_nn_multiheadattention():
    torch.manual_seed(1)
    mine = MultiHeadAttention(16, heads=2, context_dim=12)
    ref = _copy_into_torch(mine, kdim=12)
    x, ctx = torch.randn(2, 49, 16), torch.randn(2, 5, 12)             # 7x7 pixels look at 5 words
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    want, _ = ref(x, ctx, ctx, key_padding_mask=~mask)
    torch.testing.assert_close(mine(x, ctx, mask=mask), want, atol=1e-5, rtol=1e-4)


def test_bad_shapes_are_refused():
    cross = MultiHeadAttention(16, 2, context_dim=12)
    with pytest.raises(ValueError, match="context has width 10, this attention layer expects 12"):
        cross(torch.randn(1, 4, 16), torch.randn(1, 3, 10))
    with pytest.raises(ValueError, match=r"mask must have shape \(B, L\) = \(1, 3\)"):
        cross(torch.randn(1, 4, 16), torch.randn(1, 3, 12), mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)


def test_spatial_transformer_starts_as_the_identity_and_learns():
    block = SpatialTransformer(16, heads=2, context_dim=8)
    x = torch.randn(2, 16, 7, 7)
    torch.testing.assert_close(block(x, torch.randn(2, 3, 8)), x)
    nn.init.normal_(block.proj_out.weight)
    assert not torch.allclose(block(x, torch.randn(2, 3, 8)), x)
    tb = TransformerBlock(16, 2, context_dim=8)
    assert tb(torch.randn(2, 5, 16), torch.randn(2, 3, 8)).shape == (2, 5, 16)


def test_cross_attention_keeps_its_weights_for_attention_maps():
    """keep_weights (lesson 06's attention maps) runs the written-out path: same output as the fused
    kernel, weights (B, heads, Lq, Lk) that sum to 1 over the keys and are exactly 0 on padding."""
    torch.manual_seed(2)
    cross = MultiHeadAttention(16, heads=4, context_dim=12)
    x, ctx = torch.randn(2, 49, 16), torch.randn(2, 6, 12)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    fused = cross(x, ctx, mask=mask)
    assert cross.last_weights is None
    cross.keep_weights = True
    torch.testing.assert_close(cross(x, ctx, mask=mask), fused, atol=1e-5, rtol=1e-4)
    w = cross.last_weights
    assert w.shape == (2, 4, 49, 6) and not w.requires_grad
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 49))
    assert w[1, :, :, 3:].abs().max() == 0
