"""One small training loop for every model in the course.

    result = fit(model, loss_fn, dataset, TrainConfig(steps=3000, lr=2e-3), checkpoint="runs/ddpm.pt")

It is the loop of lesson 03 (batch, loss, backward, optimizer step) plus:
- AdamW (or Muon for the weight matrices, `optimizer="muon"`, see sdlib.optim), a linear warm-up then
  cosine decay of the learning rate, gradient clipping;
- an exponential moving average (EMA) of the weights, the copy we sample from;
- a tqdm progress bar with the running loss, and a loss history to plot;
- CUDA, Apple MPS or CPU with no code change;
- checkpoints every `checkpoint_every` steps, at the end and when you interrupt (Ctrl-C / the stop
  button), and an exact resume: `fit` called again with the same checkpoint gives the same weights, EMA
  and loss history as a run that was never stopped;
- an optional time budget (`max_minutes`): a slower machine stops on time, after fewer steps, with its
  learning rate decayed all the same (a budgeted run follows the clock, so it is not bit-repeatable);
- several processes under `torchrun` (DistributedDataParallel) with no code change: batch_size stays the
  global batch, and N processes train as one process would with the whole batch (sdlib.runtime.distributed).

Why a resume is exact: nothing random is carried from step to step. The batch of step k is a function of
(seed, k) (`batch_indices`), and so is the generator handed to the loss (`step_generator`), so the t and ε
that a diffusion loss draws at step k do not depend on what ran before. A checkpoint always holds a
completed step: Ctrl-C is held back while the optimizer, the EMA and the step counter are updated, so an
interrupt never lands between them.

A checkpoint holds the model, the optimizer, the EMA, the history, the step, the training settings and the
model's config; a damaged one, or one written for another model, optimizer, objective or setting, is
refused before the model is touched (sdlib.runtime.checkpoints).

`loss_fn(model, batch, generator)` gets the batch (a tuple of tensors already on the device) and
returns the loss, or `(loss, {"name": value, ...})` to log more curves. A loss_fn with a `settings()`
method (e.g. sdlib.diffusion.DDPMObjective: the schedule and how t is drawn) has those settings stored
in the checkpoint, and a resume with different settings is refused.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from sdlib import runtime
from sdlib.optim import Muon
from sdlib.runtime import distributed, resolve_autocast, resolve_channels_last, validate
from sdlib.runtime.checkpoints import check_resume, check_writable, load_checkpoint, record, save_or_rescue
from sdlib.runtime.interrupts import HoldInterrupts, StopRequests

LOG_EVERY = 10                      # steps between reading the loss back from the device (and the budget check)


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
    autocast: str | None = None        # "bfloat16": mixed precision (fast on CPUs with AMX or AVX-512 BF16,
                                       # and on GPUs); "auto": bfloat16 where runtime.bf16_is_fast(device)
    device: str | None = None          # None: sdlib.runtime.pick_device()

    def __post_init__(self):
        validate.positive_int(self.steps, "steps")
        validate.positive_int(self.batch_size, "batch_size")
        validate.positive_int(self.warmup, "warmup", minimum=0)
        validate.seed(self.seed)
        if self.checkpoint_every is not None:
            validate.positive_int(self.checkpoint_every, "checkpoint_every")
        if not validate.finite_number(self.lr, "lr") > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        validate.non_negative(self.weight_decay, "weight_decay")
        validate.finite_number(self.min_lr_ratio, "min_lr_ratio", low=0.0, high=1.0)
        if self.optimizer not in ("adamw", "muon"):
            raise ValueError(f"optimizer must be 'adamw' or 'muon', got {self.optimizer!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.max_minutes is not None and not validate.finite_number(self.max_minutes, "max_minutes") > 0:
            raise ValueError(f"max_minutes must be positive or None, got {self.max_minutes}")
        if self.grad_clip is not None and not validate.finite_number(self.grad_clip, "grad_clip") > 0:
            raise ValueError(f"grad_clip must be a positive norm, or None for no clipping, got {self.grad_clip}")
        if self.ema_decay is not None and not 0 < validate.finite_number(self.ema_decay, "ema_decay") < 1:
            raise ValueError(f"ema_decay must lie in (0, 1) or be None, got {self.ema_decay}")
        self.betas = tuple(self.betas)
        if len(self.betas) != 2 or not all(0 <= validate.finite_number(b, "betas") < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
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
    checkpoint: Path | None = None      # the checkpoint written last (an emergency copy if the path failed)
    images_per_second: float = float("nan")
    autocast: str | None = None         # the precision it trained in: None (fp32) or "bfloat16"/"float16"
    out_of_time: bool = False           # stopped by config.max_minutes before config.steps
    minutes: float = 0.0                # training time in total, over all resumed runs

    @property
    def best(self) -> nn.Module:
        """The model to sample from: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.model


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the batch used at `step`: epochs are seeded permutations, so any step can be found
    again after a restart without replaying the ones before it."""
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise ValueError(f"the dataset has {n} items, fewer than one batch of {batch_size}")
    epoch, position = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)[position * batch_size:(position + 1) * batch_size]


def step_generator(seed: int, step: int, device) -> torch.Generator:
    """The generator handed to the loss at `step`: seeded from (seed, step) alone, so that the random numbers
    of a step (a diffusion loss's t and ε) are the same whether or not the run was stopped before it."""
    device = torch.device(device)
    return torch.Generator(device="cpu" if device.type == "mps" else device).manual_seed(runtime.mix_seed(seed, step, 7))


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


def build_optimizer(model: nn.Module, config: TrainConfig, device) -> torch.optim.Optimizer:
    """AdamW (or Muon for the weight matrices) with weight decay on matrices only, never on biases and norms."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    if config.optimizer == "muon":
        return Muon([{"params": decay, "weight_decay": config.weight_decay, "muon": True},
                     {"params": no_decay, "weight_decay": 0.0, "muon": False}], lr=config.lr, betas=config.betas)
    # The fused kernel updates every parameter in one pass (docs/measured.md); it exists for CPU and CUDA.
    fused = torch.device(device).type in ("cpu", "cuda") and all(p.is_floating_point() for p in decay + no_decay)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=config.betas,
                             fused=fused or None)


# -- checkpoints ------------------------------------------------------------------------------------

class _Run:
    """What a training run carries from step to step, and what a checkpoint stores of it."""

    def __init__(self, model, config: TrainConfig, device, settings, shard: distributed.Shard | None = None):
        self.model, self.config, self.settings, self.device, self.shard = model, config, settings, device, shard
        self.autocast = resolve_autocast(config.autocast, device)
        self.channels_last = resolve_channels_last(config.channels_last, device, self.autocast)
        model.to(device, memory_format=torch.channels_last) if self.channels_last else model.to(device)
        self.step, self.seconds_before, self.start = 0, 0.0, time.perf_counter()
        self.agreed = 0.0                       # under DDP: the training time all processes last agreed on
        self.net = distributed.wrap(model, shard) if shard else model       # what the loss calls
        self.optimizer = build_optimizer(model, config, device)
        self.budget = config.max_minutes * 60 if config.max_minutes is not None else None
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: _lr_factor(config, s, self.clock() / self.budget if self.budget else 0.0))
        keep_ema = config.ema_decay is not None and (shard is None or shard.main)     # rank 0 keeps the EMA
        self.ema = EMA(model, config.ema_decay) if keep_ema else None
        self.history: dict[str, list[float]] = {"loss": []}
        self.pending: list[tuple[torch.Tensor, dict]] = []     # losses not yet read back from the device
        self.stepped = False                                    # the optimizer has updated for this step
        self.optimizer.register_step_post_hook(lambda *args: setattr(self, "stepped", True))

    def elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start

    def clock(self) -> float:
        """The training time that the time budget and the learning rate follow: this process's own, or
        under DDP the time all processes agreed on at the last logging interval (the same in each)."""
        return self.elapsed() if self.shard is None else self.agreed

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.history = {k: [float(x) for x in v.tolist()] for k, v in state["history"].items()}
        self.step, self.seconds_before = int(state["step"]), float(state.get("seconds", 0.0))
        self.agreed = self.seconds_before

    def state(self) -> dict:
        self.flush()
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                "history": {k: torch.tensor(v, dtype=torch.float64) for k, v in self.history.items()},
                "step": self.step, "seconds": self.elapsed(), "config": record(self.config),
                "model_config": record(getattr(self.model, "config", None)), "objective": self.settings}

    def out_of_time(self) -> bool:
        return self.budget is not None and self.clock() >= self.budget and self.step < self.config.steps

    def check(self, last_good: Path | None, stop_requested: bool = False) -> tuple[bool, bool]:
        """At a logging interval: read the losses back, then (should the run stop on a request, is it
        out of time). Under DDP the processes agree on both, so that all stop after the same step."""
        self.flush(last_good)
        if self.shard is not None:
            stop_requested, self.agreed = distributed.agree(self.shard, stop_requested, self.elapsed())
        return stop_requested, self.out_of_time()

    def train_step(self, loss_fn, data: TensorDataset) -> tuple[torch.Tensor, dict]:
        """One step of Algorithm 1's loop: batch, loss, backward, clip, update. Returns (loss, logs)."""
        config, model = self.config, self.model
        batch = _batch(data, config, self.step, self.device, self.channels_last, self.shard)
        draws = distributed.ShardedDraws(self.shard, config.batch_size) if self.shard else contextlib.nullcontext()
        with torch.autocast(self.device.type, dtype=getattr(torch, self.autocast or "bfloat16"),
                            enabled=bool(self.autocast)), draws:
            out = loss_fn(self.net, batch, step_generator(config.seed, self.step, self.device))
        self.loss, self.logs = out if isinstance(out, tuple) else (out, {})
        self.optimizer.zero_grad(set_to_none=True)
        self.loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        with HoldInterrupts() if self.shard is None else contextlib.nullcontext():   # DDP: StopRequests
            self.optimizer.step()
            self.finish_step(self.loss, self.logs)
        return self.loss, self.logs

    def finish_step(self, loss: torch.Tensor, logs: dict) -> None:
        """Everything after the optimizer's update; together with it, one completed step."""
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.pending.append((loss.detach(), logs))
        self.step += 1
        self.stepped = False

    def flush(self, last_good: Path | None = None) -> None:
        """Read the pending losses back from the device (once per LOG_EVERY steps, not every step)."""
        if not self.pending:
            return
        losses = torch.stack([loss.float() for loss, _ in self.pending]).cpu().tolist()
        if self.shard is not None:              # each process's loss is over its share: average them
            losses, self.pending = distributed.average_logs(self.shard, losses, self.pending)
        first = self.step - len(self.pending) + 1
        for i, ((_, logs), value) in enumerate(zip(self.pending, losses)):
            if not math.isfinite(value):
                self.pending = []
                note = f"; the last good checkpoint is {last_good}" if last_good and last_good.exists() else ""
                raise FloatingPointError(f"the loss became {value} at step {first + i}: lower the learning rate "
                                         f"(now {self.scheduler.get_last_lr()[0]:.2e}){note}")
            self.history["loss"].append(value)
            for k, v in logs.items():
                self.history.setdefault(k, []).append(float(v))
        self.pending = []


def _save(run: _Run, path: Path | None) -> Path | None:
    """Save a checkpoint (under DDP: every process reads its losses back, rank 0 alone writes, and all
    learn where it went)."""
    if path is None:
        return None
    if run.shard is None:
        return save_or_rescue(run.state(), path, stacklevel=3)
    run.flush()
    return distributed.on_main(run.shard, lambda: save_or_rescue(run.state(), path, stacklevel=3))


def _as_dataset(data) -> TensorDataset:
    if isinstance(data, (tuple, list)):
        if not data or not all(isinstance(x, torch.Tensor) for x in data):
            raise TypeError("data must be a TensorDataset or a tuple of tensors with the same first dimension, "
                            f"got a {type(data).__name__} of {[type(x).__name__ for x in data][:4]}")
        if any(len(x) != len(data[0]) for x in data):
            raise ValueError(f"the tensors in data have different first dimensions: {[len(x) for x in data]}")
        data = TensorDataset(*data)
    if not isinstance(data, TensorDataset):
        raise TypeError(f"data must be a TensorDataset or a tuple of tensors, got {type(data).__name__}")
    return data


def _batch(data: TensorDataset, config: TrainConfig, step: int, device, channels_last: bool,
           shard: distributed.Shard | None = None) -> tuple:
    """The batch of `step` on the device: under DDP, this process's rows of the global batch."""
    indices = batch_indices(len(data), config.batch_size, step, config.seed)
    out = []
    for x in data[indices[shard.rows(config.batch_size)] if shard else indices]:
        x = x.to(device, non_blocking=True)
        if channels_last and x.dim() == 4 and x.is_floating_point():
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(x)
    return tuple(out)


def _open(path: Path | None, resume: bool) -> dict | None:
    """The checkpoint's state to resume from (None for a fresh start), after checking that the path can
    be written, before any training."""
    state = load_checkpoint(path) if path is not None and resume and path.exists() else None
    if path is not None:
        check_writable(path)
    return state


def fit(model: nn.Module, loss_fn: Callable, data, config: TrainConfig, *, checkpoint: str | os.PathLike | None = None,
        resume: bool = True, progress: bool = True, description: str = "training",
        on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train `model` for `config.steps` steps in total, or until `config.max_minutes` of training time
    (over all resumed runs) are spent (see the module docstring).

    data: a TensorDataset (or a tuple of tensors with the same first dimension).
    checkpoint: file to save to every `checkpoint_every` steps, at the end, and on interrupt; if it
        exists and `resume` is True, training continues from it.
    on_step(step, logs): called after every step (step counts from 1), e.g. to show samples.
    Under torchrun, every process calls fit the same way (sdlib.runtime.distributed); only rank 0 shows progress,
    keeps the EMA and writes the checkpoint.
    """
    data, path = _as_dataset(data), Path(checkpoint) if checkpoint is not None else None
    settings = loss_fn.settings() if callable(getattr(loss_fn, "settings", None)) else None
    shard = distributed.start(config.batch_size, config.device)        # None for a single process
    # Under DDP, Ctrl-C only asks all processes to stop together at the next check, wherever it lands.
    with StopRequests() if shard else contextlib.nullcontext() as stop:
        try:
            state = distributed.on_main(shard, lambda: _open(path, resume))   # rank 0 reads, all get it
            if state is not None:
                check_resume(state, model, record(config), settings, path)          # before anything is changed
            run = _Run(model, config, shard.device if shard else runtime.pick_device(config.device), settings, shard)
            progress = progress and (shard is None or shard.main)
            if state is not None:
                run.load(state)
                if progress:
                    print(f"resuming from {path} at step {run.step} of {config.steps}")
            start_step = run.step
            interrupted, written = _loop(run, loss_fn, data, path, progress, description, on_step, stop)
            written = _save(run, path) or written
            return _result(run, start_step, interrupted, written, progress)
        finally:
            distributed.finish(shard)


def _loop(run: _Run, loss_fn, data, path, progress, description, on_step,
          stop: StopRequests | None) -> tuple[bool, Path | None]:
    """The training steps until the last one, the time budget or an interrupt: (interrupted, checkpoint)."""
    from tqdm.auto import tqdm

    config = run.config
    bar = tqdm(total=config.steps, initial=run.step, desc=description, disable=not progress, leave=True)
    interrupted, written, out_of_time = False, None, run.out_of_time()
    run.net.train()
    try:
        while run.step < config.steps and not out_of_time and not interrupted:
            loss, logs = run.train_step(loss_fn, data)
            bar.update(1)
            if run.step % LOG_EVERY == 0 or run.step == config.steps or on_step is not None:
                interrupted, out_of_time = run.check(path, stop is not None and stop.requested)
                bar.set_postfix(loss=f"{sum(run.history['loss'][-50:]) / len(run.history['loss'][-50:]):.4f}",
                                lr=f"{run.scheduler.get_last_lr()[0]:.1e}")
            if config.checkpoint_every and run.step % config.checkpoint_every == 0:
                written = _save(run, path)
            if on_step is not None:
                try:
                    on_step(run.step, {"loss": run.history["loss"][-1], **logs})
                except KeyboardInterrupt:
                    if stop is None:
                        raise
                    stop.requested = True               # under DDP: stop with the others at the next check
    except KeyboardInterrupt:
        if run.shard is not None:     # raised inside a step, where the other processes cannot follow
            raise
        interrupted = True
        if run.stepped:                    # interrupted after the optimizer's update: complete that step
            run.finish_step(run.loss, run.logs)
    finally:
        bar.close()
    return interrupted, written


def _result(run: _Run, start_step: int, interrupted: bool, written: Path | None, progress: bool) -> TrainResult:
    """Say how the run ended, and hand back the model, its EMA and the history."""
    config, out_of_time = run.config, run.out_of_time()
    if interrupted and progress:
        print(f"\ninterrupted at step {run.step}" + (f"; checkpoint saved to {written}, run again to resume"
                                                    if written else ""))
    if out_of_time and progress:
        print(f"time budget of {config.max_minutes:g} min reached after {run.step} of {config.steps} steps "
              f"(the learning rate followed the clock down, so the run ends annealed)")
    run.model.eval()
    seconds, done = time.perf_counter() - run.start, run.step - start_step
    return TrainResult(model=run.model, ema=run.ema.model if run.ema else None, history=run.history, steps=run.step,
                       seconds=seconds, interrupted=interrupted, checkpoint=written,
                       images_per_second=done * config.batch_size / seconds if done and seconds > 0 else float("nan"),
                       autocast=run.autocast, out_of_time=out_of_time, minutes=run.elapsed() / 60)
