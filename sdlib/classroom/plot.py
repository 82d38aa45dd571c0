"""Figures, each one call away: image grids, noise schedules, loss curves, animations, and the diagrams
of the lessons (`draw_*`: the graphical models, the forward chain, the VAE, CLIP, the U-Net drawn from its
config, and Stable Diffusion), each returning its matplotlib Figure."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid

from sdlib import pretrained
from sdlib.data import to_unit_range
from sdlib.runtime import validate


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


# -- diagrams ----------------------------------------------------------------------------------------
# Every diagram is drawn with matplotlib patches and arrows in data units of one fixed size (SCALE inches
# per unit), so the fonts and line widths of all the figures match. Colours name a role, not a figure:
# the forward process / encoder q is always teal, the learned reverse process / decoder p_θ orange,
# a posterior green, attention gold, the time step blue-grey, text olive, gradients red.

SCALE = 0.78                      # inches per data unit
FONT, SMALL = 11, 9               # points: box labels, annotations
INK = "#333333"
STYLE = {                         # role: (face colour, edge colour)
    "data": ("#dbe8f6", "#2f5d8c"),
    "latent": ("#ece4f7", "#5b4a8b"),
    "noise": ("#f1f1f1", "#777777"),
    "encoder": ("#d5efeb", "#1f7a70"),
    "decoder": ("#fbe1d8", "#c4522f"),
    "block": ("#eef1f5", "#56657a"),
    "attention": ("#fbefcc", "#b07d00"),
    "time": ("#e1e9f0", "#4a6781"),
    "text": ("#e9f1dc", "#5a7d2f"),
    "loss": ("#fde3e3", "#b22222"),
    "plain": ("white", "#56657a"),
}
Q_COLOR, P_COLOR, POSTERIOR_COLOR = "#1f7a70", "#c4522f", "#2e8b57"
GRAD_COLOR, SKIP_COLOR = "#d62828", "#8d99ae"


def _canvas(ax, xlim, ylim):
    """A figure of SCALE inches per unit (or the given axes), equal aspect, no frame."""
    if ax is None:
        fig = plt.figure(figsize=(SCALE * (xlim[1] - xlim[0]), SCALE * (ylim[1] - ylim[0])))
        ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax.figure, ax


def _box(ax, x, y, w, h, text="", role="block", fontsize=FONT, ls="-", lw=1.4, round_=0.12, **text_kw):
    """A rounded box centred at (x, y), its label inside. Returns the patch (arrows clip to it)."""
    from matplotlib.patches import FancyBboxPatch

    face, edge = STYLE[role]
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=f"round,pad=0,rounding_size={round_}",
                           facecolor=face, edgecolor=edge, linewidth=lw, linestyle=ls, zorder=2)
    ax.add_patch(patch)
    if text:
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color=INK, zorder=4,
                linespacing=1.25, **text_kw)
    return patch


def _node(ax, x, y, text, role="latent", r=0.42, fontsize=FONT + 3, shaded=False):
    """A circle, the node of a graphical model; shaded: an observed variable."""
    from matplotlib.patches import Circle

    face, edge = STYLE[role]
    patch = Circle((x, y), r, facecolor="#c9d3de" if shaded else face, edgecolor=edge, linewidth=1.6, zorder=2)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color=INK, zorder=4)
    return patch


def _arrow(ax, a, b, color=INK, ls="-", lw=1.6, rad=0.0, label=None, label_at=0.5, offset=(0.0, 0.0),
           fontsize=SMALL + 1, label_color=None, head=True, patchA=None, patchB=None, shrink=2.0, zorder=3):
    """An arrow from point a to point b (clipped to patchA/patchB when given), bent by rad, with an
    optional label on a white background at the fraction label_at of the straight line, moved by offset."""
    from matplotlib.patches import FancyArrowPatch

    arrow = FancyArrowPatch(a, b, arrowstyle="-|>" if head else "-", mutation_scale=13, color=color, lw=lw,
                            linestyle=ls, connectionstyle=f"arc3,rad={rad}", patchA=patchA, patchB=patchB,
                            shrinkA=shrink, shrinkB=shrink, zorder=zorder)
    ax.add_patch(arrow)
    if label:
        x = a[0] + label_at * (b[0] - a[0]) + offset[0]
        y = a[1] + label_at * (b[1] - a[1]) + offset[1]
        ax.text(x, y, label, ha="center", va="center", fontsize=fontsize, color=label_color or color, zorder=5,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.9))
    return arrow


def _badge(ax, x, y, text, color, r=0.2, fontsize=SMALL):
    """A small filled circle with a letter or number in it (a marker the legend explains)."""
    from matplotlib.patches import Circle

    ax.add_patch(Circle((x, y), r, facecolor=color, edgecolor="white", linewidth=1.0, zorder=6))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color="white", weight="bold", zorder=7)


def _chain_indices(T: int, keep: tuple[int, ...], first: int) -> list[int | None]:
    """The indices first..T to draw: all of them when there are few, else `keep` with None (⋯) in the gaps."""
    if T - first + 1 <= 6:
        return list(range(first, T + 1))
    shown = sorted({i for i in keep if first <= i <= T})
    out: list[int | None] = []
    for i in shown:
        if out and out[-1] is not None and i - out[-1] > 1:
            out.append(None)
        out.append(i)
    return out


def draw_latent_variable_model(ax=None):
    """The latent-variable model as a graphical model: a latent z drawn from the prior p(z) generates the
    observed x through the likelihood p_θ(x | z); p(x) = ∫ p(z) p_θ(x | z) dz. Returns the figure."""
    fig, ax = _canvas(ax, (-0.2, 6.6), (-1.1, 1.5))
    z = _node(ax, 1.4, 0.2, "$z$")
    x = _node(ax, 5.0, 0.2, "$x$", role="data", shaded=True)
    _arrow(ax, (1.4, 0.2), (5.0, 0.2), color=P_COLOR, lw=2, patchA=z, patchB=x,
           label=r"$p_\theta(x \mid z)$", offset=(0, 0.32), fontsize=FONT + 1)
    ax.text(1.4, 1.0, r"prior $p(z) = \mathcal{N}(0, I)$", ha="center", fontsize=FONT, color=INK)
    ax.text(1.4, -0.55, "latent: never observed", ha="center", va="top", fontsize=SMALL, color="#555555")
    ax.text(5.0, -0.55, "observed (shaded)", ha="center", va="top", fontsize=SMALL, color="#555555")
    ax.text(5.0, 1.0, r"$p(x) = \int p(z)\, p_\theta(x \mid z)\, dz$", ha="center", fontsize=FONT, color=INK)
    return fig


def _trapezoid(ax, x, y, w, h_wide, h_narrow, narrowing: bool, text, role):
    """A network drawn as a trapezoid: narrowing (an encoder) or widening (a decoder) left to right."""
    from matplotlib.patches import Polygon

    hl, hr = (h_wide, h_narrow) if narrowing else (h_narrow, h_wide)
    pts = [(x - w / 2, y - hl / 2), (x + w / 2, y - hr / 2), (x + w / 2, y + hr / 2), (x - w / 2, y + hl / 2)]
    face, edge = STYLE[role]
    patch = Polygon(pts, closed=True, facecolor=face, edgecolor=edge, linewidth=1.5, zorder=2)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=FONT, color=INK, zorder=4, linespacing=1.3)
    return patch


def draw_vae(ax=None):
    """The VAE: the encoder q_φ(z | x) maps x to a Gaussian over codes, a code z is drawn from it, and the
    decoder p_θ(x | z) maps z back; the two ELBO terms are marked. Returns the figure."""
    fig, ax = _canvas(ax, (-0.3, 12.3), (-2.2, 2.5))
    x = _node(ax, 0.6, 0, "$x$", role="data", shaded=True)
    enc = _trapezoid(ax, 3.1, 0, 2.6, 2.2, 1.0, True, "encoder\n" + r"$q_\phi(z \mid x)$", "encoder")
    z = _node(ax, 6.0, 0, "$z$")
    dec = _trapezoid(ax, 8.9, 0, 2.6, 2.2, 1.0, False, "decoder\n" + r"$p_\theta(x \mid z)$", "decoder")
    xh = _node(ax, 11.4, 0, r"$\hat x$", role="data")
    _arrow(ax, (0.6, 0), (3.1, 0), patchA=x, patchB=enc)
    _arrow(ax, (3.1, 0), (6.0, 0), patchA=enc, patchB=z, color=Q_COLOR, label=r"$\mu, \sigma$",
           label_at=0.62, offset=(0, 0.28))
    _arrow(ax, (6.0, 0), (8.9, 0), patchA=z, patchB=dec, color=P_COLOR)
    _arrow(ax, (8.9, 0), (11.4, 0), patchA=dec, patchB=xh)
    ax.text(6.0, -0.7, r"$z \sim q_\phi(z \mid x)$", ha="center", va="top", fontsize=SMALL + 1, color=Q_COLOR)
    prior = _box(ax, 6.0, 1.9, 2.3, 0.6, r"prior $p(z) = \mathcal{N}(0, I)$", role="latent", fontsize=SMALL + 1)
    _arrow(ax, (6.0, 1.6), (6.0, 0.42), color=POSTERIOR_COLOR, ls="--", head=False, patchA=prior, patchB=z,
           label=r"prior matching: $D_{\mathrm{KL}}(q_\phi(z \mid x) \,\Vert\, p(z))$", offset=(0, 0.05),
           fontsize=SMALL + 1, label_color=POSTERIOR_COLOR)
    ax.annotate("", xy=(11.4, -1.45), xytext=(0.6, -1.45),
                arrowprops=dict(arrowstyle="<->", color=P_COLOR, lw=1.2, linestyle=":"))
    ax.text(6.0, -1.45, r"reconstruction: $\mathbb{E}_{q_\phi(z \mid x)}[\log p_\theta(x \mid z)]$", ha="center",
            va="center", fontsize=SMALL + 1, color=P_COLOR,
            bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"))
    return fig


def _two_way_chain(ax, labels, xs, y, forward, reverse, observed=0, gap_label="⋯", bold_reverse=()):
    """Nodes at xs (None in labels: a gap drawn as ⋯), forward arrows arching above and reverse arrows
    below between neighbours. forward(i) / reverse(i) give the label of the arrow between node i and
    i + 1 (None: no label); the reverse arrows of bold_reverse are drawn thicker. Returns the node
    patches (None at gaps)."""
    nodes = []
    for k, (label, x) in enumerate(zip(labels, xs)):
        if label is None:
            ax.text(x, y, gap_label, ha="center", va="center", fontsize=FONT + 6, color=INK)
            nodes.append(None)
        else:
            nodes.append(_node(ax, x, y, label, role="data" if k == observed else "latent", shaded=k == observed))
    for k in range(len(labels) - 1):
        a, b = (xs[k], y), (xs[k + 1], y)
        pa, pb = nodes[k], nodes[k + 1]
        dotted = pa is None or pb is None
        if dotted:                                       # into or out of a gap: shorter arrows, no label
            a, b = (a[0] + (0.45 if pa is not None else 0.3), y), (b[0] - (0.45 if pb is not None else 0.3), y)
        ls = ":" if dotted else "-"
        _arrow(ax, a, b, color=Q_COLOR, rad=-0.45, ls=ls, patchA=pa, patchB=pb,
               label=None if dotted else forward(k), offset=(0, 0.8), fontsize=SMALL + 1)
        _arrow(ax, b, a, color=P_COLOR, rad=-0.45, ls=ls, patchA=pb, patchB=pa, lw=2.8 if k in bold_reverse else 1.6,
               label=None if dotted else reverse(k), offset=(0, -0.8), fontsize=SMALL + 1)
    return nodes


def draw_hierarchical_vae(T: int = 3, ax=None):
    """The Markovian hierarchical VAE: x → z_1 → … → z_T. Encoder arrows q(z_t | z_{t−1}) above, decoder
    arrows p_θ(z_{t−1} | z_t) below, the prior p(z_T) at the end. Long chains are drawn with a ⋯ gap.
    Returns the figure."""
    T = validate.positive_int(T, "T")
    idx = [0] + _chain_indices(T, (1, 2, T - 1, T), 1)
    name = lambda i: "$x$" if i == 0 else f"$z_{{{i}}}$"                                    # noqa: E731
    labels = [None if i is None else name(i) for i in idx]
    step = 2.3
    xs = [0.6 + step * k for k in range(len(idx))]
    fig, ax = _canvas(ax, (-0.3, xs[-1] + 1.2), (-1.75, 1.75))

    def forward(k):
        return rf"$q_\phi({name(idx[k + 1])[1:-1]} \mid {name(idx[k])[1:-1]})$"

    def reverse(k):
        return rf"$p_\theta({name(idx[k])[1:-1]} \mid {name(idx[k + 1])[1:-1]})$"

    _two_way_chain(ax, labels, xs, 0.0, forward, reverse)
    ax.text(xs[-1] + 0.5, 0.45, r"$p(z_{%d})$" % T, ha="left", va="bottom", fontsize=FONT, color=INK)
    ax.text(xs[0] - 0.5, 1.5, r"encoder $q_\phi$", ha="left", va="center", fontsize=FONT, color=Q_COLOR,
            weight="bold")
    ax.text(xs[0] - 0.5, -1.5, r"decoder $p_\theta$", ha="left", va="center", fontsize=FONT, color=P_COLOR,
            weight="bold")
    return fig


def draw_diffusion_chain(T: int = 4, t: int | None = None, ax=None):
    """The diffusion model as a chain x_0 → x_1 → … → x_T: the fixed forward steps q(x_t | x_{t−1}) above,
    the learned reverse steps p_θ(x_{t−1} | x_t) below, and for one step t (default: the middle one) the
    posterior q(x_{t−1} | x_t, x_0) that the reverse step is trained to match, a dashed arrow from x_0.
    Long chains are drawn with ⋯ gaps. Returns the figure."""
    T = validate.positive_int(T, "T", minimum=2)
    t = T // 2 + 1 if t is None else validate.timestep(t, T, lowest=2)
    idx = _chain_indices(T, (0, 1, t - 1, t, T), 0)
    labels = [None if i is None else f"$x_{{{i}}}$" for i in idx]
    step = 2.3
    xs = [0.6 + step * k for k in range(len(idx))]
    fig, ax = _canvas(ax, (-0.3, xs[-1] + 2.5), (-2.4, 1.75))
    forward = lambda k: rf"$q(x_{{{idx[k + 1]}}} \mid x_{{{idx[k]}}})$"                  # noqa: E731
    reverse = lambda k: rf"$p_\theta(x_{{{idx[k]}}} \mid x_{{{idx[k + 1]}}})$"           # noqa: E731
    k_prev = idx.index(t - 1)
    nodes = _two_way_chain(ax, labels, xs, 0.0, forward, reverse, bold_reverse=(k_prev,))
    ax.text(xs[-1] + 0.55, 0, r"$p(x_{%d}) = \mathcal{N}(0, I)$" % T, ha="left", va="center", fontsize=SMALL + 1,
            color=INK)
    ax.text(xs[0], 0.5, "data", ha="center", va="bottom", fontsize=SMALL + 1, color=INK)
    # the posterior: from x_0 to x_{t-1} (t >= 2, so x_{t-1} is never x_0 itself), under the reverse arrows
    _arrow(ax, (xs[0], -0.42), (xs[k_prev], -0.42), color=POSTERIOR_COLOR, ls="--", lw=1.8,
           rad=0.32 if k_prev > 1 else 0.6, patchA=nodes[0], patchB=nodes[k_prev])
    ax.text((xs[0] + xs[k_prev]) / 2 if k_prev > 1 else xs[0], -2.0,
            rf"posterior $q(x_{{{t - 1}}} \mid x_{{{t}}}, x_0)$: "
            rf"the target of $p_\theta(x_{{{t - 1}}} \mid x_{{{t}}})$",
            ha="left" if k_prev == 1 else "center", va="center", fontsize=SMALL + 1, color=POSTERIOR_COLOR,
            bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.9))
    ax.text(xs[0] - 0.5, 1.5, r"forward $q$: fixed, adds noise", ha="left", va="center", fontsize=FONT,
            color=Q_COLOR, weight="bold")
    ax.text(xs[-1] + 0.5, -1.5, r"reverse $p_\theta$: learned, removes it", ha="right", va="center", fontsize=FONT,
            color=P_COLOR, weight="bold")
    return fig


def draw_forward_chain(images, ts, ax=None):
    """A strip of real noisy images x_t with the forward-process arrows q between neighbours: one step
    q(x_t | x_{t−1}) when the time steps are neighbours, else the number of steps the arrow stands for.
    images: a list or tensor of 2-D images (H, W), or (N, 1, H, W), in model range [-1, 1] (noisy images
    go beyond it: they are shown clipped to it, as the grey scale can show no more); ts: their time steps,
    increasing. Returns the figure."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is empty: give at least one 2-D image")
        for i, img in enumerate(images):
            validate.floating(img, f"images[{i}]", value_range=validate.MODEL_RANGE)
        shapes = {tuple(img.shape) for img in images}
        if len(shapes) > 1:
            raise ValueError(f"the images must all have one shape, got {sorted(shapes)}")
        images = torch.stack(list(images))
    validate.floating(images, "images", value_range=validate.MODEL_RANGE)
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3:
        raise ValueError(f"images must be N 2-D images: shape (N, H, W) or (N, 1, H, W), got {tuple(images.shape)}")
    validate.nonempty(images, "images")
    validate.finite(images, "images")
    if isinstance(ts, torch.Tensor):
        ts = ts.tolist()
    if not isinstance(ts, (list, tuple)) or len(ts) != len(images):
        n = len(ts) if isinstance(ts, (list, tuple)) else type(ts).__name__
        raise ValueError(f"ts must be a list of one time step per image ({len(images)}), got {n}")
    ts = [validate.timestep(t, 10 ** 9, lowest=0, name=f"ts[{i}]") for i, t in enumerate(ts)]
    if any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"ts must increase from left to right (the forward process only adds noise), got {ts}")

    n, size, gap = len(images), 1.5, 1.0
    width = n * size + (n - 1) * gap
    fig, ax = _canvas(ax, (-0.15, width + 0.15), (-0.75, size + 0.75))
    for i, (img, t) in enumerate(zip(images, ts)):
        x0 = i * (size + gap)
        ax.imshow(to_unit_range(img.detach().float().cpu()).numpy(), cmap="gray", vmin=0, vmax=1,
                  extent=(x0, x0 + size, 0, size), interpolation="nearest", zorder=2)
        ax.add_patch(plt.Rectangle((x0, 0), size, size, fill=False, edgecolor=STYLE["data"][1], lw=1.2, zorder=3))
        ax.text(x0 + size / 2, -0.12, f"$x_{{{t}}}$", ha="center", va="top", fontsize=FONT + 1, color=INK)
        if i:
            steps = t - ts[i - 1]
            a, b = (x0 - gap + 0.08, size / 2), (x0 - 0.08, size / 2)
            label = rf"$q(x_{{{t}}} \mid x_{{{t - 1}}})$" if steps == 1 else f"{steps} × $q$"
            _arrow(ax, a, b, color=Q_COLOR, lw=2.0, label=label, offset=(0, 0.32), fontsize=SMALL)
    return fig


