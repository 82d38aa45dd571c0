"""The text-conditioned pixel-space U-Net of lessons 06-07 and the shipped `text_ddpm` model
(`python -m sdlib.recipes.text_ddpm`): lesson 03's schedule, and a U-Net that reads the prompt, encoded
by lesson 05's frozen CLIP text encoder, through cross-attention."""
from sdlib.recipes.configs.ddpm import SCHEDULE
from sdlib.train import TrainConfig
from sdlib.unet import UNetConfig

P_UNCOND = 0.1                  # the fraction of training prompts dropped, for classifier-free guidance
GUIDANCE_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5)
DEFAULT_W = 3.0
SAMPLER = {"steps": 50, "eta": 0.0}

# Cross-attention to the prompt only in the 7×7 middle of the U-Net: also at level 1 it cost a third
# of the training speed (docs/measured.md, "Lessons 06-07").
LESSON_UNET = UNetConfig(channels=(32, 64), blocks=1, patch_size=2, mid_attention=True, context_dim=64)
LESSON_TRAIN = TrainConfig(steps=2400, batch_size=64, lr=2e-3, warmup=100, ema_decay=0.995, channels_last=True,
                           checkpoint_every=250)
# The shipped model: the same U-Net trained twice as long (the lesson's already reaches the quality
# targets; a wider one would make every sample in lessons 06-07 twice as slow).
PRETRAINED_UNET = LESSON_UNET
PRETRAINED_TRAIN = TrainConfig(steps=5000, batch_size=64, lr=2e-3, warmup=200, ema_decay=0.998, channels_last=True,
                               checkpoint_every=250)

# Guidance's premises (lesson 07, `python -m sdlib.recipes.guidance_premises`): four short models with
# the lesson's U-Net, identical but for how they learn the unconditional prediction (see the recipe). Each
# starts from lesson 03's shipped unconditional DDPM (`ddpm`: the same levels, without the attention block),
# so that a short run only has to teach it to read the prompt.
PREMISES_TRAIN = TrainConfig(steps=600, batch_size=64, lr=1e-3, warmup=50, ema_decay=0.995, channels_last=True,
                             checkpoint_every=100)
PREMISES_SCALES = (1.0, 3.0, 5.0)
PREMISES_SAMPLER = {"steps": 25, "eta": 0.0}     # DDIM, for the premises' tables and lesson 07's live rows
PREMISES = {                    # name: (null_context of the U-Net, p_uncond, guidance scales measured)
    "learned": ("learned", P_UNCOND, PREMISES_SCALES),
    "no_dropout": ("learned", 0.0, PREMISES_SCALES),
    "zero": ("zero", P_UNCOND, (3.0, 5.0)),       # at w = 1 the empty prompt plays no part
    "text": ("text", P_UNCOND, (3.0, 5.0)),
}
