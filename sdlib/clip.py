"""CLIP from scratch (lesson 05): a tokenizer, a text encoder and an image encoder trained so that
matching (image, caption) pairs have similar embeddings.

    similarity[i, j] = scale · cos(image_i, text_j)            an N×N matrix for a batch of N pairs
    loss = (cross_entropy(rows, diagonal) + cross_entropy(columns, diagonal)) / 2

Stable Diffusion keeps only the **text encoder**: its per-token outputs are the context the U-Net's
cross-attention reads (lessons 06-08). The image encoder exists to train it.
"""
from __future__ import annotations

import re
import string
import warnings
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from sdlib.attention import TransformerBlock
from sdlib.runtime import validate

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = [PAD, START, END, UNK]


class UnknownWordWarning(UserWarning):
    """A prompt used words the tokenizer has never seen; they became <unk>."""


class TruncationWarning(UserWarning):
    """A prompt was longer than the context length and was cut."""


class DroppedCharacterWarning(UserWarning):
    """A prompt held characters the tokenizer cannot read (not a-z, 0-9, space or punctuation); they were dropped."""


class EmptyPromptWarning(UserWarning):
    """A prompt that was not blank had no word the tokenizer can read, and became the empty prompt."""


class Tokenizer:
    """Word-level tokenizer: lower-case, split on spaces and punctuation, one id per known word.

    encode() returns (ids, mask), both (B, context_length): <start> w1 w2 ... <end> <pad> <pad>...,
    mask True on real tokens. Nothing is lost silently; each of these warns, naming the prompt:
    unknown words become <unk>; characters other than a-z, 0-9, spaces and ASCII punctuation (which
    only separates words) are dropped ("café" reads as "caf", "七" as nothing); a prompt that is not
    blank but has no readable word ("!!!") becomes the empty prompt; prompts longer than the context
    are cut (keeping <end>). The empty prompt "" is <start> <end>, on purpose and without a warning.
    """

    def __init__(self, words: list[str], context_length: int = 16):
        words = list(words) if isinstance(words, (list, tuple, set, frozenset)) else None   # the order does not matter
        if words is None or not all(isinstance(w, str) for w in words):
            raise TypeError("words must be a list of strings (the vocabulary)")
        validate.positive_int(context_length, "context_length", minimum=3)
        self.vocab = SPECIALS + sorted(set(words) - set(SPECIALS))
        self.ids = {w: i for i, w in enumerate(self.vocab)}
        self.context_length = context_length

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"Tokenizer({len(self)} tokens, context_length={self.context_length})"

    @staticmethod
    def split(prompt: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", prompt.lower())

    @staticmethod
    def unreadable(prompt: str) -> list[str]:
        """The characters of `prompt` that split() drops rather than reads or treats as a separator."""
        return sorted({c for c in prompt.lower()
                       if not re.fullmatch(r"[a-z0-9\s]", c) and c not in string.punctuation})

    def encode(self, prompts: str | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = validate.prompts(prompts)
        ids = torch.full((len(prompts), self.context_length), self.ids[PAD], dtype=torch.long)
        unknown, too_long, dropped, emptied = {}, [], {}, []
        for i, prompt in enumerate(prompts):
            words = self.split(prompt)
            for w in words:
                if w not in self.ids:
                    unknown.setdefault(w, prompt)
            lost = self.unreadable(prompt)
            if lost:
                dropped[prompt] = lost
            if not words and prompt.strip():
                emptied.append(prompt)
            if len(words) > self.context_length - 2:
                too_long.append(prompt)
                words = words[: self.context_length - 2]
            tokens = [START] + [w if w in self.ids else UNK for w in words] + [END]
            ids[i, : len(tokens)] = torch.tensor([self.ids[t] for t in tokens])
        if unknown:
            first = next(iter(unknown))
            warnings.warn(f"unknown word(s) {', '.join(sorted(unknown))} became <unk> (e.g. {first!r} in prompt "
                          f"{unknown[first]!r}): the model was never trained on them (known words: "
                          f"{', '.join(w for w in self.vocab if w not in SPECIALS)})", UnknownWordWarning, stacklevel=2)
        if dropped:
            chars = sorted(set().union(*dropped.values()))
            examples = "; ".join(f"{p!r} lost {''.join(c)!r}" for p, c in list(dropped.items())[:3])
            warnings.warn(f"character(s) {' '.join(chars)} were dropped from {len(dropped)} prompt(s) ({examples}): "
                          f"the tokenizer reads only a-z and 0-9 (spaces and punctuation separate words)",
                          DroppedCharacterWarning, stacklevel=2)
        if emptied:
            examples = ", ".join(repr(p) for p in emptied[:3])
            warnings.warn(f"{len(emptied)} prompt(s), {examples}, had no word the tokenizer can read and became the "
                          f"empty prompt <start> <end> (only a-z and 0-9 are read; pass \"\" for the empty prompt "
                          f"on purpose)", EmptyPromptWarning, stacklevel=2)
        if too_long:
            warnings.warn(f"{len(too_long)} prompt(s) longer than {self.context_length - 2} words were cut, e.g. "
                          f"{too_long[0]!r}", TruncationWarning, stacklevel=2)
        return ids, ids != self.ids[PAD]

    def decode(self, ids: torch.Tensor) -> list[str]:
        validate.tensor(ids, "ids")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool or ids.dim() == 0:
            raise TypeError(f"ids must be an integer tensor of token ids (B, L) or (L,), as encode() returns, "
                            f"got dtype {ids.dtype} and shape {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(self.vocab)):
            raise ValueError(f"ids must lie in [0, {len(self.vocab) - 1}] for this vocabulary, "
                             f"got values in [{int(ids.min())}, {int(ids.max())}]")
        return [" ".join(self.vocab[i] for i in row.tolist() if self.vocab[i] not in (PAD, START, END))
                for row in ids.reshape(-1, ids.shape[-1])]


@dataclass
class CLIPConfig:
    vocab: list[str] = field(default_factory=list)   # the tokenizer's words (specials added automatically)
    context_length: int = 16
    width: int = 64                                  # text transformer width = context width for the U-Net
    layers: int = 3
    heads: int = 4
    embed_dim: int = 64                              # the shared image-text space
    image_channels: tuple[int, int] = (32, 64)

    def to_dict(self) -> dict:
        return asdict(self)


class TextEncoder(nn.Module):
    """Token + position embeddings, causal transformer blocks, a final LayerNorm.

    Returns per-token features (B, L, width), the context for cross-attention, and a pooled
    embedding (B, embed_dim) read at the <end> token (which has seen the whole prompt)."""

    def __init__(self, config: CLIPConfig, vocab_size: int):
        super().__init__()
        self.token = nn.Embedding(vocab_size, config.width)
        self.position = nn.Parameter(torch.randn(config.context_length, config.width) * 0.01)
        self.blocks = nn.ModuleList(TransformerBlock(config.width, config.heads) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width)
        self.proj = nn.Linear(config.width, config.embed_dim, bias=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.token(ids) + self.position[: ids.shape[1]]                  # (B, L, width)
        for block in self.blocks:
            x = block(x, mask=mask, causal=True)
        tokens = self.norm(x)
        end = mask.long().sum(1) - 1                                        # index of <end> in each prompt
        pooled = self.proj(tokens[torch.arange(len(ids), device=ids.device), end])
        return tokens, pooled


class ImageEncoder(nn.Module):
    """A small CNN: (B, 1, 28, 28) in [-1, 1] -> (B, embed_dim)."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        c1, c2 = config.image_channels

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(), nn.MaxPool2d(2))

        self.net = nn.Sequential(block(1, c1), block(c1, c2), nn.Flatten(), nn.Linear(c2 * 49, 128), nn.SiLU(),
                                 nn.Linear(128, config.embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(validate.images(images, "images", channels=1, size=(28, 28)))


class CLIP(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        if not config.vocab:
            raise ValueError("CLIPConfig.vocab is empty: build it from the captions (sdlib.captions.all_caption_words())")
        self.config = config
        self.tokenizer = Tokenizer(config.vocab, config.context_length)
        self.text = TextEncoder(config, len(self.tokenizer))
        self.image = ImageEncoder(config)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))          # log(1 / 0.07), CLIP's starting temperature

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def tokenize(self, prompts) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenizer.encode(prompts)
        return ids.to(self.device), mask.to(self.device)

    def encode_text(self, prompts=None, *, ids=None, mask=None) -> torch.Tensor:
        """Unit-length text embeddings (B, embed_dim) for a list of prompts (or token ids and mask)."""
        if ids is None:
            ids, mask = self.tokenize(prompts)
        return F.normalize(self.text(ids, mask)[1], dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings (B, embed_dim)."""
        return F.normalize(self.image(images), dim=-1)

    def context(self, prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """What the U-Net's cross-attention reads: per-token features (B, L, width) and their mask."""
        ids, mask = self.tokenize(prompts)
        return self.text(ids, mask)[0], mask

    def forward(self, images, ids, mask) -> torch.Tensor:
        """The N×N similarity logits: row i compares image i with every text of the batch."""
        return self.logit_scale.exp().clamp(max=100) * self.encode_image(images) @ self.encode_text(ids=ids, mask=mask).T


def clip_loss(logits: torch.Tensor, same: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric cross-entropy over the N×N similarity matrix: image i should pick text i (rows) and
    text i image i (columns). With `same` (N×N bool, True where two captions are identical) every
    identical caption counts as a right answer, split evenly, instead of a wrong one."""
    n = logits.shape[0]
    if logits.shape != (n, n):
        raise ValueError(f"logits must be square (N, N), got {tuple(logits.shape)}")
    if same is None:
        targets = torch.arange(n, device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    targets = same.float() / same.float().sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2


@torch.no_grad()
def zero_shot(model: CLIP, images: torch.Tensor, prompts: list[str], batch_size: int = 1000) -> torch.Tensor:
    """Probabilities (N, len(prompts)) that each image matches each prompt: a classifier made of words."""
    text = model.encode_text(prompts)
    out = []
    for chunk in images.split(batch_size):
        logits = model.logit_scale.exp() * model.encode_image(chunk.to(model.device)) @ text.T
        out.append(logits.softmax(-1).cpu())
    return torch.cat(out)


@torch.no_grad()
def retrieve(model: CLIP, prompt: str, images: torch.Tensor, k: int = 8) -> torch.Tensor:
    """Indices of the k images most similar to the prompt."""
    text = model.encode_text([prompt])
    sims = torch.cat([(model.encode_image(c.to(model.device)) @ text.T).squeeze(1).cpu() for c in images.split(1000)])
    return sims.topk(k).indices


def build_clip(config: dict) -> CLIP:
    """Builder used by sdlib.pretrained."""
    return CLIP(CLIPConfig(**{k: tuple(v) if k == "image_channels" else v for k, v in config.items()}))


class PromptEncoder(nn.Module):
    """The frozen text encoder of a trained CLIP: prompts -> (context (B, L, width), mask (B, L)).

    Unknown words warn (they become <unk>) and still run; the weights never train further."""

    def __init__(self, clip, thresholds=None):
        super().__init__()
        self.tokenizer = clip.tokenizer
        self.text = clip.text.eval().requires_grad_(False)
        self.thresholds = thresholds              # the style-word boundaries the CLIP was trained with

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


class CLIPObjective:
    """A loss_fn for sdlib.train.fit on captioned digits (sdlib.captions.captioned_dataset): draws
    a random true caption per image, then the CLIP loss. With `multi_positive`, identical captions in
    a batch all count as right answers (see clip_loss)."""

    def __init__(self, multi_positive: bool = True):
        self.multi_positive = multi_positive

    def __call__(self, model: CLIP, batch, generator):
        from sdlib.captions import batch_captions

        ids, mask = model.tokenize(batch_captions(batch, generator))
        logits = model(batch[0], ids, mask)
        same = (ids[:, None, :] == ids[None, :, :]).all(-1) if self.multi_positive else None
        return clip_loss(logits, same), {"temperature": 1 / model.logit_scale.exp().item()}


DIGIT_PROMPTS = ("the number {}", "a {}", "{}")     # the templates of zero_shot_digits' prompt ensemble


@torch.no_grad()
def zero_shot_digits(model: CLIP, images: torch.Tensor) -> torch.Tensor:
    """Digit probabilities (N, 10), averaged over the DIGIT_PROMPTS templates (a prompt ensemble)."""
    from sdlib.captions import DIGIT_WORDS

    probs = [zero_shot(model, images, [template.format(word) for word in DIGIT_WORDS]) for template in DIGIT_PROMPTS]
    return torch.stack(probs).mean(0)


@torch.no_grad()
def zero_shot_style(model: CLIP, images: torch.Tensor, labels: torch.Tensor, codes: torch.Tensor,
                    words: dict[int, str]) -> float:
    """Accuracy of choosing the right style word among `words` (code -> word, e.g. captions.THICKNESS_WORDS),
    with prompts that name the true digit, on the images whose style code is one of words' keys."""
    from sdlib.captions import DIGIT_WORDS, LEAN_WORDS

    keys = sorted(words)
    keep = torch.isin(codes, torch.tensor(keys))
    correct = 0
    for digit in range(10):
        sel = keep & (labels == digit)
        if sel.sum() == 0:
            continue
        name = DIGIT_WORDS[digit]
        # style words go where captions put them: "a thick seven", "a seven leaning left"
        prompts = [f"a {name} {words[k]}" if words[k] in LEAN_WORDS.values() else f"a {words[k]} {name}"
                   for k in keys]
        probs = zero_shot(model, images[sel], prompts)
        correct += (torch.tensor(keys)[probs.argmax(1)] == codes[sel]).sum().item()
    return correct / keep.sum().item()
