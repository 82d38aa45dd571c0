"""Lesson 05's CLIP on MNIST digits and their style captions (`python -m sdlib.recipes.clip`)."""
from sdlib.captions import all_caption_words
from sdlib.clip import CLIPConfig
from sdlib.train import TrainConfig

CLIP_CONFIG = CLIPConfig(vocab=all_caption_words(), context_length=12, width=64, layers=3, heads=4, embed_dim=64)
CLIP_TRAIN = TrainConfig(steps=2500, batch_size=256, lr=2e-3, weight_decay=0.05, warmup=100, ema_decay=None,
                         channels_last=False, checkpoint_every=500)
