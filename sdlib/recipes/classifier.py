"""Train the MNIST digit classifier used by sdlib.metrics, and measure the reference numbers.

    python -m sdlib.recipes.classifier [--steps 3000] [--out DIR]

Reference numbers (classifier FID on its features, against the 10,000 test images): the floor is
real training images vs the test set, the ceiling is pure noise vs the test set, each with the same
number of images that the DDPM evaluations use, over several seeds.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import torch

from sdlib import metrics, runtime
from sdlib.data import load_mnist
from sdlib.recipes import ship
from sdlib.recipes.configs.classifier import CLASSIFIER_CONFIG, CLASSIFIER_TRAIN
from sdlib.runtime import distributed
from sdlib.train import fit

RECIPE = "python -m sdlib.recipes.classifier"


def reference_fids(classifier, train, test_features, n: int, seeds=range(5)) -> dict:
    floors, ceilings = [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(train), generator=g)[:n]
        _, f = metrics.predict(classifier, train.images[pick])
        floors.append(metrics.classifier_fid(f, test_features))
        noise = torch.randn(n, 1, 28, 28, generator=g).clamp(-1, 1)
        _, f = metrics.predict(classifier, noise)
        ceilings.append(metrics.classifier_fid(f, test_features))
    floors, ceilings = torch.tensor(floors), torch.tensor(ceilings)
    return {"n": n, "seeds": len(floors), "floor_mean": round(floors.mean().item(), 4),
            "floor_std": round(floors.std().item(), 4), "ceiling_mean": round(ceilings.mean().item(), 2),
            "ceiling_std": round(ceilings.std().item(), 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=RECIPE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=CLASSIFIER_TRAIN.steps)
    parser.add_argument("--out", default=None, help="weights folder (default: sdlib/weights)")
    parser.add_argument("--checkpoint", default=None, help="resumable training checkpoint")
    args = parser.parse_args(argv)
    rt = runtime.setup(seed=0, verbose=distributed.is_main_process())
    train, test = load_mnist("train"), load_mnist("test")
    model = metrics.DigitClassifier(CLASSIFIER_CONFIG)
    tc = replace(CLASSIFIER_TRAIN, steps=args.steps, device=str(rt.device))
    result = fit(model, metrics.classifier_loss, train, tc, checkpoint=args.checkpoint, description="classifier")

    def measured(model):
        _, test_features = metrics.predict(model, test.images)
        return {"test_accuracy": round(metrics.accuracy(model, test.images, test.labels), 5),
                "train_accuracy_first_10k": round(metrics.accuracy(model, train.images[:10000],
                                                                   train.labels[:10000]), 5),
                "reference_fid": {f"fid_{n}": reference_fids(model, train, test_features, n) for n in (1000, 10000)}}

    return ship(result, measured, name="classifier", kind="classifier", config=CLASSIFIER_CONFIG.__dict__,
                recipe=RECIPE, directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
