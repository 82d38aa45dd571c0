"""Latent diffusion end to end (lesson 08): the course's own Stable Diffusion.

    prompt ─ CLIP text encoder ─ context ─┐
                                          ↓ cross-attention
    z_T ~ N(0, I) (4×7×7) ─ U-Net + sampler, T → 0, guided ─ z_0 ─ VAE decoder ─ image (28×28)
                     image ─ VAE encoder ─┘ (image-to-image, inpainting)

`LatentDiffusion.pretrained()` loads the three trained parts (`vae`, `clip`, `latent_ddpm`) and the
schedule recorded in the manifest. Every method takes and returns images in [0, 1] (B, 1, 28, 28), on
the CPU, and optionally the predicted clean latents of every step (`return_steps=True`); inside, the
models work in [-1, 1] (`sdlib.data.from_unit_range` / `to_unit_range` convert). All three methods run
the library's one sampling loop, `sdlib.samplers.sample`, with classifier-free guidance
(`ClassifierFreeGuidance`, both branches in one batched pass; w = 1 is no guidance): image-to-image starts
it part way down, and inpainting puts the known region back after every step (`KeepKnown`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from sdlib import pretrained
from sdlib.clip import PromptEncoder
from sdlib.data import from_unit_range, to_unit_range
from sdlib.runtime import validate
from sdlib.samplers import DEFAULT_SEED, DDIMSampler, DDPMSampler, SampleNoise, prompt_guidance, sample, schedule_of
from sdlib.schedules import NoiseSchedule


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
        self.schedule = schedule or schedule_of(unet)

    @classmethod
    def pretrained(cls, device=None) -> "LatentDiffusion":
        vae = pretrained.load_pretrained("vae", device=device)
        unet = pretrained.load_pretrained("latent_ddpm", device=device)
        return cls(vae, pretrained.load_prompt_encoder(device=device), unet)

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
                      seed: int | None = DEFAULT_SEED, generator: torch.Generator | None = None, batch_size: int = 250,
                      kind: str = "ddim", eta: float = 0.0, return_steps: bool = False,
                      progress: bool = True) -> PipelineOutput:
        """Images for `prompts` (a string or a list) from pure noise. The images depend on the seed and their
        index, not on batch_size. seed=None: fresh randomness (from torch's global random state); a generator
        replaces the default seed, and an explicit seed with a generator is refused."""
        return self._run(_prompt_list(prompts), negative_prompt=negative_prompt, w=guidance_scale, steps=steps,
                         seed=seed, generator=generator, batch_size=batch_size, kind=kind, eta=eta,
                         return_steps=return_steps, progress=progress)

    @torch.no_grad()
    def image_to_image(self, images: torch.Tensor, prompts, strength: float = 0.6, negative_prompt=None,
                       guidance_scale: float = 3.0, steps: int = 50, *, seed: int | None = DEFAULT_SEED,
                       generator: torch.Generator | None = None, batch_size: int = 250, return_steps: bool = False,
                       progress: bool = True) -> PipelineOutput:
        """SDEdit: encode `images` ((B, 1, 28, 28) in [0, 1]), noise them to t = round(strength · T) (0: the
        input unchanged, 1: pure noise, the input ignored), then denoise with the prompts: one step from that
        exact t to the next step of the sampler's grid below it, then the grid."""
        images = self._check_images(images, "images")
        prompts = _prompt_list(prompts, len(images))
        strength = validate.finite_number(strength, "strength", low=0.0, high=1.0)
        if strength == 0.0:                                        # nothing to do, but the settings must be valid
            validate.finite_number(guidance_scale, "guidance_scale")
            validate.positive_int(steps, "steps", minimum=1, maximum=self.schedule.T)
            validate.negative_prompts(negative_prompt, len(prompts))
            z0 = self.vae.encode_scaled(from_unit_range(images.to(self.device))).cpu()
            return PipelineOutput(images.clone().cpu(), z0)
        return self._run(prompts, negative_prompt=negative_prompt, w=guidance_scale, steps=steps, seed=seed,
                         generator=generator, batch_size=batch_size, return_steps=return_steps, progress=progress,
                         init=images, strength=strength)

    @torch.no_grad()
    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, prompts, negative_prompt=None,
                guidance_scale: float = 3.0, steps: int = 50, *, seed: int | None = DEFAULT_SEED,
                generator: torch.Generator | None = None, batch_size: int = 250, return_steps: bool = False,
                paste_known: bool = True, progress: bool = True) -> PipelineOutput:
        """Repaint where `masks` is 1 ((B, 1, 28, 28) of 0s and 1s, or bool) and keep the rest. At every step the
        kept part of the latent is replaced by the original's latent noised to the same step (`KeepKnown`).
        The decoder then redraws the whole image, kept part included, so by default (paste_known=True) the
        known pixels are pasted back at the end, blended over one pixel inside the mask's edge; the kept
        region then equals the input exactly. paste_known=False returns the decoder's image (latent-only)."""
        images = self._check_images(images, "images")
        masks = self._check_images(masks.float() if isinstance(masks, torch.Tensor) else masks, "masks")
        if len(masks) != len(images):
            raise ValueError(f"got {len(images)} images but {len(masks)} masks: give one mask per image")
        if not ((masks == 0) | (masks == 1)).all():
            raise ValueError("masks must hold only 0 (keep) and 1 (repaint); a soft (fractional) mask is not "
                             "supported: threshold it, e.g. masks > 0.5")
        prompts = _prompt_list(prompts, len(images))
        out = self._run(prompts, negative_prompt=negative_prompt, w=guidance_scale, steps=steps, seed=seed,
                        generator=generator, batch_size=batch_size, return_steps=return_steps, progress=progress,
                        init=images, masks=masks)
        if paste_known:
            repaint = edge_blend(masks)
            out.images = repaint * out.images + (1 - repaint) * images.cpu()
        return out

    def latent_mask(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) pixel mask -> (B, 1, 7, 7): a latent cell is repainted if any of its 4×4 pixels is."""
        return F.adaptive_max_pool2d(masks.float(), self.vae.latent_shape[1:])

    # -- what the three share ---------------------------------------------------------------

    def _run(self, prompts, *, negative_prompt, w, steps, seed, generator, batch_size, return_steps, progress,
             kind="ddim", eta=0.0, init=None, strength=None, masks=None) -> PipelineOutput:
        """What the three ways in share: guidance on the prompts, the first latents, the loop, the decoder."""
        w = validate.finite_number(w, "guidance_scale")
        validate.positive_int(steps, "steps", minimum=1, maximum=self.schedule.T)
        validate.positive_int(batch_size, "batch_size")
        sampler = self.sampler(steps, kind, eta)
        guide = prompt_guidance(self.unet, self.encoder, prompts, w, negative_prompt)
        noise = SampleNoise(len(prompts), seed, generator)
        device, n = self.device, len(prompts)
        timesteps, hook = list(sampler.timesteps), None
        z_known = None if init is None else self.vae.encode_scaled(from_unit_range(init.to(device)))   # (B, 4, 7, 7)
        if strength is not None and strength < 1.0:              # SDEdit: start part of the way down, at t_start
            t_start = max(1, round(strength * self.schedule.T))
            timesteps = [t_start] + [t for t in timesteps if t < t_start]
            z = self.schedule.add_noise(z_known, noise.randn(z_known.shape, device), t_start)
        else:
            z = noise.randn((n, *self.vae.latent_shape), device)
        if masks is not None:
            hook = KeepKnown(self.schedule, z_known, 1 - self.latent_mask(masks.to(device)), noise)
        out = sample(guide, sampler, x_T=z, generator=noise, timesteps=timesteps, on_step=hook,
                     batch_size=batch_size, trajectory=return_steps, progress=progress)
        z, record = out if return_steps else (out, None)
        images = to_unit_range(self.vae.decode_scaled(z)).cpu()
        return PipelineOutput(images, z.cpu(), record.x0_pred if record else [], record.t if record else [])

    def _check_images(self, images, name):
        validate.images(images, name, channels=1, size=(28, 28), value_range=(0.0, 1.0))
        return images


class KeepKnown:
    """The inpainting step hook: after each step, the kept region (keep = 1) of the sample is replaced by
    the original latent z_known noised to the step just reached, so only the masked region is generated."""

    def __init__(self, schedule: NoiseSchedule, z_known: torch.Tensor, keep: torch.Tensor, noise: SampleNoise):
        self.schedule, self.z_known, self.keep, self.noise = schedule, z_known, keep, noise

    def select(self, index: slice) -> "KeepKnown":
        return KeepKnown(self.schedule, self.z_known[index], self.keep[index], self.noise.select(index))

    def __call__(self, t: int, t_prev: int, z: torch.Tensor) -> torch.Tensor:
        known = self.z_known
        if t_prev > 0:
            known = self.schedule.add_noise(known, self.noise.randn(z.shape, z.device), t_prev)
        return self.keep * known + (1 - self.keep) * z


def edge_blend(masks: torch.Tensor) -> torch.Tensor:
    """How much of the generated image to use per pixel: 0 on the kept region (the input stays exact), 1 deep
    in the mask, and in between on the mask's first pixel row, so the pasted border does not show a seam."""
    masks = masks.float().cpu()
    kept_nearby = F.avg_pool2d(1 - masks, 3, stride=1, padding=1, count_include_pad=False)
    return masks * (1 - kept_nearby)


def _prompt_list(prompts, n: int | None = None) -> list[str]:
    if isinstance(prompts, str) and n is not None:
        prompts = [prompts] * n
    prompts = validate.prompts(prompts)
    if n is not None and len(prompts) != n:
        raise ValueError(f"got {n} images but {len(prompts)} prompts: give one prompt, or one per image")
    return prompts