def draw_autoencoder_vs_vae(ax=None):
    """Above, the autoencoder: x → encoder → one code z → decoder. Below, the VAE with the
    reparameterisation trick: the encoder gives μ and σ, the noise ε ~ N(0, I) enters from the side, and
    z = μ + σ ⊙ ε. Dashed red: the gradient of the loss flowing back through z, μ and σ into the
    encoder's weights φ; none flows into ε, an input like the data. Returns the figure."""
    fig, ax = _canvas(ax, (-0.3, 14.1), (-4.35, 2.3))
    h = 1.0                                       # box height
    # the autoencoder
    ax.text(-0.1, 1.95, "autoencoder: one code per image", ha="left", va="center", fontsize=FONT, weight="bold",
            color=INK)
    x1 = _box(ax, 0.55, 0.9, 0.9, h, "$x$", role="data", fontsize=FONT + 2)
    e1 = _trapezoid(ax, 2.7, 0.9, 2.2, 1.6, 0.8, True, "encoder", "encoder")
    z1 = _box(ax, 5.9, 0.9, 1.4, h, "code $z$", role="latent")
    d1 = _trapezoid(ax, 9.6, 0.9, 2.2, 1.6, 0.8, False, "decoder", "decoder")
    r1 = _box(ax, 11.8, 0.9, 0.9, h, r"$\hat x$", role="data", fontsize=FONT + 2)
    for a, b, pa, pb in [((0.55, 0.9), (2.7, 0.9), x1, e1), ((2.7, 0.9), (5.9, 0.9), e1, z1),
                         ((5.9, 0.9), (9.6, 0.9), z1, d1), ((9.6, 0.9), (11.8, 0.9), d1, r1)]:
        _arrow(ax, a, b, patchA=pa, patchB=pb)
    ax.text(5.9, 0.15, "deterministic: the same $x$ always gives the same $z$", ha="center", va="top",
            fontsize=SMALL, color="#555555")
    ax.plot([-0.2, 14.0], [-0.55, -0.55], color="#cccccc", lw=1)
    # the VAE
    y = -2.1
    ax.text(-0.1, -0.95,
            r"VAE: a Gaussian $q_\phi(z \mid x)$ per image, sampled by $z = \mu + \sigma \odot \varepsilon$",
            ha="left", va="center", fontsize=FONT, weight="bold", color=INK)
    x2 = _box(ax, 0.55, y, 0.9, h, "$x$", role="data", fontsize=FONT + 2)
    e2 = _trapezoid(ax, 2.7, y, 2.2, 1.6, 0.8, True, "encoder\n(weights $\\phi$)", "encoder")
    mu = _box(ax, 4.75, y + 0.55, 0.8, 0.75, r"$\mu$", role="latent", fontsize=FONT + 2)
    sg = _box(ax, 4.75, y - 0.55, 0.8, 0.75, r"$\sigma$", role="latent", fontsize=FONT + 2)
    zz = _box(ax, 6.75, y, 1.7, h, r"$z = \mu + \sigma \odot \varepsilon$", role="latent", fontsize=SMALL + 1)
    eps = _node(ax, 6.75, y - 1.65, r"$\varepsilon$", role="noise", r=0.36, fontsize=FONT + 2)
    d2 = _trapezoid(ax, 9.6, y, 2.2, 1.6, 0.8, False, "decoder\n(weights $\\theta$)", "decoder")
    r2 = _box(ax, 11.8, y, 0.9, h, r"$\hat x$", role="data", fontsize=FONT + 2)
    loss = _box(ax, 13.35, y, 1.3, h, "loss\nrecon. + KL", role="loss", fontsize=SMALL)
    for a, b, pa, pb in [((0.55, y), (2.7, y), x2, e2), ((9.6, y), (11.8, y), d2, r2),
                         ((11.8, y), (13.35, y), r2, loss), ((6.75, y), (9.6, y), zz, d2)]:
        _arrow(ax, a, b, patchA=pa, patchB=pb)
    for s in (mu, sg):
        c = s.get_x() + s.get_width() / 2, s.get_y() + s.get_height() / 2
        _arrow(ax, (2.7, y), c, patchA=e2, patchB=s, color=Q_COLOR)
        _arrow(ax, c, (6.75, y), patchA=s, patchB=zz, color=Q_COLOR)
    _arrow(ax, (6.75, y - 1.65), (6.75, y), patchA=eps, patchB=zz, color="#777777")
    ax.text(7.25, y - 1.65, r"$\varepsilon \sim \mathcal{N}(0, I)$: an input, no gradient", ha="left", va="center",
            fontsize=SMALL, color="#555555")
    # the gradient path, backwards, offset below the forward arrows
    g = dict(color=GRAD_COLOR, ls="--", lw=1.5, zorder=6)
    _arrow(ax, (13.0, y + 0.62), (10.2, y + 0.62), rad=0.25, **g)
    _arrow(ax, (9.0, y + 0.62), (7.3, y + 0.6), rad=0.25, **g)
    _arrow(ax, (6.2, y + 0.62), (5.2, y + 0.93), rad=0.2, **g)
    _arrow(ax, (6.2, y - 0.62), (5.2, y - 0.93), rad=-0.2, **g)
    _arrow(ax, (4.3, y + 0.95), (3.4, y + 0.55), rad=0.25, **g)
    _arrow(ax, (4.3, y - 0.95), (3.4, y - 0.55), rad=-0.25, **g)
    ax.text(11.6, y + 1.3,
            r"$\partial\,\mathrm{loss}$ flows back: to $\theta$, through $z$, $\mu$, $\sigma$, to $\phi$",
            ha="center", va="bottom", fontsize=SMALL, color=GRAD_COLOR)
    return fig


