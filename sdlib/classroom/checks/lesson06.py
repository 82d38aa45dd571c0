"""Checkers for lesson 06 (the U-Net with self- and cross-attention)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sdlib.attention import MultiHeadAttention, SpatialTransformer, attention
from sdlib.classroom.checks import (ExerciseError, as_tensor, call, compare_prediction, exercise, expect, expect_close,
                                    passed)
from sdlib.classroom.quiz import Question
from sdlib.unet import UNet, UNetConfig

_MASK_SHAPE_HINT = ("The mask (B, Lk) must broadcast against the scores (B, heads, Lq, Lk): it marks *keys*, "
                    "so give it the shape (B, 1, 1, Lk) with mask[:, None, None, :].")


def _pair(result, name: str, like: torch.Tensor):
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise ExerciseError(f"{name} should return two tensors, (output, weights); got "
                            f"{type(result).__name__}")
    return as_tensor(result[0], "the output", like=like), as_tensor(result[1], "the weights", like=like)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-5)


def _call_attention(fn, q, k, v, mask):
    try:
        return _pair(call(fn, q.clone(), k.clone(), v.clone(), None if mask is None else mask.clone()),
                     "scaled_dot_product_attention", like=q)
    except ExerciseError as error:
        text = str(error)
        if mask is None and "NoneType" in text:
            raise ExerciseError(f"{text}\nHint: mask may be None (no padding): only apply it when it is given "
                                f"(`if mask is not None:`).") from None
        if mask is not None and ("must match the size" in text or "size of tensor" in text):
            raise ExerciseError(f"{text}\nHint: {_MASK_SHAPE_HINT}") from None
        raise


def check_attention(scaled_dot_product_attention) -> None:
    """scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights), with
    q: (B, heads, Lq, d), k and v: (B, heads, Lk, d), mask: (B, Lk) bool (True = a real token)."""
    g = torch.Generator().manual_seed(0)
    b, h, lq, lk, d = 2, 3, 5, 7, 16
    q, k, v = (torch.randn(b, h, lq, d, generator=g) * 2, torch.randn(b, h, lk, d, generator=g) * 2,
               torch.randn(b, h, lk, d, generator=g))
    scores = q @ k.transpose(-2, -1)

    # 1. No mask: the formula itself.
    out, weights = _call_attention(scaled_dot_product_attention, q, k, v, None)
    want_out, want_w = attention(q, k, v)
    expect(weights.shape == want_w.shape,
           f"the weights have shape {tuple(weights.shape)}, expected (B, heads, Lq, Lk) = {tuple(want_w.shape)}: "
           f"one weight for every (query, key) pair, scores = q @ k.transpose(-2, -1)")
    if _close(weights, scores.softmax(dim=-1)):
        raise ExerciseError("The weights are softmax(q kᵀ) without the scaling: divide the scores by sqrt(d) "
                            "(d = q.shape[-1], the width of one head) before the softmax. Without it the scores "
                            "grow with d and the softmax saturates to almost one-hot weights.")
    if _close(weights, (scores / d).softmax(dim=-1)):
        raise ExerciseError("You divided the scores by d; the scaling is 1/sqrt(d) (math.sqrt(q.shape[-1])).")
    for wrong_dim in (-2, 1, 0):
        if _close(weights, (scores / math.sqrt(d)).softmax(dim=wrong_dim)):
            raise ExerciseError(f"The softmax runs over the wrong axis (dim={wrong_dim}): each query's weights over "
                                f"the keys must sum to 1, so take the softmax over the last axis (dim=-1).")
    expect_close(weights, want_w, "the attention weights (no mask)", hint="softmax(q @ kᵀ / sqrt(d), dim=-1)")
    expect_close(out, want_out, "the output (no mask)", hint="output = weights @ v, shape (B, heads, Lq, d)")

    # 2. With a padding mask; the padded values are huge, so any weight on them shows.
    mask = torch.ones(b, lk, dtype=torch.bool)
    mask[1, 4:] = False
    v_pad = v.clone()
    v_pad[1, :, 4:] = 1e3
    out, weights = _call_attention(scaled_dot_product_attention, q, k, v_pad, mask)
    want_out, want_w = attention(q, k, v_pad, mask)
    if not torch.isfinite(weights).all() or not torch.isfinite(out).all():
        raise ExerciseError("NaN or infinite values with a mask: did you fill the real tokens with -inf? The mask "
                            "is True for real tokens, so fill where it is False: scores.masked_fill(~mask[:, None, "
                            "None, :], float('-inf')). (A query whose every key is masked gets NaN.)")
    if _close(weights, attention(q, k, v_pad)[1]):
        raise ExerciseError("The mask is not applied: padding tokens still get attention. Set their scores to "
                            "-inf before the softmax (scores.masked_fill(~mask[:, None, None, :], float('-inf'))), "
                            "so that their weights come out exactly 0.")
    plain = (scores / math.sqrt(d)).softmax(-1)
    if _close(weights, plain * mask[:, None, None, :]):
        raise ExerciseError("You zeroed the padding weights after the softmax, so the remaining weights no longer "
                            "sum to 1. Mask the scores with -inf before the softmax instead.")
    if _close(weights, (scores / math.sqrt(d)).masked_fill(~mask[:, None, None, :], 0.0).softmax(-1)):
        raise ExerciseError("Filling masked scores with 0 still gives the padding weight (e^0 = 1 before "
                            "normalising). Fill them with float('-inf'), whose exponential is exactly 0.")
    if weights.shape == want_w.shape and weights[1, :, :, 4:].abs().max() > 1e-6:
        raise ExerciseError("Padding keys (mask False) still get weight: the mask must remove exactly the keys "
                            "where it is False. Did you invert it (masked_fill(mask, ...) instead of ~mask)?")
    expect_close(weights, want_w, "the attention weights with a padding mask",
                 hint="mask the scores with -inf where mask is False, then softmax over the keys")
    expect_close(out, want_out, "the output with a padding mask", hint="output = weights @ v", rtol=1e-4, atol=1e-4)
    sdpa = F.scaled_dot_product_attention(q, k, v_pad, attn_mask=mask[:, None, None, :])
    expect_close(out, sdpa, "the output compared with torch's F.scaled_dot_product_attention", rtol=1e-4, atol=1e-4)
    passed("softmax(q kᵀ / sqrt(d)) v, with padding keys weighted exactly 0; it equals PyTorch's fused version.")


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:          # (B, L, C) -> (B, heads, L, C/heads)
    b, l, c = x.shape
    return x.view(b, l, heads, c // heads).transpose(1, 2)


def _variant(x, ctx, mask, m: MultiHeadAttention, kind: str) -> torch.Tensor:
    """A typical wrong cross-attention (or the right one for kind='right'), for targeted hints."""
    b, n, c = x.shape
    heads = 1 if kind == "one_head" else m.heads
    q, k, v = m.to_q(x), m.to_k(ctx), m.to_v(ctx)
    if kind == "split_without_transpose":                            # view(B, heads, L, d) directly
        q, k, v = (t.reshape(b, heads, t.shape[1], c // heads) for t in (q, k, v))
    else:
        q, k, v = _split(q, heads), _split(k, heads), _split(v, heads)
    scores = q @ k.transpose(-2, -1) / (1.0 if kind == "no_scale" else math.sqrt(q.shape[-1]))
    if mask is not None and kind != "no_mask":
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    out = scores.softmax(-1) @ v                                     # (B, heads, N, d)
    if kind == "merge_without_transpose":
        out = out.reshape(b, n, c)
    else:
        out = out.transpose(1, 2).reshape(b, n, c)
    return out if kind == "no_out" else m.to_out(out)


_CROSS_HINTS = {
    "no_mask": "The padding mask is not applied: padded context tokens still get attention. Pass it to the "
               "attention as a (B, 1, 1, L) boolean, True for real tokens (context_mask[:, None, None, :]).",
    "no_out": "You left out the output projection: apply to_out to the merged heads (B, N, C).",
    "merge_without_transpose": "The heads are merged in the wrong order: out is (B, heads, N, d); bring the heads "
                               "next to their width first (out.transpose(1, 2)) and only then reshape to (B, N, C).",
    "split_without_transpose": "The heads are split in the wrong order: reshape (B, N, C) to (B, N, heads, d) "
                               "and then transpose to (B, heads, N, d); a direct view to (B, heads, N, d) mixes "
                               "pixels and channels.",
    "one_head": "That is single-head attention over the full width C: split q, k and v into `heads` heads of "
                "width C // heads, attend in each head separately, then merge.",
    "no_scale": "The scores are not divided by sqrt(d) (d = C // heads, the width of one head).",
}


def check_cross_attention(cross_attention) -> None:
    """cross_attention(x, context, context_mask, to_q, to_k, to_v, to_out, heads) -> (B, N, C)."""
    b, n, c, l, d_ctx, heads = 2, 9, 16, 5, 12, 4
    with torch.random.fork_rng():                    # leave the learner's random stream alone
        torch.manual_seed(0)
        m = MultiHeadAttention(c, heads, context_dim=d_ctx)
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(b, n, c, generator=g), torch.randn(b, l, d_ctx, generator=g) * 2
    mask = torch.tensor([[True] * l, [True, True, False, False, False]])

    def run(context_mask):
        try:
            with torch.no_grad():
                return call(cross_attention, x.clone(), ctx.clone(), None if context_mask is None else context_mask.clone(),
                            m.to_q, m.to_k, m.to_v, m.to_out, heads)
        except ExerciseError as error:
            text = str(error)
            if "mat1 and mat2" in text or "shapes cannot be multiplied" in text:
                raise ExerciseError(f"{text}\nHint: the queries come from the image tokens x (width C = {c}): to_q(x); "
                                    f"the keys and values from the text context (width {d_ctx}): to_k(context), "
                                    f"to_v(context).") from None
            if context_mask is None and "NoneType" in text:
                raise ExerciseError(f"{text}\nHint: context_mask may be None (no padding): only use it when it is "
                                    f"given.") from None
            if "must match the size" in text or "size of tensor" in text:
                raise ExerciseError(f"{text}\nHint: the mask (B, L) marks keys; it must broadcast against the "
                                    f"scores (B, heads, N, L): context_mask[:, None, None, :].") from None
            raise

    with torch.no_grad():
        for context_mask in (mask, None):
            got = as_tensor(run(context_mask), "the cross-attention output", like=x)
            want = m(x, ctx, mask=context_mask)
            if got.shape == (b, l, c):
                raise ExerciseError(f"The output has shape (B, L, C) = {tuple(got.shape)}: one row per text token. "
                                    f"Queries come from the image (x), keys and values from the context, so the "
                                    f"output has one row per image token: (B, N, C) = {(b, n, c)}.")
            expect(got.shape == want.shape, f"the output has shape {tuple(got.shape)}, expected (B, N, C) = "
                                             f"{tuple(want.shape)}")
            if not _close(got, want):
                for kind, hint in _CROSS_HINTS.items():
                    if kind == "no_mask" and context_mask is None:
                        continue
                    if _close(got, _variant(x, ctx, context_mask, m, kind)):
                        raise ExerciseError(hint)
            what = "the cross-attention output" + (" with a padding mask" if context_mask is not None else " (mask=None)")
            expect_close(got, want, what, hint="q from x, k and v from the context, split into heads, masked "
                                               "scaled dot-product attention, merge the heads, to_out",
                         rtol=1e-4, atol=1e-5)
    passed("every image token gathers information from the prompt's real tokens; the output has the image's "
           "shape (B, N, C) whatever the prompt's length.")


def _decoder_widths(channels, blocks, *, conv_in=True, downsample=True, lifo=True, concat=True, extra=1,
                    from_below=True) -> list[int]:
    """Input widths of the decoder's ResBlocks, and the usual wrong versions of them (for the hints)."""
    skips, width = ([channels[0]] if conv_in else []), channels[0]
    for i, cout in enumerate(channels):
        skips += [cout] * blocks
        width = cout
        if i < len(channels) - 1 and downsample:
            skips.append(cout)
    widths = []
    for i, cout in reversed(list(enumerate(channels))):
        for _ in range(blocks + extra):
            skip = (skips.pop() if lifo else skips.pop(0)) if skips else 0
            below = width if from_below else cout
            widths.append(below + skip if concat else below)
            width = cout
    return widths


