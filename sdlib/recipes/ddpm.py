"""Train the unconditional pixel-space DDPM on MNIST (lesson 03), and measure it.

    python -m sdlib.recipes.ddpm                    # the pretrained model shipped in sdlib/weights
    python -m sdlib.recipes.ddpm --lesson           # the lesson's 10-minute settings, measured the same way
    python -m sdlib.recipes.ddpm --compare-samplers # no training: DDPM-1000 against DDIM-50 on the shipped weights

The lesson trains `LESSON_UNET` with `LESSON_TRAIN`, drawing t by `LESSON_T_BAND`; the pretrained
model is `PRETRAINED_UNET` trained longer with `PRETRAINED_TRAIN`, drawing t by `PRETRAINED_T_BAND`. Both
use the DDPM paper's linear schedule with T = 1000.
The measurements (classifier FID against the 10,000 test images, confidence, digit histogram,
wall time) are printed and stored in the manifest next to the weights:
- DDPM (1,000 steps) and DDIM (100, 50, 25, 10 steps, eta = 0) on the same 1,000 noises, and the
  lessons' sampler (DDIM-100, eta = 1, x̂0 clipped);
- DDIM-50 over several seeds, for the spread;
- DDIM-50 on 10,000 samples, against the real-train-vs-test floor on 10,000 images.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from .. import metrics, pretrained, runtime
from ..data import load_mnist
from ..diffusion import DDPMObjective, band_timesteps
from ..samplers import DDIMSampler, DDPMSampler, sample
from ..schedules import NoiseSchedule
from ..train import TrainConfig, fit
from ..unet import UNet, UNetConfig

RECIPE = "python -m sdlib.recipes.ddpm"
SCHEDULE = {"name": "linear", "T": 1000}

# What lesson 03 trains in about ten minutes on a 2-core CPU.
# The U-Net first folds each 2×2 block of pixels into channels (patch_size=2: 4×14×14); with widths
# (32, 64) it trained at about 300 images/s against about 220 for a (16, 32, 64) U-Net on full 28×28
# images, and reached a better classifier FID (on the course's first CPU, a 2-core Xeon with AMX, where
# with AdamW batches of 64 also learned more per second than 128 in 5-minute trials, and than 32 in
# 9-minute ones). autocast="auto" trains in bfloat16 where the hardware makes it fast (AMX or AVX-512
# BF16) and in fp32 elsewhere; channels_last="auto" keeps bfloat16 on a CPU in NCHW, where GroupNorm is
# faster (on the Xeon, with fit's fused AdamW, 28% more steps per minute than channels_last; 1.34x fp32's).
# Muon for the weight matrices (sdlib.optim) instead of AdamW: on this U-Net it reached a lower loss in
# every thousand steps after the first and, in ten-minute trials on the course's present 2-core CPU (an
# AMD EPYC with AVX-512 BF16), 90.7% (10,000 steps of 64) and 91.0% confident (6,000 steps of 128, lr
# 5e-3) against 89.6% for AdamW (10,800 steps of 64, lr 4e-3). Muon on batches of 128 trained at 1,291
# images/s, AdamW on 64 at 1,182. These settings: 91.7 / 90.4 / 91.1% confident in three runs, 9.5-10 min.
# max_minutes=10 stops a slower machine on time, its learning rate decayed all the same (docs/measured.md).
LESSON_UNET = UNetConfig(channels=(32, 64), blocks=1, patch_size=2)
LESSON_TRAIN = TrainConfig(steps=5700, batch_size=128, lr=5e-3, warmup=100, ema_decay=0.995, optimizer="muon",
                           max_minutes=10, channels_last="auto", autocast="auto", checkpoint_every=250)
# Which time steps the lesson trains on: (lo, hi, frac) for band_timesteps, a fraction `frac` of the
# draws uniform in lo..hi and the rest uniform in 1..T. Sampling with the ten-minute model above t = 500
# and the pretrained one below (and the reverse) showed that a young model falls behind between t = 250
# and 500, where the digit's shape forms, and not above 500. Drawing t there more often took the
# ten-minute model from 76% to 83-85% confident (frac 0.5 / 0.8 / 0.9 / 0.95: 82 / 83 / 85 / 84%; band
# 200..500 at 0.9: 84.5%; the lesson's own runs 82.7 and 82.8%; docs/measured.md).
LESSON_T_BAND = (150, 550, 0.9)
# The pretrained model draws from the same band less often: a run 5.6 times longer can spare more draws for
# the rest of 1..T (at frac 0.7 about 2,700 of its 20,000 steps fall above t = 550, more than the whole
# uniform ten-minute run gave there, which was as good above t = 500 as a model trained 5.6 times longer).
# With uniform t the same 20,000 steps reached 87.9% confident and classifier FID 46.2; with this band
# 91.8% and 29.3 (the lessons' sampler, the same noises; docs/measured.md).
PRETRAINED_T_BAND = (150, 550, 0.7)
# The shipped model: the same U-Net trained for longer (the longer run makes the larger EMA decay fit).
PRETRAINED_UNET = LESSON_UNET
PRETRAINED_TRAIN = TrainConfig(steps=20000, batch_size=64, lr=4e-3, warmup=200, ema_decay=0.999, channels_last="auto",
                               autocast="auto", checkpoint_every=500)
# The sampler the lesson's quality numbers use: stochastic DDIM (eta = 1, like DDPM) in 100 steps.
LESSON_SAMPLER = {"steps": 100, "eta": 1.0, "clip_x0": True}


def schedule() -> NoiseSchedule:
    return NoiseSchedule.linear(SCHEDULE["T"])


def lesson_t_probs():
    """p(t) for t = 1..T with which the lesson draws its time steps (see LESSON_T_BAND)."""
    return band_timesteps(SCHEDULE["T"], *LESSON_T_BAND)


def pretrained_t_probs():
    """p(t) for t = 1..T with which the pretrained model was trained (see PRETRAINED_T_BAND)."""
    return band_timesteps(SCHEDULE["T"], *PRETRAINED_T_BAND)


def timed_samples(model, sampler, n, seed, batch_size=500):
    start = time.perf_counter()
    x = sample(model, sampler, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed), progress=False,
               batch_size=batch_size)
    return x.clamp(-1, 1), time.perf_counter() - start


def measure(model, classifier, test_features, *, n=1000, ddpm=True, seeds=2, big_n=0, log=print) -> dict:
    """The recipe's measurements (see the module docstring). Seconds are wall time on this machine."""
    s = schedule()
    out = {"n": n, "table": []}
    samplers = ([("DDPM", 1000, DDPMSampler(s))] if ddpm else []) + [
        ("DDIM", k, DDIMSampler(s, k)) for k in (100, 50, 25, 10)]
    for name, steps, sampler in samplers:
        x, seconds = timed_samples(model, sampler, n, seed=0)
        report = metrics.evaluate_samples(classifier, x, test_features)
        row = {"sampler": name, "steps": steps, "seconds_per_1000": round(seconds * 1000 / n, 1), **report.as_dict()}
        out["table"].append(row)
        log(f"{name:>4} {steps:>4} steps: {seconds:7.1f} s  {report}")
    lesson = DDIMSampler(s, **LESSON_SAMPLER)
    x, _ = timed_samples(model, lesson, n, seed=0)
    out["lesson_sampler"] = {**LESSON_SAMPLER, **metrics.evaluate_samples(classifier, x, test_features).as_dict()}
    log(f"lesson sampler {LESSON_SAMPLER}: {out['lesson_sampler']}")
    fids = []
    for seed in range(1, seeds + 1):
        x, _ = timed_samples(model, DDIMSampler(s, 50), n, seed=seed)
        fids.append(metrics.evaluate_samples(classifier, x, test_features).classifier_fid)
    fids = torch.tensor(fids)
    out["ddim50_seeds"] = {"seeds": seeds, "fid_mean": round(fids.mean().item(), 3), "fid_std": round(fids.std().item(), 3)}
    log(f"DDIM-50 over {seeds} more seeds: FID {fids.mean():.2f} ± {fids.std():.2f}")
    if big_n:
        x, seconds = timed_samples(model, DDIMSampler(s, 50), big_n, seed=100)
        report = metrics.evaluate_samples(classifier, x, test_features)
        out["ddim50_big"] = {"seconds": round(seconds, 1), **report.as_dict()}
        log(f"DDIM-50 on {big_n} samples: {report}")
    return out


