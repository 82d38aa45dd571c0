"""CLIP from scratch (lesson 05): a tokenizer, a text encoder and an image encoder trained so that
matching (image, caption) pairs have similar embeddings.

    similarity[i, j] = scale · cos(image_i, text_j)            an N×N matrix for a batch of N pairs
    loss = (cross_entropy(rows, diagonal) + cross_entropy(columns, diagonal)) / 2

Stable Diffusion keeps only the **text encoder**: its per-token outputs are the context the U-Net's
cross-attention reads (lessons 06-08). The image encoder exists to train it.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import validate
from .attention import TransformerBlock

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = [PAD, START, END, UNK]


class UnknownWordWarning(UserWarning):
    """A prompt used words the tokenizer has never seen; they became <unk>."""


class TruncationWarning(UserWarning):
    """A prompt was longer than the context length and was cut."""


class Tokenizer:
    """Word-level tokenizer: lower-case, split on spaces and punctuation, one id per known word.

    encode() returns (ids, mask), both (B, context_length): <start> w1 w2 ... <end> <pad> <pad>...,
    mask True on real tokens. Unknown words become <unk> with a warning that names them; prompts
    longer than the context are cut (keeping <end>) with a warning; an empty prompt is <start> <end>.
    """

    def __init__(self, words: list[str], context_length: int = 16):
        if context_length < 3:
            raise ValueError("context_length must leave room for <start>, one word and <end>")
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

    def encode(self, prompts: str | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be a string or a list of strings")
        ids = torch.full((len(prompts), self.context_length), self.ids[PAD], dtype=torch.long)
        unknown, too_long = set(), []
        for i, prompt in enumerate(prompts):
            words = self.split(prompt)
            unknown |= {w for w in words if w not in self.ids}
            if len(words) > self.context_length - 2:
                too_long.append(prompt)
                words = words[: self.context_length - 2]
            tokens = [START] + [w if w in self.ids else UNK for w in words] + [END]
            ids[i, : len(tokens)] = torch.tensor([self.ids[t] for t in tokens])
        if unknown:
            warnings.warn(f"unknown word(s) {', '.join(sorted(unknown))} became <unk>: the model was never trained on "
                          f"them (known words: {', '.join(w for w in self.vocab if w not in SPECIALS)})",
                          UnknownWordWarning, stacklevel=2)
        if too_long:
            warnings.warn(f"{len(too_long)} prompt(s) longer than {self.context_length - 2} words were cut, e.g. "
                          f"{too_long[0]!r}", TruncationWarning, stacklevel=2)
        return ids, ids != self.ids[PAD]

    def decode(self, ids: torch.Tensor) -> list[str]:
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
