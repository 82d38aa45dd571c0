"""Checkers for lesson 05 (CLIP from scratch)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..clip import clip_loss
from . import ExerciseError, as_tensor, call, expect, expect_close, passed


def check_similarity(similarity_matrix) -> None:
    """similarity_matrix(image_features, text_features, logit_scale) -> (N, M) scaled cosine similarities."""
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(5, 8, generator=g) * 3, torch.randn(4, 8, generator=g) * 0.5
    scale = torch.tensor(math.log(20.0))
    got = call(similarity_matrix, img.clone(), txt.clone(), scale.clone())
    want = scale.exp() * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    got_t = as_tensor(got, "the similarity matrix", like=want)
    if got_t.shape == (4, 5):
        raise ExerciseError("Rows are images and columns are texts: image_features @ text_features.T, shape (N, M).")
    if got_t.shape == want.shape:
        if torch.allclose(got_t, scale.exp() * img @ txt.T, rtol=1e-4):
            raise ExerciseError("Normalise both sets of features to unit length first (F.normalize(x, dim=-1)): "
                                "CLIP compares directions (cosines), not lengths.")
        if torch.allclose(got_t, want / scale.exp(), rtol=1e-4) or torch.allclose(got_t, want / scale.exp() * scale, rtol=1e-4):
            raise ExerciseError("Multiply by exp(logit_scale): the learnable temperature is stored as a logarithm.")
    expect_close(got, want, "the similarity matrix", hint="exp(logit_scale) · normalize(images) @ normalize(texts).T",
                 rtol=1e-4, atol=1e-5)
    passed("scaled cosine similarities: entry (i, j) compares image i with text j.")


def check_contrastive_loss(contrastive_loss) -> None:
    """contrastive_loss(logits) -> the symmetric cross-entropy of CLIP over an (N, N) similarity matrix."""
    g = torch.Generator().manual_seed(1)
    for n in (3, 6):
        logits = torch.randn(n, n, generator=g) * 4
        got = call(contrastive_loss, logits.clone())
        want = clip_loss(logits)
        got_t = as_tensor(got, f"the loss for N={n}", like=want)
        expect(got_t.dim() == 0, f"the loss should be a single number, got shape {tuple(got_t.shape)}")
        target = torch.arange(n)
        if torch.allclose(got_t, F.cross_entropy(logits, target), rtol=1e-5) and not torch.allclose(got_t, want, rtol=1e-5):
            raise ExerciseError("That is only the image -> text direction (rows). Add the text -> image direction "
                                "(the columns: cross_entropy(logits.T, targets)) and average the two.")
        if torch.allclose(got_t, F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target), rtol=1e-5):
            raise ExerciseError("Average the two directions (divide their sum by 2).")
        expect_close(got, want, f"the loss for N={n}",
                     hint="targets = arange(N); (cross_entropy(logits, targets) + cross_entropy(logits.T, targets)) / 2",
                     rtol=1e-5, atol=1e-6)
    passed("the symmetric contrastive loss: each image picks its caption, and each caption its image.")


def check_zero_shot(zero_shot_predict) -> None:
    """zero_shot_predict(image_features, class_text_features) -> (N,) index of the most similar class text."""
    g = torch.Generator().manual_seed(2)
    txt = torch.randn(4, 8, generator=g)
    scales = torch.tensor([1.0, 10.0, 0.1, 3.0])[:, None]
    txt = txt * scales                                   # text vectors of very different lengths
    img = F.normalize(txt[torch.tensor([2, 0, 1, 3, 2, 2])] / scales[torch.tensor([2, 0, 1, 3, 2, 2])]
                      + 0.3 * torch.randn(6, 8, generator=g), dim=-1) * 5
    got = call(zero_shot_predict, img.clone(), txt.clone())
    want = (F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T).argmax(1)
    got_t = as_tensor(got, "the predicted classes", like=want)
    expect(got_t.shape == want.shape, f"expected one class index per image, shape {tuple(want.shape)}, "
                                      f"got {tuple(got_t.shape)}")
    if torch.equal(got_t, (img @ txt.T).argmax(1)) and not torch.equal(got_t, want):
        raise ExerciseError("Normalise the features first: without it, a long text vector wins for every image.")
    expect(torch.equal(got_t.long(), want), f"predicted classes {got_t.tolist()}, expected {want.tolist()}: "
                                            "argmax over classes of the cosine similarity")
    passed("zero-shot classification: a classifier whose classes are sentences.")
