"""Recipes that train the course's pretrained models; each is one command that writes the weights
and their manifest entry into sdlib/weights/ (or --out). A lesson can always retrain instead.

    python -m sdlib.recipes.classifier    # the digit classifier behind sdlib.metrics
    python -m sdlib.recipes.ddpm          # the unconditional pixel-space DDPM of lesson 03

Each recipe prints what it measured; the numbers land in the manifest next to the weights. Recipes are
thin scripts: their settings live in sdlib.recipes.configs, objectives and measurements in the library, and
lessons import those settings, never a recipe. The benchmark (`python -m sdlib.recipes.benchmark`) and the
multi-process timing (`python -m sdlib.recipes.torchrun`) live here too. What every recipe does the same way
is written once below.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from sdlib import pretrained
from sdlib.runtime import distributed
from sdlib.train import TrainResult


def as_shipped(model: nn.Module) -> nn.Module:
    """The trained model on the CPU in eval mode, its floating-point weights rounded through float16 as
    sdlib.pretrained.save_pretrained stores them, so that a recipe measures the weights it ships."""
    model = model.cpu().eval()
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    return model


def final_mean(history: dict[str, list[float]], key: str = "loss", last: int = 200, digits: int = 5) -> float:
    """The mean of the last `last` values of history[key] (a fit result's history), rounded: what a
    recipe records as the final loss, steadier than the last step's value."""
    values = history[key][-last:]
    return round(sum(values) / len(values), digits)


def ship(result: TrainResult, measure: Callable[[nn.Module], dict], *, name: str, kind: str, config: dict,
         recipe: str, extra: dict | None = None, directory=None, save: bool = True, net: nn.Module | None = None) -> int:
    """What every recipe does once `fit` returns; the recipe's exit status.

    An interrupted run stops here (1: run the recipe again to resume). Under torchrun rank 0 alone goes on.
    The weights (`net`, by default the EMA copy when there is one) are rounded as they ship (`as_shipped`) and
    measured: `measure(net)` gives a dict, after the run's steps, minutes, speed and final loss (its own keys
    win). It is printed, and the weights are saved with it in their manifest entry unless save=False (a
    lesson-size run, measured only)."""
    if result.interrupted:
        return 1
    if not distributed.is_main_process():
        return 0
    net = as_shipped(net if net is not None else result.best)
    measured = {"steps": result.steps, "train_minutes": round(result.minutes, 1),
                "images_per_second": round(result.images_per_second, 1), "final_loss": final_mean(result.history),
                **measure(net)}
    print(measured)
    if save:
        pretrained.save_pretrained(name, net, kind=kind, config=config, recipe=recipe, metrics=measured, extra=extra,
                                   directory=directory)
    return 0
