"""Guidance's premises, measured (lesson 07): prompt dropout, and what the empty prompt should be.

    python -m sdlib.recipes.guidance_premises      # ships the four models as text_ddpm_short_<name>

Trains four short text-conditioned models with lesson 07's U-Net, the same training settings
(PREMISES_TRAIN), the same seed and the same initial weights (lesson 03's unconditional DDPM, `ddpm`,
whose levels the text U-Net shares; its new attention block starts as the identity, so at step 0 each
model is that DDPM and ignores the prompt); they differ only in how they learn the unconditional
prediction ε(x_t, t, ∅):
  learned      10% of the prompts dropped and replaced by a learned null token (the course's choice);
  zero         10% dropped and replaced by a token of zeros;
  text         10% dropped and replaced by the text encoder's output for "" (Stable Diffusion's choice);
  no_dropout   no prompt ever dropped; guided with the null token learned by the `learned` model,
               which this model has never seen.
Each is guided with classifier-free guidance (w = 1, 3, 5; w = 3, 5 for zero and text, since at w = 1
the empty prompt plays no part) on the same digit prompts (--n per w, DDIM-25, η = 0) and measured
with the course's classifier: prompt accuracy, classifier FID, confidence. All four ship (lesson 07
samples them), each with its own rows in its manifest entry. Training checkpoints and measured rows are
kept in runs/, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import torch

from sdlib import metrics, pretrained, runtime
from sdlib.captions import CaptionedPrompts, captioned_dataset
from sdlib.clip import PromptEncoder
from sdlib.data import load_mnist
from sdlib.diffusion import DDPMObjective
from sdlib.metrics import measure_guidance
from sdlib.recipes import as_shipped, final_mean
from sdlib.recipes.configs.text_ddpm import LESSON_UNET, PREMISES, PREMISES_SAMPLER, PREMISES_TRAIN, SCHEDULE
from sdlib.samplers import DDIMSampler
from sdlib.schedules import NoiseSchedule
from sdlib.train import fit
from sdlib.unet import UNet

RECIPE = "python -m sdlib.recipes.guidance_premises"
SHIPPED = {name: f"text_ddpm_short_{name}" for name in PREMISES}


def build(name: str, encoder: PromptEncoder) -> UNet:
    """The U-Net of premise `name`: the same initial weights for every name (lesson 03's DDPM for the shared
    levels, the same seeded draw for the new attention block)."""
    null = PREMISES[name][0]
    torch.manual_seed(PREMISES_TRAIN.seed)
    if null == "text":
        context, mask = encoder([""])
        model = UNet(replace(LESSON_UNET, null_context="text", null_tokens=int(mask.sum())))
        model.set_empty_prompt(context.cpu(), mask.cpu())
    else:
        model = UNet(replace(LESSON_UNET, null_context=null))
    loaded = model.load_state_dict(pretrained.load_state("ddpm"), strict=False)
    new = [k for k in loaded.missing_keys if not k.startswith("mid_attn.") and k != "null_context"]
    if new or loaded.unexpected_keys:
        raise RuntimeError(f"lesson 03's DDPM does not fit lesson 07's U-Net: missing {new}, unexpected "
                           f"{loaded.unexpected_keys}")
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=RECIPE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    parser.add_argument("--n", type=int, default=500, help="digit prompts per guidance scale")
    parser.add_argument("--out", default=None, help="weights folder (default: sdlib/weights)")
    args = parser.parse_args(argv)
    rt = runtime.setup(seed=0)
    train_config = replace(PREMISES_TRAIN, steps=args.steps or PREMISES_TRAIN.steps, device=str(rt.device))
    schedule = NoiseSchedule.linear(SCHEDULE["T"])
    sampler = DDIMSampler(schedule, **PREMISES_SAMPLER)
    encoder = pretrained.load_prompt_encoder(device=rt.device)
    data, _ = captioned_dataset("train", thresholds=encoder.thresholds)
    classifier = pretrained.load_pretrained("classifier", device="cpu")
    test = load_mnist("test")
    _, test_features = metrics.predict(classifier, test.images)
    rows_file = runtime.runs_dir() / f"guidance_premises_{train_config.steps}_{args.n}.json"
    table = json.loads(rows_file.read_text()) if rows_file.exists() else {}
    nets, trained = {}, {}
    for name, (null, p_uncond, scales) in PREMISES.items():   # "learned" first: no_dropout borrows its token
        model = build(name, encoder)
        print(f"{name}: null context {null!r}, p_uncond {p_uncond}; {train_config.steps} steps of "
              f"{train_config.batch_size}")
        checkpoint = runtime.runs_dir() / f"guidance_premise_{name}_{train_config.steps}.pt"
        result = fit(model, DDPMObjective(schedule, CaptionedPrompts(encoder), p_uncond=p_uncond), data, train_config,
                     description=f"premise {name}", checkpoint=checkpoint)
        if result.interrupted:
            return 1
        net = as_shipped(result.best)
        if name == "no_dropout":                              # the null token it never saw: the learned model's
            net.null_context.data.copy_(nets["learned"].null_context.data)
        nets[name] = net
        trained[name] = {"train_minutes": round(result.minutes, 1), "final_loss": final_mean(result.history)}
        if name not in table:
            rows = measure_guidance(net.to(memory_format=torch.channels_last), encoder.cpu(), classifier,
                                    (test_features, test.labels), scales, n=args.n, sampler=sampler,
                                    thickness=False)
            table[name] = {"null_context": null, "p_uncond": p_uncond, **trained[name],
                           "guidance": [r.as_dict() for r in rows]}
            rows_file.write_text(json.dumps(table, indent=1))
        encoder.to(rt.device)
    print(json.dumps(table, indent=1))
    for name, shipped in SHIPPED.items():
        null, p_uncond, _ = PREMISES[name]
        measured = {"n": args.n, "sampler": {"name": "DDIM", **PREMISES_SAMPLER}, "steps": train_config.steps,
                    "batch_size": train_config.batch_size, **table[name]}
        pretrained.save_pretrained(shipped, nets[name], kind="unet", config=nets[name].config.to_dict(), recipe=RECIPE,
                                   metrics=measured, directory=args.out,
                                   extra={"schedule": SCHEDULE, "p_uncond": p_uncond, "text_encoder": "clip",
                                          "premise": name})
    return 0


if __name__ == "__main__":
    sys.exit(main())
