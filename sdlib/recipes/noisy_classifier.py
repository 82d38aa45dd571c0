"""Train the noise-aware digit classifier p(y | x_t, t) of classifier guidance (lesson 07), and measure
classifier guidance against classifier-free guidance.

    python -m sdlib.recipes.noisy_classifier            # ships noisy_classifier in sdlib/weights

The classifier sees MNIST digits noised to a uniformly drawn t of lesson 03's schedule (the same
q(x_t | x_0) as the DDPM's training) and learns their class. Measured: its test accuracy at several t;
then, on the same 1,000 digits (the digit prompts "a zero" ... "a nine", balanced) and the same starting
noises, DDIM-25 (η = 0) samples of
  - the unconditional DDPM of lesson 03 guided by this classifier's gradient, at each scale s;
  - the text-conditioned model of lesson 07 with classifier-free guidance at w = 3;
with prompt accuracy, classifier FID and confidence read by the course's (clean-image) digit classifier,
and the seconds each 1,000 samples took.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import torch

from sdlib import metrics, pretrained, runtime
from sdlib.data import load_mnist
from sdlib.diffusion import NoisyClassifierObjective
from sdlib.metrics import digit_prompts, measure_guidance
from sdlib.recipes import ship
from sdlib.recipes.configs.classifier import CLASSIFIER_GUIDANCE_SCALES, NOISY_CLASSIFIER_CONFIG, NOISY_CLASSIFIER_TRAIN
from sdlib.recipes.configs.text_ddpm import DEFAULT_W, PREMISES_SAMPLER
from sdlib.samplers import ClassifierGuidance, DDIMSampler, sample
from sdlib.schedules import NoiseSchedule
from sdlib.train import fit
from sdlib.unet import NoisyClassifier

RECIPE = "python -m sdlib.recipes.noisy_classifier"
ACCURACY_AT = (0, 100, 250, 500, 750, 1000)


@torch.no_grad()
def noisy_accuracy(classifier, schedule, images, labels, t: int, seed: int = 0) -> float:
    """Accuracy of a noise-aware classifier on images noised to step t (fixed noise from `seed`)."""
    eps = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    tt = torch.full((len(images),), t, dtype=torch.long)
    xt = schedule.add_noise(images, eps, tt) if t > 0 else images
    logits = torch.cat([classifier(xt[i:i + 1000], tt[i:i + 1000]) for i in range(0, len(xt), 1000)])
    return (logits.argmax(1) == labels).float().mean().item()


def classifier_guided(model, classifier, sampler):
    """images_for(prompts, s, generator) for measure_guidance: classifier guidance toward each prompt's digit."""
    def images_for(prompts, scale, generator):
        expected, digits = digit_prompts(len(prompts))
        if list(prompts) != expected:       # the labels are read off measure_guidance's balanced digit prompts
            raise ValueError("classifier guidance is measured on the digit prompts of metrics.digit_prompts only")
        denoiser = ClassifierGuidance(model, classifier, digits, scale, sampler.schedule)
        return sample(denoiser, sampler, (len(prompts), 1, 28, 28), generator=generator, progress=False,
                      batch_size=250).clamp(-1, 1)
    return images_for


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=RECIPE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    parser.add_argument("--n", type=int, default=1000, help="samples per guidance scale")
    parser.add_argument("--scales", type=float, nargs="+", default=list(CLASSIFIER_GUIDANCE_SCALES),
                        help="classifier guidance scales s to measure")
    parser.add_argument("--out", default=None, help="weights folder (default: sdlib/weights)")
    args = parser.parse_args(argv)
    rt = runtime.setup(seed=0)
    schedule = NoiseSchedule.linear(NOISY_CLASSIFIER_CONFIG.max_t)
    train_config = replace(NOISY_CLASSIFIER_TRAIN, steps=args.steps or NOISY_CLASSIFIER_TRAIN.steps,
                           device=str(rt.device))
    train, test = load_mnist("train"), load_mnist("test")
    model = NoisyClassifier(NOISY_CLASSIFIER_CONFIG)
    print(f"noisy classifier: {model.num_parameters():,} parameters, {train_config.steps} steps of "
          f"{train_config.batch_size}")
    result = fit(model, NoisyClassifierObjective(schedule), train, train_config, description="noisy classifier",
                 checkpoint=runtime.runs_dir() / "noisy_classifier_recipe.pt")

    def measured(noisy):
        accuracy = {str(t): round(noisy_accuracy(noisy, schedule, test.images, test.labels, t), 4) for t in ACCURACY_AT}
        judge = pretrained.load_pretrained("classifier", device="cpu")
        _, test_features = metrics.predict(judge, test.images)
        reference = (test_features, test.labels)
        sampler = DDIMSampler(schedule, **PREMISES_SAMPLER)
        ddpm = pretrained.load_pretrained("ddpm", device="cpu")
        guided = measure_guidance(None, None, judge, reference, args.scales, n=args.n, thickness=False,
                                  images_for=classifier_guided(ddpm, noisy, sampler))
        encoder = pretrained.load_prompt_encoder(device="cpu")
        text = pretrained.load_pretrained("text_ddpm", device="cpu")
        free = measure_guidance(text, encoder, judge, reference, (DEFAULT_W,), n=args.n, sampler=sampler,
                                thickness=False)
        return {"test_accuracy_at_t": accuracy, "n": args.n, "sampler": {"name": "DDIM", **PREMISES_SAMPLER},
                "classifier_guidance": {"model": "ddpm", "rows": [r.as_dict() for r in guided]},
                "classifier_free_guidance": {"model": "text_ddpm", "rows": [r.as_dict() for r in free]}}

    return ship(result, measured, name="noisy_classifier", kind="noisy_classifier",
                config=NOISY_CLASSIFIER_CONFIG.to_dict(), recipe=RECIPE,
                extra={"schedule": {"T": schedule.T, "name": schedule.name}}, directory=args.out)

if __name__ == "__main__":
    sys.exit(main())
