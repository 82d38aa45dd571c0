"""Text conditioning for diffusion models (lessons 06-08): prompts become a context through the
course's own CLIP text encoder, training images get random true captions, and guided samples are
measured against their prompts.

    encoder = PromptEncoder.pretrained()                 # the frozen text half of lesson 05's CLIP
    context, mask = encoder(["a thick seven", "a 3"])    # (2, L, 64) per-token features, (2, L) bool
    images = generate(unet, encoder, prompts, w=3.0)     # classifier-free guided DDIM samples

The U-Net reads `context` through cross-attention (sdlib.attention); `CaptionedPrompts` draws the
training captions, and `DDPMObjective(p_uncond=0.1)` replaces a tenth of them by the U-Net's learned
empty prompt so that one model learns ε(x_t, t, prompt) and ε(x_t, t) (lesson 07).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

from . import metrics, validate
from .captions import Styles, StyleThresholds, caption, classify_styles, random_captions
from .samplers import ClassifierFreeGuidance, DDIMSampler, sample
from .schedules import NoiseSchedule


class PromptEncoder(nn.Module):
    """The frozen text encoder of a trained CLIP: prompts -> (context (B, L, width), mask (B, L)).

    Unknown words warn (they become <unk>) and still run; the weights never train further."""

    def __init__(self, clip, thresholds: StyleThresholds | None = None):
        super().__init__()
        self.tokenizer = clip.tokenizer
        self.text = clip.text.eval().requires_grad_(False)
        self.thresholds = thresholds              # the style-word boundaries the CLIP was trained with

    @classmethod
    def pretrained(cls, device=None) -> "PromptEncoder":
        from . import pretrained
        clip = pretrained.load_pretrained("clip", device=device)
        thresholds = StyleThresholds.from_dict(pretrained.entry("clip")["extra"]["style_thresholds"])
        return cls(clip, thresholds)

    @property
    def width(self) -> int:
        return self.text.token.embedding_dim

    @property
    def device(self) -> torch.device:
        return self.text.position.device

    def train(self, mode: bool = True):              # always in eval mode: it is frozen
        return super().train(False)

    @torch.no_grad()
    def forward(self, prompts: str | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenizer.encode(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        return self.text(ids, mask)[0], mask


def captioned_dataset(split: str = "train", subset=None, thresholds: StyleThresholds | None = None):
    """(TensorDataset of images, labels and style codes, thresholds). Captions are drawn per batch
    from the labels and style codes, so every epoch sees new wordings of the same truths."""
    from .data import load_mnist

    data = load_mnist(split, subset=subset)
    if thresholds is None:
        thresholds = StyleThresholds.measure(data.images, data.labels)
    s = classify_styles(data.images, data.labels, thresholds)
    return TensorDataset(data.images, data.labels, s.thickness, s.lean, s.size), thresholds


def batch_captions(batch, generator: torch.Generator | None) -> list[str]:
    """A random true caption for each image of a batch (images, labels, thickness, lean, size, ...),
    drawn with a CPU generator seeded from `generator` (so training runs repeat exactly)."""
    _, labels, thickness, lean, size = batch[:5]
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else "cpu")
    cpu = torch.Generator().manual_seed(int(seed))
    return random_captions(labels.cpu(), Styles(thickness.cpu(), lean.cpu(), size.cpu()), cpu)


class CaptionedPrompts:
    """`encode_prompts` for sdlib.diffusion.DDPMObjective: a random true caption for each image of the
    batch (images, labels, thickness, lean, size), encoded by `encoder`.

    The encoder is frozen, so a caption's features never change: each distinct caption is encoded once
    and kept (MNIST's captions have a few hundred wordings), which takes the text encoder out of almost
    every training step."""

    def __init__(self, encoder: PromptEncoder, cache: bool = True):
        self.encoder = encoder
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = {} if cache else None

    def __call__(self, batch, generator=None):
        self.encoder.to(batch[0].device)
        captions = batch_captions(batch, generator)
        if self.cache is None:
            return self.encoder(captions)
        new = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if new:
            context, mask = self.encoder(new)
            self.cache.update(zip(new, zip(context, mask)))
        rows = [self.cache[c] for c in captions]
        device = batch[0].device
        return torch.stack([r[0] for r in rows]).to(device), torch.stack([r[1] for r in rows]).to(device)


@torch.no_grad()
def generate(model, encoder: PromptEncoder, prompts: list[str], w: float = 3.0, sampler=None, *,
             negative_prompt: str | list[str] | None = None, generator: torch.Generator | None = None,
             batch_size: int = 250, shape: tuple[int, int, int] | None = None, progress: bool = False) -> torch.Tensor:
    """Samples for `prompts` with classifier-free guidance scale w (1: none, 0: unconditional), in model range.

    sampler: default DDIM with 50 steps (η = 0) on the course's linear schedule with T = config.max_t;
    negative_prompt: one prompt for all, or one per prompt, used in place of the empty prompt.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    w = validate.finite_number(w, "guidance scale w")
    if sampler is None:
        sampler = DDIMSampler(NoiseSchedule.linear(model.config.max_t), 50)
    device = next(model.parameters()).device
    encoder.to(device)
    context, mask = encoder(prompts)
    neg_context = neg_mask = None
    if negative_prompt is not None:
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
        if len(negatives) != len(prompts):
            raise ValueError(f"give one negative prompt, or one per prompt ({len(prompts)}), got {len(negatives)}")
        neg_context, neg_mask = encoder(negatives)
    c = model.config
    shape = shape or (c.in_channels, c.image_size, c.image_size)
    denoiser = ClassifierFreeGuidance(model, context, w, mask, neg_context, neg_mask)
    x = sample(denoiser, sampler, (len(prompts), *shape), generator=generator, progress=progress,
               batch_size=batch_size, device=device)
    return x.clamp(-1, 1)


def digit_prompts(n: int, style: str | None = None) -> tuple[list[str], torch.Tensor]:
    """n prompts cycling through the digits 0-9 ("a seven"), optionally with a thickness word
    ("a thick seven"); returns (prompts, digits)."""
    digits = torch.arange(n) % 10
    code = {"thin": -1, "thick": 1, None: 0}[style]
    return [caption(int(d), thickness=code) for d in digits], digits


def class_spread(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per digit, the mean squared distance of the features to their class mean (the trace of the
    class covariance): how varied the images of one digit are. (10,), NaN for a digit with < 2 images."""
    out = torch.full((10,), float("nan"))
    for d in range(10):
        f = features[labels == d]
        if len(f) >= 2:
            out[d] = ((f - f.mean(0)) ** 2).sum(1).mean()
    return out


@dataclass
class GuidanceRow:
    w: float
    prompt_accuracy: float          # classifier's digit == the prompt's digit
    classifier_fid: float           # against the reference (test) features
    confident: float
    spread_ratio: float             # class-conditional spread relative to real test digits (1 = as varied)
    thickness_obeyed: float | None  # "thick"/"thin" prompts whose image lands in that tercile
    seconds: float

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}

    def __str__(self) -> str:
        thick = f", thickness obeyed {self.thickness_obeyed:.1%}" if self.thickness_obeyed is not None else ""
        return (f"w={self.w:<4g} prompt accuracy {self.prompt_accuracy:.1%}, classifier FID {self.classifier_fid:.1f}, "
                f"confident {self.confident:.1%}, spread {self.spread_ratio:.2f}× real{thick} ({self.seconds:.0f} s)")


def thickness_obeyed(images: torch.Tensor, digits: torch.Tensor, wanted: torch.Tensor,
                     thresholds: StyleThresholds) -> float:
    """Fraction of images whose measured stroke width falls in the tercile their prompt named
    (wanted: -1 thin, +1 thick). Chance is 1/3."""
    codes = classify_styles(images.cpu(), digits.cpu(), thresholds).thickness
    return (codes == wanted.cpu()).float().mean().item()


def measure_guidance(model, encoder: PromptEncoder, classifier, reference, ws=(0, 1, 2, 3, 5, 7.5), *, n: int = 1000,
                     sampler=None, seed: int = 0, thickness: bool = True, log=print, images_for=None) -> list[GuidanceRow]:
    """For each w: n digit prompts ("a seven", balanced) -> prompt accuracy, classifier FID, confidence
    and class spread; and (thickness=True) n prompts "a thick/thin <digit>" -> thickness obeyed.

    reference: (features, labels) of real images (e.g. the test set) from `metrics.predict`'s classifier.
    images_for(prompts, w, generator) -> images in [-1, 1]: how to sample (default: `generate` with
    `model` in pixel space; the latent pipeline passes its own text_to_image).
    """
    import time

    if images_for is None:
        def images_for(prompts, w, generator):
            return generate(model, encoder, prompts, w, sampler, generator=generator)
    ref_features, ref_labels = reference
    real_spread = class_spread(ref_features, ref_labels)
    prompts, digits = digit_prompts(n)
    rows = []
    for w in ws:
        start = time.perf_counter()
        x = images_for(prompts, w, torch.Generator().manual_seed(seed))
        probs, feats = metrics.predict(classifier, x)
        obeyed = None
        if thickness:
            half = n // 2
            p_thick, d_thick = digit_prompts(half, "thick")
            p_thin, d_thin = digit_prompts(n - half, "thin")
            y = images_for(p_thick + p_thin, w, torch.Generator().manual_seed(seed + 1))
            wanted = torch.cat([torch.ones(half, dtype=torch.long), -torch.ones(n - half, dtype=torch.long)])
            obeyed = thickness_obeyed(y, torch.cat([d_thick, d_thin]), wanted, encoder.thresholds)
        spread = (class_spread(feats, digits) / real_spread).nanmean().item()
        row = GuidanceRow(float(w), metrics.prompt_accuracy(probs, digits), metrics.classifier_fid(feats, ref_features),
                          metrics.confident_fraction(probs), spread, obeyed, time.perf_counter() - start)
        log(str(row))
        rows.append(row)
    return rows
