"""Train the flow-matching models of bonus lesson 09 on MNIST, and measure them against the DDPMs.

    python -m sdlib.recipes.flow                   # the shipped unconditional `flow` model, and the samplers' table
    python -m sdlib.recipes.flow --lesson          # the lesson's ten-minute settings, measured the same way
    python -m sdlib.recipes.flow --compare-times   # lesson-size runs, t uniform and t logit-normal (SD3), same steps
    python -m sdlib.recipes.flow --text            # the text-conditioned `text_flow` model, with guidance
    python -m sdlib.recipes.flow --table-only      # the samplers' table again, for the shipped `flow` weights

The settings are in sdlib.recipes.configs.flow: each model has its DDPM twin's U-Net and training run, with a
continuous time input. The samplers' table: for steps in (50, 20, 10, 5), DDIM (η = 0, x̂0 not clipped) on
the shipped `ddpm`, and Euler and Heun on the flow model, Euler also on DDIM's times and on Stable Diffusion
3's shifted grid (config.SHIFT), all from the same 1,000 starting noises; for each
row the network evaluations, classifier FID against the 10,000 test digits, confidence and seconds. It is
printed and stored in the model's manifest entry. `--text` measures prompt accuracy with classifier-free
guidance applied to v (Euler) next to `text_ddpm`'s with DDIM, on the same balanced digit prompts.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import torch

from sdlib import metrics, pretrained, runtime
from sdlib.data import load_mnist
from sdlib.flow import EulerSampler, FlowMatchingObjective, HeunSampler, time_of_alpha_bar
from sdlib.recipes import as_shipped, final_mean, ship
from sdlib.recipes.configs import flow as config
from sdlib.recipes.configs.ddpm import SCHEDULE
from sdlib.runtime import distributed
from sdlib.samplers import DDIMSampler, sample
from sdlib.schedules import NoiseSchedule
from sdlib.train import fit
from sdlib.unet import UNet

RECIPE = "python -m sdlib.recipes.flow"


def objective(distribution: str = config.TIME_DISTRIBUTION, encode_prompts=None, p_uncond: float = 0.0):
    extra = config.LOGIT_NORMAL if distribution == "logit_normal" else {}
    return FlowMatchingObjective(encode_prompts, p_uncond, distribution, **extra)


def samplers_table(flow_model, ddpm_model, classifier, test_features, *, steps=config.TABLE_STEPS,
                   n: int = config.N_TABLE, seed: int = 0, log=print) -> list[dict]:
    """Steps × {DDIM on the DDPM, Euler and Heun on the flow model}, on the same n noises (seed)."""
    schedule = NoiseSchedule.linear(SCHEDULE["T"])
    rows = []
    for k in steps:
        ddim = DDIMSampler(schedule, k, eta=0.0)
        ddim_times = time_of_alpha_bar(schedule.alpha_bar[ddim.timesteps]).tolist()   # the same noise levels
        for name, grid, model, sampler, times in (
                ("DDIM", "DDIM's", ddpm_model, ddim, None),
                ("Euler", "even", flow_model, EulerSampler(k), None),
                ("Euler", "DDIM's", flow_model, EulerSampler(k), ddim_times),
                ("Euler", f"shift {config.SHIFT:g}", flow_model, EulerSampler(k, shift=config.SHIFT), None),
                ("Heun", "even", flow_model, HeunSampler(k), None)):
            start = time.perf_counter()
            x = sample(model, sampler, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed), progress=False,
                       batch_size=500, timesteps=times).clamp(-1, 1)
            seconds = time.perf_counter() - start
            report = metrics.evaluate_samples(classifier, x, test_features)
            nfe = k if name != "Heun" else sampler.nfe
            rows.append({"sampler": name, "grid": grid, "steps": k, "nfe": nfe,
                         "classifier_fid": round(report.classifier_fid, 1), "confident": round(report.confident, 3),
                         "seconds": round(seconds, 1)})
            log(f"{name:>5} {grid:>8} {k:>3} steps ({nfe:>3} evaluations): {seconds:6.1f} s  {report}")
    return rows


def train(name, unet_config, train_config, objective_, data, checkpoint):
    model = UNet(unet_config)
    print(f"{name}: {model.num_parameters():,} parameters, {train_config.steps} steps of {train_config.batch_size}")
    return fit(model, objective_, data, train_config, checkpoint=checkpoint, description=name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=RECIPE, description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--lesson", action="store_true", help="train the lesson's ten-minute model instead")
    group.add_argument("--compare-times", action="store_true", help="lesson-size runs with t uniform and logit-normal")
    group.add_argument("--text", action="store_true", help="train the text-conditioned model and measure guidance")
    group.add_argument("--table-only", action="store_true",
                       help="measure the samplers' table again for the shipped `flow` weights, without training")
    parser.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    parser.add_argument("--n", type=int, default=config.N_TABLE, help="samples per row of the measurements")
    parser.add_argument("--out", default=None, help="weights folder (default: sdlib/weights)")
    args = parser.parse_args(argv)
    rt = runtime.setup(seed=0, verbose=distributed.is_main_process())
    classifier = pretrained.load_pretrained("classifier", device="cpu")
    test = load_mnist("test")
    _, test_features = metrics.predict(classifier, test.images)
    runs = runtime.runs_dir()

    if args.text:
        return train_text(args, rt, classifier, test, test_features)
    if args.table_only:
        flow = pretrained.load_pretrained("flow", device="cpu", directory=args.out).to(memory_format=torch.channels_last)
        ddpm = pretrained.load_pretrained("ddpm", device="cpu").to(memory_format=torch.channels_last)
        rows = samplers_table(flow, ddpm, classifier, test_features, n=args.n)
        pretrained.record_metrics("flow", {"n": args.n, "table": rows}, directory=args.out)
        return 0
    if args.compare_times:
        out = {}
        for distribution in ("uniform", "logit_normal"):
            tc = replace(config.COMPARE_TIMES_TRAIN, steps=args.steps or config.COMPARE_TIMES_TRAIN.steps,
                         device=str(rt.device))
            result = train(f"flow_lesson_{distribution}", config.LESSON_UNET, tc, objective(distribution),
                           load_mnist("train"), runs / f"flow_lesson_{distribution}_{tc.steps}_recipe.pt")
            if result.interrupted:
                return 1
            net = as_shipped(result.best).to(memory_format=torch.channels_last)
            rows = _flow_rows(net, classifier, test_features, args.n)
            out[distribution] = {"rows": rows, "steps": result.steps, "train_minutes": round(result.minutes, 1),
                                 "final_loss": final_mean(result.history)}
            print(distribution, out[distribution])
        if distributed.is_main_process():
            pretrained.record_metrics("flow", {"time_distributions": out}, directory=args.out)
        return 0

    unet_config, train_config = ((config.LESSON_UNET, config.LESSON_TRAIN) if args.lesson
                                 else (config.PRETRAINED_UNET, config.PRETRAINED_TRAIN))
    train_config = replace(train_config, steps=args.steps or train_config.steps, device=str(rt.device))
    name = "flow_lesson" if args.lesson else "flow"
    result = train(name, unet_config, train_config, objective(), load_mnist("train"), runs / f"{name}_recipe.pt")

    def measured(net):
        ddpm = pretrained.load_pretrained("ddpm", device="cpu").to(memory_format=torch.channels_last)
        rows = samplers_table(net.to(memory_format=torch.channels_last), ddpm, classifier, test_features, n=args.n)
        return {"n": args.n, "table": rows, "time_distribution": config.TIME_DISTRIBUTION}

    return ship(result, measured, name=name, kind="unet", config=unet_config.to_dict(), recipe=RECIPE,
                extra={"time_distribution": config.TIME_DISTRIBUTION, "objective": "flow_matching"},
                directory=args.out, save=not args.lesson)


def _flow_rows(net, classifier, test_features, n):
    """Euler at 10 and 50 steps on one flow model, and at 10 on SD3's shifted grid: the rows of the
    time-distribution comparison."""
    rows = []
    for k, shift in ((10, 1.0), (10, config.SHIFT), (50, 1.0)):
        x = sample(net, EulerSampler(k, shift=shift), (n, 1, 28, 28), generator=torch.Generator().manual_seed(0),
                   progress=False, batch_size=500).clamp(-1, 1)
        report = metrics.evaluate_samples(classifier, x, test_features)
        rows.append({"sampler": "Euler", "grid": "even" if shift == 1 else f"shift {shift:g}", "steps": k,
                     "classifier_fid": round(report.classifier_fid, 1), "confident": round(report.confident, 3)})
    return rows


def train_text(args, rt, classifier, test, test_features) -> int:
    from sdlib.captions import CaptionedPrompts, captioned_dataset
    from sdlib.metrics import measure_guidance

    encoder = pretrained.load_prompt_encoder(device=rt.device)
    data, _ = captioned_dataset("train", thresholds=encoder.thresholds)
    train_config = replace(config.TEXT_TRAIN, steps=args.steps or config.TEXT_TRAIN.steps, device=str(rt.device))
    result = train("text_flow", config.TEXT_UNET, train_config,
                   objective(config.TIME_DISTRIBUTION, CaptionedPrompts(encoder), config.P_UNCOND), data,
                   runtime.runs_dir() / "text_flow_recipe.pt")

    def measured(net):
        reference = (test_features, test.labels)
        rows = measure_guidance(net.to(memory_format=torch.channels_last), encoder.cpu(), classifier, reference,
                                config.GUIDANCE_SCALES, n=args.n, sampler=EulerSampler(config.TEXT_SAMPLER_STEPS),
                                thickness=False)
        ddpm = pretrained.load_pretrained("text_ddpm", device="cpu").to(memory_format=torch.channels_last)
        ddim = DDIMSampler(NoiseSchedule.linear(SCHEDULE["T"]), config.TEXT_SAMPLER_STEPS)
        ddpm_rows = measure_guidance(ddpm, encoder, classifier, reference, config.GUIDANCE_SCALES, n=args.n,
                                     sampler=ddim, thickness=False)
        return {"n": args.n, "sampler": {"name": "Euler", "steps": config.TEXT_SAMPLER_STEPS},
                "guidance": [r.as_dict() for r in rows], "text_ddpm_ddim": [r.as_dict() for r in ddpm_rows]}

    return ship(result, measured, name="text_flow", kind="unet", config=config.TEXT_UNET.to_dict(), recipe=RECIPE,
                extra={"p_uncond": config.P_UNCOND, "text_encoder": "clip", "objective": "flow_matching",
                       "default_w": 3.0}, directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