def draw_clip(n: int = 4, labels=None, similarity=None, images=None, ax=None):
    """CLIP: N images through the image encoder (left), their N captions through the text encoder (top),
    and the N × N matrix of similarities S_ij = I_i · T_j / τ, whose diagonal holds the true pairs
    (outlined). labels: the N captions; similarity: an optional real (N, N) matrix (tensor or array),
    shown as the cells' shading and values; images: an optional (N, H, W) or (N, 1, H, W) batch in
    [-1, 1] shown beside the rows. Returns the figure."""
    n = validate.positive_int(n, "n", maximum=16)
    labels = [f"caption {j + 1}" for j in range(n)] if labels is None else validate.prompts(labels, "labels")
    if len(labels) != n:
        raise ValueError(f"labels must hold n = {n} captions, got {len(labels)}")
    values = None
    if similarity is not None:
        values = torch.as_tensor(similarity).detach().float().cpu()
        validate.shaped(values, "similarity", "N M", N=n, M=n)
        validate.finite(values, "similarity")
        values = values.numpy()
    if images is not None:
        validate.floating(images, "images", value_range=validate.MODEL_RANGE)
        if images.dim() == 4 and images.shape[1] == 1:
            images = images[:, 0]
        validate.shaped(images, "images", "N H W", N=n)
        validate.values_in(images, "images")

    cell = 1.0
    m0x, m0y = 4.6, 0.0                        # the matrix's lower-left corner; row i runs top to bottom
    top = m0y + n * cell
    longest = max(len(s) for s in labels)
    text_h = 0.075 * longest + 0.2             # room for the vertical captions
    fig, ax = _canvas(ax, (-0.2, m0x + n * cell + 2.6), (-1.0, top + 2.1 + text_h))
    cmap = plt.get_cmap("Blues")
    lo, hi = (float(values.min()), float(values.max())) if values is not None else (0.0, 1.0)
    for i in range(n):
        yc = top - (i + 0.5) * cell
        for j in range(n):
            xc = m0x + (j + 0.5) * cell
            if values is None:
                face, txt, color = ("#cfe0f3" if i == j else "#f3f5f8"), f"$I_{{{i + 1}}} \\cdot T_{{{j + 1}}}$", INK
            else:
                level = (values[i, j] - lo) / (hi - lo) if hi > lo else 0.5
                face, txt = cmap(0.1 + 0.85 * level), f"{values[i, j]:.2f}"
                color = "white" if level > 0.6 else INK
            ax.add_patch(plt.Rectangle((m0x + j * cell, yc - cell / 2), cell, cell, facecolor=face,
                                       edgecolor="white", lw=1.5, zorder=2))
            ax.text(xc, yc, txt, ha="center", va="center", fontsize=SMALL if n <= 8 else SMALL - 2, color=color,
                    zorder=4)
        ax.add_patch(plt.Rectangle((m0x + i * cell + 0.03, yc - cell / 2 + 0.03), cell - 0.06, cell - 0.06,
                                   fill=False, edgecolor=STYLE["decoder"][1], lw=2.4, zorder=5))
    # the image tower, left of the rows
    _box(ax, 2.55, top - n * cell / 2, 1.1, n * cell, "image\nencoder", role="data", fontsize=SMALL + 1)
    for i in range(n):
        yc = top - (i + 0.5) * cell
        if images is not None:
            img = to_unit_range(images[i].detach().float().cpu()).numpy()
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, extent=(0.35, 1.15, yc - 0.4, yc + 0.4), zorder=2)
        else:
            _box(ax, 0.75, yc, 0.8, 0.8, f"image\n{i + 1}", role="plain", fontsize=SMALL - 1, round_=0.05)
        _arrow(ax, (1.2, yc), (1.98, yc), lw=1.1)
        _box(ax, 3.85, yc, 0.8, 0.6, f"$I_{{{i + 1}}}$", role="data", fontsize=SMALL + 1, round_=0.08)
        _arrow(ax, (3.12, yc), (3.43, yc), lw=1.1)
        _arrow(ax, (4.27, yc), (m0x - 0.02, yc), lw=1.1)
    # the text tower, above the columns
    _box(ax, m0x + n * cell / 2, top + 1.5, n * cell, 0.6, "text encoder", role="text", fontsize=SMALL + 1)
    for j in range(n):
        xc = m0x + (j + 0.5) * cell
        ax.text(xc, top + 2.05, labels[j], rotation=90, ha="center", va="bottom", fontsize=SMALL, color=INK)
        _box(ax, xc, top + 0.55, 0.62, 0.5, f"$T_{{{j + 1}}}$", role="text", fontsize=SMALL + 1, round_=0.08)
        _arrow(ax, (xc, top + 1.18), (xc, top + 0.82), lw=1.1)
        _arrow(ax, (xc, top + 0.29), (xc, top + 0.02), lw=1.1)
    note = ("real similarities" if values is not None else r"$S_{ij} = I_i \cdot T_j \,/\, \tau$") + \
        ": image $i$ should pick caption $i$ (outlined)"
    ax.text(m0x + n * cell / 2, -0.35, note, ha="center", va="top", fontsize=SMALL + 1, color=INK)
    ax.text(m0x + n * cell + 0.25, top - n * cell / 2,
            "the loss:\neach row a softmax\nover the captions,\neach column one\nover the images",
            ha="left", va="center", fontsize=SMALL, color="#555555")
    return fig


