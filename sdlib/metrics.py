"""Measuring generated digits with a small MNIST classifier trained by the course itself.

- `DigitClassifier`: a small CNN (over 99% test accuracy); its 128-number penultimate layer is
  the feature space for the Fréchet distance.
- `classifier_fid`: the Fréchet distance between Gaussians fitted to those features of two image
  sets. It works like the FID of image-generation papers, but on this classifier's features, not
  Inception's: call it "classifier FID" and compare it only with other classifier FIDs computed
  with the same classifier and the same number of images.
- `confident_fraction`, `class_histogram`, `prompt_accuracy`: what fraction of samples the classifier
  is sure about, how the digits are spread, and how often the digit matches what was asked for.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sdlib.captions import StyleThresholds, caption, classify_styles
from sdlib.runtime import validate


@dataclass
class ClassifierConfig:
    channels: tuple[int, int] = (32, 64)
    features: int = 128
    dropout: float = 0.3


class DigitClassifier(nn.Module):
    """(B, 1, 28, 28) images in [-1, 1] -> 10 logits. `features(x)` gives the (B, 128) penultimate layer.
    Images in another floating dtype are converted to the model's; features and logits come in the model's."""

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = config = config or ClassifierConfig()
        c1, c2 = config.channels

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.body = nn.Sequential(block(1, c1), block(c1, c2), nn.Flatten(),            # (B, c2 * 7 * 7)
                                  nn.Linear(c2 * 49, config.features), nn.ReLU())        # (B, features)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.features, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        validate.images(x, "images", channels=1, size=(28, 28), value_range=None)
        return self.body(validate.to_model_dtype(x, self))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def random_affine(x: torch.Tensor, generator: torch.Generator, degrees: float = 10.0, translate: float = 0.1,
                  scale: tuple[float, float] = (0.9, 1.1)) -> torch.Tensor:
    """A different small rotation, shift and zoom for every image of the batch (training augmentation)."""
    validate.floating(x, "x")
    validate.shaped(x, "x", "B C H W", what="image")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (the augmentation is seeded), "
                        f"got {type(generator).__name__}")
    b = x.shape[0]
    u = torch.rand(b, 4, generator=generator, device=generator.device).to(x.device, x.dtype) * 2 - 1   # in [-1, 1]
    angle = u[:, 0] * degrees * torch.pi / 180
    s = scale[0] + (u[:, 1] + 1) / 2 * (scale[1] - scale[0])
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2] * translate * 2], 1),
                         torch.stack([sin, cos, u[:, 3] * translate * 2], 1)], 1)           # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1         # background stays -1


def classifier_loss(model, batch, generator):
    images, labels = batch
    logits = model(random_affine(images, generator))
    loss = F.cross_entropy(logits, labels)
    return loss, {"accuracy": (logits.argmax(1) == labels).float().mean().item()}


@torch.no_grad()
def predict(classifier: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (N, 10), features (N, 128)) for images in [-1, 1], computed in batches."""
    validate.images(images, "images", channels=1, size=(28, 28), tolerance=0.5)  # samples may overshoot a little
    validate.unit_range_warning(images, "images")
    batch_size = validate.positive_int(batch_size, "batch_size")
    if not isinstance(classifier, nn.Module):
        raise TypeError(f"classifier must be a DigitClassifier (an nn.Module), got {type(classifier).__name__}")
    classifier.eval()
    device = next(classifier.parameters()).device
    probs, feats = [], []
    for chunk in images.split(batch_size):
        f = classifier.features(chunk.to(device).clamp(-1, 1))
        probs.append(classifier.head(f).softmax(1).cpu())
        feats.append(f.cpu())
    return torch.cat(probs), torch.cat(feats)


def accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    validate.tensor(images, "images")
    validate.labels(labels, "labels", len(images), classes=10)
    probs, _ = predict(classifier, images)
    return (probs.argmax(1) == labels).float().mean().item()


# -- Fréchet distance --------------------------------------------------------------------------

