"""Train the unconditional pixel-space DDPM on MNIST (lesson 03), and measure it.

    python -m sdlib.recipes.ddpm                    # the pretrained model shipped in sdlib/weights
    python -m sdlib.recipes.ddpm --lesson           # lesson 03's 10-minute model (uniform t), measured the same way
    python -m sdlib.recipes.ddpm --lesson --band    # the same with appendix 03b's band of time steps
    python -m sdlib.recipes.ddpm --compare-samplers # no training: DDPM-1000 against DDIM-50 on the shipped weights

The settings of both, the lesson's and the shipped model's, are in sdlib.recipes.configs.ddpm.
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
from dataclasses import replace

import torch

from sdlib import metrics, pretrained, runtime
from sdlib.data import load_mnist
from sdlib.diffusion import DDPMObjective, band_timesteps
from sdlib.recipes import ship
from sdlib.recipes.configs.ddpm import (LESSON_SAMPLER, LESSON_T_BAND, LESSON_TRAIN, LESSON_UNET, PRETRAINED_T_BAND,
                                        PRETRAINED_TRAIN, PRETRAINED_UNET, SCHEDULE)
from sdlib.runtime import distributed
from sdlib.samplers import DDIMSampler, DDPMSampler, sample
from sdlib.schedules import NoiseSchedule
from sdlib.train import fit
from sdlib.unet import UNet

RECIPE = "python -m sdlib.recipes.ddpm"


def schedule() -> NoiseSchedule:
    return NoiseSchedule.linear(SCHEDULE["T"])


def band_t_probs():
    """p(t) for t = 1..T of appendix 03b's band of time steps (see LESSON_T_BAND)."""
    return band_timesteps(SCHEDULE["T"], *LESSON_T_BAND)


def pretrained_t_probs():
    """p(t) for t = 1..T with which the pretrained model was trained (see PRETRAINED_T_BAND)."""
    return band_timesteps(SCHEDULE["T"], *PRETRAINED_T_BAND)


def training_t_probs(lesson: bool, band: bool = False):
    """How a run draws t: the shipped model from PRETRAINED_T_BAND; lesson 03's model uniformly (None), as
    Algorithm 1 does, or from appendix 03b's LESSON_T_BAND when `band` is set."""
    if not lesson:
        return pretrained_t_probs()
    return band_t_probs() if band else None


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
    parser.add_argument("--lesson", action="store_true", help="train lesson 03's model instead (t uniform)")
    parser.add_argument("--band", action="store_true", help="with --lesson: draw t from LESSON_T_BAND (appendix 03b)")
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
    if args.band and not args.lesson:
        parser.error("--band goes with --lesson (the shipped model draws t from PRETRAINED_T_BAND)")
    rt = runtime.setup(seed=0, verbose=distributed.is_main_process())
    if args.compare_samplers:
        net = pretrained.load_pretrained("ddpm", device="cpu", directory=args.out)
        net.to(memory_format=torch.channels_last)
        classifier = pretrained.load_pretrained("classifier", device="cpu", directory=args.out)
        _, test_features = metrics.predict(classifier, load_mnist("test").images)
        rows = compare_samplers(net, classifier, test_features, n=args.n)
        pretrained.record_metrics("ddpm", {"sampler_comparison": {"n": args.n, "rows": rows}}, directory=args.out)
        return 0
    unet_config, train_config = (LESSON_UNET, LESSON_TRAIN) if args.lesson else (PRETRAINED_UNET, PRETRAINED_TRAIN)
    train_config = replace(train_config, steps=args.steps or train_config.steps, device=str(rt.device))
    name = ("ddpm_lesson_band" if args.band else "ddpm_lesson") if args.lesson else "ddpm"   # each its own checkpoint
    checkpoint = args.checkpoint or runtime.runs_dir() / f"{name}_recipe.pt"
    model = UNet(unet_config)
    print(f"{name}: {model.num_parameters():,} parameters, {train_config.steps} steps of {train_config.batch_size}")
    objective = DDPMObjective(schedule(), t_probs=training_t_probs(args.lesson, args.band))
    result = fit(model, objective, load_mnist("train"), train_config, checkpoint=checkpoint,
                 description=name)

    def measured(net):
        classifier = pretrained.load_pretrained("classifier", device="cpu")
        _, test_features = metrics.predict(classifier, load_mnist("test").images)
        return measure(net.to(memory_format=torch.channels_last), classifier, test_features, ddpm=not args.no_ddpm,
                       big_n=args.big_n)

    return ship(result, measured, name=name, kind="unet", config=unet_config.to_dict(), recipe=RECIPE,
                extra={"schedule": SCHEDULE, "t_band": list(PRETRAINED_T_BAND)}, directory=args.out,
                save=not args.lesson)


if __name__ == "__main__":
    sys.exit(main())
