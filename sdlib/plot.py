"""Figures, each one call away: image grids, noise schedules, loss curves, animations."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid

from .data import to_unit_range


def grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, value_range: str = "model") -> torch.Tensor:
    """Tile a batch (B, C, H, W) into one (3, H', W') image in [0, 1] with torchvision's make_grid.

    value_range: 'model' for images in [-1, 1] (the models' range), 'unit' for [0, 1],
    'auto' to stretch each image's own min..max (for noise and latents).
    """
    images = images.detach().float().cpu()
    if images.dim() == 3:
        images = images[:, None]
    if value_range == "model":
        images = to_unit_range(images)
    elif value_range == "unit":
        images = images.clamp(0, 1)
    elif value_range == "auto":
        return make_grid(images, nrow=nrow, padding=padding, normalize=True, scale_each=True, pad_value=1.0)
    else:
        raise ValueError(f"value_range must be 'model', 'unit' or 'auto', got {value_range!r}")
    return make_grid(images, nrow=nrow, padding=padding, pad_value=1.0)


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None,
                value_range: str = "model", figsize: tuple[float, float] | None = None):
    """Show a batch of images as a grid (see `grid` for value_range). Returns the axes."""
    g = grid(images, nrow=nrow, value_range=value_range)
    if ax is None:
        rows = int(np.ceil(len(images) / nrow))
        size = figsize or (min(1.0 * nrow, 12), min(1.0 * rows, 12) + (0.4 if title else 0))
        _, ax = plt.subplots(figsize=size)
    ax.imshow(g.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def show_rows(rows: Sequence[torch.Tensor], row_titles: Sequence[str] = (), col_titles: Sequence[str] = (),
              value_range: str = "model", size: float = 1.1, title: str | None = None):
    """A table of single-channel images: rows[i] is a batch (N, 1, H, W) shown along row i."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols + 1, size * n_rows + 0.3), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j >= len(row):
                continue
            img = row[j].detach().float().cpu()
            img = to_unit_range(img) if value_range == "model" else img
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0 if value_range != "auto" else None,
                      vmax=1 if value_range != "auto" else None, interpolation="nearest")
            if i == 0 and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=9)
        if i < len(row_titles):
            axes[i, 0].set_ylabel(row_titles[i], rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_schedules(schedules, axes=None, mark_t: int | None = None):
    """ᾱ_t and log-SNR against t for one or more NoiseSchedule objects (the seed slides' figure)."""
    if not isinstance(schedules, (list, tuple)):
        schedules = [schedules]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for s in schedules:
        t = np.arange(1, s.T + 1)
        axes[0].plot(t / s.T, s.alpha_bar[1:].numpy(), label=s.name)
        axes[1].plot(t / s.T, s.log_snr().numpy(), label=s.name)
    axes[0].set(xlabel="t / T", ylabel="ᾱ_t", title="ᾱ_t: how much signal is left")
    axes[1].set(xlabel="t / T", ylabel="log SNR = log(ᾱ_t / (1 - ᾱ_t))", title="log signal-to-noise ratio")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    if mark_t is not None:
        for s in schedules:
            x = mark_t / s.T
            axes[0].plot([x], [s.alpha_bar[mark_t].item()], "o", color="k", ms=4)
            axes[1].plot([x], [s.log_snr()[mark_t - 1].item()], "o", color="k", ms=4)
        for ax in axes:
            ax.axvline(mark_t / schedules[0].T, color="k", lw=0.8, ls=":")
    return axes


def plot_losses(history, ax=None, smooth: int = 50, label: str = "loss", logy: bool = True):
    """A loss curve with its running mean over `smooth` steps."""
    values = np.asarray(history, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    ax.plot(values, alpha=0.3, lw=0.8, label=f"{label} (per step)")
    if len(values) >= smooth > 1:
        kernel = np.ones(smooth) / smooth
        ax.plot(np.arange(smooth - 1, len(values)), np.convolve(values, kernel, mode="valid"),
                label=f"running mean of {smooth}")
    ax.set(xlabel="step", ylabel=label)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def animate(frames: Sequence[torch.Tensor], titles: Sequence[str] = (), interval: int = 120, nrow: int = 8,
            value_range: str = "model"):
    """An HTML animation of a sequence of image batches (each frame a grid). Display it in a notebook
    with IPython.display.HTML(anim.to_jshtml()); nothing here needs ffmpeg."""
    from matplotlib import animation

    n = len(frames[0])
    rows, cols = -(-n // nrow), min(nrow, n)
    fig, ax = plt.subplots(figsize=(0.8 * cols + 0.4, 0.8 * rows + 0.6))
    ax.axis("off")
    first = grid(frames[0], nrow=nrow, value_range=value_range).permute(1, 2, 0).numpy()
    im = ax.imshow(first, interpolation="nearest")
    label = ax.set_title(titles[0] if titles else "")

    def update(i):
        im.set_data(grid(frames[i], nrow=nrow, value_range=value_range).permute(1, 2, 0).numpy())
        if titles:
            label.set_text(titles[i])
        return im, label

    anim = animation.FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)
    plt.close(fig)
    return anim
