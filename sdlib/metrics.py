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

from . import validate


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