def _true_widths(channels, blocks) -> list[int]:
    with torch.random.fork_rng():
        model = UNet(UNetConfig(channels=channels, blocks=blocks))
    return [res.norm1.num_channels for level in model.up for res in level.res]


def check_decoder_channels(decoder_in_channels) -> None:
    """decoder_in_channels(channels, blocks) -> the input width of every decoder ResBlock, in the order they run."""
    cases = [((48, 96), 1), ((32, 64, 128), 2), ((16, 32, 32, 32), 1), ((64,), 1), ((16, 48), 3)]
    for channels, blocks in cases:
        try:
            got = call(decoder_in_channels, tuple(channels), blocks)
        except ExerciseError as error:
            if "pop from empty list" in str(error):
                raise ExerciseError(f"{error}\nHint: the decoder ran out of skips. It has (blocks + 1) ResBlocks per "
                                    f"level, one per skip: conv_in and every downsample push a skip too, besides the "
                                    f"encoder ResBlocks.") from None
            raise
        try:
            got = [int(w) for w in got]
        except (TypeError, ValueError):
            raise ExerciseError(f"return a list of integers, one per decoder ResBlock; got {got!r}") from None
        want = _true_widths(channels, blocks)
        assert want == _decoder_widths(channels, blocks), "library and checker disagree"   # guards the checker
        if got == want:
            continue
        case = f"for channels={channels}, blocks={blocks}: got {got}, expected {want}. "
        if len(got) == len(channels) * blocks:
            raise ExerciseError(case + "The decoder has one ResBlock more per level than the encoder (blocks + 1): "
                                       "there are more skips than encoder ResBlocks, because conv_in and every "
                                       "downsample push one too.")
        if len(got) != len(want):
            raise ExerciseError(case + f"There should be (blocks + 1) × levels = {len(want)} decoder ResBlocks.")
        hints = [
            (dict(concat=False), "Each decoder ResBlock sees the concatenation [h, skip] along the channels, so its "
                                 "input width is the width of h plus the width of the skip."),
            (dict(lifo=False), "The skips are used last-in, first-out (a stack): the decoder starts at the bottom, "
                               "so its first ResBlock takes the skip the encoder pushed last (skips.pop())."),
            (dict(downsample=False), "Every downsample's output is pushed as a skip too (not only the ResBlocks')."),
            (dict(conv_in=False), "conv_in's output is the first skip pushed (the last one used): include it."),
            (dict(from_below=False), "The first ResBlock of each decoder level receives h from the level below, "
                                     "still at that level's width (it is only upsampled, not narrowed): width of h "
                                     "= the previous block's output width."),
        ]
        for flags, hint in hints:
            if got == _decoder_widths(channels, blocks, **flags):
                raise ExerciseError(case + hint)
        raise ExerciseError(case + "Simulate the stack: push conv_in's width, each encoder ResBlock's and each "
                                   "downsample's; in the decoder every ResBlock pops one and adds it to h's width.")
    passed("every decoder ResBlock eats one skip, last in first out, and its input width is h's plus the skip's.")


