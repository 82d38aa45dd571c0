"""The U-Net ε_θ(x_t, t [, context]): it looks at a noisy image and predicts the noise in it.

                 x_t (B, C, H, W), t (B,)
                   │              └─ sinusoidal embedding → MLP → time vector, added in every ResBlock
               conv_in
     level 0 ─ ResBlock(s) ──────────────────────────── skip ──→ ResBlock(s) ─ conv_out → ε̂
        │ downsample (stride-2 conv)                                ↑ upsample
     level 1 ─ ResBlock(s) [+ attention] ─────────────── skip ──→ ResBlock(s) [+ attention]
        │ downsample                                                ↑ upsample
     level 2 ─ ResBlock(s) [+ attention] ── middle: ResBlock, [attention], ResBlock ──┘

The encoder halves the resolution level by level (28 → 14 → 7 for MNIST) while widening the
channels; the decoder comes back up, concatenating the encoder's features at the same resolution
(the skip connections of Ronneberger et al. 2015) so that fine detail survives. Optional
`SpatialTransformer` blocks add self-attention over the pixels and, with a text context,
cross-attention to the prompt (lesson 06); without them this is the plain U-Net of lesson 03.
One `UNetConfig` describes every U-Net in the course, the flow-matching one too: with
`time_input="continuous"` it takes a time t in [0, 1] instead of a step 0..max_t, and is trained to
predict a velocity v instead of ε (sdlib.flow).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sdlib.attention import SpatialTransformer
from sdlib.runtime import validate

NULL_CONTEXTS = ("learned", "zero", "text")
TIME_INPUTS = ("discrete", "continuous")


@dataclass
class UNetConfig:
    in_channels: int = 1
    out_channels: int | None = None          # default: in_channels (ε has the image's shape)
    channels: tuple[int, ...] = (32, 64, 128)  # width at each resolution level
    blocks: int = 1                          # ResBlocks per level on the way down (one more on the way up)
    attention: tuple[int, ...] = ()          # levels that get a SpatialTransformer after each ResBlock
    mid_attention: bool = False
    context_dim: int | None = None           # width of the text context for cross-attention (None: unconditional)
    heads: int = 4
    time_dim: int | None = None              # default: 4 × channels[0]
    groups: int = 8                          # GroupNorm groups
    dropout: float = 0.0
    max_t: int = 1000                        # time steps accepted: 0..max_t
    image_size: int = 28
    patch_size: int = 1                      # 2: fold each 2×2 block of pixels into channels first (28×28 -> 14×14)
    null_context: str = "learned"            # the empty prompt: "learned" token, "zero" token, or "text" (fixed tokens,
                                             # the text encoder's output for "", given by UNet.set_empty_prompt)
    null_tokens: int = 1                     # tokens in the empty prompt ("text": the encoding of "" without padding)
    time_input: str = "discrete"             # "discrete": integer t in 0..max_t (DDPM); "continuous": float t in
                                             # [0, 1] (flow matching, sdlib.flow), embedded as t·max_t

    def __post_init__(self):
        self.channels, self.attention = tuple(self.channels), tuple(self.attention)
        if not self.channels or any(c % self.groups for c in self.channels):
            raise ValueError(f"every entry of channels {self.channels} must be a multiple of groups ({self.groups})")
        if any(not 0 <= a < len(self.channels) for a in self.attention):
            raise ValueError(f"attention levels {self.attention} must be indices into channels {self.channels}")
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} must divide image_size {self.image_size}")
        if self.null_context not in NULL_CONTEXTS:
            raise ValueError(f"null_context must be one of {', '.join(map(repr, NULL_CONTEXTS))}, "
                             f"got {self.null_context!r}")
        if self.time_input not in TIME_INPUTS:
            raise ValueError(f"time_input must be one of {', '.join(map(repr, TIME_INPUTS))}, "
                             f"got {self.time_input!r}")
        if self.null_tokens < 1 or (self.null_context != "text" and self.null_tokens != 1):
            raise ValueError(f"null_tokens must be 1 for a {self.null_context!r} empty prompt and at least 1 for "
                             f"\"text\", got {self.null_tokens}")

    def to_dict(self) -> dict:
        return asdict(self)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of time steps (B,) -> (B, dim), as in the transformer's positions:
    [sin(t ω_0), ..., sin(t ω_{d/2-1}), cos(t ω_0), ...] with ω_i = max_period^(-2i/d). t: integer steps,
    or continuous times already scaled to the same range (t·max_t, see UNetConfig.time_input)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]                  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, add the time vector, GroupNorm → SiLU → (dropout) → conv, plus the input."""

    def __init__(self, cin: int, cout: int, time_dim: int, groups: int = 8, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(time_dim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                      # (B, cout, H, W)
        h = h + self.time(temb)[:, :, None, None]                  # the same shift at every pixel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class Downsample(nn.Conv2d):
    """Halve the resolution with a stride-2 3×3 convolution (28 → 14 → 7 → 4)."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, stride=2, padding=1)


class Upsample(nn.Module):
    """A 3×3 convolution, then nearest-neighbour upsampling to the skip connection's size (7 → 14 → 28).

    Convolving before upsampling rather than after costs 4× fewer FLOPs for the same layer; the
    ResBlocks that follow smooth out the blockiness."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(self.conv(x), size=size, mode="nearest")


class Level(nn.Module):
    """The ResBlocks (each optionally followed by a SpatialTransformer) of one resolution level."""

    def __init__(self, cins: list[int], cout: int, config: UNetConfig, time_dim: int, attend: bool):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(cin, cout, time_dim, config.groups, config.dropout) for cin in cins)
        self.attn = nn.ModuleList(
            SpatialTransformer(cout, config.heads, config.context_dim, config.groups) if attend else nn.Identity()
            for _ in cins)


class UNet(nn.Module):
    """ε_θ(x_t, t, context): see the module docstring. Images and noisy images in model range."""

    # the NoiseSchedule it was trained with, when known (sdlib.pretrained sets it from the manifest); samplers
    # refuse another, and sdlib.samplers.schedule_of falls back to the linear one on config.max_t
    schedule = None

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = c = config or UNetConfig()
        ch, n = c.channels, c.blocks
        time_dim = c.time_dim or 4 * ch[0]
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        p2 = c.patch_size ** 2
        self.conv_in = nn.Conv2d(c.in_channels * p2, ch[0], 3, padding=1)

        # Encoder: remember the width of every tensor pushed as a skip connection.
        skips, width = [ch[0]], ch[0]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for i, cout in enumerate(ch):
            self.down.append(Level([width] + [cout] * (n - 1), cout, c, time_dim, i in c.attention))
            width = cout
            skips += [cout] * n
            if i < len(ch) - 1:
                self.downsample.append(Downsample(cout))
                skips.append(cout)

        self.mid_res1 = ResBlock(width, width, time_dim, c.groups, c.dropout)
        self.mid_attn = (SpatialTransformer(width, c.heads, c.context_dim, c.groups) if c.mid_attention
                         else nn.Identity())
        self.mid_res2 = ResBlock(width, width, time_dim, c.groups, c.dropout)

        # Decoder: each ResBlock eats one skip connection, in reverse order.
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, cout in reversed(list(enumerate(ch))):
            cins = []
            for _ in range(n + 1):
                cins.append(width + skips.pop())
                width = cout
            self.up.append(Level(cins, cout, c, time_dim, i in c.attention))
            if i > 0:
                self.upsample.append(Upsample(cout))
        self.norm_out = nn.GroupNorm(c.groups, width)
        self.conv_out = nn.Conv2d(width, (c.out_channels or c.in_channels) * p2, 3, padding=1)
        # The "empty prompt" a conditional model gets when it has no prompt: a learned context token (the
        # course's choice), a token of zeros, or fixed tokens from the text encoder ("text": its output for "",
        # as Stable Diffusion does; set by set_empty_prompt before training and stored with the weights).
        if c.context_dim and c.null_context == "learned":
            self.null_context = nn.Parameter(torch.zeros(1, 1, c.context_dim))
        elif c.context_dim:
            self.register_buffer("null_context", torch.zeros(1, c.null_tokens, c.context_dim))
        else:
            self.null_context = None

    @property
    def conditional(self) -> bool:
        return self.config.context_dim is not None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def empty_prompt(self, batch: int, length: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The unconditional ("empty") prompt, the one definition of it: the null token(s) of
        config.null_context, padded to `length` tokens of which the mask shows only the null ones (the padding
        repeats the last null token).
        Returns context (batch, length, context_dim) and mask (batch, length) bool."""
        if self.null_context is None:
            raise ValueError("this U-Net is unconditional (config.context_dim is None): it has no empty prompt")
        n = self.null_context.shape[1]                     # config.null_tokens
        if length < n:
            raise ValueError(f"this U-Net's empty prompt has {n} tokens; a context of {length} cannot hold it")
        mask = torch.zeros(batch, length, dtype=torch.bool, device=self.null_context.device)
        mask[:, :n] = True
        # the positions past the null tokens are masked out; they repeat the last one
        null = torch.cat([self.null_context, self.null_context[:, -1:].expand(1, length - n, -1)], dim=1)
        return null.expand(batch, length, -1), mask

    @torch.no_grad()
    def set_empty_prompt(self, context: torch.Tensor, mask: torch.Tensor) -> "UNet":
        """Fix the empty prompt of a config.null_context = "text" U-Net to an encoded prompt (1, L, width) with
        its mask (1, L): the text encoder's output for "" (Stable Diffusion's empty prompt). Its real tokens
        are kept; there must be config.null_tokens of them. Returns the U-Net."""
        if self.config.null_context != "text":
            raise ValueError(f"only a U-Net with config.null_context = 'text' takes its empty prompt from the text "
                             f"encoder; this one's is {self.config.null_context!r}")
        validate.shaped(context, "context", "1 L C", C=self.config.context_dim)
        validate.mask(mask, "mask", context.shape[:2])
        tokens = context[0][mask[0]]
        if len(tokens) != self.config.null_tokens:
            raise ValueError(f"the empty prompt has {len(tokens)} real tokens but config.null_tokens is "
                             f"{self.config.null_tokens}")
        self.null_context.copy_(tokens[None].to(self.null_context))
        return self

    def check_inputs(self, x, t, context, context_mask) -> torch.Tensor:
        """Refuse inputs the network would choke on, with what was expected; returns t as (B,) int64, or as
        (B,) float in [0, 1] for a continuous-time U-Net."""
        c = self.config
        validate.floating(x, "x", value_range=validate.MODEL_RANGE)
        validate.shaped(x, "x", "B C H W", what="image", C=c.in_channels)
        validate.model_range(x, "x", nan_hint=" (if this happened while sampling, the sampler diverged: try "
                                              "clip_x0=True or a better-trained model)")
        if x.shape[-2] % c.patch_size or x.shape[-1] % c.patch_size:
            raise ValueError(f"x is {x.shape[-2]}x{x.shape[-1]}, but this U-Net folds {c.patch_size}x{c.patch_size} "
                             f"patches (config.patch_size): height and width must be multiples of {c.patch_size}")
        if c.time_input == "continuous":
            t = validate.continuous_times(t, x.shape[0])
        else:
            t = validate.timesteps(t, c.max_t, x.shape[0], lowest=0)
        if context is not None:
            if not self.conditional:
                raise ValueError("this U-Net is unconditional (config.context_dim is None) but got a context")
            validate.floating(context, "context")
            validate.shaped(context, "context", "B L C", B=x.shape[0], C=c.context_dim)
            validate.finite(context, "context")
            if context_mask is not None:
                validate.mask(context_mask, "context_mask", context.shape[:2])
        elif context_mask is not None:
            raise ValueError("context_mask was given without a context")
        return t

    def forward(self, x: torch.Tensor, t, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W) noisy images; t: (B,) int time steps (or one int), or for config.time_input =
        "continuous" (B,) float times in [0, 1] (or one number); context: (B, L, context_dim)
        text features and context_mask: (B, L) bool (True for real tokens). Returns ε̂ (a flow model: v̂) shaped
        like x.

        x and context in another floating dtype than the model's (float64, half) are computed in the
        model's dtype, and ε̂ comes back in x's dtype."""
        t = self.check_inputs(x, t, context, context_mask)
        x_dtype = x.dtype
        x = validate.to_model_dtype(x, self)
        if context is not None:
            context = validate.to_model_dtype(context, self)
        if self.conditional and context is None:                       # no prompt: the empty prompt
            context, context_mask = self.empty_prompt(x.shape[0], self.config.null_tokens)
        if self.conv_in.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)      # NHWC: faster convolutions on CPU
        if self.config.time_input == "continuous":       # t in [0, 1] -> [0, max_t]: the angles of discrete steps
            t = t * self.config.max_t
        temb = self.time_mlp(timestep_embedding(t.to(x.device), self.config.channels[0]))   # (B, time_dim)

        if self.config.patch_size > 1:                   # (B, C, 28, 28) -> (B, 4C, 14, 14): space to depth
            x = F.pixel_unshuffle(x, self.config.patch_size)
        h = self.conv_in(x)
        skips = [h]
        for i, level in enumerate(self.down):
            for res, attn in zip(level.res, level.attn):
                h = res(h, temb)
                h = attn(h, context, context_mask) if isinstance(attn, SpatialTransformer) else h
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)

        h = self.mid_res1(h, temb)
        h = self.mid_attn(h, context, context_mask) if isinstance(self.mid_attn, SpatialTransformer) else h
        h = self.mid_res2(h, temb)

        for j, level in enumerate(self.up):
            for res, attn in zip(level.res, level.attn):
                h = res(torch.cat([h, skips.pop()], dim=1), temb)
                h = attn(h, context, context_mask) if isinstance(attn, SpatialTransformer) else h
            if j < len(self.upsample):
                h = self.upsample[j](h, size=skips[-1].shape[-2:])
        out = self.conv_out(F.silu(self.norm_out(h)))
        if self.config.patch_size > 1:
            out = F.pixel_shuffle(out, self.config.patch_size)
        # Only an input that was converted gets its answer converted back (under autocast nothing is).
        return out if x.dtype == x_dtype else out.to(x_dtype)


