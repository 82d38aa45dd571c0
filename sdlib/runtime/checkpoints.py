"""Checkpoints that are never lost and never mistaken: what sdlib.train.fit writes and reads.

A checkpoint is a plain state dict with a SHA-256 of its contents stored inside, written to a temporary
file and then renamed (an interrupted save never leaves a broken file), and read with
`torch.load(..., weights_only=True)`. A damaged file, or one written for another model, model config,
optimizer, objective or setting, is refused before the model is touched (`check_resume`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from sdlib.runtime import validate

FORMAT = "sdlib-checkpoint-2"
# Settings a resume may change: they extend or redirect a run without changing what was trained so far.
RESUMABLE_CHANGES = ("steps", "max_minutes", "checkpoint_every", "device")


def _digest(obj, h) -> None:
    """Feed a nested state (dicts, lists, tensors, numbers, strings) into a hash, in a fixed order."""
    if isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode())
            _digest(obj[key], h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _digest(item, h)
        h.update(b"]")
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        h.update(repr(obj).encode())


def state_checksum(state: dict) -> str:
    h = hashlib.sha256()
    _digest(state, h)
    return h.hexdigest()


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write `state` with its checksum: to a temporary file, then renamed, so that an interrupted save never
    leaves a broken checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "sha256": state_checksum(state), "state": state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by `fit` (state dicts only: weights_only=True) and verify its checksum."""
    path = Path(path)
    fix = "delete it (or pass resume=False, or another checkpoint path) to start training afresh"
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {str(path)!r} is a folder; give a file path such as runs/model.pt")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise RuntimeError(f"checkpoint {str(path)!r} cannot be read ({type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else ''}); it is damaged or not a training "
                           f"checkpoint: {fix}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        what = (f"a {type(saved).__name__}" if not isinstance(saved, dict) else
                "from an older sdlib, which this one cannot resume exactly" if {"optimizer", "step"} <= set(saved)
                else "not a training checkpoint of sdlib.train.fit (a model's weights?)")
        raise RuntimeError(f"checkpoint {str(path)!r} is {what}; {fix}")
    state = saved.get("state")
    if not isinstance(state, dict) or saved.get("sha256") != state_checksum(state):
        raise RuntimeError(f"checkpoint {str(path)!r} is damaged: its contents do not match the checksum stored "
                           f"in it (a partial copy, a disk error or an edit); {fix}")
    missing = [k for k in ("model", "optimizer", "scheduler", "history", "step", "config") if k not in state]
    if missing:
        raise RuntimeError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}; {fix}")
    return state


def check_writable(path: Path) -> None:
    """Fail before training, not after it, when the checkpoint cannot be written."""
    try:
        if path.is_dir():
            raise IsADirectoryError("it is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".write-test-"):
            pass
    except OSError as error:
        raise PermissionError(f"checkpoint {str(path)!r} cannot be written ({error.strerror or error}); "
                              f"choose a path in a folder you can write to, or checkpoint=None") from None


def settings_differ(saved: dict | None, current: dict | None) -> list[str]:
    """Names of the loss_fn settings that differ between a checkpoint and this run (none if either
    side has no settings)."""
    if saved is None or current is None:
        return []
    differ = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                    and torch.allclose(a.double().cpu(), b.double().cpu(), rtol=1e-6, atol=0))
        else:
            same = a == b
        if not same:
            differ.append(key)
    return differ


def _model_config_changes(saved: dict | None, current: dict | None) -> list[str]:
    """The model-config keys that differ, each with both values (none where either side records no config)."""
    if saved is None or current is None:
        return []
    return [f"{k}: {saved.get(k)!r} in the checkpoint, {current.get(k)!r} now"
            for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]


def record(config) -> dict | None:
    """A dataclass config as the checkpoint stores it (tuples as lists); None for anything else."""
    if not dataclasses.is_dataclass(config):
        return None
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def check_resume(state: dict, model: nn.Module, config: dict, settings: dict | None, path: Path) -> None:
    """Refuse a checkpoint that does not fit this run, before the model is touched: another model (its config,
    names and shapes), optimizer, objective, or a changed training setting (config: the run's TrainConfig as
    `record` gives it). Only RESUMABLE_CHANGES may differ."""
    fresh = "pass resume=False or a new checkpoint path to start afresh"
    saved = state["config"]
    changed = [f"{k}: {saved.get(k)!r} in the checkpoint, {v!r} now" for k, v in config.items()
               if k not in RESUMABLE_CHANGES and saved.get(k) != v]
    if saved.get("optimizer") != config["optimizer"]:
        raise RuntimeError(f"checkpoint {str(path)!r} was trained with optimizer={saved.get('optimizer')!r}, this "
                           f"run asks for {config['optimizer']!r}; pass the same optimizer to resume, or {fresh}")
    model_changed = _model_config_changes(state.get("model_config"), record(getattr(model, "config", None)))
    if model_changed:
        raise RuntimeError(f"checkpoint {str(path)!r} was trained with another model configuration "
                           f"({'; '.join(model_changed)}); build the model with the checkpoint's config to resume, "
                           f"or {fresh}")
    if changed:
        raise RuntimeError(f"checkpoint {str(path)!r} was trained with other settings ({'; '.join(changed)}); "
                           f"resume with the checkpoint's settings (only {', '.join(RESUMABLE_CHANGES)} may change), "
                           f"or {fresh}")
    differ = settings_differ(state.get("objective"), settings)
    if differ:
        raise RuntimeError(f"checkpoint {str(path)!r} was written with a different training objective "
                           f"({', '.join(differ)} differ from this loss_fn's); {fresh}")
    try:
        validate.state_dict(model, state["model"], f"checkpoint {str(path)!r}")
    except ValueError as error:
        raise RuntimeError(f"{error} (a different model configuration); {fresh}") from None


def save_or_rescue(state: dict, path: Path, stacklevel: int = 2) -> Path:
    """Write the checkpoint; if the path fails now (a full disk, a folder removed), keep the work in an
    emergency copy in the temporary folder and say where, instead of losing it."""
    try:
        return save_checkpoint(state, path)
    except (OSError, RuntimeError) as error:
        emergency = Path(tempfile.gettempdir()) / f"sdlib-emergency-{path.stem}-{os.getpid()}.pt"
        save_checkpoint(state, emergency)
        warnings.warn(f"could not write checkpoint {str(path)!r} ({error}); the training state was saved to "
                      f"{emergency} instead: copy it to a safe place and pass it as checkpoint= to resume",
                      RuntimeWarning, stacklevel=stacklevel + 1)
        return emergency
