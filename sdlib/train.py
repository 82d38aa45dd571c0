"""One small training loop for every model in the course.

    result = fit(model, loss_fn, dataset, TrainConfig(steps=3000, lr=2e-3), checkpoint="runs/ddpm.pt")

- AdamW (or Muon for the weight matrices, `optimizer="muon"`, see sdlib.optim), a linear warm-up then
  cosine decay of the learning rate, gradient clipping;
- an exponential moving average (EMA) of the weights, the copy we sample from;
- a tqdm progress bar with the running loss, and a loss history to plot;
- seeded data order and a seeded generator handed to the loss, so a run is repeatable;
- CUDA, Apple MPS or CPU with no code change;
- a checkpoint every `checkpoint_every` steps and when you interrupt (Ctrl-C / the stop button),
  and `fit` called again with the same checkpoint resumes exactly where it stopped: same weights,
  same optimizer state, same next batch, same random numbers. Checkpoints are plain state dicts,
  loaded with `torch.load(..., weights_only=True)`;
- an optional time budget (`max_minutes`): a slower machine stops on time, after fewer steps, with
  its learning rate decayed all the same.

`loss_fn(model, batch, generator)` gets the batch (a tuple of tensors already on the device) and
returns the loss, or `(loss, {"name": value, ...})` to log more curves. A loss_fn with a `settings()`
method (e.g. sdlib.diffusion.DDPMObjective: how t is drawn) has those settings stored in the checkpoint,
and a resume with different settings is refused rather than silently training a mixture.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from . import runtime
from .optim import Muon


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"           # "adamw", or "muon": Muon for the weight matrices, AdamW for the rest
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 100                  # steps of linear learning-rate warm-up
    lr_schedule: str = "cosine"        # "cosine" (down to min_lr_ratio·lr at the end) or "constant"
    min_lr_ratio: float = 0.1
    max_minutes: float | None = None   # time budget: stop after this many minutes of training even if fewer
                                       # than `steps` are done; the cosine decay then follows the clock
    grad_clip: float | None = 1.0      # clip the global gradient norm; None for no clipping
    ema_decay: float | None = 0.999    # None: no EMA
    seed: int = 0
    checkpoint_every: int | None = 500
    channels_last: bool | str = False  # NHWC memory layout: faster fp32 convolutions on CPUs; "auto": NHWC
                                       # except in bfloat16 on a CPU, where GroupNorm is slow in NHWC
    autocast: str | None = None        # "bfloat16": mixed precision (fast on CPUs with AMX, and on GPUs);
                                       # "auto": bfloat16 where runtime.bf16_is_fast(device), else fp32
    device: str | None = None          # None: sdlib.runtime.pick_device()

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in ("adamw", "muon"):
            raise ValueError(f"optimizer must be 'adamw' or 'muon', got {self.optimizer!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be positive or None, got {self.max_minutes}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1) or be None, got {self.ema_decay}")
        self.betas = tuple(self.betas)
        if self.channels_last not in (True, False, "auto"):
            raise ValueError(f"channels_last must be True, False or 'auto', got {self.channels_last!r}")
        if self.autocast not in (None, "auto", "bfloat16", "float16"):
            raise ValueError(f"autocast must be None, 'auto', 'bfloat16' or 'float16', got {self.autocast!r}")


class EMA:
    """An exponential moving average of a model's weights: ema = decay · ema + (1 - decay) · weights.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so that a short run is not
    dominated by the random initial weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