def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (float64) of a set of feature vectors (N, D)."""
    validate.matrix(features, "features", min_rows=2, why=" for a covariance (and thousands for a stable FID)")
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(m)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """d² = ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½), the Fréchet distance between two Gaussians.

    (S1^½ S2 S1^½ is symmetric, so its square root comes from an eigendecomposition; its trace equals
    that of (S1 S2)^½ in the usual formula.)
    """
    d = validate.shaped(validate.floating(mu1, "mu1"), "mu1", "D").shape[0]
    for name, value, layout in (("mu1", mu1, "D"), ("sigma1", sigma1, "D D"), ("mu2", mu2, "D"), ("sigma2", sigma2, "D D")):
        validate.shaped(validate.floating(value, name), name, layout, D=d)
        validate.finite(value, name)
    mu1, sigma1, mu2, sigma2 = (v.double() for v in (mu1, sigma1, mu2, sigma2))
    root1 = _sqrtm_psd(sigma1)
    middle = _sqrtm_psd(root1 @ sigma2 @ root1)
    return float(((mu1 - mu2) ** 2).sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * torch.trace(middle))


def classifier_fid(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between two sets of classifier features (N, 128): lower is closer."""
    validate.matrix(features_a, "features_a", min_rows=2, why=" for a covariance (and thousands for a stable FID)")
    validate.matrix(features_b, "features_b", columns=features_a.shape[1], min_rows=2,
                    why=" for a covariance (and thousands for a stable FID)")
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


# -- what the samples look like ---------------------------------------------------------------

def _check_probs(probs) -> torch.Tensor:
    """(N, 10) digit probabilities, as `predict` returns them."""
    validate.matrix(probs, "probs", columns=10)
    return validate.values_in(probs, "probs", validate.UNIT_RANGE)


def confident_fraction(probs: torch.Tensor, threshold: float = 0.9) -> float:
    """Fraction of images whose most likely digit has probability >= threshold."""
    _check_probs(probs)
    threshold = validate.finite_number(threshold, "threshold", low=0.0, high=1.0)
    return (probs.max(1).values >= threshold).float().mean().item()


def class_histogram(probs: torch.Tensor) -> torch.Tensor:
    """Fraction of images assigned to each digit 0..9 (by the most likely class)."""
    _check_probs(probs)
    return torch.bincount(probs.argmax(1), minlength=10).float() / len(probs)


def prompt_accuracy(probs: torch.Tensor, wanted: torch.Tensor) -> float:
    """Fraction of images classified as the digit their prompt asked for."""
    _check_probs(probs)
    validate.labels(wanted, "wanted", len(probs), classes=10)
    return (probs.argmax(1) == wanted.to(probs.device)).float().mean().item()


@dataclass
class SampleReport:
    n: int
    classifier_fid: float
    confident: float               # fraction with confidence >= 0.9
    histogram: torch.Tensor        # (10,)

    def __str__(self) -> str:
        hist = " ".join(f"{k}:{v:.0%}" for k, v in enumerate(self.histogram.tolist()))
        return (f"{self.n} samples: classifier FID {self.classifier_fid:.2f}, confident (p >= 0.9) "
                f"{self.confident:.1%}, digits {hist}")

    def as_dict(self) -> dict:
        return {"n": self.n, "classifier_fid": round(self.classifier_fid, 4), "confident": round(self.confident, 4),
                "histogram": [round(v, 4) for v in self.histogram.tolist()]}


def evaluate_samples(classifier: nn.Module, samples: torch.Tensor, reference_features: torch.Tensor) -> SampleReport:
    """Classifier FID against `reference_features` (e.g. the test set's), confidence and digit histogram."""
    probs, feats = predict(classifier, samples)
    return SampleReport(n=len(samples), classifier_fid=classifier_fid(feats, reference_features),
                        confident=confident_fraction(probs), histogram=class_histogram(probs))


# -- guidance, measured (lesson 07) ------------------------------------------------------------

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



