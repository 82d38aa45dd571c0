"""sdlib: the library behind the course "Stable Diffusion from scratch".

The top level holds the ideas, one module each, in the order the lessons meet them:

    probability  distributions, the KL and the ELBO (lesson 01)
    schedules    the noise schedule: q(x_t | x_0) and the conversions between ε, x̂₀ and the posterior (02)
    diffusion    the DDPM loss and the likelihood bound (03)
    samplers     DDPM and DDIM steps, guidance, and the one sampling loop (03, 07)
    train        the training loop: EMA, warm-up and decay, clipping, checkpoints and resume (03)
    vae          the KL autoencoder (04)
    clip         the text and image encoders and their contrastive loss (05)
    attention, unet   attention and the U-Net that reads a text context (06)
    pipeline     text-to-image, image-to-image and inpainting on latents (08)
    flow         flow matching and its ODE samplers (09)
    data, captions, metrics, pretrained, optim   MNIST and its captions, the classifier's scores,
                 the shipped weights, the Muon optimizer

Beside them, the course's machinery, which a learner need not read:

    sdlib.runtime    devices and seeds, checks at the door, several processes
    sdlib.classroom  exercise checkers and quizzes, widgets and diagrams, the student-notebook tool
    sdlib.recipes    the settings and the scripts that train the shipped models, the benchmark

Import what you need explicitly, e.g. `from sdlib.schedules import NoiseSchedule`.
"""
__version__ = "0.1.0"
