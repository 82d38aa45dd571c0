"""Training on several processes: what sdlib.train.fit does when `torchrun` starts it.

    torchrun --nproc_per_node=2 -m sdlib.recipes.ddpm --lesson      # two processes, one machine

`torchrun` starts N copies of the same program and tells each its place in the environment (WORLD_SIZE,
RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `fit` reads it (`start`), joins the process group (gloo on a
CPU, NCCL on CUDA GPUs) and trains data-parallel: every process holds the whole model, takes its share
of each batch, and DistributedDataParallel (DDP) averages the gradients, so that every process makes
the same update. Nothing else in a training script changes; the run equals one process training with
the whole batch:

- Data: the batch of step k is still `train.batch_indices(n, B, k, seed)`, the GLOBAL batch of
  TrainConfig.batch_size = B; process r keeps rows [r·B/N, (r+1)·B/N) (`rows`). No sampler, no state:
  the data order of a run is the same for any N, and a resume lands on the same next batch.
- Random numbers: every process gets the same step generator (seeded from (seed, step)). While the loss
  runs, `ShardedDraws` turns each draw it makes with a generator whose first dimension is the local
  batch (a t per sample, an ε per sample, a caption per sample, an augmentation per sample) into the
  draw for the whole batch, and keeps this process's rows. Each sample's t and ε are therefore those
  that one process would draw for it: a function of (seed, step, global sample index), whatever N is.
  One process is left exactly as it was (no draw is touched), so single-process runs and their
  checkpoints do not change.
- Checkpoints: rank 0 reads the checkpoint, checks it and hands the same state to every process
  (`on_main`: no shared disk needed); rank 0 alone writes, the plain model's state (no DDP `module.`
  prefix). So a checkpoint from N processes resumes in M, 1 included, and back.
- Stopping: Ctrl-C (SIGINT) only raises a flag (sdlib.runtime.interrupts.StopRequests); at each logging
  interval the processes agree (`agree`: one all-reduce) whether any was asked to stop and how long they
  have trained, so all stop after the same step, the time budget and the learning rate follow one clock,
  and rank 0 saves one complete checkpoint.

What it cannot make equal: a loss that compares samples with each other (CLIP's contrastive loss uses
the other images of the batch as negatives) sees only its own process's share of the batch; BatchNorm
statistics are per process (the course's models use GroupNorm).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.overrides import TorchFunctionMode

from sdlib import runtime


def world_size() -> int:
    """The number of training processes: torchrun's WORLD_SIZE, or 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number of processes") from None


def is_main_process() -> bool:
    """True in the one process that evaluates and writes (rank 0), and in a run without torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def local_batch(batch_size: int, world: int) -> int:
    """Each process's share of the global batch, or a ValueError when the batch does not divide."""
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} is the global batch, shared by {world} processes, and "
                         f"{world} does not divide it: choose a multiple of {world} (e.g. "
                         f"{batch_size // world * world or world}), or run another number of processes")
    if world > 1 and batch_size // world < 2:
        raise ValueError(f"batch_size={batch_size} over {world} processes leaves {batch_size // world} sample per "
                         f"process; give each at least 2 (a batch of at least {2 * world})")
    return batch_size // world


@dataclass
class Shard:
    """This process's place in a data-parallel run."""

    rank: int
    world: int
    device: torch.device       # where this process trains: cuda:LOCAL_RANK on GPUs, else the CPU
    owns_group: bool           # fit started the process group, so fit ends it

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This process's rows of a global batch of batch_size."""
        b = batch_size // self.world
        return slice(self.rank * b, (self.rank + 1) * b)


def start(batch_size: int, device=None) -> Shard | None:
    """Join the process group when torchrun started this process (None for a single process). The
    batch is checked first, so a bad one is refused before any process waits for another."""
    world = world_size()
    if world <= 1:
        return None
    local_batch(batch_size, world)
    device = runtime.pick_device(device)                  # "cuda" is this process's GPU, cuda:LOCAL_RANK
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        torch.cuda.set_device(device)
    elif device.type == "mps":
        raise RuntimeError("training on several processes needs CUDA GPUs or CPUs; Apple MPS has no "
                           "process-group backend: run one process, or pass device='cpu'")
    owns = not dist.is_initialized()
    if owns:
        store, rank, world = _next_store()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store, rank=rank, world_size=world)
    return Shard(dist.get_rank(), dist.get_world_size(), device, owns)


_rendezvous: list = []          # torchrun's key-value store, joined once per process


def _next_store():
    """(store, rank, world size) for a new process group. Every fit call makes its own group and ends it;
    the keys of each live under their own prefix, because torchrun's store outlives the groups and a new
    group reading an ended one's addresses would wait for ever (torch names them all "0" again)."""
    if not _rendezvous:
        _rendezvous.extend([*next(dist.rendezvous("env://")), 0])
    _rendezvous[3] += 1                                 # the same count in every process: each calls fit alike
    store, rank, world, count = _rendezvous
    return dist.PrefixStore(f"sdlib.fit.{count}/", store), rank, world