@dataclass
class PromptReport:
    """How well n samples obey their digits, with standard errors (lesson 07's live rows)."""
    n: int
    prompt_accuracy: float
    prompt_accuracy_se: float       # binomial: sqrt(p (1 - p) / n)
    classifier_fid: float
    classifier_fid_se: float        # the spread of the FID over bootstrap resamples of the samples

    def __str__(self) -> str:
        return (f"prompt accuracy {self.prompt_accuracy:6.1%} ± {self.prompt_accuracy_se:.1%}, "
                f"classifier FID {self.classifier_fid:6.1f} ± {self.classifier_fid_se:.1f} ({self.n} samples)")


def prompt_report(classifier: nn.Module, images: torch.Tensor, digits: torch.Tensor, reference_features: torch.Tensor,
                  *, bootstrap: int = 30, seed: int = 0) -> PromptReport:
    """Prompt accuracy and classifier FID of `images` made for `digits`, each with its standard error.

    The FID's standard error is the standard deviation of the FID over `bootstrap` resamples (with
    replacement) of the images; it measures the noise from using n samples, not the FID's bias (a FID from
    few samples is larger than from many: compare FIDs only at the same n)."""
    bootstrap = validate.positive_int(bootstrap, "bootstrap", minimum=2)
    probs, feats = predict(classifier, images)
    accuracy = prompt_accuracy(probs, digits)
    fid = classifier_fid(feats, reference_features)
    ref = gaussian_stats(reference_features)
    g = torch.Generator().manual_seed(seed)
    fids = torch.tensor([frechet_distance(*gaussian_stats(feats[torch.randint(len(feats), (len(feats),), generator=g)]),
                                          *ref) for _ in range(bootstrap)])
    n = len(images)
    return PromptReport(n, accuracy, (accuracy * (1 - accuracy) / n) ** 0.5, fid, fids.std().item())

def thickness_obeyed(images: torch.Tensor, digits: torch.Tensor, wanted: torch.Tensor,
                     thresholds: StyleThresholds) -> float:
    """Fraction of images whose measured stroke width falls in the tercile their prompt named
    (wanted: -1 thin, +1 thick). Chance is 1/3."""
    codes = classify_styles(images.cpu(), digits.cpu(), thresholds).thickness
    return (codes == wanted.cpu()).float().mean().item()


def measure_guidance(model, encoder, classifier, reference, ws=(0, 1, 2, 3, 5, 7.5), *, n: int = 1000,
                     sampler=None, seed: int = 0, thickness: bool = True, log=print, images_for=None) -> list[GuidanceRow]:
    """For each w: n digit prompts ("a seven", balanced) -> prompt accuracy, classifier FID, confidence
    and class spread; and (thickness=True) n prompts "a thick/thin <digit>" -> thickness obeyed.

    reference: (features, labels) of real images (e.g. the test set) from `predict`'s classifier.
    images_for(prompts, w, generator) -> images in [-1, 1]: how to sample (default: `generate` with
    `model` in pixel space; the latent pipeline passes its own text_to_image).
    """
    import time

    if images_for is None:
        from sdlib.samplers import generate

        def images_for(prompts, w, generator):
            return generate(model, encoder, prompts, w, sampler, generator=generator)
    ref_features, ref_labels = reference
    real_spread = class_spread(ref_features, ref_labels)
    prompts, digits = digit_prompts(n)
    rows = []
    for w in ws:
        start = time.perf_counter()
        x = images_for(prompts, w, torch.Generator().manual_seed(seed))
        probs, feats = predict(classifier, x)
        obeyed = None
        if thickness:
            half = n // 2
            p_thick, d_thick = digit_prompts(half, "thick")
            p_thin, d_thin = digit_prompts(n - half, "thin")
            y = images_for(p_thick + p_thin, w, torch.Generator().manual_seed(seed + 1))
            wanted = torch.cat([torch.ones(half, dtype=torch.long), -torch.ones(n - half, dtype=torch.long)])
            obeyed = thickness_obeyed(y, torch.cat([d_thick, d_thin]), wanted, encoder.thresholds)
        spread = (class_spread(feats, digits) / real_spread).nanmean().item()
        row = GuidanceRow(float(w), prompt_accuracy(probs, digits), classifier_fid(feats, ref_features),
                          confident_fraction(probs), spread, obeyed, time.perf_counter() - start)
        log(str(row))
        rows.append(row)
    return rows
