"""Interactive explorers for the lessons (ipywidgets).

Every explorer is an object with a `render(...)` method that draws one static figure for given
settings, and a `widget()` that wraps render in sliders. Without a widget front end (nbval, a
plain Python script, a notebook exported to HTML) the widget is still built and can be driven
from code, and `render` gives the same picture as a plain figure.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .data import to_unit_range
from .schedules import NoiseSchedule


class NoiseExplorer:
    """Lesson 02: one digit noised to step t under one or more schedules.

    For each schedule, a row with: the noisy digit x_t = sqrt(ᾱ_t) x0 + sqrt(1-ᾱ_t) eps, the
    histogram of its pixels against the density of N(0, 1), and ᾱ_t and the SNR marked on the
    schedule's curves. The same eps is used for every t, so moving the slider shows one noise
    pattern growing over one digit.
    """

    def __init__(self, x0: torch.Tensor, schedules, seed: int = 0):
        if x0.dim() == 4:
            x0 = x0[0]
        if x0.dim() != 3:
            raise ValueError(f"x0 must be one image (C, H, W) or a batch (B, C, H, W), got {tuple(x0.shape)}")
        self.x0 = x0.detach().float().cpu()
        self.schedules = list(schedules) if isinstance(schedules, (list, tuple)) else [schedules]
        if not all(isinstance(s, NoiseSchedule) for s in self.schedules):
            raise TypeError("schedules must be NoiseSchedule objects")
        self.T = self.schedules[0].T
        if any(s.T != self.T for s in self.schedules):
            raise ValueError("all schedules must have the same T")
        g = torch.Generator().manual_seed(seed)
        self.eps = torch.randn(self.x0.shape, generator=g)
        self.renders = 0  # how many figures were drawn (the tests read it)

    def noisy(self, schedule: NoiseSchedule, t: int) -> torch.Tensor:
        return schedule.add_noise(self.x0[None], self.eps[None], t)[0]

    def render(self, t: int):
        """Draw the figure for time step t (1..T) and return it."""
        t = int(t)
        if not 0 <= t <= self.T:
            raise ValueError(f"t must lie in [0, {self.T}], got {t}")
        n = len(self.schedules)
        fig, axes = plt.subplots(n, 3, figsize=(11, 2.8 * n), squeeze=False,
                                 gridspec_kw={"width_ratios": [1, 1.4, 1.6]})
        grid = np.linspace(-4, 4, 200)
        for row, s in zip(axes, self.schedules):
            xt = self.noisy(s, t)
            ab = s.alpha_bar[t].item()
            row[0].imshow(to_unit_range(xt)[0].numpy(), cmap="gray", vmin=0, vmax=1)
            row[0].set_title(f"{s.name}: x_t at t={t}")
            row[0].axis("off")
            row[1].hist(xt.flatten().numpy(), bins=50, range=(-4, 4), density=True, alpha=0.7, label="pixels of x_t")
            row[1].plot(grid, np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi), "k", lw=1, label="N(0, 1)")
            row[1].set_ylim(0, 2.0)
            row[1].legend(fontsize=8, loc="upper right")
            row[1].set_title(f"ᾱ_t = {ab:.3f}, mean {xt.mean():.2f}, std {xt.std():.2f}", fontsize=9)
            steps = np.arange(1, self.T + 1)
            row[2].plot(steps, s.alpha_bar[1:].numpy(), color="C0", label="ᾱ_t")
            row[2].plot([t], [ab], "o", color="C0")
            row[2].set_ylabel("ᾱ_t", color="C0")
            snr_axis = row[2].twinx()
            snr_axis.plot(steps, s.log_snr().numpy(), color="C1", ls="--", label="log SNR")
            if t > 0:
                snr_axis.plot([t], [s.log_snr()[t - 1].item()], "o", color="C1")
            snr_axis.set_ylabel("log SNR", color="C1")
            row[2].axvline(t, color="k", lw=0.8, ls=":")
            snr = s.snr[t].item() if t > 0 else float("inf")
            row[2].set_title(f"SNR = ᾱ/(1-ᾱ) = {snr:.3g}", fontsize=9)
            row[2].set_xlabel("t")
        fig.tight_layout()
        self.renders += 1
        return fig

    def widget(self, t: int | None = None):
        """A slider over t that redraws `render(t)` below it. Returns the ipywidgets.VBox."""
        import ipywidgets as widgets
        from IPython.display import display

        slider = widgets.IntSlider(value=t if t is not None else self.T // 4, min=0, max=self.T, step=1,
                                   description="t", continuous_update=False,
                                   layout=widgets.Layout(width="60%"))
        out = widgets.Output()

        def redraw(change=None):
            with out:
                out.clear_output(wait=True)
                fig = self.render(slider.value)
                display(fig)
                plt.close(fig)

        slider.observe(redraw, names="value")
        redraw()
        box = widgets.VBox([slider, out])
        box.slider = slider  # so code (and tests) can move it: box.slider.value = 500
        return box
