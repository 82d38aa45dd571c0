"""Text conditioning and classifier-free guidance across modules: the prompt encoder (sdlib.clip),
captioned batches (sdlib.captions), the batched denoiser and guided generation (sdlib.samplers), the
guidance measurements (sdlib.metrics), and every bad input named in lesson 07."""
import math

import pytest
import torch

from sdlib.captions import (CaptionedPrompts, StyleThresholds, all_caption_words, batch_captions, classify_styles,
                            stroke_width)
from sdlib.clip import CLIP, CLIPConfig, PromptEncoder, UnknownWordWarning
from sdlib.diffusion import DDPMObjective
from sdlib.metrics import (ClassifierConfig, DigitClassifier, class_spread, digit_prompts, measure_guidance,
                           thickness_obeyed)
from sdlib.samplers import ClassifierFreeGuidance, DDIMSampler, generate
from sdlib.schedules import NoiseSchedule
from sdlib.unet import UNet, UNetConfig

S = NoiseSchedule.linear(1000)


def small_encoder(width=8) -> PromptEncoder:
    torch.manual_seed(0)
    clip = CLIP(CLIPConfig(vocab=all_caption_words(), context_length=8, width=width, layers=1, heads=2, embed_dim=8,
                           image_channels=(8, 8)))
    return PromptEncoder(clip)


def small_unet(width=8) -> UNet:
    torch.manual_seed(1)
    model = UNet(UNetConfig(channels=(8, 16), groups=4, patch_size=2, mid_attention=True, context_dim=width)).eval()
    for p in model.parameters():                         # the zero-initialised output layers would hide any bug
        torch.nn.init.normal_(p, std=0.05)
    return model


class Recorder(torch.nn.Module):
    """A fake conditional U-Net: ε = mean of the (masked) context, broadcast over the image; records calls."""

    conditional = True

    def __init__(self, width=4):
        super().__init__()
        self.null_context = torch.nn.Parameter(torch.full((1, 1, width), 10.0))
        self.calls = []

    empty_prompt = UNet.empty_prompt                # the one definition of the empty prompt

    def forward(self, x, t, context, mask):
        self.calls.append((x.shape[0], context.shape, None if mask is None else mask.clone()))
        m = torch.ones(context.shape[:2]) if mask is None else mask.float()
        value = (context.mean(-1) * m).sum(1) / m.sum(1)                 # (B,)
        return value[:, None, None, None].expand_as(x) + 0 * x


def test_prompt_encoder_is_frozen_and_warns_on_unknown_words():
    encoder = small_encoder()
    context, mask = encoder(["a thick seven", "7"])
    assert context.shape == (2, 8, 8) and mask.shape == (2, 8)
    assert mask.sum(1).tolist() == [5, 3]                              # <start> words <end>
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training and not encoder.text.training
    with pytest.warns(UnknownWordWarning, match="purple"):
        context, _ = encoder("a purple seven")
    assert torch.isfinite(context).all()


def test_batch_captions_are_true_and_repeatable():
    labels = torch.tensor([3, 7, 0, 9])
    codes = torch.tensor([1, -1, 0, 1])
    batch = (torch.zeros(4, 1, 28, 28), labels, codes, codes, codes)
    a = batch_captions(batch, torch.Generator().manual_seed(5))
    b = batch_captions(batch, torch.Generator().manual_seed(5))
    assert a == b and len(a) == 4
    words = {3: ("three", "3"), 7: ("seven", "7"), 0: ("zero", "0"), 9: ("nine", "9")}
    for text, label in zip(a, labels.tolist()):
        assert any(w in text.split() for w in words[label]), text
        assert "thin" not in text or label == 7                        # only image 1 is thin


