"""Where the code runs: device choice, seeding, the quick mode, folders, and CPU speed.

Every lesson starts with

    from sdlib.runtime import setup
    rt = setup()

which picks the device (CUDA, then Apple MPS, then CPU; `SDLIB_DEVICE=cpu` forces one), seeds
every random number generator, reads the quick mode from `SDLIB_QUICK`, and tunes the C memory
allocator on Linux so that large-batch sampling on a CPU runs at full speed (see
`tune_cpu_allocator`).

The package holds what runs underneath the ideas and imports no other part of sdlib: this module,
the checks at the door (`sdlib.runtime.validate`) and training on several processes
(`sdlib.runtime.distributed`).
"""
from __future__ import annotations

import ctypes
import os
import platform
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# (sdlib.runtime.validate imports nothing from sdlib: no cycle)
from sdlib.runtime import validate

QUICK_ENV = "SDLIB_QUICK"
DEVICE_ENV = "SDLIB_DEVICE"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def is_quick() -> bool:
    """True when the environment variable SDLIB_QUICK asks for the quick mode (1/true/yes/on)."""
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{QUICK_ENV}={value!r} is not understood: use 1 for the quick mode or 0 for the full one")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to use: the argument if given, else $SDLIB_DEVICE, else CUDA, then MPS, then CPU.
    Under torchrun, "cuda" means this process's own GPU, cuda:$LOCAL_RANK."""
    choice = device if device is not None else os.environ.get(DEVICE_ENV) or None
    if choice is not None:
        dev = validate.device(choice, "device" if device is not None else f"${DEVICE_ENV}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} was asked for but CUDA is not available here; use 'cpu'")
        if dev.type == "mps" and not (torch.backends.mps.is_available()):
            raise RuntimeError(f"device {choice!r} was asked for but Apple MPS is not available here; use 'cpu'")
        return _local_gpu() if dev.type == "cuda" and dev.index is None else dev
    if torch.cuda.is_available():
        return _local_gpu()
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _local_gpu() -> torch.device:
    """cuda:$LOCAL_RANK in a process that torchrun started (one GPU per process), else plain "cuda"."""
    local = os.environ.get("LOCAL_RANK")
    return torch.device("cuda", int(local)) if local and local.isdigit() else torch.device("cuda")


