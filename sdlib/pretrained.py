"""Pretrained weights: saved by the recipes in sdlib.recipes, shipped inside the package, checked on load.

Each model is a state dict (half precision where that changes no measured metric) in
sdlib/weights/<name>.pt, described in sdlib/weights/manifest.json by: its SHA-256 and size, the
model kind and configuration, the command that trained it, the metrics it reached, and anything
else needed to use it (a noise schedule, a tokenizer's vocabulary...). `load_pretrained` refuses a
damaged manifest, an entry it cannot build a model from, and a weight file whose size, hash, tensor
names or shapes do not match, each with a message that names what is wrong and says what to do.
`schedule` gives the noise schedule a diffusion model was trained with, as its manifest records it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from sdlib import runtime
from sdlib.captions import StyleThresholds
from sdlib.clip import CLIPConfig, PromptEncoder, build_clip
from sdlib.metrics import ClassifierConfig, DigitClassifier
from sdlib.runtime import validate
from sdlib.schedules import NoiseSchedule
from sdlib.unet import NoisyClassifier, NoisyClassifierConfig, UNet, UNetConfig
from sdlib.vae import KLConfig, build_vae

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST_NAME = "manifest.json"
RESTORE = "restore it with `git checkout sdlib/weights/manifest.json` in a course checkout, or reinstall sdlib"
# What every manifest entry needs, and the JSON type of each; `recipe`, `metrics` and `extra` are optional.
REQUIRED = {"file": str, "sha256": str, "bytes": int, "kind": str, "config": dict}
# The noise schedules a manifest may name; the other keys of its "schedule" are the constructor's arguments.
SCHEDULES: dict[str, Callable[..., NoiseSchedule]] = {"linear": NoiseSchedule.linear, "cosine": NoiseSchedule.cosine}


class WeightsError(RuntimeError):
    """Pretrained weights that are missing, damaged or do not fit their model."""


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- the manifest ---------------------------------------------------------------------------------

def read_manifest(directory: str | os.PathLike | None = None) -> dict:
    """The whole manifest of `directory` (default: the shipped weights); {} where there is none yet."""
    path = Path(directory or WEIGHTS_DIR) / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise WeightsError(f"{path} is not text (damaged?); {RESTORE}") from None
    except json.JSONDecodeError as error:
        raise WeightsError(f"{path} is not valid JSON ({error.msg}: line {error.lineno}, column {error.colno}); "
                           f"{RESTORE}") from None
    if not isinstance(manifest, dict):
        raise WeightsError(f"{path} must hold a JSON object of model entries, got a {type(manifest).__name__}; "
                           f"{RESTORE}")
    return manifest


def _write_manifest(manifest: dict, directory: Path) -> None:
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def entry(name: str, directory: str | os.PathLike | None = None) -> dict:
    """The manifest entry of one pretrained model (its config, recipe, metrics and extras), after checking
    that it has everything `load_pretrained` needs."""
    path = Path(directory or WEIGHTS_DIR) / MANIFEST_NAME
    manifest = read_manifest(directory)
    if not path.exists():
        raise WeightsError(f"no pretrained model called {name!r}: there is no manifest at {path}")
    if name not in manifest:
        known = ", ".join(sorted(manifest)) or "none"
        raise WeightsError(f"no pretrained model called {name!r} (known: {known})")
    info = manifest[name]
    where = f"the entry for {name!r} in {path}"
    if not isinstance(info, dict):
        raise WeightsError(f"{where} must be a JSON object, got {info!r}; {RESTORE}")
    missing = [key for key in REQUIRED if key not in info]
    if missing:
        raise WeightsError(f"{where} lacks {', '.join(map(repr, missing))} (every entry needs "
                           f"{', '.join(REQUIRED)}); {RESTORE}")
    expected = {**REQUIRED, "recipe": str, "extra": dict}
    for key, kind in expected.items():
        if key in info and (not isinstance(info[key], kind) or isinstance(info[key], bool)):
            raise WeightsError(f"{where} has {key!r} = {info[key]!r}, which should be a JSON "
                               f"{_json_type(kind)}; {RESTORE}")
    return info


def _json_type(kind: type) -> str:
    return {str: "string", int: "integer", dict: "object"}[kind]


def _advice(info: dict) -> str:
    retrain = f", or retrain it with: {info['recipe']}" if "recipe" in info else ""
    return f"reinstall sdlib (git checkout -- sdlib/weights in a course checkout){retrain}"


# -- building models ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Kind:
    config: type                            # the dataclass whose fields a manifest config may set
    build: Callable[[dict], nn.Module]      # manifest config (JSON: lists for tuples) -> model


def _kinds() -> dict[str, _Kind]:
    return {
        "classifier": _Kind(ClassifierConfig, lambda c: DigitClassifier(ClassifierConfig(**_tuples(c)))),
        "unet": _Kind(UNetConfig, lambda c: UNet(UNetConfig(**_tuples(c)))),
        "noisy_classifier": _Kind(NoisyClassifierConfig, lambda c: NoisyClassifier(NoisyClassifierConfig(**_tuples(c)))),
        "vae": _Kind(KLConfig, build_vae),
        "clip": _Kind(CLIPConfig, build_clip),
    }


def _tuples(config: dict) -> dict:
    """JSON turns tuples into lists; configs use tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


