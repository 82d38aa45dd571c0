"""Train the latent U-Net of the course's Stable Diffusion (lesson 08), and measure the whole pipeline.

    python -m sdlib.recipes.latent_ddpm [--steps N]

The MNIST training digits are encoded once by the pretrained VAE (`python -m sdlib.recipes.vae`) into
scaled 4×7×7 latents (posterior means × latent_scale); the U-Net learns to denoise them with random
true captions encoded by the pretrained CLIP text encoder (`python -m sdlib.recipes.clip`), 10% of them
dropped for classifier-free guidance. Measured with `sdlib.pipeline.LatentDiffusion` and DDIM-50:
- text-to-image at several guidance scales: digit prompt accuracy, thickness words obeyed, classifier FID;
- inpainting the lower half of 1,000 test digits prompted with their own digit: classifier accuracy, and
  the error inside the kept upper half;
- image-to-image of 1,000 test digits prompted with another digit: agreement with the input's digit
  against strength;
- seconds for 100 guided samples, against the pixel-space text_ddpm model.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import torch

from sdlib import metrics, pretrained, runtime
from sdlib.captions import DIGIT_WORDS, CaptionedPrompts, captioned_latents
from sdlib.data import from_unit_range, load_mnist, to_unit_range
from sdlib.diffusion import DDPMObjective
from sdlib.metrics import measure_guidance
from sdlib.pipeline import LatentDiffusion
from sdlib.recipes import ship
from sdlib.recipes.configs.latent_ddpm import (DEFAULT_W, GUIDANCE_SCALES, LATENT_TRAIN, LATENT_UNET, P_UNCOND, SAMPLER,
                                               SCHEDULE, STRENGTHS)
from sdlib.runtime import distributed
from sdlib.schedules import NoiseSchedule
from sdlib.train import fit
from sdlib.unet import UNet

RECIPE = "python -m sdlib.recipes.latent_ddpm"


def half_masks(n: int, lower: bool = True) -> torch.Tensor:
    """(n, 1, 28, 28) masks, 1 on the lower (or upper) 14 rows: the part to repaint."""
    m = torch.zeros(n, 1, 28, 28)
    if lower:
        m[:, :, 14:] = 1
    else:
        m[:, :, :14] = 1
    return m


def measure(pipe: LatentDiffusion, classifier, test, n: int = 1000, ws=GUIDANCE_SCALES, log=print) -> dict:
    _, test_features = metrics.predict(classifier, test.images)
    out = {"n": n, "sampler": {"name": "DDIM", **SAMPLER}, "default_w": DEFAULT_W}

    def images_for(prompts, w, generator):
        return from_unit_range(pipe.text_to_image(prompts, guidance_scale=w, generator=generator, progress=False).images)

    rows = measure_guidance(pipe.unet, pipe.encoder, classifier, (test_features, test.labels), ws, n=n,
                            images_for=images_for, log=log)
    out["guidance"] = [r.as_dict() for r in rows]

    # Inpainting: keep the upper half of real test digits, repaint the lower half, prompt their own digit.
    x = to_unit_range(test.images[:n])
    labels = test.labels[:n]
    masks = half_masks(n)
    prompts = [f"a {DIGIT_WORDS[d]}" for d in labels.tolist()]
    # paste_known=False: the kept region as the decoder draws it (with the default paste it is the input exactly)
    inpainted = pipe.inpaint(x, masks, prompts, guidance_scale=DEFAULT_W, paste_known=False, progress=False).images
    probs, _ = metrics.predict(classifier, from_unit_range(inpainted))
    kept = 1 - masks
    kept_error = (((inpainted - x) ** 2) * kept).sum() / kept.sum()
    recon = to_unit_range(pipe.vae.decode_scaled(pipe.vae.encode_scaled(from_unit_range(x))))
    recon_error = (((recon - x) ** 2) * kept).sum() / kept.sum()
    out["inpaint"] = {"n": n, "mask": "lower half repainted", "prompt": "the image's own digit",
                      "prompt_accuracy": round(metrics.prompt_accuracy(probs, labels), 4),
                      "kept_region_mse": round(kept_error.item(), 5),
                      "vae_reconstruction_mse_same_region": round(recon_error.item(), 5)}
    log(f"inpainting: {out['inpaint']}")

    # Image-to-image toward another digit: how much of the input survives each strength.
    other = (labels + 1) % 10
    prompts = [f"a {DIGIT_WORDS[d]}" for d in other.tolist()]
    curve = []
    for s in STRENGTHS:
        y = pipe.image_to_image(x, prompts, strength=s, guidance_scale=DEFAULT_W, progress=False).images
        probs, _ = metrics.predict(classifier, from_unit_range(y))
        curve.append({"strength": s, "input_digit": round(metrics.prompt_accuracy(probs, labels), 4),
                      "prompted_digit": round(metrics.prompt_accuracy(probs, other), 4)})
        log(f"image-to-image strength {s}: {curve[-1]}")
    out["image_to_image"] = curve

    # Speed: 100 guided samples with DDIM-50, latent vs pixel space.
    prompts = [f"a {DIGIT_WORDS[d % 10]}" for d in range(100)]
    pipe.text_to_image(prompts[:10], steps=5, progress=False)            # warm up
    start = time.perf_counter()
    pipe.text_to_image(prompts, guidance_scale=DEFAULT_W, steps=50, batch_size=100, progress=False)
    latent_s = time.perf_counter() - start
    speed = {"latent_seconds_100": round(latent_s, 2), "guidance": "cond and uncond in one batch of 200"}
    try:
        from sdlib.samplers import DDIMSampler, generate

        pixel = pretrained.load_pretrained("text_ddpm", device=pipe.device).to(memory_format=torch.channels_last)
        start = time.perf_counter()
        generate(pixel, pipe.encoder, prompts, DEFAULT_W, DDIMSampler(pipe.schedule, 50), batch_size=100)
        speed["pixel_seconds_100"] = round(time.perf_counter() - start, 2)
    except pretrained.WeightsError as error:
        log(f"pixel-space comparison skipped: {error}")
    out["speed"] = speed
    log(f"speed: {speed}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=RECIPE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    parser.add_argument("--checkpoint", default=None, help="resumable training checkpoint")
    parser.add_argument("--n", type=int, default=1000, help="samples per measurement")
    parser.add_argument("--out", default=None, help="weights folder (default: sdlib/weights)")
    args = parser.parse_args(argv)
    rt = runtime.setup(seed=0, verbose=distributed.is_main_process())
    config = replace(LATENT_TRAIN, steps=args.steps or LATENT_TRAIN.steps, device=str(rt.device))
    vae = pretrained.load_pretrained("vae", device=rt.device)
    encoder = pretrained.load_prompt_encoder(device=rt.device)
    start = time.perf_counter()
    data = captioned_latents(vae, encoder.thresholds)
    encode_seconds = time.perf_counter() - start
    print(f"encoded {len(data)} training digits to latents {tuple(data.tensors[0].shape[1:])} in {encode_seconds:.0f} s "
          f"(latent std {data.tensors[0].std():.2f})")
    model = UNet(LATENT_UNET)
    print(f"latent U-Net: {model.num_parameters():,} parameters, {config.steps} steps of {config.batch_size}")
    objective = DDPMObjective(NoiseSchedule.linear(SCHEDULE["T"]), CaptionedPrompts(encoder), p_uncond=P_UNCOND)
    result = fit(model, objective, data, config, description="latent DDPM",
                 checkpoint=args.checkpoint or runtime.runs_dir() / "latent_ddpm_recipe.pt")

    def measured(net):
        pipe = LatentDiffusion(vae.cpu(), encoder.cpu(), net)
        classifier = pretrained.load_pretrained("classifier", device="cpu")
        return {**measure(pipe, classifier, load_mnist("test"), n=args.n), "encode_seconds": round(encode_seconds, 1)}

    return ship(result, measured, name="latent_ddpm", kind="unet", config=LATENT_UNET.to_dict(), recipe=RECIPE,
                extra={"schedule": SCHEDULE, "p_uncond": P_UNCOND, "default_w": DEFAULT_W, "text_encoder": "clip",
                       "autoencoder": "vae"}, directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