@dataclass
class TrainResult:
    model: nn.Module                    # the trained model (in eval mode)
    ema: nn.Module | None               # the EMA copy, or None
    history: dict[str, list[float]]     # "loss" and whatever else loss_fn reported, one value per step
    steps: int                          # steps done in total, over all resumed runs
    seconds: float                      # wall time of this call
    interrupted: bool = False
    checkpoint: Path | None = None
    images_per_second: float = float("nan")
    autocast: str | None = None         # the precision it trained in: None (fp32) or "bfloat16"/"float16"
    out_of_time: bool = False           # stopped by config.max_minutes before config.steps
    minutes: float = 0.0                # training time in total, over all resumed runs

    @property
    def best(self) -> nn.Module:
        """The model to sample from: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.model


def resolve_autocast(autocast: str | None, device: str | torch.device) -> str | None:
    """The precision `fit` trains in: "auto" becomes "bfloat16" where bfloat16 is fast on `device`
    (a CPU with AMX or AVX-512 BF16, a recent GPU) and None (fp32) elsewhere."""
    if autocast == "auto":
        return "bfloat16" if runtime.bf16_is_fast(device) else None
    return autocast


def resolve_channels_last(channels_last: bool | str, device: str | torch.device, autocast: str | None) -> bool:
    """The memory layout `fit` trains in. "auto": channels_last (NHWC), which speeds up fp32 convolutions
    on CPUs and mixed precision on GPUs, except for bfloat16 on a CPU: there GroupNorm has a slow NHWC
    path, and the lesson-03 U-Net trained 16% faster in NCHW at batch 64 (docs/measured.md)."""
    if channels_last == "auto":
        return not (torch.device(device).type == "cpu" and autocast == "bfloat16")
    return bool(channels_last)


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the batch used at `step`: epochs are seeded permutations, so any step can be found
    again after a restart without replaying the ones before it."""
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise ValueError(f"the dataset has {n} items, fewer than one batch of {batch_size}")
    epoch, position = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)[position * batch_size:(position + 1) * batch_size]


def _lr_factor(config: TrainConfig, step: int, time_used: float = 0.0) -> float:
    """The learning rate's factor at `step`. time_used: the fraction of config.max_minutes spent; the cosine
    decay follows whichever of the steps and the clock is further along, so a run that the time budget
    cuts short still ends at min_lr_ratio."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    if config.lr_schedule == "constant":
        return 1.0
    progress = max((step - config.warmup) / max(1, config.steps - config.warmup), time_used)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _settings_differ(saved: dict | None, current: dict | None) -> list[str]:
    """Names of the loss_fn settings that differ between a checkpoint and this run (none if either
    side has no settings: checkpoints written before settings were recorded still resume)."""
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


def _save_atomic(state: dict, path: Path) -> None:
    """Write to a temporary file, then rename: an interrupted save never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by `fit` (state dicts only: weights_only=True)."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise RuntimeError(f"checkpoint {str(path)!r} cannot be read ({type(error).__name__}: {error}); it is "
                           f"damaged or not a training checkpoint: delete it to start training afresh") from error


def _to_device(batch, device, channels_last: bool):
    out = []
    for x in batch:
        x = x.to(device, non_blocking=True)
        if channels_last and x.dim() == 4 and x.is_floating_point():
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(x)
    return tuple(out)


