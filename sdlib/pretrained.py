"""Pretrained weights: saved by the recipes in sdlib.recipes, shipped inside the package, checked on load.

Each model is a state dict (half precision where that changes no measured metric) in
sdlib/weights/<name>.pt, described in sdlib/weights/manifest.json by: its SHA-256 and size, the
model kind and configuration, the command that trained it, the metrics it reached, and anything
else needed to use it (a noise schedule, a tokenizer's vocabulary...). `load_pretrained` refuses a
file whose size or hash does not match, with a message that says what to do.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import runtime

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST_NAME = "manifest.json"


class WeightsError(RuntimeError):
    """Pretrained weights that are missing, damaged or do not fit their model."""


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(directory: str | os.PathLike | None = None) -> dict:
    path = Path(directory or WEIGHTS_DIR) / MANIFEST_NAME
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def _builders() -> dict[str, Callable[[dict], nn.Module]]:
    # Imported here, not at the top, so that sdlib.pretrained does not import every model module.
    from .metrics import ClassifierConfig, DigitClassifier

    builders = {"classifier": lambda c: DigitClassifier(ClassifierConfig(**_tuples(c)))}
    try:
        from .unet import UNet, UNetConfig
        builders["unet"] = lambda c: UNet(UNetConfig(**_tuples(c)))
    except ImportError:
        pass
    try:
        from .vae import build_vae
        builders["vae"] = build_vae
    except ImportError:
        pass
    try:
        from .clip import build_clip
        builders["clip"] = build_clip
    except ImportError:
        pass
    return builders


def _tuples(config: dict) -> dict:
    """JSON turns tuples into lists; configs use tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


def save_pretrained(name: str, model: nn.Module, *, kind: str, config: dict, recipe: str, metrics: dict,
                    extra: dict | None = None, half: bool = True, directory: str | os.PathLike | None = None) -> dict:
    """Write `model`'s weights to <directory>/<name>.pt and record them in the manifest. Returns the entry."""
    directory = Path(directory or WEIGHTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().contiguous()
             for k, v in model.state_dict().items()}
    file = directory / f"{name}.pt"
    torch.save(state, file)
    entry = {
        "file": file.name, "sha256": sha256(file), "bytes": file.stat().st_size, "kind": kind,
        "dtype": "float16" if half else "float32", "config": config, "recipe": recipe, "metrics": metrics,
        "parameters": sum(p.numel() for p in model.parameters()), "torch": torch.__version__,
        **({"extra": extra} if extra else {}),
    }
    manifest = read_manifest(directory)
    manifest[name] = entry
    _write_manifest(manifest, directory)
    return entry


def record_metrics(name: str, metrics: dict, directory: str | os.PathLike | None = None) -> dict:
    """Add measurements taken later (e.g. a slow sampler comparison) to a model's manifest entry, leaving
    its weights and hash untouched. Returns the updated entry."""
    directory = Path(directory or WEIGHTS_DIR)
    manifest = read_manifest(directory)
    if name not in manifest:
        raise WeightsError(f"no pretrained model called {name!r} in {directory / MANIFEST_NAME} to add metrics to")
    manifest[name]["metrics"].update(metrics)
    _write_manifest(manifest, directory)
    return manifest[name]


def _write_manifest(manifest: dict, directory: Path) -> None:
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def entry(name: str, directory: str | os.PathLike | None = None) -> dict:
    """The manifest entry of one pretrained model (its config, recipe, metrics and extras)."""
    manifest = read_manifest(directory)
    if name not in manifest:
        known = ", ".join(sorted(manifest)) or "none"
        raise WeightsError(f"no pretrained model called {name!r} (known: {known})")
    return manifest[name]


def load_state(name: str, directory: str | os.PathLike | None = None) -> dict:
    """The checked state dict of a pretrained model, in float32."""
    directory = Path(directory or WEIGHTS_DIR)
    info = entry(name, directory)
    file = directory / info["file"]
    fix = (f"reinstall sdlib (git checkout -- sdlib/weights in a course checkout), or retrain it with: "
           f"{info['recipe']}")
    if not file.exists():
        raise WeightsError(f"pretrained weights {file} are missing; {fix}")
    size = file.stat().st_size
    if size != info["bytes"]:
        raise WeightsError(f"pretrained weights {file} are {size} bytes, the manifest says {info['bytes']}: "
                           f"the file is truncated or was replaced; {fix}")
    digest = sha256(file)
    if digest != info["sha256"]:
        raise WeightsError(f"pretrained weights {file} fail their SHA-256 check (got {digest[:12]}..., expected "
                           f"{info['sha256'][:12]}...): the file is damaged or not the one the manifest describes; {fix}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"pretrained weights {file} cannot be read ({error}); {fix}") from error
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_pretrained(name: str, device: str | torch.device | None = None,
                    directory: str | os.PathLike | None = None) -> nn.Module:
    """Build the model that `name` describes, load its checked weights, and return it in eval mode."""
    info = entry(name, directory)
    builders = _builders()
    if info["kind"] not in builders:
        raise WeightsError(f"pretrained model {name!r} is of kind {info['kind']!r}, which this sdlib cannot build")
    model = builders[info["kind"]](info["config"])
    state = load_state(name, directory)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise WeightsError(f"pretrained weights {name!r} do not fit the model built from their manifest "
                           f"({str(error).splitlines()[0]})") from None
    return model.to(runtime.pick_device(device)).eval()
