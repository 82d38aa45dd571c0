"""Train the convolutional KL autoencoder that latent diffusion works in (lessons 04 and 08).

    python -m sdlib.recipes.vae [--steps 3000] [--beta 1.0]

28×28 digits become 4×7×7 latents. After training, the recipe measures the latent scale factor on
the training set and, on the 10,000 test digits: the classifier's accuracy on the originals and on
the reconstructions, reconstruction MSE and PSNR, and the classifier's confidence on images decoded
from N(0, I) latents (the evidence that the KL term shaped the latent space).
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace

import torch

from sdlib import metrics, pretrained, runtime
from sdlib.data import load_mnist
from sdlib.recipes import final_mean, ship
from sdlib.recipes.configs.vae import BETA, VAE_CONFIG, VAE_TRAIN
from sdlib.runtime import distributed
from sdlib.train import fit
from sdlib.vae import KLAutoencoder, VAEObjective

RECIPE = "python -m sdlib.recipes.vae"


@torch.no_grad()
def measure(vae: KLAutoencoder, classifier, test, n_prior: int = 1000, seed: int = 0) -> dict:
    vae.eval()
    recon = torch.cat([vae.decode(vae.encode(chunk).mode()) for chunk in test.images.split(1000)])
    mse = ((recon - test.images) ** 2).mean().item()
    psnr = 10 * math.log10(4.0 / mse)                           # peak-to-peak range of [-1, 1] is 2, squared 4
    original = metrics.accuracy(classifier, test.images, test.labels)
    reconstructed = metrics.accuracy(classifier, recon, test.labels)
    z = torch.randn(n_prior, *vae.latent_shape, generator=torch.Generator().manual_seed(seed))
    probs, _ = metrics.predict(classifier, vae.decode(z))
    return {"test_accuracy_originals": round(original, 4), "test_accuracy_reconstructions": round(reconstructed, 4),
            "reconstruction_mse": round(mse, 5), "psnr_db": round(psnr, 2),
            "prior_samples_confident": round(metrics.confident_fraction(probs), 4),
            "prior_samples_mean_confidence": round(probs.max(1).values.mean().item(), 4),
            "prior_samples_histogram": [round(v, 3) for v in metrics.class_histogram(probs).tolist()]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=RECIPE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=VAE_TRAIN.steps)
    parser.add_argument("--beta", type=float, default=BETA)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rt = runtime.setup(seed=0, verbose=distributed.is_main_process())
    train, test = load_mnist("train"), load_mnist("test")
    config = replace(VAE_TRAIN, steps=args.steps, device=str(rt.device))
    vae = KLAutoencoder(VAE_CONFIG)
    result = fit(vae, VAEObjective(args.beta), train, config, description="KL autoencoder",
                 checkpoint=args.checkpoint or runtime.runs_dir() / "vae_recipe.pt")

    def measured(vae):
        scale = vae.set_latent_scale(train.images[:10000])      # a buffer: saved with the weights
        classifier = pretrained.load_pretrained("classifier", device="cpu")
        return {**measure(vae, classifier, test), "latent_scale": round(scale, 5), "beta": args.beta,
                "final_reconstruction_nats": final_mean(result.history, "reconstruction", last=100, digits=2),
                "final_kl_nats": final_mean(result.history, "kl", last=100, digits=2)}

    return ship(result, measured, name="vae", kind="vae", config=VAE_CONFIG.to_dict(), recipe=RECIPE,
                net=result.model, directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
