"""The convolutional KL autoencoder of lessons 04 and 08 (`python -m sdlib.recipes.vae`):
28×28 digits become 4×7×7 latents."""
from sdlib.train import TrainConfig
from sdlib.vae import KLConfig

VAE_CONFIG = KLConfig(channels=(16, 32), latent_channels=4)
VAE_TRAIN = TrainConfig(steps=2000, batch_size=128, lr=2e-3, warmup=100, ema_decay=None, channels_last=True,
                        checkpoint_every=500)
BETA = 1.0                      # weight of the KL term