def test_captioned_prompts_train_a_conditional_unet_one_step():
    encoder, model = small_encoder(), small_unet()
    objective = DDPMObjective(S, CaptionedPrompts(encoder), p_uncond=0.5)
    batch = (torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([1, 2, 3, 4]), torch.zeros(4, dtype=torch.long),
             torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    loss = objective(model.train(), batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and model.null_context.grad is not None        # the empty prompt is learned
    assert model.mid_attn.block.cross_attn.to_k.weight.grad.abs().sum() > 0      # the prompt reaches the U-Net


def test_captioned_prompts_cache_matches_the_encoder_and_encodes_each_caption_once():
    encoder = small_encoder()
    calls = []
    hook = encoder.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    labels = torch.tensor([3, 7, 3, 7, 3, 7, 1, 1])
    codes = torch.zeros(8, dtype=torch.long)
    batch = (torch.zeros(8, 1, 28, 28), labels, codes, codes, codes)
    cached = CaptionedPrompts(encoder)
    for seed in range(3):
        captions = batch_captions(batch, torch.Generator().manual_seed(seed))
        context, mask = cached(batch, torch.Generator().manual_seed(seed))
        hook.remove()
        direct_context, direct_mask = encoder(captions)
        hook = encoder.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
        torch.testing.assert_close(context, direct_context)
        assert torch.equal(mask, direct_mask)
    assert sum(calls) == len(cached.cache) < 3 * 8                     # each distinct caption encoded once
    assert CaptionedPrompts(encoder, cache=False).cache is None


def test_guidance_runs_both_branches_in_one_pass_and_mixes_them():
    model = Recorder()
    context = torch.ones(3, 2, 4)
    x, t = torch.zeros(3, 1, 4, 4), torch.full((3,), 5)
    out = ClassifierFreeGuidance(model, context, 3.0)(x, t)
    assert len(model.calls) == 1 and model.calls[0][0] == 6           # cond and uncond batched together
    torch.testing.assert_close(out, torch.full_like(x, 3 * (1 - 10) + 10))     # w (cond - uncond) + uncond
    model.calls.clear()
    torch.testing.assert_close(ClassifierFreeGuidance(model, context, 1.0)(x, t), torch.ones_like(x))   # w = 1
    torch.testing.assert_close(ClassifierFreeGuidance(model, context, 0.0)(x, t), torch.full_like(x, 10.0))  # w = 0
    assert [c[0] for c in model.calls] == [3, 3]                      # w in {0, 1} need one branch only


def test_negative_prompt_replaces_the_unconditional_branch():
    model = Recorder()
    context, negative = torch.ones(2, 3, 4), torch.full((2, 2, 4), -2.0)
    neg_mask = torch.tensor([[True, False], [True, True]])
    x, t = torch.zeros(2, 1, 4, 4), torch.full((2,), 5)
    out = ClassifierFreeGuidance(model, context, 2.0, negative_context=negative, negative_mask=neg_mask)(x, t)
    torch.testing.assert_close(out, torch.full_like(x, 2 * (1 - (-2)) + (-2)))
    _, shape, mask = model.calls[0]
    assert shape == (4, 3, 4)                                          # the shorter negative context is padded
    assert mask[2:].tolist() == [[True, False, False], [True, True, False]]


def test_guided_sampling_in_batches_equals_one_batch():
    model, encoder = small_unet(), small_encoder()
    prompts = ["a one", "a thick two", "3", "the number four", "a five leaning left"]
    sampler = DDIMSampler(S, 5)
    whole = generate(model, encoder, prompts, 2.5, sampler, generator=torch.Generator().manual_seed(0), batch_size=10)
    parts = generate(model, encoder, prompts, 2.5, sampler, generator=torch.Generator().manual_seed(0), batch_size=2)
    torch.testing.assert_close(whole, parts, atol=1e-5, rtol=1e-4)
    assert whole.shape == (5, 1, 28, 28) and whole.min() >= -1 and whole.max() <= 1
    negative = generate(model, encoder, prompts, 2.5, sampler, negative_prompt="a thick seven",
                        generator=torch.Generator().manual_seed(0), batch_size=2)
    assert not torch.allclose(negative, whole)


@pytest.mark.parametrize("make, error, message", [
    (lambda m, c, k: ClassifierFreeGuidance(m, c, float("nan"), k), ValueError, "guidance scale w"),
    (lambda m, c, k: ClassifierFreeGuidance(m, c, math.inf, k), ValueError, "guidance scale w"),
    (lambda m, c, k: ClassifierFreeGuidance(m, c, 2.0, k[:, :3]), ValueError, "context_mask must have shape"),
    (lambda m, c, k: ClassifierFreeGuidance(m, c, 2.0, k, negative_context=c[:1]), ValueError, "negative prompt batch"),
    (lambda m, c, k: ClassifierFreeGuidance(m, c, 2.0, k, c, k[:, :2]), ValueError, "negative_mask must have shape"),
    (lambda m, c, k: ClassifierFreeGuidance(m, c, 2.0, k, c[..., :4]), ValueError, "negative_context must have shape"),
    (lambda m, c, k: ClassifierFreeGuidance(m, c[0], 2.0), ValueError, "context must have shape"),
    (lambda m, c, k: ClassifierFreeGuidance(m, c, 2.0, k)(torch.zeros(3, 1, 28, 28), torch.ones(3, dtype=torch.long)),
     ValueError, "the batch has 3 images but the context has 2 prompts"),
    (lambda m, c, k: ClassifierFreeGuidance(m, torch.zeros(2, 5, 6), 2.0)(torch.zeros(2, 1, 28, 28),
                                                                         torch.ones(2, dtype=torch.long)),
     ValueError, r"context must have shape \(B, L, 8\)"),
])
def test_bad_guidance_inputs(make, error, message):
    model, encoder = small_unet(), small_encoder()
    context, mask = encoder(["a one", "a two"])
    with pytest.raises(error, match=message):
        make(model, context, mask)


def test_generate_checks_its_inputs():
    model, encoder = small_unet(), small_encoder()
    with pytest.raises(ValueError, match="one negative prompt, or one per prompt"):
        generate(model, encoder, ["a one", "a two"], 2.0, DDIMSampler(S, 2), negative_prompt=["a", "b", "c"])
    with pytest.raises(ValueError, match="guidance scale w"):
        generate(model, encoder, ["a one"], float("inf"), DDIMSampler(S, 2))
    with pytest.warns(UnknownWordWarning, match="banana"):
        x = generate(model, encoder, ["a banana"], 2.0, DDIMSampler(S, 2))
    assert torch.isfinite(x).all()


def test_class_spread_and_thickness_obeyed():
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
    labels = torch.tensor([1, 1, 2, 2])
    spread = class_spread(features, labels)
    assert spread[1].item() == pytest.approx(1.0) and spread[2].item() == pytest.approx(1.0)
    assert torch.isnan(spread[0])
    # Real digits, thickness measured on themselves: thick/thin prompts from their own codes are obeyed.
    images = torch.zeros(6, 1, 28, 28) - 1
    for i, w in enumerate([1, 1, 2, 4, 5, 5]):
        images[i, 0, 4:24, 12:12 + w] = 1.0                              # vertical bars of widths 1 to 5
    digits = torch.ones(6, dtype=torch.long)
    thresholds = StyleThresholds((1.5, 3.0), (-1.0, 1.0), {k: (0.0, 10.0) for k in range(10)})
    codes = classify_styles(images, digits, thresholds).thickness
    assert codes.tolist() == [-1, -1, 0, 1, 1, 1], stroke_width(images)
    assert thickness_obeyed(images, digits, torch.tensor([-1, -1, 1, 1, 1, 1]), thresholds) == pytest.approx(5 / 6)
    prompts, wanted = digit_prompts(12, "thick")
    assert prompts[3] == "a thick three" and wanted[11] == 1 and len(prompts) == 12


def test_measure_guidance_reports_every_scale():
    model, encoder = small_unet(), small_encoder()
    encoder.thresholds = StyleThresholds((1.0, 2.0), (-0.1, 0.1), {k: (5.0, 10.0) for k in range(10)})
    classifier = DigitClassifier(ClassifierConfig()).eval()
    ref = (torch.randn(50, classifier.config.features), torch.arange(50) % 10)
    rows = measure_guidance(model, encoder, classifier, ref, ws=(0, 2), n=20, sampler=DDIMSampler(S, 2), log=lambda s: None)
    assert [r.w for r in rows] == [0.0, 2.0]
    for r in rows:
        assert 0 <= r.prompt_accuracy <= 1 and 0 <= r.thickness_obeyed <= 1 and math.isfinite(r.classifier_fid)
        assert set(r.as_dict()) >= {"w", "prompt_accuracy", "classifier_fid", "spread_ratio", "thickness_obeyed"}
