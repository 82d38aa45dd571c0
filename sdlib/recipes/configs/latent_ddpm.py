"""The latent U-Net of lesson 08's Stable Diffusion pipeline, the shipped `latent_ddpm` model
(`python -m sdlib.recipes.latent_ddpm`): it denoises the pretrained VAE's scaled 4×7×7 latents, with
the schedule, prompt dropping and default guidance of the pixel-space text_ddpm."""
from sdlib.recipes.configs.text_ddpm import DEFAULT_W, P_UNCOND, SAMPLER, SCHEDULE
from sdlib.train import TrainConfig
from sdlib.unet import UNetConfig

GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0)
STRENGTHS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)        # image-to-image strengths the recipe measures

# Levels at 7×7 (48 channels) and 4×4 (96), cross-attention in the 4×4 middle: fewer FLOPs per image
# than the pixel-space text_ddpm U-Net (docs/measured.md, "Lesson 08").
LATENT_UNET = UNetConfig(in_channels=4, image_size=7, channels=(48, 96), blocks=1, mid_attention=True, context_dim=64)
LATENT_TRAIN = TrainConfig(steps=3000, batch_size=128, lr=2e-3, warmup=200, ema_decay=0.998, channels_last=False,
                           checkpoint_every=250)
