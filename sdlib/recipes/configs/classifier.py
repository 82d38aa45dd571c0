"""The MNIST digit classifier behind sdlib.metrics (`python -m sdlib.recipes.classifier`)."""
from sdlib.metrics import ClassifierConfig
from sdlib.train import TrainConfig
from sdlib.unet import NoisyClassifierConfig

CLASSIFIER_CONFIG = ClassifierConfig()
CLASSIFIER_TRAIN = TrainConfig(steps=3000, batch_size=128, lr=2e-3, weight_decay=1e-4, warmup=100, ema_decay=None,
                               checkpoint_every=500)

# The noise-aware classifier p(y | x_t, t) of classifier guidance (lesson 07,
# `python -m sdlib.recipes.noisy_classifier`), on lesson 03's schedule.
NOISY_CLASSIFIER_CONFIG = NoisyClassifierConfig(channels=(16, 32))
NOISY_CLASSIFIER_TRAIN = TrainConfig(steps=800, batch_size=128, lr=2e-3, weight_decay=1e-4, warmup=100,
                                     ema_decay=0.995, channels_last=True, checkpoint_every=250)
CLASSIFIER_GUIDANCE_SCALES = (1.0, 3.0, 10.0)
CLASSIFIER_GUIDANCE_SHOWN = (3.0, 10.0)       # the scales lesson 07 samples live
