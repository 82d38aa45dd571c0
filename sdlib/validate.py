"""Input checks shared by the library: each raises a ValueError/TypeError that says what was
wrong and what was expected, instead of a shape error from deep inside a model."""
from __future__ import annotations

import math

import torch


def tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def floating(x, name: str) -> torch.Tensor:
    tensor(x, name)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32 is usual), got dtype {x.dtype}; "
                        f"convert uint8 pixels with sdlib.data.to_model_range")
    return x


def images(x, name: str = "images", *, channels: int | None = None, size: tuple[int, int] | None = None,
           value_range: tuple[float, float] | None = (-1.0, 1.0), tolerance: float = 1e-3) -> torch.Tensor:
    """Check a batch of images of shape (B, C, H, W); by default values in [-1, 1]."""
    floating(x, name)
    if x.dim() != 4:
        hint = " (a single image? add a batch dimension with x[None])" if x.dim() == 3 else ""
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}{hint}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {tuple(x.shape)} "
                         f"with {x.shape[1]}")
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(f"{name} must be {size[0]}x{size[1]}, got {x.shape[-2]}x{x.shape[-1]}")
    if value_range is not None and x.numel() > 0:
        lo, hi = value_range
        xmin, xmax = float(x.min()), float(x.max())
        if not (math.isfinite(xmin) and math.isfinite(xmax)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if xmin < lo - tolerance or xmax > hi + tolerance:
            hint = ""
            if lo == -1.0 and xmin >= 0.0 and xmax > 1.0 + tolerance:
                hint = " (pixels in [0, 255]? use sdlib.data.to_model_range)"
            raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}], got values in [{xmin:.3g}, {xmax:.3g}]{hint}")
    return x


def finite_number(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def positive_int(value, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be at least {minimum}{upper}, got {value}")
    return value


def state_dict(model: torch.nn.Module, state, source: str) -> dict:
    """Check that `state` can be loaded into `model` without changing anything first: a dict of tensors
    with exactly the model's names and shapes. On a mismatch the error names the tensors that are
    missing, unexpected or of another shape, and `source` (a file, or a model name) says where they came from."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source} does not hold a state dict (a dict of tensors), got {type(state).__name__}")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected),
                             ("of another shape (saved vs this model)", shapes)):
            if names:
                more = f" and {len(names) - 4} more" if len(names) > 4 else ""
                parts.append(f"{len(names)} {label}: {', '.join(names[:4])}{more}")
        raise ValueError(f"{source} was saved from a model of another configuration ({'; '.join(parts)}); "
                         f"build the model with the configuration it was saved from")
    return state
