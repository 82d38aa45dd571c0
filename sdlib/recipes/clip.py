"""Train the course's CLIP on MNIST digits and their style captions (lesson 05).

    python -m sdlib.recipes.clip [--steps 2500]

Style thresholds (sdlib.captions) are measured on the training set and stored with the weights.
Measured on the 10,000 test digits: zero-shot digit accuracy, and zero-shot accuracy on each style
attribute (images from the outer terciles only, prompts naming the true digit) against chance.
"""
from __future__ import annotations

import argparse
import sys

import torch

from .. import pretrained, runtime
from ..captions import (DIGIT_WORDS, LEAN_WORDS, SIZE_WORDS, THICKNESS_WORDS, StyleThresholds, all_caption_words,
                        classify_styles)
from ..clip import CLIP, CLIPConfig, clip_loss, zero_shot
from ..conditioning import batch_captions, captioned_dataset
from ..data import load_mnist
from ..train import TrainConfig, fit

RECIPE = "python -m sdlib.recipes.clip"
CLIP_CONFIG = CLIPConfig(vocab=all_caption_words(), context_length=12, width=64, layers=3, heads=4, embed_dim=64)
CLIP_TRAIN = TrainConfig(steps=2500, batch_size=256, lr=2e-3, weight_decay=0.05, warmup=100, ema_decay=None,
                         channels_last=False, checkpoint_every=500)
DIGIT_PROMPTS = ["the number {}", "a {}", "{}"]


class CLIPObjective:
    """A loss_fn for sdlib.train.fit: draws a random true caption per image, then the CLIP loss."""

    def __init__(self, multi_positive: bool = True):
        self.multi_positive = multi_positive

    def __call__(self, model, batch, generator):
        images = batch[0]
        texts = batch_captions(batch, generator)
        ids, mask = model.tokenize(texts)
        logits = model(images, ids, mask)
        same = (ids[:, None, :] == ids[None, :, :]).all(-1) if self.multi_positive else None
        loss = clip_loss(logits, same)
        return loss, {"temperature": 1 / model.logit_scale.exp().item()}


def digit_prompts(numeral: bool = False) -> list[list[str]]:
    names = [str(d) for d in range(10)] if numeral else DIGIT_WORDS
    return [[template.format(n) for n in names] for template in DIGIT_PROMPTS]


@torch.no_grad()
def zero_shot_digits(model: CLIP, images: torch.Tensor) -> torch.Tensor:
    """Digit probabilities (N, 10), averaged over a few prompt templates (a prompt ensemble)."""
    probs = [zero_shot(model, images, prompts) for prompts in digit_prompts()]
    return torch.stack(probs).mean(0)


@torch.no_grad()
def zero_shot_style(model: CLIP, images, labels, codes, words: dict[int, str]) -> float:
    """Accuracy of choosing the right style word among `words` (prompts name the true digit), on the
    images whose style code is one of words' keys."""
    keys = sorted(words)
    keep = torch.isin(codes, torch.tensor(keys))
    correct = 0
    for digit in range(10):
        sel = keep & (labels == digit)
        if sel.sum() == 0:
            continue
        name = DIGIT_WORDS[digit]
        # style words go where captions put them: "a thick seven", "a seven leaning left"
        prompts = [f"a {name} {words[k]}" if words[k] in LEAN_WORDS.values() else f"a {words[k]} {name}"
                   for k in keys]
        probs = zero_shot(model, images[sel], prompts)
        correct += (torch.tensor(keys)[probs.argmax(1)] == codes[sel]).sum().item()
    return correct / keep.sum().item()


def measure(model: CLIP, thresholds: StyleThresholds) -> dict:
    test = load_mnist("test")
    s = classify_styles(test.images, test.labels, thresholds)
    digits = (zero_shot_digits(model, test.images).argmax(1) == test.labels).float().mean().item()
    return {"zero_shot_digit_accuracy": round(digits, 4),
            "zero_shot_thickness_accuracy": round(zero_shot_style(model, test.images, test.labels, s.thickness,
                                                                  THICKNESS_WORDS), 4), "thickness_chance": 0.5,
            "zero_shot_lean_accuracy": round(zero_shot_style(model, test.images, test.labels, s.lean, LEAN_WORDS), 4),
            "lean_chance": 1 / 3,
            "zero_shot_width_accuracy": round(zero_shot_style(model, test.images, test.labels, s.size, SIZE_WORDS), 4),
            "width_chance": 0.5}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=RECIPE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=CLIP_TRAIN.steps)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rt = runtime.setup(seed=0)
    data, thresholds = captioned_dataset("train")
    model = CLIP(CLIP_CONFIG)
    config = TrainConfig(**{**CLIP_TRAIN.__dict__, "steps": args.steps, "device": str(rt.device)})
    result = fit(model, CLIPObjective(), data, config, description="CLIP",
                 checkpoint=args.checkpoint or runtime.runs_dir() / "clip_recipe.pt")
    if result.interrupted:
        return 1
    model = result.model.cpu().eval()
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    measured = {**measure(model, thresholds), "steps": result.steps, "train_minutes": round(result.seconds / 60, 1),
                "final_loss": round(sum(result.history["loss"][-100:]) / 100, 4)}
    print(measured)
    pretrained.save_pretrained("clip", model, kind="clip", config=CLIP_CONFIG.to_dict(), recipe=RECIPE,
                               metrics=measured, extra={"style_thresholds": thresholds.to_dict()}, directory=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
