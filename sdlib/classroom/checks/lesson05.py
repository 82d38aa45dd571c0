"""Checkers for lesson 05 (CLIP from scratch)."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from sdlib.classroom.checks import (ExerciseError, as_tensor, call, check_random_cases, compare_prediction, exercise,
                                    expect, expect_close, passed)
from sdlib.classroom.quiz import Question
from sdlib.clip import clip_loss


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


def _loss_gradient(logits: torch.Tensor) -> torch.Tensor:
    """d loss / d logits of the symmetric contrastive loss (no shared captions), by autograd."""
    with torch.enable_grad():
        s = logits.detach().clone().requires_grad_(True)
        target = torch.arange(len(s))
        ((F.cross_entropy(s, target) + F.cross_entropy(s.T, target)) / 2).backward()
    return s.grad


def _gradient_cases(g: torch.Generator):
    for n, scale in [(2, 1.0), (3, 4.0), (5, 0.5), (8, 10.0), (6, 2.0), (4, 20.0)]:
        yield (torch.randn(n, n, generator=g, dtype=torch.float64) * scale,)


@exercise("derivation")
def check_loss_gradient(contrastive_loss_grad) -> None:
    """contrastive_loss_grad(logits) -> (N, N): the derivative of Exercise 2's loss with respect to every logit S_ij,
    derived by hand (the checker runs it under torch.no_grad, so autograd cannot do it) and compared with autograd
    on random matrices."""
    g = torch.Generator().manual_seed(4)
    eye = lambda s: torch.eye(len(s), dtype=s.dtype)
    rows = lambda s: s.softmax(dim=1)
    cols = lambda s: s.softmax(dim=0)
    n_ = lambda s: len(s)
    mistakes = [
        (lambda s: -_loss_gradient(s), "The sign is flipped: raising a diagonal logit lowers the loss, so its derivative "
                                       "is negative, softmax - 1 < 0; the off-diagonal ones get +softmax."),
        (lambda s: (rows(s) - eye(s)) / (2 * n_(s)), "Only the row (image -> text) term: S_ij also appears in column j's "
                                                     "softmax, the text -> image direction; add its derivative."),
        (lambda s: (rows(s) - eye(s)) / n_(s), "Only the row (image -> text) term: S_ij also appears in column j's "
                                               "softmax, the text -> image direction; add its derivative and halve."),
        (lambda s: (rows(s) + cols(s) - 2 * eye(s)) / 2, "The 1/N is missing: each cross-entropy is a mean over the N "
                                                          "rows (or columns)."),
        (lambda s: (rows(s) + cols(s) - 2 * eye(s)) / n_(s), "The ½ is missing: the loss averages the two directions."),
        (lambda s: (rows(s) + s.T.softmax(dim=1) - 2 * eye(s)) / (2 * n_(s)),
         "The column term is transposed: the softmax over column j, evaluated at row i, is S.softmax(dim=0)[i, j]."),
    ]

    def no_autograd(logits):
        with torch.no_grad():
            return call(contrastive_loss_grad, logits)

    no_autograd.__name__ = getattr(contrastive_loss_grad, "__name__", "your function")
    try:
        n = check_random_cases(no_autograd, _loss_gradient, _gradient_cases(g), what="the gradient", mistakes=mistakes,
                               hint="dL/dS_ij = (softmax(S_i,:)_j + softmax(S_:,j)_i - 2·[i = j]) / (2N).",
                               rtol=1e-5, atol=1e-8)
    except ExerciseError as error:
        if "does not require grad" in str(error) or "grad_fn" in str(error):
            raise ExerciseError(f"{error}\nThis exercise runs under torch.no_grad(): derive the gradient by hand from the "
                                f"softmax's derivative instead of calling backward().") from None
        raise
    passed(f"the gradient of the contrastive loss, right on {n} random matrices: each true pair's logit is pulled up by "
           f"(1 - its softmax) per direction, each wrong pair's pushed down by the probability it steals.")


ZERO_SHOT_DIGITS = 1000


@functools.lru_cache(maxsize=1)
def _zero_shot_accuracy() -> float:
    """The pretrained CLIP's zero-shot digit accuracy on the first 1,000 test digits, one prompt per class
    ("the number zero", ...), as lesson 05 measures it."""
    from sdlib.captions import DIGIT_WORDS
    from sdlib.data import load_mnist
    from sdlib.pretrained import load_pretrained

    model = load_pretrained("clip", device="cpu").eval()
    test = load_mnist("test", subset=ZERO_SHOT_DIGITS)
    with torch.no_grad():
        image_features = torch.cat([model.image(c) for c in test.images.split(500)])
        text_features = model.text(*model.tokenize([f"the number {w}" for w in DIGIT_WORDS]))[1]
    predicted = (F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T).argmax(1)
    return (predicted == test.labels).float().mean().item()


def _zero_shot_explanation(prediction, measured) -> str:
    text = (f"Chance is 10%. No classifier was trained and no label was given as a class index, yet every caption "
            f"named its digit (as a word or a numeral), so to match images with captions the encoders had to learn "
            f"what each digit looks like; a prompt per class turns that into a classifier.")
    if prediction < measured - 0.1:
        text += (" If you expected much less: the captions are noisy (style words, varying templates), but the digit's "
                 "name is the one thing every caption of an image shares, so it is what the contrastive loss rewards most.")
    return text


@exercise("prediction")
def check_zero_shot_prediction(predicted_zero_shot_accuracy) -> None:
    """predicted_zero_shot_accuracy() -> a fraction in [0, 1]: the pretrained CLIP's zero-shot digit accuracy on
    1,000 test digits with one prompt per class. Right within 5 percentage points."""
    compare_prediction(predicted_zero_shot_accuracy, _zero_shot_accuracy, low=0.0, high=1.0, tolerance=0.05,
                       what=f"the pretrained CLIP's zero-shot accuracy on {ZERO_SHOT_DIGITS:,} test digits",
                       fmt=lambda v: f"{v:.1%}", explanation=_zero_shot_explanation)


QUIZ = [
    Question(
        "Why are the image and text features normalised to unit length before the similarity matrix is formed?",
        options=["To make the matrix symmetric.",
                 "So that only directions are compared (cosines): without it, a text vector that happens to be long "
                 "scores highest with every image.",
                 "To speed up the matrix product.",
                 "Because the cross-entropy needs inputs in [-1, 1]."],
        answer=1,
        explanations=["No: S_ij compares image i with text j and S_ji image j with text i; normalising does not make "
                      "them equal.",
                      "Yes: zero-shot prediction with unnormalised features is the mistake Exercise 3's checker names: "
                      "one long class vector wins for every image.",
                      "No: the cost is the same; normalising is about what is compared.",
                      "No: the logits are multiplied by exp(logit_scale) afterwards, far outside [-1, 1]; the "
                      "cross-entropy takes any real numbers."]),
    Question(
        "A batch holds two different images of a seven, both captioned \"seven\". What does the plain contrastive "
        "loss (your Exercise 2) do with image 1 matched to caption 2?",
        options=["Nothing: it only looks at the diagonal.",
                 "It rewards it, because the captions are equal.",
                 "It raises an error, because the targets are not unique.",
                 "It counts it as a wrong answer and pushes that similarity down, although the match is right; the "
                 "library's clip_loss lets identical captions share the target."],
        answer=3,
        explanations=["No: the softmax over each row involves every entry, so off-diagonal entries are pushed down "
                      "by the probability they take.",
                      "No: the plain loss compares positions, not caption texts.",
                      "No: nothing checks the captions; the targets are simply 0..N-1.",
                      "Yes: the target of row 1 is column 1 only; the loss cannot know that caption 2 says the same. "
                      "With captions as short as ours this happens often, hence the `same` matrix in clip_loss."]),
    Question(
        "The temperature τ is learned (as logit_scale = log 1/τ). What would a very large fixed τ do to training?",
        options=["The logits S_ij = cos/τ would all be close to 0, the softmax nearly uniform, the loss near log N "
                 "and its gradients weak: the model could barely tell pairs apart.",
                 "Nothing: τ only rescales the loss.",
                 "It would make the softmax one-hot and training unstable.",
                 "It would normalise the features."],
        answer=0,
        explanations=["Yes: cosines lie in [-1, 1], so dividing by a large τ squeezes the logits together; a learned τ "
                      "lets the model sharpen the softmax as it gets better.",
                      "No: τ sits inside the softmax, so it changes the probabilities, not only the loss's scale.",
                      "No: that is the other extreme, a very small τ.",
                      "No: normalisation happens before; τ scales the cosines."]),
    Question(
        "Stable Diffusion's U-Net reads the text encoder's per-token outputs, not the pooled embedding used for the "
        "contrastive loss. Why?",
        options=["The pooled embedding is not trained.",
                 "The per-token outputs are smaller.",
                 "Cross-attention lets each region of the image look up the words that concern it; one pooled vector "
                 "would give every position the same summary.",
                 "The pooled embedding only exists for images."],
        answer=2,
        explanations=["No: the pooled vector (the <end> token's output, projected) is exactly what the contrastive "
                      "loss trains.",
                      "No: a sequence of L vectors is larger than one vector.",
                      "Yes: keys and values come from the tokens, queries from the pixels (lesson 06), so \"thick\" and "
                      "\"seven\" can steer different parts of the picture.",
                      "No: both towers have a pooled output; the text's is the projected <end> token."]),
]
