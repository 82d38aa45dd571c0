"""The settings of every lesson and every shipped model, one small module per model (in the spirit of
nanoGPT's config/ folder). Lessons, recipes and the benchmark all read them from here:

    sdlib.recipes.configs.classifier    # the digit classifier behind sdlib.metrics
    sdlib.recipes.configs.ddpm          # lesson 03's U-Net, training and sampler, and the shipped `ddpm`
    sdlib.recipes.configs.vae           # the KL autoencoder of lessons 04 and 08
    sdlib.recipes.configs.clip          # lesson 05's CLIP
    sdlib.recipes.configs.text_ddpm     # the text-conditioned pixel-space U-Net of lessons 06-07
    sdlib.recipes.configs.latent_ddpm   # the latent U-Net of lesson 08's pipeline

A variant is `dataclasses.replace(LESSON_TRAIN, steps=..., device=...)`, never a copy. Why each value
is what it is, and what it measured, is in docs/measured.md; the recipes that train the shipped models
(sdlib.recipes) record in each model's manifest entry the settings it was trained with.
"""