def _unet_sizes(model) -> list[int]:
    """The spatial size of each level of a built U-Net, from its modules: the input folded by patch_size,
    then each Downsample convolution's output size, (s + 2 padding - kernel) // stride + 1."""
    c = model.config
    sizes = [c.image_size // c.patch_size]
    for down in model.downsample:
        sizes.append((sizes[-1] + 2 * down.padding[0] - down.kernel_size[0]) // down.stride[0] + 1)
    return sizes


def draw_unet(config, ax=None, show_concat: bool = False):
    """The U-Net of a `sdlib.unet.UNetConfig`, drawn from the model that config builds: the encoder
    (left, top to bottom), the middle, the decoder (right, bottom to top), each box a module with its
    channel widths, the spatial size of every level, the skip connections (grey), the time vector that
    every ResBlock adds (the "t" badges), the attention blocks (gold) and, for a conditional model, the
    text context that their cross-attention reads. show_concat: write each decoder ResBlock's input as
    h + skip widths (the answer to lesson 06's exercise) instead of [h, skip]. Returns the figure."""
    from sdlib.attention import SpatialTransformer
    from sdlib.unet import UNet, UNetConfig

    validate.instance(config, UNetConfig, "config",
                      " (e.g. sdlib.recipes.configs.text_ddpm.LESSON_UNET, or a trained U-Net's .config)")
    model, c = UNet(config), config             # fresh weights: only the structure is read
    sizes = _unet_sizes(model)

    def attn_label(attn):
        return "self-attn\n+ cross-attn" if attn.block.cross_attn is not None else "self-attn"

    # the encoder: every module that pushes a skip connection, in order (one row each)
    enc = [dict(level=0, label=f"conv_in\n{model.conv_in.in_channels} → {model.conv_in.out_channels}",
                res=False, attn=None, width=model.conv_in.out_channels)]
    for i, level in enumerate(model.down):
        for k, (res, attn) in enumerate(zip(level.res, level.attn)):
            st = isinstance(attn, SpatialTransformer)
            enc.append(dict(level=i, res=True, width=res.conv1.out_channels,
                            label=f"ResBlock\n{res.conv1.in_channels} → {res.conv1.out_channels}",
                            attn=attn_label(attn) if st else None, cross=st and attn.block.cross_attn is not None))
        if i < len(model.downsample):
            enc.append(dict(level=i + 1, res=False, attn=None, width=model.downsample[i].out_channels,
                            label=f"Downsample\n{model.downsample[i].out_channels}, stride 2"))
    # the decoder, in the order it runs; block k pops the skip of encoder row len(enc) - 1 - k
    dec, ups = [], []
    for j, level in enumerate(model.up):
        i = len(model.up) - 1 - j
        for k, (res, attn) in enumerate(zip(level.res, level.attn)):
            skip = enc[len(enc) - 1 - len(dec)]["width"]
            cin, cout = res.conv1.in_channels, res.conv1.out_channels
            inputs = f"{cin - skip} + {skip}" if show_concat else "[h, skip]"
            st = isinstance(attn, SpatialTransformer)
            dec.append(dict(level=i, label=f"ResBlock\n{inputs} → {cout}", attn=attn_label(attn) if st else None,
                            cross=st and attn.block.cross_attn is not None))
        if j < len(model.upsample):
            ups.append((len(dec) - 1, f"Upsample {model.upsample[j].conv.out_channels}"))

    # rows, top to bottom, with a wider gap between levels (room for the upsample boxes)
    dy, level_gap, bh = 1.0, 1.7, 0.62
    ys, y = [], 0.0
    for r, item in enumerate(enc):
        if r and item["level"] != enc[r - 1]["level"]:
            y -= level_gap - dy
        ys.append(y)
        y -= dy
    y_mid = ys[-1] - 1.35
    xe, xea, xd, xda, w, wa = 2.2, 3.95, 8.4, 10.3, 2.0, 1.3
    x_mid = (xe + xd) / 2
    y_head = ys[0] + 1.15
    bottom = y_mid - (1.25 if c.context_dim else 0.6) - 1.0
    fig, ax = _canvas(ax, (-0.75, xda + 1.0), (bottom, y_head + 0.75))
    where = [f"level {i}" for i in c.attention] + (["middle"] if c.mid_attention else [])
    title = (f"U-Net: channels {tuple(c.channels)}, {c.blocks} + {c.blocks + 1} ResBlocks per level; attention: "
             f"{', '.join(where) or 'none'}" + (f"; context width {c.context_dim}" if c.context_dim else
                                                "; unconditional"))
    ax.text(-0.6, y_head + 0.62, title, ha="left", va="center", fontsize=SMALL + 1, color=INK, weight="bold")

    def block(x, y, label, role="block", width=w, time=False):
        patch = _box(ax, x, y, width, bh, label, role=role, fontsize=SMALL)
        if time:
            _badge(ax, x - width / 2 + 0.05, y + bh / 2 - 0.05, "t", STYLE["time"][1], r=0.16, fontsize=SMALL - 1)
        return patch

    attn_patches = []
    enc_patches, dec_patches = [], []
    for r, item in enumerate(enc):
        enc_patches.append(block(xe, ys[r], item["label"], time=item["res"]))
        end = xe + w / 2
        if item["attn"]:
            attn_patches.append((block(xea, ys[r], item["attn"], role="attention", width=wa), item["cross"]))
            end = xea + wa / 2
        if r:
            _arrow(ax, (xe, ys[r - 1] - bh / 2), (xe, ys[r] + bh / 2), shrink=1)
        _arrow(ax, (end, ys[r]), (xd - w / 2, ys[r]), color=SKIP_COLOR, lw=1.3,
               label="skip" if r == 0 else None, label_at=0.45, fontsize=SMALL)
    for k, item in enumerate(dec):
        r = len(enc) - 1 - k
        dec_patches.append(block(xd, ys[r], item["label"], time=True))
        if item["attn"]:
            attn_patches.append((block(xda, ys[r], item["attn"], role="attention", width=wa), item["cross"]))
    for k in range(len(dec) - 1):
        a, b = ys[len(enc) - 1 - k], ys[len(enc) - 2 - k]
        up = [label for after, label in ups if after == k]
        if up:
            ym = (a + b) / 2
            _box(ax, xd, ym, 1.5, 0.4, up[0], role="block", fontsize=SMALL - 1, round_=0.06)
            _arrow(ax, (xd, a + bh / 2), (xd, ym - 0.2), shrink=1)
            _arrow(ax, (xd, ym + 0.2), (xd, b - bh / 2), shrink=1)
        else:
            _arrow(ax, (xd, a + bh / 2), (xd, b - bh / 2), shrink=1)
    # the resolution of every level
    for i in range(len(c.channels)):
        rows = [ys[r] for r, item in enumerate(enc) if item["level"] == i]
        ax.plot([0.95, 0.95], [min(rows) - bh / 2, max(rows) + bh / 2], color="#999999", lw=1.5)
        ax.text(0.85, (min(rows) + max(rows)) / 2, f"level {i}\n{sizes[i]}×{sizes[i]}", ha="right",
                va="center", fontsize=SMALL, color="#555555")
    # the middle
    ax.text(0.85, y_mid, f"middle\n{sizes[-1]}×{sizes[-1]}", ha="right", va="center", fontsize=SMALL,
            color="#555555")
    width_mid = model.mid_res1.conv1.out_channels
    mids = [("ResBlock\n" + f"{width_mid} → {width_mid}", "block", True)]
    if isinstance(model.mid_attn, SpatialTransformer):
        mids.append((attn_label(model.mid_attn), "attention", False))
    mids.append(("ResBlock\n" + f"{width_mid} → {width_mid}", "block", True))
    xs_mid = [x_mid + (k - (len(mids) - 1) / 2) * 2.05 for k in range(len(mids))]
    mid_patches = []
    for x, (label, role, time) in zip(xs_mid, mids):
        mid_patches.append(block(x, y_mid, label, role=role, width=1.75, time=time))
        if role == "attention":
            attn_patches.append((mid_patches[-1], model.mid_attn.block.cross_attn is not None))
    for (xa, xb), (a, b) in zip(zip(xs_mid, xs_mid[1:]), zip(mid_patches, mid_patches[1:])):
        _arrow(ax, (xa, y_mid), (xb, y_mid), patchA=a, patchB=b)
    _arrow(ax, (xe, ys[-1]), (xs_mid[0], y_mid), patchA=enc_patches[-1], patchB=mid_patches[0])
    _arrow(ax, (xs_mid[-1], y_mid), (xd, ys[-1]), patchA=mid_patches[-1], patchB=dec_patches[0])
    # input, output and the time embedding
    p2 = c.patch_size
    cin = c.in_channels
    xin = _box(ax, xe, y_head, w, bh, f"$x_t$  {cin}×{c.image_size}×{c.image_size}", role="data", fontsize=SMALL + 1)
    _arrow(ax, (xe, y_head), (xe, ys[0]), patchA=xin, patchB=enc_patches[0])
    if p2 > 1:
        s = c.image_size // p2
        ax.text(xe + 0.12, (y_head + ys[0]) / 2, f"fold {p2}×{p2} pixels → {cin * p2 * p2}×{s}×{s}", ha="left",
                va="center", fontsize=SMALL - 1, color="#555555")
    out = _box(ax, xd, y_head, w, bh, "GroupNorm, SiLU,\nconv_out" + (f", unfold {p2}×{p2}" if p2 > 1 else ""),
               role="block", fontsize=SMALL - 1)
    _arrow(ax, (xd, ys[0]), (xd, y_head), patchA=dec_patches[-1], patchB=out)
    oc = c.out_channels or cin
    eps = _box(ax, xda, y_head, wa, bh, r"$\hat\varepsilon$" + f"  {oc}×{c.image_size}×{c.image_size}", role="data",
               fontsize=SMALL)
    _arrow(ax, (xd, y_head), (xda, y_head), patchA=out, patchB=eps)
    temb = model.time_mlp[-1].out_features
    _box(ax, x_mid, y_head, 3.0, bh, f"$t$ → sinusoidal ({c.channels[0]})\n→ MLP → time vector ({temb})",
         role="time",
         fontsize=SMALL - 1)
    _badge(ax, x_mid - 1.5 + 0.05, y_head + bh / 2 - 0.05, "t", STYLE["time"][1], r=0.16, fontsize=SMALL - 1)
    # the text context, read by every cross-attention (the "c" badges)
    legend_y = bottom + 0.55
    text_edge = STYLE["text"][1]
    for patch, cross in attn_patches:
        if cross:
            _badge(ax, patch.get_x() + 0.05, patch.get_y() + bh - 0.05, "c", text_edge, r=0.16, fontsize=SMALL - 1)
    if c.context_dim:
        _box(ax, x_mid, y_mid - 1.2, 4.2, 0.55, f"context (B, L, {c.context_dim}): the prompt's tokens", role="text",
             fontsize=SMALL)
        _badge(ax, x_mid - 2.1 + 0.05, y_mid - 1.2 + 0.275 - 0.05, "c", text_edge, r=0.16, fontsize=SMALL - 1)
    ax.text(-0.6, legend_y, "t: the time vector is added inside this ResBlock.   Grey arrows: skip connections, "
            "concatenated to the decoder's input along the channels.", ha="left", va="center", fontsize=SMALL - 1,
            color="#555555")
    ax.text(-0.6, legend_y - 0.4, "Gold: a transformer block over the pixels (self-attention" +
            (", then cross-attention to the context (c)" if c.context_dim else "") + ", then an MLP).",
            ha="left", va="center", fontsize=SMALL - 1, color="#555555")
    return fig


def draw_stable_diffusion(ax=None):
    """The course's Stable Diffusion (sdlib.pipeline.LatentDiffusion): the text encoder turns the prompt
    into the context that the U-Net's cross-attention reads; the sampling loop runs the U-Net, guidance
    and a sampler step from t = T down to 0 on latents; the VAE's decoder turns the final latent into an
    image and its encoder brings an image in. Every box names the sdlib object that does it, and the three
    entry points (1 text-to-image, 2 image-to-image, 3 inpainting) are marked. Shapes come from the shipped
    models' configs (the manifest, sdlib.pretrained.entry). Returns the figure."""
    from matplotlib.patches import FancyBboxPatch

    vae_config, clip_config, unet_config = (pretrained.entry(name)["config"] for name in ("vae", "clip", "latent_ddpm"))
    size = unet_config["image_size"]
    lat = f"{vae_config['latent_channels']}×{size}×{size}"
    img = "1×28×28"
    ctx = f"{clip_config['context_length']}×{clip_config['width']}"
    fig, ax = _canvas(ax, (-0.4, 16.6), (-4.9, 5.0))
    fs = SMALL

    def part(x, y, w, h, title, obj, role):
        """A box with what it does and, in monospace, the sdlib object that does it."""
        patch = _box(ax, x, y, w, h, role=role)
        ax.text(x, y + 0.17, title, ha="center", va="center", fontsize=fs, color=INK, zorder=4)
        ax.text(x, y - 0.2, obj, ha="center", va="center", fontsize=fs, color=INK, zorder=4, family="monospace")
        return patch

    def frame(x0, y0, w, h, **kw):
        ax.add_patch(FancyBboxPatch((x0, y0), w, h, boxstyle="round,pad=0,rounding_size=0.2", zorder=1, **kw))

    frame(-0.25, -4.75, 16.7, 9.35, fill=False, edgecolor="#aaaaaa", lw=1.2, ls="--")
    ax.text(0.0, 4.3, "sdlib.pipeline.LatentDiffusion", ha="left", va="center", fontsize=FONT, color=INK,
            family="monospace", weight="bold")
    ax.text(9.35, 3.85, "entry points:", ha="right", va="center", fontsize=fs, color=INK)
    for k, (x, name) in enumerate([(10.0, "text_to_image"), (12.3, "image_to_image"), (14.75, "inpaint")]):
        _badge(ax, x - 0.3, 3.85, str(k + 1), "#222222", r=0.18)
        ax.text(x - 0.05, 3.85, name, ha="left", va="center", fontsize=fs, color=INK, family="monospace")
    # the prompt -> the text encoder -> the context
    prompt = _box(ax, 1.3, 2.9, 2.0, 0.7, '"a thick seven"\n(the prompt)', role="plain", fontsize=fs)
    enc = part(4.7, 2.9, 3.2, 0.9, "CLIP text encoder (frozen)", "sdlib.clip.PromptEncoder", "text")
    context = _box(ax, 8.5, 2.9, 2.3, 0.7, f"context {ctx}\n+ mask", role="text", fontsize=fs)
    _arrow(ax, (1.3, 2.9), (4.7, 2.9), patchA=prompt, patchB=enc)
    _arrow(ax, (4.7, 2.9), (8.5, 2.9), patchA=enc, patchB=context)
    # the sampling loop
    frame(5.2, -1.75, 8.3, 3.5, facecolor="#f7f7fa", edgecolor="#56657a", lw=1.4)
    ax.text(5.4, 1.5, r"the sampling loop, $t = T \to 0$:", ha="left", va="center", fontsize=fs, color=INK)
    ax.text(7.9, 1.5, "sdlib.samplers.sample", ha="left", va="center", fontsize=fs, color=INK, family="monospace")
    unet = part(7.0, 0.45, 3.1, 1.0, r"U-Net $\varepsilon_\theta(z_t, t, \mathrm{context})$", "sdlib.unet.UNet",
                "decoder")
    cfg = part(11.5, 0.45, 3.4, 1.0, "guidance: prompt vs empty prompt", "ClassifierFreeGuidance", "block")
    step = part(11.5, -1.05, 3.0, 0.85, r"step $z_t \to z_{t-1}$", "DDIMSampler.step", "block")
    _arrow(ax, (7.0, 0.45), (11.5, 0.45), patchA=unet, patchB=cfg, label=r"$\hat\varepsilon$ twice",
           offset=(0.1, 0.22))
    _arrow(ax, (11.5, 0.45), (11.5, -1.05), patchA=cfg, patchB=step, label=r"$w$", offset=(0.25, 0))
    _arrow(ax, (11.5, -1.05), (7.0, 0.45), patchA=step, patchB=unet, rad=-0.25, color=P_COLOR,
           label=r"$z_{t-1}$: the next $t$", label_at=0.45, offset=(0.0, -0.55))
    _arrow(ax, (8.5, 2.9), (7.0, 0.45), patchA=context, patchB=unet, color=STYLE["text"][1], lw=1.8,
           label="cross-attention", label_at=0.3, offset=(0.8, 0.0))
    # 1: text-to-image starts from pure noise
    noise = _box(ax, 2.5, 0.45, 2.4, 0.8, r"$z_T \sim \mathcal{N}(0, I)$" + f"\n{lat}", role="latent", fontsize=fs)
    _arrow(ax, (2.5, 0.45), (7.0, 0.45), patchA=noise, patchB=unet)
    _badge(ax, 1.3, 0.85, "1", "#222222", r=0.2)
    # the VAE decoder paints the final latent
    dec = part(14.85, 2.9, 2.9, 0.9, "VAE decoder", "KLAutoencoder\n.decode_scaled", "decoder")
    out = _box(ax, 14.85, 0.45, 2.0, 0.7, f"image\n{img}", role="data", fontsize=fs)
    _arrow(ax, (11.5, -1.05), (14.85, 2.9), patchA=step, patchB=dec, rad=0.35, label=r"$z_0$ at the end",
           label_at=0.6, offset=(0.35, -0.35))
    _arrow(ax, (14.85, 2.9), (14.85, 0.45), patchA=dec, patchB=out)
    # 2: image-to-image: encode, noise to t_start, enter the loop there
    y2 = -3.0
    image = _box(ax, 1.3, y2, 2.0, 0.7, f"image {img}", role="data", fontsize=fs)
    venc = part(4.7, y2, 3.2, 0.9, "VAE encoder", "KLAutoencoder.encode_scaled", "encoder")
    noised = part(8.9, y2, 3.4, 0.9, r"noise $z_0$ to $t_{\mathrm{start}} = \mathrm{strength}\cdot T$",
                  "NoiseSchedule.add_noise", "encoder")
    _arrow(ax, (1.3, y2), (4.7, y2), patchA=image, patchB=venc)
    _arrow(ax, (4.7, y2), (8.9, y2), patchA=venc, patchB=noised, label=r"$z_0$", offset=(0, 0.25))
    _arrow(ax, (8.9, y2), (7.0, 0.45), patchA=noised, patchB=unet, rad=-0.1, label=r"$z_{t_{\mathrm{start}}}$",
           label_at=0.25, offset=(0.45, 0))
    _badge(ax, 0.3, y2 + 0.35, "2", "#222222", r=0.2)
    # 3: inpainting: the known region's latents put back after every step
    keep = part(13.6, y2, 3.4, 0.9, "put the known latents back", "sdlib.pipeline.KeepKnown", "encoder")
    mask = _box(ax, 13.6, -4.25, 3.4, 0.55, f"mask (1 = repaint) → {size}×{size}",
                role="plain", fontsize=fs)
    _arrow(ax, (4.7, y2), (13.6, y2), patchA=venc, patchB=keep, rad=0.13, color="#777777", lw=1.2,
           label=r"$z_0$ of the known region", label_at=0.55, offset=(0, -1.0), fontsize=fs - 1)
    _arrow(ax, (13.6, -4.25), (13.6, y2), patchA=mask, patchB=keep)
    _arrow(ax, (13.6, y2), (11.5, -1.05), patchA=keep, patchB=step, label="after every step", label_at=0.45,
           offset=(0.95, 0.0), fontsize=fs)
    _badge(ax, 15.55, -4.25, "3", "#222222", r=0.2)
    return fig
