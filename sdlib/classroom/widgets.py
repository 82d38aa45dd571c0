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

from sdlib.data import to_unit_range
from sdlib.schedules import NoiseSchedule


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

        slider = widgets.IntSlider(value=t if t is not None else self.T // 4, min=0, max=self.T, step=1,
                                   description="t", continuous_update=False,
                                   layout=widgets.Layout(width="60%"))
        box = _sliders_box([slider], lambda: self.render(slider.value))
        box.slider = slider  # so code (and tests) can move it: box.slider.value = 500
        return box


class GuidanceExplorer:
    """Lesson 07: the same prompts and the same starting noise sampled at a chosen guidance scale w.

    render(w) samples one image per prompt with classifier-free guidance (DDIM, `steps` steps) and
    shows them with the stroke width the caption functions measure under each image; widget()
    puts a slider over w. Samples are cached per w, so going back to a value is instant.
    """

    def __init__(self, model, encoder, prompts: list[str], sampler, seed: int = 0, negative_prompt=None):
        from sdlib.runtime import randn

        self.model, self.encoder, self.prompts, self.sampler = model, encoder, list(prompts), sampler
        self.negative_prompt = negative_prompt
        self.seed = seed
        c = model.config
        self.x_T = randn((len(self.prompts), c.in_channels, c.image_size, c.image_size),
                         torch.Generator().manual_seed(seed), next(model.parameters()).device)
        self.cache: dict[float, torch.Tensor] = {}
        self.renders = 0

    def images(self, w: float) -> torch.Tensor:
        from sdlib.samplers import generate

        w = float(w)
        if w not in self.cache:
            # generate() draws x_T from the generator first: the same seed gives the same x_T for every w.
            self.cache[w] = generate(self.model, self.encoder, self.prompts, w, self.sampler,
                                     negative_prompt=self.negative_prompt,
                                     generator=torch.Generator().manual_seed(self.seed)).cpu()
        return self.cache[w]

    def render(self, w: float):
        from sdlib.captions import stroke_width

        x = self.images(w)
        widths = stroke_width(x)
        n = len(self.prompts)
        fig, axes = plt.subplots(1, n, figsize=(1.3 * n, 1.9), squeeze=False)
        for ax, img, prompt, sw in zip(axes[0], x, self.prompts, widths.tolist()):
            ax.imshow(to_unit_range(img)[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(prompt, fontsize=7)
            ax.set_xlabel(f"stroke {sw:.1f}px", fontsize=7)
            ax.set_xticks([]), ax.set_yticks([])
        fig.suptitle(f"w = {float(w):g}" + ("  (no guidance)" if float(w) == 1 else "  (unconditional)" if float(w) == 0
                                           else ""), fontsize=10)
        fig.tight_layout()
        self.renders += 1
        return fig

    def widget(self, w: float = 3.0, max_w: float = 10.0):
        """A slider over w that redraws `render(w)` below it. Returns the ipywidgets.VBox."""
        import ipywidgets as widgets

        slider = widgets.FloatSlider(value=w, min=0.0, max=max_w, step=0.5, description="w",
                                     continuous_update=False, layout=widgets.Layout(width="60%"))
        box = _sliders_box([slider], lambda: self.render(slider.value))
        box.slider = slider
        return box


class PipelineExplorer:
    """Lesson 08: the latent pipeline with sliders for the guidance scale, the number of DDIM steps and,
    when `images` are given, the image-to-image strength (the inputs are shown in the first row).

    render(w, steps, strength) draws one figure; results are cached per setting.
    """

    def __init__(self, pipe, prompts: list[str], images: torch.Tensor | None = None, seed: int = 0):
        self.pipe, self.prompts, self.images, self.seed = pipe, list(prompts), images, seed
        if images is not None and len(images) != len(self.prompts):
            raise ValueError(f"give one prompt per image: {len(images)} images, {len(self.prompts)} prompts")
        self.cache: dict[tuple, torch.Tensor] = {}
        self.renders = 0

    def results(self, w: float, steps: int, strength: float = 1.0) -> torch.Tensor:
        key = (float(w), int(steps), float(strength))
        if key not in self.cache:
            if self.images is None:
                out = self.pipe.text_to_image(self.prompts, guidance_scale=w, steps=int(steps), seed=self.seed,
                                              progress=False)
            else:
                out = self.pipe.image_to_image(self.images, self.prompts, strength=float(strength), guidance_scale=w,
                                               steps=int(steps), seed=self.seed, progress=False)
            self.cache[key] = out.images
        return self.cache[key]

    def render(self, w: float, steps: int, strength: float = 1.0):
        x = self.results(w, steps, strength)
        rows = [self.images, x] if self.images is not None else [x]
        n = len(self.prompts)
        fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.5 * len(rows) + 0.4), squeeze=False)
        for r, batch in enumerate(rows):
            for ax, img in zip(axes[r], batch):
                ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
        for ax, prompt in zip(axes[-1], self.prompts):
            ax.set_xlabel(prompt, fontsize=7)
        if self.images is not None:
            axes[0, 0].set_ylabel("input", fontsize=8)
        title = f"w = {float(w):g}, {int(steps)} DDIM steps" + (f", strength {float(strength):g}"
                                                                if self.images is not None else "")
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        self.renders += 1
        return fig

    def widget(self, w: float = 3.0, steps: int = 25, strength: float = 0.6):
        """Sliders for w, steps (and strength with images); each change redraws. Returns the ipywidgets.VBox."""
        import ipywidgets as widgets

        sliders = {"w": widgets.FloatSlider(value=w, min=0.0, max=10.0, step=0.5, description="w",
                                            continuous_update=False),
                   "steps": widgets.IntSlider(value=steps, min=1, max=100, step=1, description="steps",
                                              continuous_update=False)}
        if self.images is not None:
            sliders["strength"] = widgets.FloatSlider(value=strength, min=0.0, max=1.0, step=0.05,
                                                      description="strength", continuous_update=False)
        box = _sliders_box(list(sliders.values()), lambda: self.render(
            sliders["w"].value, sliders["steps"].value, sliders["strength"].value if "strength" in sliders else 1.0))
        box.sliders = sliders
        return box