def finish(shard: Shard | None) -> None:
    """Leave the process group, if `start` joined it (on success, an interrupt, a time budget, an error)."""
    if shard is not None and shard.owns_group and dist.is_initialized():
        dist.destroy_process_group()


class _DDP(DistributedDataParallel):
    """DDP that still answers to the model's own names (model.empty_prompt, model.tokenize, ...), so a
    loss_fn written for one process calls the model the same way."""

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap(model: torch.nn.Module, shard: Shard) -> torch.nn.Module:
    """The model as DDP: its forward prepares the gradient all-reduce that backward runs."""
    ids = [shard.device.index] if shard.device.type == "cuda" else None
    return _DDP(model, device_ids=ids)


def on_main(shard: Shard | None, fn):
    """fn() run by rank 0 alone, its result (or its exception) handed to every process."""
    if shard is None:
        return fn()
    box = [None]
    if shard.main:
        try:
            box[0] = ("ok", fn())
        except Exception as error:                     # every process raises it, none waits for ever
            box[0] = ("error", error)
    dist.broadcast_object_list(box, src=0, device=shard.device if shard.device.type == "cuda" else None)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def _comm(shard: Shard, x: torch.Tensor) -> torch.Tensor:
    return x.to(shard.device if shard.device.type == "cuda" else "cpu")


def mean_over_ranks(shard: Shard, x: torch.Tensor) -> torch.Tensor:
    """The mean of x over the processes (each process's loss is the mean over its share of the batch,
    so this is the loss of the whole batch)."""
    x = _comm(shard, x.double().clone())
    dist.all_reduce(x)
    return (x / shard.world).cpu()


def agree(shard: Shard, stop_requested: bool, seconds: float) -> tuple[bool, float]:
    """(did any process ask to stop, the longest training time of any process): the same answer in
    every process, so that all stop after the same step and follow the same clock."""
    x = _comm(shard, torch.tensor([float(stop_requested), seconds], dtype=torch.float64))
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return bool(x[0] > 0), float(x[1])


def average_logs(shard, losses: list[float], pending: list) -> tuple[list[float], list]:
    """The losses and logged values of the pending steps, averaged over the processes."""
    keys = sorted(pending[0][1])
    table = torch.tensor([[loss] + [float(logs[k]) for k in keys] for loss, (_, logs) in zip(losses, pending)],
                         dtype=torch.float64)
    table = mean_over_ranks(shard, table).tolist()
    return [row[0] for row in table], [(None, dict(zip(keys, row[1:]))) for row in table]


_SIZED = {torch.rand, torch.randn, torch.randint}       # the shape is the last positional argument (or size=)
_UNSHARDABLE = {torch.rand_like, torch.randn_like, torch.randint_like, torch.bernoulli, torch.normal, torch.poisson,
                torch.randperm, torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.bernoulli_,
                torch.Tensor.random_, torch.Tensor.exponential_, torch.Tensor.geometric_, torch.Tensor.cauchy_,
                torch.Tensor.log_normal_}


class ShardedDraws(TorchFunctionMode):
    """While the loss runs: a draw made with a generator whose first dimension is the local batch b is
    made for the global batch B = b·N instead, and rows [r·b, (r+1)·b) are kept. Every process draws
    the same numbers in the same order as one process with batch B, so its generators stay in step.
    Draws of other shapes (a seed, a scalar) are made as they are: the same in every process."""

    def __init__(self, shard: Shard, batch_size: int):
        super().__init__()
        self.rows, self.b, self.global_b = shard.rows(batch_size), batch_size // shard.world, batch_size

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if kwargs.get("generator") is None:
            return func(*args, **kwargs)
        if func in _SIZED:
            size, args = _split_size(func, args, kwargs)
            if len(size) and size[0] == self.b:
                return func(*args, (self.global_b, *size[1:]), **kwargs)[self.rows]
            return func(*args, size, **kwargs)
        if func is torch.multinomial:
            n = args[1] if len(args) > 1 else kwargs.get("num_samples")
            if n == self.b and args[0].dim() == 1 and len(args) > 1:
                return func(args[0], self.global_b, *args[2:], **kwargs)[self.rows]
            if n == self.b and args[0].dim() == 1:
                return func(*args, **{**kwargs, "num_samples": self.global_b})[self.rows]
        elif func in _UNSHARDABLE:
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if (x is not None and x.dim() and x.shape[0] == self.b) or (func is torch.randperm and args[0] == self.b):
                raise RuntimeError(f"the loss draws {func.__name__} for its batch with a generator, which cannot be "
                                   f"shared across processes exactly; draw with torch.rand, torch.randn or "
                                   f"torch.randint(..., (batch, ...), generator=generator) instead")
        return func(*args, **kwargs)


def _split_size(func, args, kwargs) -> tuple[tuple, tuple]:
    """(the shape, the other positional arguments) of a torch.rand/randn/randint call."""
    if "size" in kwargs:
        return tuple(kwargs.pop("size")), tuple(args)
    if func is torch.randint:
        return tuple(args[-1]), tuple(args[:-1])
    if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):
        return tuple(args[0]), ()
    return tuple(args), ()
