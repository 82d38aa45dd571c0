"""Time lesson 03's U-Net training steps on one process or several (docs/scaling.md):

    python -m sdlib.recipes.torchrun --steps 20
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 -m sdlib.recipes.torchrun --steps 20
"""
import argparse
from dataclasses import replace

import torch

from sdlib.diffusion import DDPMObjective
from sdlib.recipes.configs.ddpm import LESSON_TRAIN, LESSON_UNET
from sdlib.runtime import distributed
from sdlib.schedules import NoiseSchedule
from sdlib.train import fit
from sdlib.unet import UNet


def main(argv=None) -> int:
    """`python -m sdlib.recipes.torchrun`, alone or under torchrun: time the lesson-03 U-Net's training steps
    (random images, no download) and print the images per second of the whole run."""
    parser = argparse.ArgumentParser(prog="python -m sdlib.recipes.torchrun", description=main.__doc__.split(":")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps, after 3 untimed warm-up steps")
    parser.add_argument("--batch-size", type=int, default=LESSON_TRAIN.batch_size, help="the global batch")
    parser.add_argument("--autocast", choices=["fp32", "auto", "bfloat16"], default="fp32")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, objective = UNet(LESSON_UNET), DDPMObjective(NoiseSchedule.linear(1000))
    data = (torch.rand(10 * args.batch_size, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1,)
    config = replace(LESSON_TRAIN, batch_size=args.batch_size, max_minutes=None, checkpoint_every=None,
                     autocast=None if args.autocast == "fp32" else args.autocast)
    fit(model, objective, data, replace(config, steps=3), progress=False)          # warm-up, not timed
    result = fit(model, objective, data, replace(config, steps=args.steps), progress=False)
    if distributed.is_main_process():
        print(f"{distributed.world_size()} process(es) x {torch.get_num_threads()} thread(s), global batch {args.batch_size}, "
              f"{result.autocast or 'fp32'}, {result.model.conv_in.weight.device}: "
              f"{result.images_per_second:.1f} images/s over {args.steps} steps", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