def _sliders_box(sliders, draw):
    """A VBox of the sliders above an output area that shows draw()'s figure, redrawn when any slider moves."""
    import ipywidgets as widgets
    from IPython.display import display

    out = widgets.Output()

    def redraw(change=None):
        with out:
            out.clear_output(wait=True)
            fig = draw()
            display(fig)
            plt.close(fig)

    for slider in sliders:
        slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([*sliders, out])


def render_strip(explorer, settings, labels=None):
    """A static stand-in for an explorer's sliders, for a page that cannot run widgets (the course website):
    `explorer.render` drawn once for each of `settings`, the frames stacked top to bottom in one figure.

    Each setting is one value (render(value)), a tuple (render(*setting)) or a dict (render(**setting)).
    `labels`, one per setting, are written above the frames (default: the setting). Returns the figure.
    """
    if not callable(getattr(explorer, "render", None)):
        raise TypeError(f"explorer must have a render(...) method, got {type(explorer).__name__}")
    settings = list(settings)
    if not settings:
        raise ValueError("settings must hold at least one setting to draw")
    labels = [str(s) for s in settings] if labels is None else [str(label) for label in labels]
    if len(labels) != len(settings):
        raise ValueError(f"give one label per setting: {len(labels)} labels, {len(settings)} settings")
    frames = []
    for setting in settings:
        if isinstance(setting, dict):
            fig = explorer.render(**setting)
        elif isinstance(setting, tuple):
            fig = explorer.render(*setting)
        else:
            fig = explorer.render(setting)
        fig.canvas.draw()
        frames.append((np.asarray(fig.canvas.buffer_rgba()).copy(), fig.dpi))
        plt.close(fig)
    dpi = frames[0][1]
    width = max(f.shape[1] for f, _ in frames) / dpi
    heights = [f.shape[0] / dpi + 0.3 for f, _ in frames]
    strip, axes = plt.subplots(len(frames), 1, figsize=(width, sum(heights)), dpi=dpi, squeeze=False,
                               gridspec_kw={"height_ratios": heights})
    for ax, (frame, _), label in zip(axes[:, 0], frames, labels):
        ax.imshow(frame, interpolation="nearest")
        ax.set_title(label, fontsize=10, loc="left")
        ax.axis("off")
    strip.subplots_adjust(left=0, right=1, top=1 - 0.3 / sum(heights), bottom=0, hspace=0.3 / (sum(heights) / len(frames)))
    return strip
