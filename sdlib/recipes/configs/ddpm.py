"""Lesson 03's unconditional pixel-space DDPM on MNIST, its appendix 03b, and the shipped `ddpm` model
(`python -m sdlib.recipes.ddpm`). All use the DDPM paper's linear schedule with T = 1000.

Lesson 03 trains `LESSON_UNET` with `LESSON_TRAIN`, drawing t uniformly as Algorithm 1 does; appendix 03b
shows what drawing t from `LESSON_T_BAND` adds. The shipped model is `PRETRAINED_UNET` trained longer with
`PRETRAINED_TRAIN`, drawing t by `PRETRAINED_T_BAND`. The runs behind every choice are in
docs/measured.md ("Lesson 03: DDPM on MNIST" and "CPU speed of the lesson-03 U-Net").
"""
from sdlib.train import TrainConfig
from sdlib.unet import UNetConfig

SCHEDULE = {"name": "linear", "T": 1000}

# The learner's own Algorithm 1 loop in lesson 03 (Exercise 3): plain AdamW in fp32, a few minutes at most.
OWN_LOOP = {"steps": 500, "batch_size": 64, "lr": 2e-3}

# What lesson 03 trains with `fit` in about ten minutes on a 2-core CPU. patch_size=2 folds each 2×2 block of pixels
# into channels (4×14×14): faster and better than a deeper U-Net on full 28×28 images. Muon learned more
# per step than AdamW; autocast and channels_last "auto" pick bfloat16 in NCHW where the CPU makes that
# fast; max_minutes stops a slower machine on time, its learning rate decayed all the same.
LESSON_UNET = UNetConfig(channels=(32, 64), blocks=1, patch_size=2)
LESSON_TRAIN = TrainConfig(steps=5700, batch_size=128, lr=5e-3, warmup=100, ema_decay=0.995, optimizer="muon",
                           max_minutes=10, channels_last="auto", autocast="auto", checkpoint_every=250)
# Appendix 03b's band of time steps: (lo, hi, frac) for sdlib.diffusion.band_timesteps, a fraction `frac`
# of the draws uniform in lo..hi and the rest uniform in 1..T. A young model falls behind where the digit's
# shape forms (t = 250..500), so drawing t there more often helps a short run.
LESSON_T_BAND = (150, 550, 0.9)
# The sampler the lesson's quality numbers use: stochastic DDIM (eta = 1, like DDPM) in 100 steps.
LESSON_SAMPLER = {"steps": 100, "eta": 1.0, "clip_x0": True}

# The shipped model: the same U-Net trained longer (the longer run makes the larger EMA decay fit), drawing
# from the same band less often: a longer run can spare more draws for the rest of 1..T.
PRETRAINED_UNET = LESSON_UNET
PRETRAINED_TRAIN = TrainConfig(steps=20000, batch_size=64, lr=4e-3, warmup=200, ema_decay=0.999, channels_last="auto",
                               autocast="auto", checkpoint_every=500)
PRETRAINED_T_BAND = (150, 550, 0.7)