def _block_cases(g: torch.Generator):
    """(B, C, H, W, L, context_dim, heads) configurations; the first is the trained U-Net's middle block."""
    yield 8, 64, 7, 7, 12, 64, 4
    for _ in range(6):
        heads = int(torch.randint(1, 5, (1,), generator=g))
        C = 8 * heads * int(torch.randint(1, 5, (1,), generator=g))          # a multiple of heads and of 8 groups
        d = int(torch.randint(3, 40, (1,), generator=g))
        while d == C:
            d += 1
        B, H, W, L = (int(torch.randint(1, n, (1,), generator=g)) for n in (5, 10, 10, 20))
        yield B, C, H, W, L, d, heads


def _as_shape(value, where: str) -> tuple[int, ...]:
    if isinstance(value, torch.Tensor) and value.dim() == 1 and not value.is_floating_point():
        value = value.tolist()
    if not isinstance(value, (tuple, list, torch.Size)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                      for v in value):
        raise ExerciseError(f"{where}: the weights' shape should be a tuple of ints such as (2, 4, 49, 12), got {value!r}")
    return tuple(value)


@exercise("derivation")
def check_block_facts(attention_block_facts) -> None:
    """attention_block_facts(B, C, H, W, L, context_dim, heads) -> (weights_shape, parameters): the shape of the
    cross-attention weights of SpatialTransformer(C, heads, context_dim) on a (B, C, H, W) feature map reading a
    (B, L, context_dim) context, and its number of parameters; compared with the real module on random configs."""
    g = torch.Generator().manual_seed(6)
    n = 0
    for B, C, H, W, L, d, heads in _block_cases(g):
        where = f"B={B}, C={C}, H={H}, W={W}, L={L}, context_dim={d}, heads={heads}"
        got = call(attention_block_facts, B, C, H, W, L, d, heads)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise ExerciseError(f"return two things, (weights_shape, parameters); got {got!r}")
        shape = _as_shape(got[0], where)
        params = got[1].item() if isinstance(got[1], torch.Tensor) and got[1].numel() == 1 else got[1]
        if isinstance(params, float) and params.is_integer():
            params = int(params)
        if isinstance(params, bool) or not isinstance(params, int):
            raise ExerciseError(f"{where}: the parameter count should be an int, got {params!r}")

        block = SpatialTransformer(C, heads, d)
        cross = block.block.cross_attn
        cross.keep_weights = True
        with torch.no_grad():
            block(torch.randn(B, C, H, W, generator=g), torch.randn(B, L, d, generator=g))
        want_shape, want_params = tuple(cross.last_weights.shape), sum(p.numel() for p in block.parameters())
        N = H * W
        if shape != want_shape:
            for wrong, message in [
                ((B, heads, L, N), "queries are the rows: the image's H·W positions ask, the L tokens answer, so the "
                                   "weights are (B, heads, H·W, L)."),
                ((B, N, L), "each head has its own weights: (B, heads, H·W, L)."),
                ((B, heads, N, N), "that is self-attention's shape; cross-attention's keys are the L context tokens."),
                ((B, heads, H, W, L), "attention sees the feature map as a sequence of H·W tokens: flatten H and W."),
            ]:
                if shape == wrong:
                    raise ExerciseError(f"{where}: weights shape {shape} is not right: {message}")
            raise ExerciseError(f"{where}: the cross-attention weights have shape {want_shape}, you said {shape}: one "
                                f"weight per image, head, query (pixel) and key (token).")
        if params != want_params:
            biases, norms = 15 * C, 8 * C
            for wrong, message in [
                (want_params - biases, "every nn.Linear and 1×1 convolution here has a bias, C (or 4C) numbers each."),
                (want_params - norms, "the GroupNorm and the three LayerNorms each learn a scale and a shift: 2C each."),
                (want_params - 2 * d * C + 2 * C * C, "to_k and to_v read the context: they are context_dim × C, not C × C."),
                (want_params - 6 * C * C - 3 * C, "the MLP widens to 4C and comes back: C·4C + 4C + 4C·C + C."),
                (want_params - 2 * (C * C + C), "proj_in and proj_out, the two 1×1 convolutions around the block, have "
                                                "C·C + C parameters each."),
            ]:
                if params == wrong:
                    raise ExerciseError(f"{where}: {params:,} parameters is not right: {message}")
            raise ExerciseError(f"{where}: SpatialTransformer(C, heads, context_dim) has {want_params:,} parameters, "
                                f"you said {params:,}. Count, for each nn.Linear(a, b), a·b + b; for each norm 2C.")
        n += 1
    passed(f"weights (B, heads, H·W, L) and 16C² + 2·context_dim·C + 23C parameters, right for {n} configs; the number "
           f"of heads changes neither the parameters nor the cost of the projections.")


