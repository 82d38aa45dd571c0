"""Checkers for lesson 07 (classifier-free guidance)."""
from __future__ import annotations

import torch

from ..diffusion import drop_prompts
from ..samplers import ClassifierFreeGuidance, guidance
from ..unet import UNet
from . import ExerciseError, as_tensor, call, expect, expect_close, passed


class _NullHolder(torch.nn.Module):
    def __init__(self, null: torch.Tensor):
        super().__init__()
        self.null_context = torch.nn.Parameter(null)

    empty_prompt = UNet.empty_prompt


def check_drop_prompt(drop_prompt) -> None:
    """drop_prompt(context, mask, null_context, drop) -> (context, mask) with the dropped prompts replaced
    by the one-token empty prompt: context (B, L, d), mask (B, L) bool, null_context (1, 1, d), drop (B,) bool."""
    g = torch.Generator().manual_seed(0)
    context = torch.randn(4, 5, 6, generator=g)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] * 4 + [False], [True] * 2 + [False] * 3])
    null = torch.randn(1, 1, 6, generator=g)
    drop = torch.tensor([True, False, True, False])
    got = call(drop_prompt, context.clone(), mask.clone(), null.clone(), drop.clone())
    expect(isinstance(got, (tuple, list)) and len(got) == 2, "return two things: (new_context, new_mask)")
    got_ctx, got_mask = as_tensor(got[0], "the new context", like=context), as_tensor(got[1], "the new mask")
    want_ctx, want_mask = drop_prompts(_NullHolder(null), context, mask, drop)
    expect(got_ctx.shape == context.shape, f"the new context must keep the shape {tuple(context.shape)}, got "
                                           f"{tuple(got_ctx.shape)}: expand the null token over B and L")
    if torch.allclose(got_ctx[1], null[0].expand(5, 6)):
        raise ExerciseError("Prompt 1 was replaced although drop[1] is False: replace where drop is True, keep the rest.")
    if torch.allclose(got_ctx[0], context[0]):
        raise ExerciseError("Prompt 0 should have been dropped (drop[0] is True): put the null token there.")
    expect_close(got_ctx, want_ctx, "the new context",
                 hint="torch.where(drop[:, None, None], null_context.expand_as(context), context)")
    expect(got_mask.dtype == torch.bool, f"the mask should stay boolean, got {got_mask.dtype}")
    if torch.equal(got_mask, mask):
        raise ExerciseError("The context is right but the mask was not changed: a dropped prompt is one token, "
                            "the empty prompt, so its mask is True at position 0 and False elsewhere.")
    if got_mask[0].all():
        raise ExerciseError("The dropped prompt's mask is all True: the copies of the null token after the first "
                            "would each get a vote in the attention; keep only position 0.")
    expect(torch.equal(got_mask, want_mask), f"the new mask is not right: got {got_mask.int().tolist()}, expected "
                                             f"{want_mask.int().tolist()}")
    passed("prompt dropout: the same model now sees prompts and, a part of the time, the empty prompt.")


def check_cfg(cfg) -> None:
    """cfg(eps_cond, eps_uncond, w) -> the guided noise prediction (w = 1: no guidance)."""
    g = torch.Generator().manual_seed(1)
    cond, uncond = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    for w in (0.0, 1.0, 3.0, 7.5):
        got = as_tensor(call(cfg, cond.clone(), uncond.clone(), w), f"the guided prediction at w={w}", like=cond)
        want = guidance(cond, uncond, w)
        if got.shape == want.shape and w == 3.0:
            if torch.allclose(got, w * (uncond - cond) + cond, atol=1e-6):
                raise ExerciseError("The two branches are swapped: start from the unconditional prediction and move "
                                    "w times (cond - uncond) away from it.")
            if torch.allclose(got, (1 + w) * cond - w * uncond, atol=1e-6):
                raise ExerciseError("That is Ho & Salimans' (2022) form, (1 + w) cond - w uncond, where w = 0 means "
                                    "no guidance. This course uses the form of Imagen and Stable Diffusion, where "
                                    "w = 1 means no guidance: w (cond - uncond) + uncond (the same as theirs with "
                                    "w = 1 + w_HS).")
            if torch.allclose(got, w * cond + (1 - w) * cond, atol=1e-6) or torch.allclose(got, w * cond, atol=1e-6):
                raise ExerciseError("The unconditional prediction is missing: w (cond - uncond) + uncond.")
        expect_close(got, want, f"the guided prediction at w={w}", hint="w · (eps_cond − eps_uncond) + eps_uncond",
                     rtol=1e-5, atol=1e-6)
    passed("classifier-free guidance: w = 0 is the unconditional model, w = 1 the conditional one, w > 1 beyond it.")


class _CountingModel(torch.nn.Module):
    """A stand-in conditional U-Net: eps = x · (1 + mean of the masked context) + t/1000; counts calls."""

    def __init__(self, width: int = 6):
        super().__init__()
        self.null_context = torch.nn.Parameter(torch.full((1, 1, width), 0.3))
        self.calls: list[int] = []

    empty_prompt = UNet.empty_prompt

    def forward(self, x, t, context, mask=None):
        self.calls.append(x.shape[0])
        if context.shape[0] != x.shape[0]:
            raise ValueError(f"the U-Net got {x.shape[0]} images but {context.shape[0]} contexts")
        m = torch.ones(context.shape[:2]) if mask is None else mask.float()
        value = (context.mean(-1) * m).sum(1) / m.sum(1).clamp(min=1)
        return x * (1 + value[:, None, None, None]) + t.float().reshape(-1, 1, 1, 1) / 1000


def check_guided_eps(guided_eps) -> None:
    """guided_eps(model, x, t, context, mask, w) -> guided eps from ONE forward pass on a doubled batch:
    the prompts' contexts for the first half, the model's null_context (one token, padded) for the second."""
    g = torch.Generator().manual_seed(2)
    model = _CountingModel()
    x, t = torch.randn(3, 1, 4, 4, generator=g), torch.tensor([10, 500, 900])
    context = torch.randn(3, 4, 6, generator=g)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False], [True] * 4])
    want = ClassifierFreeGuidance(model, context, 2.5, mask)(x, t)
    model.calls.clear()
    got = as_tensor(call(guided_eps, model, x.clone(), t.clone(), context.clone(), mask.clone(), 2.5), "the guided eps",
                    like=x)
    if len(model.calls) == 2:
        raise ExerciseError("The model was called twice: concatenate x with itself (and t, and the two contexts) "
                            "along the batch, call it once, then split the output with .chunk(2).")
    expect(len(model.calls) == 1, f"call the model exactly once, it was called {len(model.calls)} times")
    expect(model.calls[0] == 6, f"the model should see a batch of 2 × 3 = 6, it saw {model.calls[0]}")
    if got.shape == want.shape:
        null, _ = model.empty_prompt(3, context.shape[1])
        full_mask_null = ClassifierFreeGuidance(model, context, 2.5, mask, null, torch.ones(3, context.shape[1],
                                                                                           dtype=torch.bool))
        model.calls.clear()
        if torch.allclose(got, full_mask_null(x, t), atol=1e-6) and not torch.allclose(got, want, atol=1e-6):
            raise ExerciseError("The empty prompt is one token: its mask is True at position 0 only.")
    expect_close(got, want, "the guided eps", hint="eps_cond, eps_uncond = model(cat[x, x], cat[t, t], "
                 "cat[context, null], cat[mask, null_mask]).chunk(2); then w (cond - uncond) + uncond", rtol=1e-5,
                 atol=1e-6)
    passed("both branches in one forward pass: one call of the U-Net on a doubled batch per sampling step.")
