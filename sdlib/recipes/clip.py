"""Train the course's CLIP on MNIST digits and their style captions (lesson 05).

    python -m sdlib.recipes.clip [--steps 2500]

Style thresholds (sdlib.captions) are measured on the training set and stored with the weights.
Measured on the 10,000 test digits: zero-shot digit accuracy, and zero-shot accuracy on each style
attribute (images from the outer terciles only, prompts naming the true digit) against chance.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from sdlib.runtime import distributed
from sdlib import pretrained, runtime
from sdlib.captions import LEAN_WORDS, THICKNESS_WORDS, WIDTH_WORDS, StyleThresholds, classify_styles
from sdlib.clip import CLIP, CLIPObjective, zero_shot_digits, zero_shot_style
from sdlib.recipes.configs.clip import CLIP_CONFIG, CLIP_TRAIN
from sdlib.captions import captioned_dataset
from sdlib.data import load_mnist
from sdlib.train import fit
from sdlib.recipes import as_shipped, final_mean

RECIPE = "python -m sdlib.recipes.clip"


def measure(model: CLIP, thresholds: StyleThresholds) -> dict:
    test = load_mnist("test")
    s = classify_styles(test.images, test.labels, thresholds)
    digits = (zero_shot_digits(model, test.images).argmax(1) == test.labels).float().mean().item()
    return {"zero_shot_digit_accuracy": round(digits, 4),
            "zero_shot_thickness_accuracy": round(zero_shot_style(model, test.images, test.labels, s.thickness,
                                                                  THICKNESS_WORDS), 4), "thickness_chance": 0.5,
            "zero_shot_lean_accuracy": round(zero_shot_style(model, test.images, test.labels, s.lean, LEAN_WORDS), 4),
            "lean_chance": 1 / 3,
            "zero_shot_width_accuracy": round(zero_shot_style(model, test.images, test.labels, s.width, WIDTH_WORDS), 4),
            "width_chance": 0.5}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=RECIPE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=CLIP_TRAIN.steps)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rt = runtime.setup(seed=0, verbose=distributed.is_main_process())
    data, thresholds = captioned_dataset("train")
    model = CLIP(CLIP_CONFIG)
    config = replace(CLIP_TRAIN, steps=args.steps, device=str(rt.device))
    result = fit(model, CLIPObjective(), data, config, description="CLIP",
                 checkpoint=args.checkpoint or runtime.runs_dir() / "clip_recipe.pt")
    if result.interrupted:
        return 1
    if not distributed.is_main_process():       # under torchrun: rank 0 measures and writes
        return 0
    model = as_shipped(result.model)
    measured = {**measure(model, thresholds), "steps": result.steps, "train_minutes": round(result.minutes, 1),
                "final_loss": final_mean(result.history, last=100, digits=4)}
    print(measured)
    pretrained.save_pretrained("clip", model, kind="clip", config=CLIP_CONFIG.to_dict(), recipe=RECIPE,
                               metrics=measured, extra={"style_thresholds": thresholds.to_dict()}, directory=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
