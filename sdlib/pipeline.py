"""Latent diffusion end to end (lesson 08): the course's own Stable Diffusion.

    prompt ─ CLIP text encoder ─ context ─┐
                                          ↓ cross-attention
    z_T ~ N(0, I) (4×7×7) ─ U-Net + sampler, T → 0, guided ─ z_0 ─ VAE decoder ─ image (28×28)
                     image ─ VAE encoder ─┘ (image-to-image, inpainting)

`LatentDiffusion.pretrained()` loads the three trained parts (`vae`, `clip`, `latent_ddpm`).
Every method returns images in [0, 1] (B, 1, 28, 28) on the CPU, and optionally the latents of
every step (`return_steps=True`). Guidance runs both branches in one batched forward pass
(`sdlib.samplers.ClassifierFreeGuidance`); w = 1 is no guidance.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import validate
from .conditioning import PromptEncoder
from .samplers import ClassifierFreeGuidance, DDIMSampler, DDPMSampler, randn
from .schedules import NoiseSchedule


@dataclass
class PipelineOutput:
    images: torch.Tensor                                  # (B, 1, 28, 28) in [0, 1], on the CPU
    latents: torch.Tensor                                 # (B, 4, 7, 7) final scaled latents, on the CPU
    steps: list[torch.Tensor] = field(default_factory=list)   # predicted x0 latents per step, if asked
    timesteps: list[int] = field(default_factory=list)


class LatentDiffusion:
    """The VAE, the frozen text encoder, the latent U-Net and a sampler, put together."""

    def __init__(self, vae, encoder: PromptEncoder, unet, schedule: NoiseSchedule | None = None):
        if unet.config.context_dim != encoder.width:
            raise ValueError(f"the U-Net reads contexts of width {unet.config.context_dim} but the text encoder "
                             f"makes width {encoder.width}")
        if (unet.config.in_channels, unet.config.image_size, unet.config.image_size) != tuple(vae.latent_shape):
            raise ValueError(f"the U-Net works on {unet.config.in_channels}×{unet.config.image_size}×"
                             f"{unet.config.image_size} but the VAE's latents are {vae.latent_shape}")
        self.vae, self.encoder, self.unet = vae.eval(), encoder, unet.eval()
        self.schedule = schedule or NoiseSchedule.linear(unet.config.max_t)

    @classmethod
    def pretrained(cls, device=None) -> "LatentDiffusion":
        from . import pretrained
        vae = pretrained.load_pretrained("vae", device=device)
        unet = pretrained.load_pretrained("latent_ddpm", device=device)
        return cls(vae, PromptEncoder.pretrained(device=device), unet)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def sampler(self, steps: int = 50, kind: str = "ddim", eta: float = 0.0):
        if kind == "ddim":
            return DDIMSampler(self.schedule, steps, eta)
        if kind == "ddpm":
            if steps != self.schedule.T:
                raise ValueError(f"DDPM takes all {self.schedule.T} steps; for fewer use kind='ddim'")
            return DDPMSampler(self.schedule)
        raise ValueError(f"kind must be 'ddim' or 'ddpm', got {kind!r}")

    # -- the three ways in ------------------------------------------------------------------

    @torch.no_grad()
    def text_to_image(self, prompts, negative_prompt=None, guidance_scale: float = 3.0, steps: int = 50, *,
                      seed: int | None = 0, generator: torch.Generator | None = None, batch_size: int = 250,
                      kind: str = "ddim", eta: float = 0.0, return_steps: bool = False,
                      progress: bool = True) -> PipelineOutput:
        """Images for `prompts` (a string or a list) from pure noise."""
        prompts = _prompt_list(prompts)
        return self._run(prompts, negative_prompt, guidance_scale, steps, seed, generator, batch_size, kind, eta,
                         return_steps, progress)

    @torch.no_grad()
    def image_to_image(self, images: torch.Tensor, prompts, strength: float = 0.6, negative_prompt=None,
                       guidance_scale: float = 3.0, steps: int = 50, *, seed: int | None = 0,
                       generator: torch.Generator | None = None, batch_size: int = 250, return_steps: bool = False,
                       progress: bool = True) -> PipelineOutput:
        """SDEdit: encode `images` ((B, 1, 28, 28) in [0, 1]), noise them to the step that `strength` selects
        (strength · T, 0: the input unchanged, 1: pure noise, the input ignored), then denoise with the prompts."""
        images = self._check_images(images, "images")
        prompts = _prompt_list(prompts, len(images))
        strength = validate.finite_number(strength, "strength")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1] (0: return the input, 1: ignore it), got {strength}")
        if strength == 0.0:                                        # nothing to do, but the settings must be valid
            validate.finite_number(guidance_scale, "guidance_scale")
            validate.positive_int(steps, "steps", minimum=1, maximum=self.schedule.T)
            _negatives(negative_prompt, len(prompts))
            z0 = self.vae.encode_scaled(images.to(self.device) * 2 - 1).cpu()
            return PipelineOutput(images.clone().cpu(), z0)
        return self._run(prompts, negative_prompt, guidance_scale, steps, seed, generator, batch_size, "ddim", 0.0,
                         return_steps, progress, init=images, strength=strength)

    @torch.no_grad()
    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, prompts, negative_prompt=None,
                guidance_scale: float = 3.0, steps: int = 50, *, seed: int | None = 0,
                generator: torch.Generator | None = None, batch_size: int = 250, return_steps: bool = False,
                progress: bool = True) -> PipelineOutput:
        """Repaint where `masks` is 1 ((B, 1, 28, 28) in {0, 1}, or bool) and keep the rest: at every step the
        kept part of the latent is replaced by the original's latent noised to the same step."""
        images = self._check_images(images, "images")
        masks = self._check_images(masks.float() if masks.dtype == torch.bool else masks, "masks")
        if len(masks) != len(images):
            raise ValueError(f"got {len(images)} images but {len(masks)} masks: give one mask per image")
        prompts = _prompt_list(prompts, len(images))
        return self._run(prompts, negative_prompt, guidance_scale, steps, seed, generator, batch_size, "ddim", 0.0,
                         return_steps, progress, init=images, masks=masks)

    def latent_mask(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) pixel mask -> (B, 1, 7, 7): a latent cell is repainted if any of its 4×4 pixels is."""
        return F.adaptive_max_pool2d(masks.float(), self.vae.latent_shape[1:])

    # -- the loop ---------------------------------------------------------------------------

    def _run(self, prompts, negative_prompt, w, steps, seed, generator, batch_size, kind, eta, return_steps,
             progress, init=None, strength=None, masks=None) -> PipelineOutput:
        w = validate.finite_number(w, "guidance_scale")
        validate.positive_int(steps, "steps", minimum=1, maximum=self.schedule.T)
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        sampler = self.sampler(steps, kind, eta)
        negatives = _negatives(negative_prompt, len(prompts))
        outputs = []
        for i in range(0, len(prompts), batch_size):
            part = slice(i, i + batch_size)
            outputs.append(self._denoise(prompts[part], None if negatives is None else negatives[part], w, sampler,
                                         generator, return_steps, progress,
                                         None if init is None else init[part], strength,
                                         None if masks is None else masks[part]))
        images = torch.cat([o.images for o in outputs])
        latents = torch.cat([o.latents for o in outputs])
        steps_out = [torch.cat(s) for s in zip(*[o.steps for o in outputs])] if return_steps else []
        return PipelineOutput(images, latents, steps_out, outputs[0].timesteps if return_steps else [])

    def _denoise(self, prompts, negatives, w, sampler, generator, return_steps, progress, init, strength, masks):
        from tqdm.auto import tqdm

        device, b = self.device, len(prompts)
        context, mask = self.encoder(prompts)
        neg = self.encoder(negatives) if negatives is not None else (None, None)
        guide = ClassifierFreeGuidance(self.unet, context, w, mask, *neg)
        timesteps = list(sampler.timesteps)
        z_known = keep = None
        if init is not None:
            z_known = self.vae.encode_scaled(init.to(device) * 2 - 1)                    # (B, 4, 7, 7)
        if strength is not None and strength < 1.0:              # SDEdit: start part of the way down
            start = len(timesteps) - max(1, round(strength * len(timesteps)))
            timesteps = timesteps[start:]
            t0 = timesteps[0]
            z = self.schedule.add_noise(z_known, randn(z_known.shape, generator, device), t0)
        else:
            z = randn((b, *self.vae.latent_shape), generator, device)
        if masks is not None:
            keep = 1 - self.latent_mask(masks.to(device))            # 1 where the original stays
        record = []
        for t in tqdm(timesteps, desc="denoising", disable=not progress, leave=False):
            eps = guide(z, torch.full((b,), t, device=device, dtype=torch.long))
            out = sampler.step(eps, t, z, generator)
            z = out.x_prev
            if keep is not None:                                   # put the known region back, noised to t_prev
                t_prev = getattr(sampler, "previous", {}).get(t, t - 1)
                known = self.schedule.add_noise(z_known, randn(z.shape, generator, device), t_prev) if t_prev > 0 else z_known
                z = keep * known + (1 - keep) * z
            if return_steps:
                record.append(out.x0_pred.cpu())
        images = (self.vae.decode_scaled(z) + 1) / 2
        return PipelineOutput(images.clamp(0, 1).cpu(), z.cpu(), record, timesteps if return_steps else [])

    def _check_images(self, images, name):
        validate.images(images, name, channels=1, size=(28, 28), value_range=(0.0, 1.0))
        return images


def _prompt_list(prompts, n: int | None = None) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts] * (n or 1)
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        raise TypeError("prompts must be a string or a list of strings")
    if n is not None and len(prompts) != n:
        raise ValueError(f"got {n} images but {len(prompts)} prompts: give one prompt, or one per image")
    if not prompts:
        raise ValueError("no prompts given")
    return list(prompts)


def _negatives(negative_prompt, n: int):
    if negative_prompt is None:
        return None
    negatives = [negative_prompt] * n if isinstance(negative_prompt, str) else list(negative_prompt)
    if len(negatives) != n:
        raise ValueError(f"give one negative prompt, or one per prompt ({n}), got {len(negatives)}")
    return negatives