def _doubled_growth() -> float:
    from sdlib.pretrained import entry

    config = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry("text_ddpm")["config"].items()})
    doubled = UNetConfig(**{**config.to_dict(), "channels": tuple(2 * c for c in config.channels)})
    return UNet(doubled).num_parameters() / UNet(config).num_parameters()


def _growth_explanation(prediction, measured) -> str:
    text = ("Every convolution and linear layer between two widths has C_in·C_out weights, so doubling both "
            "multiplies them by 4; the parts that grow only in proportion to C (biases, norms, to_k and to_v reading "
            "the fixed 64-wide context, the first and last convolutions with their 4 image channels) pull the "
            f"factor just below 4 ({measured:.2f}). Compute per step grows the same way: width is expensive.")
    if prediction < 3:
        text += " A factor of 2 would hold if parameters grew with the width; they grow with its square."
    elif prediction > 5:
        text += " Doubling the width adds no layers: depth, and so the count of weight matrices, stays the same."
    return text


@exercise("prediction")
def check_growth_prediction(predicted_parameter_growth) -> None:
    """predicted_parameter_growth() -> a number: by what factor the text-conditioned U-Net's parameter count grows
    when every width in `channels` doubles (everything else, the context width included, unchanged). Right within
    10%."""
    compare_prediction(predicted_parameter_growth, _doubled_growth, low=0.0, tolerance=0.1, relative=True,
                       what="the growth of the parameter count when every width doubles",
                       fmt=lambda v: f"{v:.2f}", explanation=_growth_explanation)


