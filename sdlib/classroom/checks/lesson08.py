"""Checkers for lesson 08 (latent diffusion end to end)."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from sdlib.classroom.checks import (ExerciseError, as_tensor, call, compare_prediction, exercise, expect, expect_close,
                                    passed, read_answer)
from sdlib.classroom.quiz import Question
from sdlib.schedules import NoiseSchedule

_S = NoiseSchedule.linear(1000)


def check_sdedit_start(sdedit_start) -> None:
    """sdedit_start(z0, eps, strength, timesteps, alpha_bar) -> (z_start, remaining_timesteps): start at exactly
    t0 = max(1, round(strength · T)) with T = len(alpha_bar) − 1, z0 noised to t0, then the sampler's time steps
    below t0 (the first step, t0 down to the grid, may be shorter than the others)."""
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(2, 4, 7, 7, generator=g), torch.randn(2, 4, 7, 7, generator=g)
    timesteps = torch.linspace(1000, 0, 51).round().long().tolist()[:-1]            # DDIM-50: 1000, 980, ..., 20
    T = len(_S.alpha_bar) - 1
    for strength in (0.2, 0.5, 0.61, 0.01, 0.99):
        got = call(sdedit_start, z0.clone(), eps.clone(), strength, list(timesteps), _S.alpha_bar.clone())
        expect(isinstance(got, (tuple, list)) and len(got) == 2, "return two things: (z_start, remaining_timesteps)")
        z, remaining = got
        t0 = max(1, round(strength * T))
        want_steps = [t0] + [t for t in timesteps if t < t0]
        remaining = [int(t) for t in remaining]
        n = max(1, round(strength * len(timesteps)))
        if remaining and remaining[0] == timesteps[0]:
            raise ExerciseError(f"strength {strength}: you start at t={timesteps[0]}, the noisiest step. SDEdit "
                                f"skips the first part of the way down and starts at t0 = round(strength · T) = {t0}.")
        if remaining != want_steps and remaining == timesteps[len(timesteps) - n:]:
            raise ExerciseError(f"strength {strength}: you snapped the start to the sampler's grid (the last "
                                f"round(strength · S) of its S steps, from t={remaining[0]}). Start at exactly "
                                f"t0 = max(1, round(strength · T)) = {t0}, then take the grid's steps below t0.")
        if remaining.count(t0) > 1:
            raise ExerciseError(f"strength {strength}: t0 = {t0} appears twice; after t0 keep only the grid's steps "
                                f"strictly below it.")
        expect(remaining == want_steps, f"strength {strength}: expected t0 = {t0} followed by the "
                                        f"{len(want_steps) - 1} grid steps below it ({want_steps[:3]}...), got "
                                        f"{remaining[:3]}... ({len(remaining)} steps)")
        ab = _S.alpha_bar[t0].item()
        want = math.sqrt(ab) * z0 + math.sqrt(1 - ab) * eps
        z = as_tensor(z, f"z_start at strength {strength}", like=z0)
        if z.shape == want.shape and torch.allclose(z, ab * z0 + (1 - ab) * eps, atol=1e-5):
            raise ExerciseError("Noising uses square roots: sqrt(ᾱ_t) z0 + sqrt(1 - ᾱ_t) eps.")
        expect_close(z, want, f"z_start at strength {strength}", hint="t0 = max(1, round(strength * T)); "
                     "sqrt(alpha_bar[t0]) z0 + sqrt(1 - alpha_bar[t0]) eps", rtol=1e-5, atol=1e-6)
    passed("SDEdit: the more strength, the noisier the start and the freer the model; the start t0 does not "
           "depend on the number of sampler steps.")


def check_latent_mask(latent_mask) -> None:
    """latent_mask(masks) -> (B, 1, 7, 7) from (B, 1, 28, 28) pixel masks (1 = repaint): a latent cell is
    repainted when any of its 4×4 pixels is."""
    masks = torch.zeros(3, 1, 28, 28)
    masks[0, :, 14:] = 1                   # the lower half: rows 14-27 touch latent rows 3-6
    masks[1, :, 5, 9] = 1                  # one pixel: latent cell (1, 2)
    got = as_tensor(call(latent_mask, masks.clone()), "the latent mask", like=masks)
    want = F.adaptive_max_pool2d(masks, (7, 7))
    expect(got.shape == want.shape, f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}")
    if torch.allclose(got.float(), F.adaptive_avg_pool2d(masks, (7, 7))):
        raise ExerciseError("Averaging gives fractions: a cell half inside the mask gets 0.5 and would be half "
                            "kept. Take the maximum over each 4×4 block (F.max_pool2d(masks, 4)).")
    if got[1].sum() == 0:
        raise ExerciseError("A single masked pixel must still make its latent cell repainted: use the maximum.")
    expect_close(got.float(), want, "the latent mask", hint="F.max_pool2d(masks, 4) or F.adaptive_max_pool2d(masks, (7, 7))")
    passed("the mask at latent resolution: every cell that holds a pixel to repaint is repainted.")


def check_inpaint_merge(inpaint_merge) -> None:
    """inpaint_merge(z_prev, z_known, keep, t_prev, alpha_bar, eps) -> the latent after putting back the known
    region: where keep is 1, z_known noised to t_prev (or z_known itself at t_prev = 0); elsewhere z_prev."""
    g = torch.Generator().manual_seed(1)
    z_prev, z_known, eps = (torch.randn(2, 4, 7, 7, generator=g) for _ in range(3))
    keep = torch.zeros(2, 1, 7, 7)
    keep[:, :, :3] = 1
    for t_prev in (980, 300, 20, 0):
        got = as_tensor(call(inpaint_merge, z_prev.clone(), z_known.clone(), keep.clone(), t_prev,
                             _S.alpha_bar.clone(), eps.clone()), f"the merged latent at t_prev={t_prev}", like=z_prev)
        ab = _S.alpha_bar[t_prev].item()
        known = math.sqrt(ab) * z_known + math.sqrt(1 - ab) * eps if t_prev > 0 else z_known
        want = keep * known + (1 - keep) * z_prev
        if got.shape == want.shape:
            if torch.allclose(got, (1 - keep) * known + keep * z_prev, atol=1e-5):
                raise ExerciseError("The mask is the wrong way round: keep is 1 where the original stays.")
            if t_prev > 0 and torch.allclose(got, keep * z_known + (1 - keep) * z_prev, atol=1e-5):
                raise ExerciseError("The known region must be noised to t_prev like the rest of the latent; the "
                                    "clean z_known would stick out as a noise-free patch until the end.")
        expect_close(got, want, f"the merged latent at t_prev={t_prev}",
                     hint="keep · (sqrt(ᾱ) z_known + sqrt(1 − ᾱ) eps) + (1 − keep) · z_prev; at t_prev = 0 use z_known",
                     rtol=1e-5, atol=1e-6)
    passed("inpainting: the model only ever invents the masked part, and it sees the rest at the right noise level.")


@functools.lru_cache(maxsize=1)
def _flop_ratio() -> float:
    """FLOPs of one forward pass of lesson 07's pixel U-Net over those of the pipeline's latent U-Net, per image."""
    from torch.utils.flop_counter import FlopCounterMode

    from sdlib.pretrained import load_pretrained, load_prompt_encoder

    encoder = load_prompt_encoder(device="cpu")
    context, mask = encoder(["a seven"])
    t = torch.tensor([500])
    flops = []
    for name, shape in (("text_ddpm", (1, 1, 28, 28)), ("latent_ddpm", (1, 4, 7, 7))):
        unet = load_pretrained(name, device="cpu").eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            unet(torch.zeros(shape), t, context, mask)
        flops.append(counter.get_total_flops())
    return flops[0] / flops[1]


def _flop_explanation(prediction, measured) -> str:
    text = ("A convolution's cost is (positions) × C_in × C_out. The pixel model folds 2×2 pixels into channels and "
            "works at 14×14 and 7×7 with widths (32, 64); the latent model works at 7×7 and 4×4, 4 and 3 times fewer "
            "positions, with widths (48, 96), 2.25 times more per weight matrix: about 3.5 / 2.25 ≈ 1.6, and the "
            f"measurement says {measured:.2f}.")
    if prediction > 3:
        text += (" The latent's 196 numbers against 784 pixels suggest 4 (or 16 for the positions squared), but the "
                 "pixel model does not work at 28×28, and the latent model spends part of the saving on width.")
    return text


@exercise("prediction")
def check_flops_prediction(predicted_flop_ratio) -> None:
    """predicted_flop_ratio() -> a positive number: how many times more floating-point operations per image one
    forward pass of lesson 07's pixel U-Net takes than one of the pipeline's latent U-Net. Right within 20%."""
    compare_prediction(predicted_flop_ratio, _flop_ratio, low=0.0, tolerance=0.2, relative=True,
                       what="pixel U-Net FLOPs / latent U-Net FLOPs per image", fmt=lambda v: f"{v:.2f}",
                       explanation=_flop_explanation)


STRENGTH_TARGET = dict(changed=0.8, style=0.4)        # the img2img design decision's two targets
STRENGTH_DIGITS = 100                                  # test digits 1000..1099, each prompted with the next digit
STRENGTH_STEPS = 10                                    # DDIM steps


@functools.lru_cache(maxsize=1)
def _strength_setting():
    from sdlib.captions import stroke_width
    from sdlib.data import load_mnist
    from sdlib.pipeline import LatentDiffusion
    from sdlib.pretrained import load_pretrained

    test = load_mnist("test", subset=1000 + STRENGTH_DIGITS)
    images, labels = test.images[1000:], test.labels[1000:]
    return (LatentDiffusion.pretrained(device="cpu"), load_pretrained("classifier", device="cpu"),
            images, labels, stroke_width(images))


@functools.lru_cache(maxsize=16)
def measure_strength(strength: float) -> tuple[float, float]:
    """(fraction of outputs the classifier reads as the prompted digit, correlation of the outputs' stroke widths
    with the inputs') for image-to-image at `strength` on 100 test digits, each prompted with the next digit
    ("a 3" for a 2), DDIM-10, w = 3, seed 0, with the pretrained pipeline."""
    from sdlib import metrics
    from sdlib.captions import stroke_width
    from sdlib.data import from_unit_range, to_unit_range

    pipe, classifier, images, labels, widths = _strength_setting()
    wanted = (labels + 1) % 10
    out = pipe.image_to_image(to_unit_range(images), [f"a {int(d)}" for d in wanted], strength=strength,
                              steps=STRENGTH_STEPS, seed=0, progress=False).images
    out = from_unit_range(out)
    probs, _ = metrics.predict(classifier, out)
    correlation = torch.corrcoef(torch.stack([widths, stroke_width(out)]))[0, 1].item()
    return metrics.prompt_accuracy(probs, wanted), correlation


@exercise("design")
def check_strength(choose_strength) -> None:
    """choose_strength() -> a strength in (0, 1) for image-to-image that turns at least 80% of 100 test digits into
    the prompted digit while keeping their stroke style: the outputs' stroke widths correlate with the inputs' at
    0.4 or more. Measured with the pretrained pipeline (DDIM-10, w = 3, seed 0)."""
    strength = read_answer(choose_strength, low=0.0, high=1.0, name="choose_strength")
    if strength in (0.0, 1.0):
        raise ExerciseError(f"strength {strength:g} is an end point: 0 returns the input unchanged and 1 ignores it. "
                            f"Choose a strength strictly between 0 and 1.")
    changed, style = measure_strength(round(strength, 4))
    need_changed, need_style = STRENGTH_TARGET["changed"], STRENGTH_TARGET["style"]
    result = (f"at strength {strength:g}, {changed:.0%} of the {STRENGTH_DIGITS} outputs are the prompted digit and "
              f"their stroke widths correlate with the inputs' at {style:.2f}")
    if changed < need_changed:
        raise ExerciseError(f"{result}: the digit changed in fewer than {need_changed:.0%} of cases. Too little noise: "
                            f"at t0 = {round(strength * 1000)} the input's digit is still legible under the noise and "
                            f"the model keeps it. Raise the strength.")
    if style < need_style:
        raise ExerciseError(f"{result}: the digit changes, but the style is lost (the target is a correlation of "
                            f"{need_style} or more). Too much noise: the model redraws the strokes from scratch. Lower "
                            f"the strength, as far as the digit still changes.")
    passed(f"{result}: both targets met. The window is narrow: the noise that erases the digit's identity also "
           f"starts to erase its strokes.")


QUIZ = [
    Question(
        "Why does Stable Diffusion run the diffusion model on the VAE's latents rather than on pixels?",
        options=["Because the VAE's latents are noise-free.",
                 "The U-Net runs at every one of many steps, and on a compressed latent each step is much cheaper; the "
                 "decoder adds the fine detail once, at the end.",
                 "Because a U-Net cannot process images with colour channels.",
                 "Because the text encoder only understands latents."],
        answer=1,
        explanations=["No: the diffusion model noises the latents exactly as lesson 02 noised pixels.",
                      "Yes: for 512×512 colour images the latent has 48 times fewer numbers; the saving is paid at every "
                      "step, the decoder's cost once.",
                      "No: a U-Net takes any number of channels; SD's latent has 4.",
                      "No: the text encoder reads prompts and hands the U-Net a context; it never sees latents."]),
    Question(
        "Image-to-image with strength 0.3, then 0.9, same seed and prompt. What do you expect?",
        options=["0.3 follows the prompt more closely; 0.9 stays closer to the input.",
                 "Both give the same image: the strength only sets the number of steps.",
                 "0.9 takes fewer steps than 0.3.",
                 "0.3 stays close to the input (little noise, few steps to change it); 0.9 follows the prompt and keeps "
                 "little of the input."],
        answer=3,
        explanations=["No: it is the other way round; strength is how much noise is added before denoising.",
                      "No: the strength sets the start t0 and so the noise level, which changes the result; the steps "
                      "follow from it.",
                      "No: a higher strength starts higher up, at a larger t0, so it runs more of the sampler's steps.",
                      "Yes: t0 = round(s·T); from ᾱ_300 much of the input survives, from ᾱ_900 almost none."]),
    Question(
        "During inpainting, why is the kept region replaced by the original latent noised to t_prev, and not by "
        "the clean original latent?",
        options=["The model expects a latent at one noise level everywhere; a clean patch in a noisy latent is "
                 "something it never saw in training and would stick out until the end.",
                 "To save compute.",
                 "Because the clean latent is not known.",
                 "To make the result different for every seed."],
        answer=0,
        explanations=["Yes: noised to t_prev, the kept region matches the noise level of the rest, so the model blends "
                      "the regenerated part into it.",
                      "No: noising the known latent costs a little more, not less.",
                      "No: the clean latent is known: it is the encoder's latent of the input.",
                      "No: the seed already fixes the noise; the re-noising is about matching noise levels."]),
    Question(
        "Inpainting ends by pasting the known pixels back after decoding. Why is the latent replacement alone not "
        "enough to keep those pixels?",
        options=["The sampler changes the kept latent cells at the last step.",
                 "The classifier needs the original pixels.",
                 "The decoder redraws the whole image from the final latent: kept pixels come back as the VAE's "
                 "reconstruction, cells on the mask's edge were regenerated, and each cell spreads over its neighbours.",
                 "Because the mask is drawn on latents, not pixels."],
        answer=2,
        explanations=["No: the last merge puts the clean known latent back (t_prev = 0).",
                      "No: the paste is about the image the user gets, not about any measurement.",
                      "Yes: a latent cell covers 4×4 pixels and the decoder is not the identity, so only the paste makes "
                      "the kept region equal the input exactly.",
                      "No: the mask is drawn on pixels and reduced to the latent grid (Exercise 4)."]),
]
