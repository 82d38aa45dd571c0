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

from sdlib import runtime
from sdlib.captions import LEAN_WORDS, THICKNESS_WORDS, WIDTH_WORDS, StyleThresholds, captioned_dataset, classify_styles
from sdlib.clip import CLIP, CLIPObjective, zero_shot_digits, zero_shot_style
from sdlib.data import load_mnist
from sdlib.recipes import final_mean, ship
from sdlib.recipes.configs.clip import CLIP_CONFIG, CLIP_TRAIN
from sdlib.runtime import distributed
from sdlib.train import fit

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
    return ship(result, lambda net: {**measure(net, thresholds),
                                     "final_loss": final_mean(result.history, last=100, digits=4)},
                name="clip", kind="clip", config=CLIP_CONFIG.to_dict(), recipe=RECIPE, net=result.model,
                extra={"style_thresholds": thresholds.to_dict()}, directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
