"""CPU benchmark of the lesson-03 U-Net: training throughput against the machine's own matmul
speed, sampling time per 1,000 images for each sampler, and peak memory.

    python -m sdlib.recipes.benchmark
    python -m sdlib.recipes.benchmark --json out.json

Throughput is reported in images per second and in GFLOP/s, where the FLOPs of one training step
(forward and backward) are counted by torch.utils.flop_counter; "of peak" divides that by the fp32
matmul speed measured in the same run. Each variant (memory format, mixed precision, batch size,
allocator tuning) is measured on its own so its effect can be read off. Numbers on a shared machine
move by several percent between runs.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from sdlib import runtime
from sdlib.recipes.configs.ddpm import LESSON_UNET
from sdlib.schedules import NoiseSchedule
from sdlib.train import TrainConfig, build_optimizer
from sdlib.unet import UNet, UNetConfig


def matmul_gflops(n: int = 2048, repeats: int = 10, dtype=torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def training_flops(model, batch: int) -> float:
    """FLOPs of one forward + backward pass on a batch (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    x, t = torch.randn(batch, 1, 28, 28).clamp(-1, 1), torch.randint(1, 1001, (batch,))
    counter = FlopCounterMode(display=False)
    with counter:
        F.mse_loss(model(x, t), x).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def train_throughput(config: UNetConfig, batch: int = 128, channels_last: bool = True, autocast: bool = False,
                     steps: int = 6, warmup: int = 2, optimizer: str = "adamw") -> dict:
    torch.manual_seed(0)
    model = UNet(config)
    flops = training_flops(model, batch)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, TrainConfig(lr=1e-4, optimizer=optimizer), "cpu")     # the optimizer fit builds
    schedule = NoiseSchedule.linear()
    x0 = torch.rand(batch, 1, 28, 28) * 2 - 1

    def step():
        t = torch.randint(1, 1001, (batch,))
        eps = torch.randn_like(x0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = F.mse_loss(model(schedule.add_noise(x0, eps, t), t), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return {"batch": batch, "channels_last": channels_last, "bf16": autocast, "optimizer": optimizer,
            "images_per_s": batch / seconds,
            "gflops": flops / seconds / 1e9, "step_s": seconds}


@torch.no_grad()
def sampling_step_seconds(config: UNetConfig, batch: int = 1000, steps: int = 5, channels_last: bool = True) -> float:
    """Seconds for one U-Net evaluation on a batch of noisy images (what each sampling step costs)."""
    torch.manual_seed(0)
    model = UNet(config).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 1, 28, 28)
    t = torch.full((batch,), 500)
    model(x, t)
    start = time.perf_counter()
    for _ in range(steps):
        model(x, t)
    return (time.perf_counter() - start) / steps


def allocator_comparison(config: UNetConfig) -> dict:
    """Forward throughput at batch 1000 with and without the allocator tuning, each in a fresh process."""
    out = {}
    for tuned in (False, True):
        env = dict(os.environ, SDLIB_TUNE_ALLOCATOR="1" if tuned else "0")
        code = ("import json; from sdlib import runtime, benchmark; from sdlib.unet import UNetConfig; "
                "runtime.setup(verbose=False); "
                f"print(json.dumps(benchmark.sampling_step_seconds(UNetConfig(**{config.to_dict()!r}))))")
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        out["tuned" if tuned else "default"] = 1000 / float(result.stdout.strip().splitlines()[-1])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdlib.recipes.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for testing the benchmark itself)")
    args = parser.parse_args(argv)
    runtime.setup(seed=0, device="cpu")
    config = LESSON_UNET
    steps = 2 if args.quick else 6
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "unet": config.to_dict()}
    peak = matmul_gflops(repeats=3 if args.quick else 10)
    results["matmul_fp32_gflops"] = peak
    print(f"fp32 matmul (2048x2048): {peak:.0f} GFLOP/s on {torch.get_num_threads()} threads")
    if runtime.bf16_is_fast("cpu"):
        results["matmul_bf16_gflops"] = matmul_gflops(repeats=3 if args.quick else 10, dtype=torch.bfloat16)
        print(f"bf16 matmul (2048x2048): {results['matmul_bf16_gflops']:.0f} GFLOP/s")
    print(f"\nU-Net training step, {sum(p.numel() for p in UNet(config).parameters()) / 1e6:.2f}M parameters:")
    print(f"{'batch':>6} {'layout':>14} {'precision':>9} {'optimizer':>9} {'images/s':>9} {'GFLOP/s':>8} "
          f"{'of fp32 peak':>12}")
    variants = [(128, False, False), (128, True, False), (64, True, False), (256, True, False)]
    if runtime.bf16_is_fast("cpu"):
        # bf16 in both layouts: GroupNorm is slow in channels_last there, so fit's "auto" layout is NCHW.
        variants += [(128, True, True), (128, False, True), (64, False, True)]
    lesson_bf16 = runtime.bf16_is_fast("cpu")   # lesson 03's own step: Muon, in fit's "auto" precision and layout
    variants = [(b, cl, bf16, "adamw") for b, cl, bf16 in variants] + [(128, not lesson_bf16, lesson_bf16, "muon")]
    results["training"] = []
    for batch, cl, bf16, optimizer in variants:
        r = train_throughput(config, batch, cl, bf16, steps=steps, optimizer=optimizer)
        r["of_peak"] = r["gflops"] / peak
        results["training"].append(r)
        print(f"{batch:>6} {'channels_last' if cl else 'NCHW':>14} {'bf16' if bf16 else 'fp32':>9} {optimizer:>9} "
              f"{r['images_per_s']:>9.0f} {r['gflops']:>8.0f} {r['of_peak']:>11.0%}")

    print("\nSampling, batch of 1,000 images (fp32, channels_last):")
    per_step = sampling_step_seconds(config, steps=2 if args.quick else 5)
    results["sampling_step_s_per_1000"] = per_step
    results["sampling_s_per_1000"] = {}
    for name, n in [("DDPM, 1000 steps", 1000), ("DDIM, 250 steps", 250), ("DDIM, 100 steps", 100),
                    ("DDIM, 50 steps", 50), ("DDIM, 25 steps", 25), ("DDIM, 10 steps", 10)]:
        results["sampling_s_per_1000"][name] = per_step * n
        print(f"  {name:>18}: {per_step * n:8.1f} s per 1,000 images ({per_step:.2f} s per step x {n})")
    if not args.quick:
        alloc = allocator_comparison(config)
        results["allocator_images_per_s"] = alloc
        print(f"\nU-Net forward, batch 1000: {alloc['default']:.0f} images/s with glibc's default malloc, "
              f"{alloc['tuned']:.0f} with sdlib.runtime.tune_cpu_allocator() ({alloc['tuned'] / alloc['default']:.2f}x)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["peak_memory_mb"] = peak_mb
    print(f"\npeak memory of this process: {peak_mb:.0f} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
