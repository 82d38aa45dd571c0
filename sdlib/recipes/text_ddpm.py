"""Train the text-conditioned pixel-space DDPM on captioned MNIST (lessons 06-07), and measure guidance.

    python -m sdlib.recipes.text_ddpm              # the pretrained model shipped in sdlib/weights
    python -m sdlib.recipes.text_ddpm --lesson     # lesson 07's settings, measured the same way

The prompts are random true captions ("a thick seven leaning left", "the number 7", "7", ...) encoded
by the frozen text encoder of the pretrained CLIP (lesson 05); 10% of them are replaced by the
U-Net's learned empty prompt (p_uncond), so that the one model serves classifier-free guidance.
Measured for w in GUIDANCE_SCALES with DDIM-50 (eta = 0): digit prompt accuracy, classifier FID
against the 10,000 test digits, class-conditional spread, and "thick"/"thin" prompts obeyed.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import torch

from sdlib import metrics, pretrained, runtime
from sdlib.captions import CaptionedPrompts, captioned_dataset
from sdlib.clip import PromptEncoder
from sdlib.data import load_mnist
from sdlib.diffusion import DDPMObjective
from sdlib.metrics import measure_guidance
from sdlib.recipes import ship
from sdlib.recipes.configs.text_ddpm import (DEFAULT_W, GUIDANCE_SCALES, LESSON_TRAIN, LESSON_UNET, P_UNCOND,
                                             PRETRAINED_TRAIN, PRETRAINED_UNET, SAMPLER, SCHEDULE)
from sdlib.runtime import distributed
from sdlib.samplers import DDIMSampler
from sdlib.schedules import NoiseSchedule
from sdlib.train import fit
from sdlib.unet import UNet

RECIPE = "python -m sdlib.recipes.text_ddpm"


def schedule() -> NoiseSchedule:
    return NoiseSchedule.linear(SCHEDULE["T"])


def sampler() -> DDIMSampler:
    return DDIMSampler(schedule(), **SAMPLER)


def objective(encoder: PromptEncoder) -> DDPMObjective:
    """Lesson 07's objective: the DDPM loss on random true captions, P_UNCOND of them dropped."""
    return DDPMObjective(schedule(), CaptionedPrompts(encoder), p_uncond=P_UNCOND)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=RECIPE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--lesson", action="store_true", help="train lesson 07's small model instead")
    parser.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    parser.add_argument("--checkpoint", default=None, help="resumable training checkpoint (default: runs/text_ddpm*.pt)")
    parser.add_argument("--n", type=int, default=1000, help="samples per guidance scale for the measurements")
    parser.add_argument("--ws", type=float, nargs="+", default=list(GUIDANCE_SCALES), help="guidance scales to measure")
    parser.add_argument("--out", default=None, help="weights folder (default: sdlib/weights)")
    args = parser.parse_args(argv)
    rt = runtime.setup(seed=0, verbose=distributed.is_main_process())
    unet_config, train_config = (LESSON_UNET, LESSON_TRAIN) if args.lesson else (PRETRAINED_UNET, PRETRAINED_TRAIN)
    train_config = replace(train_config, steps=args.steps or train_config.steps, device=str(rt.device))
    name = "text_ddpm_lesson" if args.lesson else "text_ddpm"
    encoder = pretrained.load_prompt_encoder(device=rt.device)
    data, _ = captioned_dataset("train", thresholds=encoder.thresholds)
    model = UNet(unet_config)
    print(f"{name}: {model.num_parameters():,} parameters, {train_config.steps} steps of {train_config.batch_size}")
    result = fit(model, objective(encoder), data, train_config, description=name,
                 checkpoint=args.checkpoint or runtime.runs_dir() / f"{name}_recipe.pt")

    def measured(net):
        classifier = pretrained.load_pretrained("classifier", device="cpu")
        test = load_mnist("test")
        _, test_features = metrics.predict(classifier, test.images)
        rows = measure_guidance(net.to(memory_format=torch.channels_last), encoder.cpu(), classifier,
                                (test_features, test.labels), args.ws, n=args.n, sampler=sampler())
        return {"n": args.n, "sampler": {"name": "DDIM", **SAMPLER}, "default_w": DEFAULT_W,
                "guidance": [r.as_dict() for r in rows]}

    return ship(result, measured, name=name, kind="unet", config=unet_config.to_dict(), recipe=RECIPE,
                extra={"schedule": SCHEDULE, "p_uncond": P_UNCOND, "default_w": DEFAULT_W, "text_encoder": "clip"},
                directory=args.out, save=not args.lesson)


if __name__ == "__main__":
    sys.exit(main())