# -- a noise-aware classifier for classifier guidance (lesson 07) -----------------------------------

@dataclass
class NoisyClassifierConfig:
    in_channels: int = 1
    channels: tuple[int, ...] = (32, 64)     # width at each resolution level (28 -> 14 -> 7)
    classes: int = 10
    groups: int = 8
    max_t: int = 1000                        # time steps accepted: 0..max_t
    image_size: int = 28

    def __post_init__(self):
        self.channels = tuple(self.channels)
        if not self.channels or any(c % self.groups for c in self.channels):
            raise ValueError(f"every entry of channels {self.channels} must be a multiple of groups ({self.groups})")

    def to_dict(self) -> dict:
        return asdict(self)


class NoisyClassifier(nn.Module):
    """p_φ(y | x_t, t): a digit classifier for *noisy* images, the time step as a second input (the
    classifier of classifier guidance, Dhariwal & Nichol 2021). It is the U-Net's encoder half (the same
    time embedding and ResBlocks, a ResBlock at every level, then downsampling), followed by global
    average pooling and a linear layer. (B, C, H, W) x_t in model range and (B,) t -> (B, classes) logits."""

    takes_time = True                        # ClassifierGuidance refuses a classifier without a time input

    def __init__(self, config: NoisyClassifierConfig | None = None):
        super().__init__()
        self.config = c = config or NoisyClassifierConfig()
        ch = c.channels
        time_dim = 4 * ch[0]
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.conv_in = nn.Conv2d(c.in_channels, ch[0], 3, padding=1)
        self.res = nn.ModuleList(ResBlock(cin, cout, time_dim, c.groups) for cin, cout in zip((ch[0],) + ch, ch))
        self.downsample = nn.ModuleList(Downsample(cout) for cout in ch)
        self.norm_out = nn.GroupNorm(c.groups, ch[-1])
        self.head = nn.Linear(ch[-1], c.classes)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        c = self.config
        validate.images(x, "x", channels=c.in_channels, size=(c.image_size, c.image_size), value_range=None)
        validate.finite(x, "x")
        t = validate.timesteps(t, c.max_t, x.shape[0], lowest=0)
        x = validate.to_model_dtype(x, self)
        temb = self.time_mlp(timestep_embedding(t.to(x.device), c.channels[0]))
        h = self.conv_in(x)
        for res, down in zip(self.res, self.downsample):
            h = down(res(h, temb))
        return self.head(F.silu(self.norm_out(h)).mean(dim=(2, 3)))