def compare_samplers(model, classifier, test_features, *, n=1000, log=print) -> list[dict]:
    """DDPM with 1,000 steps (Algorithm 2, sigma_t^2 = beta_t) against DDIM with 50, stochastic (eta = 1)
    and deterministic (eta = 0), on the same n noises, no clipping anywhere."""
    s = schedule()
    rows = []
    for name, steps, sampler in [("DDPM", 1000, DDPMSampler(s)), ("DDIM, eta = 1", 50, DDIMSampler(s, 50, eta=1.0)),
                                 ("DDIM, eta = 0", 50, DDIMSampler(s, 50))]:
        x, seconds = timed_samples(model, sampler, n, seed=0)
        report = metrics.evaluate_samples(classifier, x, test_features)
        rows.append({"sampler": name, "steps": steps, "seconds": round(seconds, 1),
                     "classifier_fid": round(report.classifier_fid, 1), "confident": round(report.confident, 3),
                     "digit_min": round(report.histogram.min().item(), 3),
                     "digit_max": round(report.histogram.max().item(), 3)})
        log(f"{name:>13} {steps:>4} steps: {seconds:7.1f} s  {report}")
    ddpm = rows[0]
    for row in rows[1:]:
        log(f"{row['sampler']}: classifier FID {row['classifier_fid'] / ddpm['classifier_fid'] - 1:+.1%} against "
            f"DDPM-1000, {ddpm['seconds'] / row['seconds']:.1f}x faster")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=RECIPE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--lesson", action="store_true", help="train the lesson's small model instead")
    parser.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    parser.add_argument("--checkpoint", default=None, help="resumable training checkpoint (default: runs/ddpm*.pt)")
    parser.add_argument("--no-ddpm", action="store_true", help="skip the slow 1000-step DDPM measurement")
    parser.add_argument("--big-n", type=int, default=0, help="also measure DDIM-50 on this many samples (e.g. 10000)")
    parser.add_argument("--out", default=None, help="weights folder (default: sdlib/weights)")
    parser.add_argument("--compare-samplers", action="store_true",
                        help="no training: DDPM-1000 against DDIM-50 on the shipped weights (about 24 minutes), "
                             "added to their manifest entry")
    parser.add_argument("--n", type=int, default=1000, help="samples for --compare-samplers")
    args = parser.parse_args(argv)
    rt = runtime.setup(seed=0)
    if args.compare_samplers:
        net = pretrained.load_pretrained("ddpm", device="cpu", directory=args.out)
        net.to(memory_format=torch.channels_last)
        classifier = pretrained.load_pretrained("classifier", device="cpu", directory=args.out)
        _, test_features = metrics.predict(classifier, load_mnist("test").images)
        rows = compare_samplers(net, classifier, test_features, n=args.n)
        pretrained.record_metrics("ddpm", {"sampler_comparison": {"n": args.n, "rows": rows}}, directory=args.out)
        return 0
    unet_config, train_config = (LESSON_UNET, LESSON_TRAIN) if args.lesson else (PRETRAINED_UNET, PRETRAINED_TRAIN)
    train_config = TrainConfig(**{**train_config.__dict__, "device": str(rt.device),
                                  **({"steps": args.steps} if args.steps else {})})
    name = "ddpm_lesson" if args.lesson else "ddpm"
    checkpoint = args.checkpoint or runtime.runs_dir() / f"{name}_recipe.pt"
    model = UNet(unet_config)
    print(f"{name}: {model.num_parameters():,} parameters, {train_config.steps} steps of {train_config.batch_size}")
    objective = DDPMObjective(schedule(), t_probs=lesson_t_probs() if args.lesson else pretrained_t_probs())
    result = fit(model, objective, load_mnist("train"), train_config, checkpoint=checkpoint,
                 description=name)
    if result.interrupted:
        return 1
    net = result.best.cpu().eval()
    # Measure the half-precision weights that will be shipped.
    net.load_state_dict({k: v.half().float() for k, v in net.state_dict().items()})
    net.to(memory_format=torch.channels_last)
    classifier = pretrained.load_pretrained("classifier", device="cpu")
    _, test_features = metrics.predict(classifier, load_mnist("test").images)
    measured = measure(net, classifier, test_features, ddpm=not args.no_ddpm, big_n=args.big_n)
    measured.update(train_minutes=round(result.seconds / 60, 1), steps=result.steps,
                    images_per_second=round(result.images_per_second, 1), final_loss=round(
                        sum(result.history["loss"][-200:]) / len(result.history["loss"][-200:]), 5))
    if args.lesson:
        print(measured)
        return 0
    pretrained.save_pretrained(name, net, kind="unet", config=unet_config.to_dict(), recipe=RECIPE, metrics=measured,
                               extra={"schedule": SCHEDULE, "t_band": list(PRETRAINED_T_BAND)}, directory=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
