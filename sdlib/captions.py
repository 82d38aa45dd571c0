"""Captions for MNIST digits, built from the label and from style measured on the digit's own pixels.

Three style measurements, each a documented function of a batch of images in [-1, 1]:

- `stroke_width`: the average thickness of the pen stroke in pixels, 2 · area / perimeter, where the
  area is the total ink and the perimeter the ink's total variation (a stroke of width w and length
  L has area w·L and perimeter about 2L);
- `slant`: how far the digit leans, from image moments: -cov(x, y) / var(y) of the ink, the
  horizontal shift per pixel of height (positive: the top leans right);
- `box_width`: the width of the bounding box of the pixels that are more than half ink (the height
  is almost always 20 pixels in MNIST, so width is where the size varies).

Words come from thresholds chosen on the training set (terciles): "thin"/"thick" for the lowest and
highest third of stroke width, "leaning left"/"leaning right" for the outer thirds of slant
("upright" in between), "narrow"/"wide" for the outer thirds of box width *within each digit*
(a narrow 0 is wider than a wide 1). The middle third of width and thickness gets no word. Each
idea has one name throughout: `thickness` (from stroke width), `lean` (from slant), `width` (from box width).
The same functions later check whether a generated image obeys the style words of its prompt.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _ink(images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (B, 1, H, W), got {tuple(images.shape)}")
    from sdlib.data import to_unit_range

    return to_unit_range(images.float())[:, 0]                           # (B, H, W) ink in [0, 1]


def stroke_width(images: torch.Tensor) -> torch.Tensor:
    """Average stroke thickness in pixels: 2 · total ink / total variation of the ink. Shape (B,)."""
    ink = _ink(images)
    area = ink.sum((1, 2))
    perimeter = (ink[:, 1:, :] - ink[:, :-1, :]).abs().sum((1, 2)) + (ink[:, :, 1:] - ink[:, :, :-1]).abs().sum((1, 2))
    return 2 * area / perimeter.clamp(min=1e-6)


def slant(images: torch.Tensor) -> torch.Tensor:
    """Lean of the digit: -cov(x, y) / var(y) of the ink distribution (> 0: the top leans right). Shape (B,)."""
    ink = _ink(images)
    h, w = ink.shape[1:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=ink.dtype, device=ink.device),
                            torch.arange(w, dtype=ink.dtype, device=ink.device), indexing="ij")
    total = ink.sum((1, 2)).clamp(min=1e-6)
    cx, cy = (ink * xs).sum((1, 2)) / total, (ink * ys).sum((1, 2)) / total
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]        # rows grow downwards
    cov = (ink * dx * dy).sum((1, 2)) / total
    var_y = (ink * dy * dy).sum((1, 2)) / total
    return -cov / var_y.clamp(min=1e-6)


def box_width(images: torch.Tensor) -> torch.Tensor:
    """Width in pixels of the bounding box of the pixels with ink > 0.5 (0 for a blank image). Shape (B,)."""
    on = (_ink(images) > 0.5).any(dim=1)                              # (B, W): columns that hold ink
    idx = torch.arange(on.shape[1], device=on.device)
    first = torch.where(on, idx, on.shape[1]).min(1).values
    last = torch.where(on, idx, -1).max(1).values
    return (last - first + 1).clamp(min=0).float()


@dataclass
class StyleThresholds:
    """Tercile boundaries measured on the training set, one per style word pair (named like `Styles`)."""

    thickness: tuple[float, float]                  # stroke width (pixels): thin below [0], thick above [1]
    lean: tuple[float, float]                       # slant: leaning left below [0], leaning right above [1]
    width: dict[int, tuple[float, float]]           # box width, per digit: narrow below [0], wide above [1]

    @classmethod
    def measure(cls, images: torch.Tensor, labels: torch.Tensor) -> "StyleThresholds":
        q = torch.tensor([1 / 3, 2 / 3])
        w, s, b = stroke_width(images), slant(images), box_width(images)
        width = {k: tuple(torch.quantile(b[labels == k], q).tolist()) for k in range(10)}
        return cls(tuple(torch.quantile(w, q).tolist()), tuple(torch.quantile(s, q).tolist()), width)

    def to_dict(self) -> dict:
        return {"thickness": list(self.thickness), "lean": list(self.lean),
                "width": {str(k): list(v) for k, v in self.width.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "StyleThresholds":
        if "box" in d:          # the names the shipped manifest was written with: width (of the stroke), slant, box
            d = {"thickness": d["width"], "lean": d["slant"], "width": d["box"]}
        return cls(tuple(d["thickness"]), tuple(d["lean"]), {int(k): tuple(v) for k, v in d["width"].items()})


@dataclass
class Styles:
    """Style words for a batch: codes -1/0/+1 for thin/-/thick, left/upright/right, narrow/-/wide."""

    thickness: torch.Tensor
    lean: torch.Tensor
    width: torch.Tensor


def classify_styles(images: torch.Tensor, labels: torch.Tensor, thresholds: StyleThresholds) -> Styles:
    def code(v, lo, hi):
        return (v > hi).long() - (v < lo).long()

    width_lo = torch.tensor([thresholds.width[int(k)][0] for k in labels.tolist()])
    width_hi = torch.tensor([thresholds.width[int(k)][1] for k in labels.tolist()])
    return Styles(code(stroke_width(images), *thresholds.thickness), code(slant(images), *thresholds.lean),
                  code(box_width(images), width_lo, width_hi))


THICKNESS_WORDS = {-1: "thin", 1: "thick"}
LEAN_WORDS = {-1: "leaning left", 0: "upright", 1: "leaning right"}
WIDTH_WORDS = {-1: "narrow", 1: "wide"}


def caption(digit: int, thickness: int = 0, lean: int | None = None, width: int = 0, numeral: bool = False,
            template: int = 0) -> str:
    """One caption. template 0: "a {width} {thickness} {digit} {lean}"; 1: "the number {digit}";
    2: the bare digit; 3: "a handwritten {digit}". Attributes set to 0/None are left out."""
    name = str(digit) if numeral else DIGIT_WORDS[digit]
    if template == 1:
        return f"the number {name}"
    if template == 2:
        return name
    if template == 3:
        return f"a handwritten {name}"
    words = ["a"] + ([WIDTH_WORDS[width]] if width else []) + ([THICKNESS_WORDS[thickness]] if thickness else []) + [name]
    if lean is not None:
        words.append(LEAN_WORDS[lean])
    return " ".join(words)


def random_captions(labels: torch.Tensor, styles: Styles, generator: torch.Generator) -> list[str]:
    """A random true caption for each image: a random template, numeral or word, and a random subset
    of its style words (each kept with probability 1/2)."""
    n = len(labels)
    u = torch.rand(n, 6, generator=generator)
    out = []
    for i in range(n):
        digit = int(labels[i])
        template = 0 if u[i, 0] < 0.7 else 1 + int(u[i, 0] * 10) % 3
        numeral = bool(u[i, 1] < 0.3)
        thickness = int(styles.thickness[i]) if u[i, 2] < 0.5 else 0
        lean = int(styles.lean[i]) if u[i, 3] < 0.5 else None
        width = int(styles.width[i]) if u[i, 4] < 0.5 else 0
        out.append(caption(digit, thickness, lean, width, numeral, template))
    return out


def all_caption_words() -> list[str]:
    """Every word any caption can contain (the tokenizer's vocabulary)."""
    words = {"a", "the", "number", "handwritten", "digit"} | set(DIGIT_WORDS) | {str(d) for d in range(10)}
    for table in (THICKNESS_WORDS, LEAN_WORDS, WIDTH_WORDS):
        for phrase in table.values():
            words |= set(phrase.split())
    return sorted(words)


@torch.no_grad()
def captioned_latents(vae, thresholds: StyleThresholds, split: str = "train", subset=None, batch_size: int = 1000):
    """TensorDataset(scaled latents, labels, thickness, lean, width) of an MNIST split: the captioned
    digits of captioned_dataset, each image encoded once by `vae` (its posterior
    mean × latent_scale) for training a latent U-Net (lesson 08). Styles are measured on the pixels."""

    from sdlib.data import load_mnist

    data = load_mnist(split, subset=subset)
    device = next(vae.parameters()).device
    z = torch.cat([vae.encode_scaled(chunk.to(device)).cpu() for chunk in data.images.split(batch_size)])
    s = classify_styles(data.images, data.labels, thresholds)
    return TensorDataset(z, data.labels, s.thickness, s.lean, s.width)


def captioned_dataset(split: str = "train", subset=None, thresholds: StyleThresholds | None = None):
    """(TensorDataset of images, labels and style codes, thresholds). Captions are drawn per batch
    from the labels and style codes, so every epoch sees new wordings of the same truths."""
    from sdlib.data import load_mnist

    data = load_mnist(split, subset=subset)
    if thresholds is None:
        thresholds = StyleThresholds.measure(data.images, data.labels)
    s = classify_styles(data.images, data.labels, thresholds)
    return TensorDataset(data.images, data.labels, s.thickness, s.lean, s.width), thresholds


def batch_captions(batch, generator: torch.Generator | None) -> list[str]:
    """A random true caption for each image of a batch (images, labels, thickness, lean, width, ...),
    drawn with a CPU generator seeded from `generator` (so training runs repeat exactly)."""
    _, labels, thickness, lean, width = batch[:5]
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else "cpu")
    cpu = torch.Generator().manual_seed(int(seed))
    return random_captions(labels.cpu(), Styles(thickness.cpu(), lean.cpu(), width.cpu()), cpu)


class CaptionedPrompts:
    """`encode_prompts` for sdlib.diffusion.DDPMObjective: a random true caption for each image of the
    batch (images, labels, thickness, lean, width), encoded by `encoder`.

    The encoder is frozen, so a caption's features never change: each distinct caption is encoded once
    and kept (MNIST's captions have a few hundred wordings), which takes the text encoder out of almost
    every training step."""

    def __init__(self, encoder, cache: bool = True):
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