def mix_seed(*numbers: int) -> int:
    """A 63-bit seed from integers, e.g. (seed, step) or (seed, sample index): neighbouring tuples give
    unrelated random streams, and the result depends on nothing else."""
    import hashlib
    digest = hashlib.sha256(":".join(str(int(n)) for n in numbers).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def randn(shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise drawn with `generator` on the generator's own device (a CPU generator for a
    GPU tensor works too), then moved to `device`. A generator with its own `randn(shape, device, dtype)`
    method (sdlib.samplers.SampleNoise: one stream per sample) draws it itself. The one definition of
    generator-aware noise in the library."""
    if hasattr(generator, "randn"):
        return generator.randn(shape, device, dtype)
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)


class _DefaultSeed(int):
    """The pipeline's default seed, 0. Unlike a seed the caller passes, it gives way to a generator."""


DEFAULT_SEED = _DefaultSeed(0)


class SampleNoise:
    """Gaussian noise that depends only on a seed and each sample's index: sample i draws from its own
    generator, seeded from (seed, i). So the same seed gives the same images whatever the batch size, and
    an image does not change when others are added to or taken from the batch.

    seed: an int; or generator: a torch.Generator to draw the seed from (it advances, so a second call
    gives new images); neither: a seed from torch's global random state (torch.manual_seed makes it repeat).
    """

    def __init__(self, n: int, seed: int | None = None, generator: torch.Generator | None = None):
        validate.positive_int(n, "the number of samples")
        if seed is DEFAULT_SEED and generator is not None:
            seed = None
        if seed is not None and generator is not None:
            raise ValueError("give a seed or a generator, not both: the seed would silently be ignored")
        if seed is not None:
            seed = validate.seed(seed)
        elif generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        else:
            seed = int(torch.randint(0, 2**62, (1,)))
        self.seed = seed
        self.generators = [torch.Generator().manual_seed(mix_seed(seed, i)) for i in range(n)]

    def __len__(self) -> int:
        return len(self.generators)

    def select(self, index: slice) -> "SampleNoise":
        """The noise of some of the samples (sharing their generators): used to work in batches."""
        part = object.__new__(SampleNoise)
        part.seed, part.generators = self.seed, self.generators[index]
        return part

    def randn(self, shape, device=None, dtype=torch.float32) -> torch.Tensor:
        """(n, *shape[1:]) standard normal noise, one row per sample, drawn on the CPU then moved."""
        if shape[0] != len(self):
            raise ValueError(f"asked for noise of {shape[0]} samples from the noise of {len(self)}")
        rows = [torch.randn(tuple(shape[1:]), generator=g) for g in self.generators]
        return torch.stack(rows).to(device=device, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (every device)."""
    seed = validate.seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_allocator_tuned = False


def tune_cpu_allocator() -> bool:
    """Stop glibc's malloc from returning large tensors' memory to the system after each use.

    By default glibc serves every allocation above 128 KiB with a fresh `mmap` and gives it back
    on free, so a sampling loop that makes and frees big activations at every step pays a page
    fault for every 4 KiB it touches, which can take much of the time of a large-batch U-Net forward
    pass (`python -m sdlib.recipes.benchmark` measures the before and after; docs/measured.md). It does what
    the environment variables MALLOC_MMAP_MAX_=0 and MALLOC_TRIM_THRESHOLD_=<large> do, but from
    inside a running kernel, where those variables come too late. The price is that freed memory
    stays with the process for reuse instead of going back to the system. Only glibc (Linux) needs
    it; elsewhere it does nothing and returns False.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if os.environ.get("SDLIB_TUNE_ALLOCATOR", "1").strip() == "0":   # opt out (the benchmark compares both)
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # from glibc's <malloc.h>
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _allocator_tuned = ok
    return ok


def bf16_is_fast(device: str | torch.device = "cpu") -> bool:
    """True where bfloat16 matrix math has hardware support on `device`: a CUDA GPU that has it, or a
    CPU with AVX-512 BF16 or AMX (recent Xeons). Elsewhere (most laptop CPUs, Apple MPS) bfloat16 is
    emulated or untested here, and fp32 is the safe choice."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        try:                                   # not the emulated bfloat16 of pre-Ampere GPUs
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:                      # torch < 2.3 has no such argument
            return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_autocast(autocast: str | None, device: str | torch.device) -> str | None:
    """The precision `fit` trains in: "auto" becomes "bfloat16" where bfloat16 is fast on `device`
    (a CPU with AMX or AVX-512 BF16, a recent GPU) and None (fp32) elsewhere."""
    if autocast == "auto":
        return "bfloat16" if bf16_is_fast(device) else None
    return autocast


def resolve_channels_last(channels_last: bool | str, device: str | torch.device, autocast: str | None) -> bool:
    """The memory layout `fit` trains in. "auto": channels_last (NHWC), which speeds up fp32 convolutions
    on CPUs and mixed precision on GPUs, except for bfloat16 on a CPU, where GroupNorm's NHWC path is
    slower (docs/measured.md)."""
    if channels_last == "auto":
        return not (torch.device(device).type == "cpu" and autocast == "bfloat16")
    return bool(channels_last)


def project_dir() -> Path | None:
    """The course checkout that holds this sdlib (None when sdlib was installed without it)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() and (root / "notebooks").is_dir() else None


def data_dir() -> Path:
    """Where downloads go: $SDLIB_DATA_DIR, else the checkout's data/, else ~/.cache/sdlib/data."""
    if os.environ.get("SDLIB_DATA_DIR"):
        return Path(os.environ["SDLIB_DATA_DIR"]).expanduser()
    root = project_dir()
    return root / "data" if root is not None else Path.home() / ".cache" / "sdlib" / "data"


def runs_dir() -> Path:
    """Where training checkpoints go: $SDLIB_RUNS_DIR, else the checkout's runs/, else ~/.cache/sdlib/runs."""
    if os.environ.get("SDLIB_RUNS_DIR"):
        return Path(os.environ["SDLIB_RUNS_DIR"]).expanduser()
    root = project_dir()
    return root / "runs" if root is not None else Path.home() / ".cache" / "sdlib" / "runs"


@dataclass(frozen=True)
class Runtime:
    """What `setup` chose. `rt.pick(full=..., quick=...)` returns the value for the current mode."""

    device: torch.device
    quick: bool
    seed: int

    def pick(self, *, full, quick):
        return quick if self.quick else full

    def generator(self, seed: int | None = None, device: torch.device | str | None = None) -> torch.Generator:
        """A fresh generator seeded with `seed` (default: the runtime's seed)."""
        g = torch.Generator(device=device or "cpu")
        g.manual_seed(self.seed if seed is None else seed)
        return g


def setup(seed: int = 0, device: str | torch.device | None = None, quick: bool | None = None,
          verbose: bool = True) -> Runtime:
    """Prepare a lesson or a script: device, seeds, quick mode, allocator. Returns a Runtime."""
    quick = is_quick() if quick is None else bool(quick)
    dev = pick_device(device)
    seed_everything(seed)
    tuned = tune_cpu_allocator()
    rt = Runtime(device=dev, quick=quick, seed=seed)
    if verbose:
        mode = "QUICK (tiny settings for tests: expect poor results)" if quick else "full"
        extra = ", CPU allocator tuned" if tuned and dev.type == "cpu" else ""
        print(f"sdlib: device={dev}, mode={mode}, seed={seed}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} CPU threads{extra}")
    return rt