def _build(name: str, info: dict, manifest: Path) -> nn.Module:
    """The untrained model that entry `info` describes, or a WeightsError saying why its config does not build."""
    kinds = _kinds()
    kind, config = info["kind"], info["config"]
    if kind not in kinds:
        raise WeightsError(f"pretrained model {name!r} is of kind {kind!r}, which this sdlib cannot build "
                           f"(it builds: {', '.join(kinds)})")
    accepted = [f.name for f in dataclasses.fields(kinds[kind].config)]
    unknown = [key for key in config if key not in accepted]
    if unknown:
        raise WeightsError(f"the config of pretrained model {name!r} (kind {kind!r}) in {manifest} has unknown "
                           f"key(s) {', '.join(map(repr, unknown))}; a {kind} config accepts: {', '.join(accepted)}")
    try:
        return kinds[kind].build(config)
    except Exception as error:  # a value the config class or the model refuses: the manifest is at fault
        raise WeightsError(f"the {kind} builder does not accept the config of pretrained model {name!r} in "
                           f"{manifest} ({type(error).__name__}: {error}); {RESTORE}") from error


def _schedule(name: str, info: dict, manifest: Path) -> NoiseSchedule | None:
    """The noise schedule entry `info` records, or None where it records none."""
    spec = info.get("extra", {}).get("schedule")
    if spec is None:
        return None
    where = f"the noise schedule of pretrained model {name!r} in {manifest}"
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise WeightsError(f"{where} must be a JSON object with a 'name' ({', '.join(SCHEDULES)}) and that "
                           f"schedule's arguments, got {spec!r}; {RESTORE}")
    arguments = {k: v for k, v in spec.items() if k != "name"}
    if spec["name"] not in SCHEDULES:
        raise WeightsError(f"{where} is called {spec['name']!r}; known schedules: {', '.join(SCHEDULES)}")
    make = SCHEDULES[spec["name"]]
    accepted = list(inspect.signature(make).parameters)
    unknown = [key for key in arguments if key not in accepted]
    if unknown:
        raise WeightsError(f"{where} has unknown argument(s) {', '.join(map(repr, unknown))}; a {spec['name']} "
                           f"schedule accepts: {', '.join(accepted)}")
    try:
        return make(**arguments)
    except (TypeError, ValueError) as error:
        raise WeightsError(f"{where} cannot be built from {spec!r} ({error}); {RESTORE}") from None


def schedule(name: str, directory: str | os.PathLike | None = None) -> NoiseSchedule:
    """The noise schedule pretrained model `name` was trained with, built from its manifest entry."""
    manifest = Path(directory or WEIGHTS_DIR) / MANIFEST_NAME
    info = entry(name, directory)
    found = _schedule(name, info, manifest)
    if found is None:
        with_one = [n for n, e in read_manifest(directory).items()
                    if isinstance(e, dict) and isinstance(e.get("extra"), dict) and "schedule" in e["extra"]]
        raise WeightsError(f"pretrained model {name!r} (kind {info['kind']!r}) records no noise schedule in "
                           f"{manifest}; only models of noisy images do (here: {', '.join(with_one) or 'none'})")
    return found


# -- saving and loading ---------------------------------------------------------------------------

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
    manifest[name].setdefault("metrics", {}).update(metrics)
    _write_manifest(manifest, directory)
    return manifest[name]


def load_state(name: str, directory: str | os.PathLike | None = None) -> dict:
    """The checked state dict of a pretrained model, in float32."""
    directory = Path(directory or WEIGHTS_DIR)
    info = entry(name, directory)
    file = directory / info["file"]
    fix = _advice(info)
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
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"pretrained weights {file} do not hold a state dict (a dict of tensors); {fix}")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise WeightsError(f"pretrained weights {file}: tensor {broken[0]!r} holds NaN or infinite values"
                           f"{f' (and {len(broken) - 1} more)' if len(broken) > 1 else ''}, which would give NaN "
                           f"images; {fix}")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_pretrained(name: str, device: str | torch.device | None = None,
                    directory: str | os.PathLike | None = None) -> nn.Module:
    """Build the model that `name` describes, load its checked weights, and return it in eval mode.

    A U-Net's `schedule` is set to the noise schedule its manifest entry records (see `schedule`).
    """
    directory = Path(directory or WEIGHTS_DIR)
    manifest = directory / MANIFEST_NAME
    info = entry(name, directory)
    model = _build(name, info, manifest)
    trained_with = _schedule(name, info, manifest)
    state = load_state(name, directory)
    try:
        validate.state_dict(model, state, f"pretrained weights {directory / info['file']}")
    except ValueError as error:
        # The file passed its hash check, so it is the one the manifest describes: the config is what differs.
        raise WeightsError(f"{error}; here that is the config recorded for {name!r} in {manifest}, which does not "
                           f"match its weights: {RESTORE}") from None
    model.load_state_dict(state)
    if info["kind"] == "unet" and trained_with is not None:
        model.schedule = trained_with
    return model.to(runtime.pick_device(device)).eval()


def load_prompt_encoder(device: str | torch.device | None = None) -> PromptEncoder:
    """The shipped CLIP's frozen text encoder, with the style-word boundaries it was trained with."""
    clip = load_pretrained("clip", device=device)
    return PromptEncoder(clip, StyleThresholds.from_dict(entry("clip")["extra"]["style_thresholds"]))
