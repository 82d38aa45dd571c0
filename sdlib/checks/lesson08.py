"""Checkers for lesson 08 (latent diffusion end to end)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..schedules import NoiseSchedule
from . import ExerciseError, as_tensor, call, expect, expect_close, passed

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
