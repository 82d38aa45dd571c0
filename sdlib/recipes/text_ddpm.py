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

import torch

from .. import metrics, pretrained, runtime
from ..conditioning import CaptionedPrompts, PromptEncoder, captioned_dataset, measure_guidance
from ..data import load_mnist
from ..diffusion import DDPMObjective
from ..samplers import DDIMSampler
from ..schedules import NoiseSchedule
from ..train import TrainConfig, fit
from ..unet import UNet, UNetConfig

RECIPE = "python -m sdlib.recipes.text_ddpm"
SCHEDULE = {"name": "linear", "T": 1000}
P_UNCOND = 0.1
GUIDANCE_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5)
DEFAULT_W = 3.0
SAMPLER = {"steps": 50, "eta": 0.0}

# Cross-attention to the prompt in the 7×7 middle of the U-Net. (Attention also at level 1 cost
# a third of the training speed: 173 against 264 images/s at batch 64, docs/measured.md.)
LESSON_UNET = UNetConfig(channels=(32, 64), blocks=1, patch_size=2, mid_attention=True, context_dim=64)
LESSON_TRAIN = TrainConfig(steps=2400, batch_size=64, lr=2e-3, warmup=100, ema_decay=0.995, channels_last=True,
                           checkpoint_every=250)
# The shipped model: the same U-Net trained twice as long (the lesson's already reaches the quality
# targets; a wider one would make every sample in lessons 06-07 twice as slow).
PRETRAINED_UNET = LESSON_UNET
PRETRAINED_TRAIN = TrainConfig(steps=5000, batch_size=64, lr=2e-3, warmup=200, ema_decay=0.998, channels_last=True,
                               checkpoint_every=250)


def schedule() -> NoiseSchedule:
    return NoiseSchedule.linear(SCHEDULE["T"])


def sampler() -> DDIMSampler:
    return DDIMSampler(schedule(), **SAMPLER)


def objective(encoder: PromptEncoder) -> DDPMObjective:
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
    rt = runtime.setup(seed=0)
    unet_config, train_config = (LESSON_UNET, LESSON_TRAIN) if args.lesson else (PRETRAINED_UNET, PRETRAINED_TRAIN)
    train_config = TrainConfig(**{**train_config.__dict__, "device": str(rt.device),
                                  **({"steps": args.steps} if args.steps else {})})
    name = "text_ddpm_lesson" if args.lesson else "text_ddpm"
    encoder = PromptEncoder.pretrained(device=rt.device)
    data, _ = captioned_dataset("train", thresholds=encoder.thresholds)
    model = UNet(unet_config)
    print(f"{name}: {model.num_parameters():,} parameters, {train_config.steps} steps of {train_config.batch_size}")
    result = fit(model, objective(encoder), data, train_config, description=name,
                 checkpoint=args.checkpoint or runtime.runs_dir() / f"{name}_recipe.pt")
    if result.interrupted:
        return 1
    net = result.best.cpu().eval()
    net.load_state_dict({k: v.half().float() for k, v in net.state_dict().items()})   # measure what is shipped
    net.to(memory_format=torch.channels_last)
    encoder.cpu()
    classifier = pretrained.load_pretrained("classifier", device="cpu")
    test = load_mnist("test")
    _, test_features = metrics.predict(classifier, test.images)
    rows = measure_guidance(net, encoder, classifier, (test_features, test.labels), args.ws, n=args.n,
                            sampler=sampler())
    measured = {"n": args.n, "sampler": {"name": "DDIM", **SAMPLER}, "default_w": DEFAULT_W,
                "guidance": [r.as_dict() for r in rows], "train_minutes": round(result.seconds / 60, 1),
                "steps": result.steps, "images_per_second": round(result.images_per_second, 1),
                "final_loss": round(sum(result.history["loss"][-200:]) / len(result.history["loss"][-200:]), 5)}
    print(measured)
    if args.lesson:
        return 0
    pretrained.save_pretrained(name, net, kind="unet", config=unet_config.to_dict(), recipe=RECIPE, metrics=measured,
                               extra={"schedule": SCHEDULE, "p_uncond": P_UNCOND, "default_w": DEFAULT_W,
                                      "text_encoder": "clip"}, directory=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