QUIZ = [
    Question(
        "Why does attention divide the scores q·k by sqrt(d)?",
        options=["To make the weights sum to 1.",
                 "With unit-variance entries, q·k has variance d; dividing by sqrt(d) brings its spread back to 1, so the "
                 "softmax does not saturate to one-hot weights with vanishing gradients.",
                 "To save compute.",
                 "Because the keys are normalised to length sqrt(d)."],
        answer=1,
        explanations=["No: the softmax already makes each row sum to 1, whatever the scale.",
                      "Yes: section 5 measured it: at d = 1024 the unscaled scores have a spread of about 32 and the "
                      "largest weight is nearly 1.",
                      "No: it is one extra division; it is about the softmax's behaviour.",
                      "No: queries and keys are not normalised in attention (unlike CLIP's features)."]),
    Question(
        "In the U-Net's cross-attention, where do the queries, keys and values come from?",
        options=["All three from the prompt's tokens.",
                 "Queries from the prompt, keys and values from the image.",
                 "All three from the image; the prompt is added to the values.",
                 "Queries from the image's pixel tokens, keys and values from the prompt's tokens; the output has the "
                 "image's shape."],
        answer=3,
        explanations=["No: then the output would have the prompt's shape and say nothing about the image.",
                      "No: that writes the image into the prompt; the output would be (B, L, ·), not a feature map.",
                      "No: that is self-attention; the prompt enters only through the keys and values of "
                      "cross-attention.",
                      "Yes: each pixel asks which words concern it and receives a mixture of projected word vectors, "
                      "(B, N, C) whatever the prompt's length."]),
    Question(
        "A prompt is padded from 3 to 12 tokens. What makes the padding irrelevant to the U-Net's output?",
        options=["Their scores are set to -inf before the softmax, so their weights are exactly 0 and the real tokens' "
                 "weights still sum to 1.",
                 "The padding tokens' embeddings are zero vectors.",
                 "The U-Net is trained only on 12-token prompts.",
                 "The softmax ignores repeated tokens."],
        answer=0,
        explanations=["Yes: the mask (B, L) is broadcast as (B, 1, 1, L) so that every head and every query ignores "
                      "the same keys.",
                      "No: a zero key still scores 0, and exp(0) = 1 is a real share of the attention; section 7 put "
                      "random values there and the output did not change, which zero vectors alone would not ensure.",
                      "No: prompts of every length are padded to 12; without the mask the padding would still "
                      "take attention.",
                      "No: the softmax treats every score alike; only the mask removes them."]),
    Question(
        "Why does the U-Net's decoder have one ResBlock more per level than the encoder?",
        options=["To make the network deeper at no cost.",
                 "Because upsampling loses information that an extra block restores.",
                 "There are more skips than encoder ResBlocks (conv_in's and each downsample's outputs are pushed too), "
                 "and every skip is concatenated into one decoder ResBlock.",
                 "Because the time embedding needs one more block."],
        answer=2,
        explanations=["No: it is not free, and depth is not the reason; the count follows from the skips.",
                      "No: the skips bring the detail back; the count of blocks follows from the number of skips.",
                      "Yes: with blocks per level, the stack holds blocks + 1 entries per level (conv_in stands in for the "
                      "first level's downsample), and each decoder ResBlock pops one: Exercise 5's count.",
                      "No: every ResBlock reads the time vector; it does not need a block of its own."]),
]
