"""Bonus lesson 09's flow-matching models on MNIST and the shipped `flow` model
(`python -m sdlib.recipes.flow`): the course's own U-Nets with a continuous time input (t in [0, 1]),
trained on the straight path x_t = (1 − t) x0 + t ε to predict the velocity ε − x0 (sdlib.flow).

Each model has the same U-Net and the same training budget as its DDPM twin in sdlib.recipes.configs.ddpm and
sdlib.recipes.configs.text_ddpm, so that the samplers' table compares the two objectives, not two budgets.
"""
from dataclasses import replace

from sdlib.recipes.configs import ddpm, text_ddpm

# The lesson trains lesson 03's U-Net and settings (ten minutes at most), only with t continuous.
LESSON_UNET = replace(ddpm.LESSON_UNET, time_input="continuous")
LESSON_TRAIN = ddpm.LESSON_TRAIN
# The shipped unconditional `flow` model: the U-Net and the training run of the shipped `ddpm`.
PRETRAINED_UNET = replace(ddpm.PRETRAINED_UNET, time_input="continuous")
PRETRAINED_TRAIN = ddpm.PRETRAINED_TRAIN
# How t is drawn: uniform in [0, 1] (the plain objective) or Stable Diffusion 3's logit-normal with
# (m, s) = (0, 1), which trains more often on the middle of the path. `--compare-times` measures both.
TIME_DISTRIBUTION = "uniform"
LOGIT_NORMAL = {"m": 0.0, "s": 1.0}
# `--compare-times` trains the lesson's U-Net and settings once per distribution for the same number of
# steps, with no time budget, so that a slower or busier machine cannot give one run fewer steps than the
# other: 800 steps, about what the lesson's ten minutes give on a 2-core CPU without fast bfloat16.
COMPARE_TIMES_TRAIN = replace(LESSON_TRAIN, steps=800, max_minutes=None)

# The samplers' table: steps × {DDIM (η = 0, no x̂0 clipping) on `ddpm`, Euler and Heun on `flow`}, each on
# the same N_TABLE starting noises, measured by the course's classifier.
TABLE_STEPS = (50, 20, 10, 5)
N_TABLE = 1000
# Euler is also measured on two other time grids: DDIM's own times (each DDPM step t at the flow time
# of the same noise level, so that only the two networks differ) and Stable Diffusion 3's shifted grid,
# with SD3's shift of 3 (Esser et al. 2024), which puts more of the steps near the noise.
SHIFT = 3.0

# The text-conditioned flow model (`--text`): lesson 07's U-Net and text_ddpm's run, prompts dropped as often.
TEXT_UNET = replace(text_ddpm.PRETRAINED_UNET, time_input="continuous")
TEXT_TRAIN = text_ddpm.PRETRAINED_TRAIN
P_UNCOND = text_ddpm.P_UNCOND
GUIDANCE_SCALES = (1.0, 3.0)
TEXT_SAMPLER_STEPS = 25           # Euler steps for the guidance measurements
