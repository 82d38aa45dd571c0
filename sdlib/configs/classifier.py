"""The MNIST digit classifier behind sdlib.metrics (`python -m sdlib.recipes.classifier`)."""
from ..metrics import ClassifierConfig
from ..train import TrainConfig

CLASSIFIER_CONFIG = ClassifierConfig()
CLASSIFIER_TRAIN = TrainConfig(steps=3000, batch_size=128, lr=2e-3, weight_decay=1e-4, warmup=100, ema_decay=None,
                               checkpoint_every=500)