def fit(model: nn.Module, loss_fn: Callable, data, config: TrainConfig, *, checkpoint: str | os.PathLike | None = None,
        resume: bool = True, progress: bool = True, description: str = "training",
        on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train `model` for `config.steps` steps in total, or until `config.max_minutes` of training time
    (over all resumed runs) are spent (see the module docstring).

    data: a TensorDataset (or a tuple of tensors with the same first dimension).
    checkpoint: file to save to every `checkpoint_every` steps, at the end, and on interrupt; if it
        exists and `resume` is True, training continues from it.
    on_step(step, logs): called after every step (step counts from 1), e.g. to show samples.
    """
    if isinstance(data, (tuple, list)):
        if not data or not all(isinstance(x, torch.Tensor) for x in data):
            raise TypeError("data must be a TensorDataset or a tuple of tensors with the same first dimension, "
                            f"got a {type(data).__name__} of {[type(x).__name__ for x in data][:4]}")
        if any(len(x) != len(data[0]) for x in data):
            raise ValueError(f"the tensors in data have different first dimensions: {[len(x) for x in data]}")
        data = TensorDataset(*data)
    if not isinstance(data, TensorDataset):
        raise TypeError(f"data must be a TensorDataset or a tuple of tensors, got {type(data).__name__}")
    device = runtime.pick_device(config.device)
    autocast = resolve_autocast(config.autocast, device)
    channels_last = resolve_channels_last(config.channels_last, device, autocast)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)   # no weight decay on biases and norms
    # The fused kernel updates all parameters in one pass (3 ms instead of 10 ms a step for the lesson-03
    # U-Net on this CPU); it exists for CPU and CUDA tensors in floating point.
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in decay + no_decay)
    if config.optimizer == "muon":
        optimizer = Muon([{"params": decay, "weight_decay": config.weight_decay, "muon": True},
                          {"params": no_decay, "weight_decay": 0.0, "muon": False}], lr=config.lr, betas=config.betas)
    else:
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=config.betas,
                                      fused=fused or None)
    budget = config.max_minutes * 60 if config.max_minutes is not None else None
    clock = {"before": 0.0, "start": time.perf_counter()}    # training seconds of earlier runs, and this run's start

    def elapsed() -> float:
        return clock["before"] + time.perf_counter() - clock["start"]

    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(config, s, elapsed() / budget if budget else 0.0))
    ema = EMA(model, config.ema_decay) if config.ema_decay is not None else None
    generator = torch.Generator(device=device if device.type != "mps" else "cpu").manual_seed(config.seed)
    history: dict[str, list[float]] = {"loss": []}
    step = 0
    path = Path(checkpoint) if checkpoint is not None else None
    settings = loss_fn.settings() if callable(getattr(loss_fn, "settings", None)) else None

    if path is not None and path.exists() and resume:
        state = load_checkpoint(path)
        # Checked before any weights are loaded, so that a refused resume leaves `model` as it was.
        saved_optimizer = state.get("config", {}).get("optimizer", "adamw")   # older checkpoints: AdamW
        if saved_optimizer != config.optimizer:
            raise RuntimeError(f"checkpoint {str(path)!r} was trained with optimizer={saved_optimizer!r}, this run "
                               f"asks for {config.optimizer!r}; pass the same optimizer to resume, or resume=False "
                               f"or a new checkpoint path to start afresh")
        differ = _settings_differ(state.get("objective"), settings)
        if differ:
            raise RuntimeError(f"checkpoint {str(path)!r} was written with a different training objective "
                               f"({', '.join(differ)} differ from this loss_fn's); pass resume=False or a new "
                               f"checkpoint path to start afresh")
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise RuntimeError(f"checkpoint {str(path)!r} was written for a different model configuration "
                               f"({str(error).splitlines()[0]}); pass resume=False or a new checkpoint path "
                               f"to start afresh") from None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        history = {k: [float(x) for x in v.tolist()] for k, v in state["history"].items()}
        step = int(state["step"])
        clock["before"] = float(state.get("seconds", 0.0))
        if progress:
            print(f"resuming from {path} at step {step} of {config.steps}")

    def save() -> None:
        if path is None:
            return
        _save_atomic({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None, "generator": generator.get_state(),
            "history": {k: torch.tensor(v) for k, v in history.items()}, "step": step, "seconds": elapsed(),
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
            "objective": settings,
        }, path)

    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=step, desc=description, disable=not progress, leave=True)
    start, start_step, interrupted, out_of_time = time.perf_counter(), step, False, False
    clock["start"] = start
    n = len(data)
    model.train()
    try:
        while step < config.steps:
            if budget is not None and elapsed() >= budget:
                out_of_time = True
                break
            idx = batch_indices(n, config.batch_size, step, config.seed)
            batch = _to_device(data[idx], device, channels_last)
            with torch.autocast(device.type, dtype=getattr(torch, autocast or "bfloat16"),
                                enabled=autocast is not None):
                out = loss_fn(model, batch, generator)
            loss, logs = (out if isinstance(out, tuple) else (out, {}))
            if not torch.isfinite(loss):
                save_note = f"; the last good checkpoint is {path}" if path is not None and path.exists() else ""
                raise FloatingPointError(f"the loss became {loss.item()} at step {step + 1}: lower the learning "
                                         f"rate (now {scheduler.get_last_lr()[0]:.2e}){save_note}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            step += 1
            history["loss"].append(loss.item())
            for k, v in logs.items():
                history.setdefault(k, []).append(float(v))
            bar.update(1)
            if step % 10 == 0 or step == config.steps:
                recent = history["loss"][-50:]
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save()
            if on_step is not None:
                on_step(step, {"loss": history["loss"][-1], **logs})
    except KeyboardInterrupt:
        interrupted = True
        save()
        print(f"\ninterrupted at step {step}" + (f"; checkpoint saved to {path}, run again to resume" if path else ""))
    finally:
        bar.close()
    if not interrupted:
        save()
    if out_of_time and progress:
        print(f"time budget of {config.max_minutes:g} min reached after {step} of {config.steps} steps "
              f"(the learning rate followed the clock down, so the run ends annealed)")
    seconds = time.perf_counter() - start
    model.eval()
    done = step - start_step
    return TrainResult(model=model, ema=ema.model if ema is not None else None, history=history, steps=step,
                       seconds=seconds, interrupted=interrupted, checkpoint=path,
                       images_per_second=done * config.batch_size / seconds if done and seconds > 0 else float("nan"),
                       autocast=autocast, out_of_time=out_of_time, minutes=elapsed() / 60)
