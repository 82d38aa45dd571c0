"""IPython startup file of every kernel that site/build.py starts (copied to IPYTHONDIR/profile_default/startup).

A static page cannot run widgets, and the widget manager would come from a CDN. So, in the build's kernels only:
- an explorer of sdlib.classroom.widgets (noise, guidance, pipeline) is shown as a strip of frames drawn by its own
  render() at a few slider values (sdlib.classroom.widgets.render_strip);
- any other widget is shown as its text;
- a progress bar prints its last state once, as text, when it closes (tqdm.auto -> a tqdm.std subclass);
- matplotlib's HTML animations draw their buttons' icons as text instead of loading Font Awesome from a CDN.
Quizzes print as text through SDLIB_NO_WIDGETS=1, which the build sets.
"""


def _sdlib_site_static_widgets():
    import sys

    import ipywidgets
    import matplotlib.pyplot as plt
    import tqdm.auto
    import tqdm.std
    from IPython import get_ipython
    from IPython.core.pylabtools import print_figure

    from sdlib.classroom import widgets

    class LastStateBar(tqdm.std.tqdm):
        """A text bar that prints nothing while it runs (a page would keep every update) and, when it closes,
        its last state once, if it is to be left on screen."""

        def __init__(self, *args, **kwargs):
            kwargs["delay"] = float("inf")
            super().__init__(*args, **kwargs)

        def display(self, *args, **kwargs):      # nothing while it runs, nor on refreshes (set_postfix)
            return True

        def close(self):
            show = not self.disable and self.leave is not False and hasattr(self, "format_dict")
            line = str(self) if show else None
            super().close()
            if line:
                print(line, file=sys.stderr, flush=True)

    tqdm.auto.tqdm = LastStateBar

    import matplotlib.animation
    link = ('<link rel="stylesheet"\n'
            'href="https://maxcdn.bootstrapcdn.com/font-awesome/4.4.0/css/font-awesome.min.css">')
    icons = {"fast-backward": "|\\25C0\\25C0", "step-backward": "\\25C0|", "pause": "||", "play": "\\25B6",
             "step-forward": "|\\25B6", "fast-forward": "\\25B6\\25B6|", "minus": "\\2212", "plus": "+"}
    style = ("<style>" + "".join(f'.fa-{name}:before {{content: "{text}"}}' for name, text in icons.items())
             + ".fa-flip-horizontal {display: inline-block; transform: scaleX(-1)}</style>")
    if link in matplotlib.animation.JS_INCLUDE:
        matplotlib.animation.JS_INCLUDE = matplotlib.animation.JS_INCLUDE.replace(link, style)

    def frames(explorer, box):
        """The settings drawn for each explorer, around where the lesson puts its sliders."""
        if isinstance(explorer, widgets.NoiseExplorer):
            ts = [t for t in (50, 250, 500, 900) if t <= explorer.T]
            return ts, [f"t = {t}" for t in ts]
        if isinstance(explorer, widgets.GuidanceExplorer):
            ws = [0.0, 1.0, 3.0, 7.5]
            return ws, [f"w = {w:g}" for w in ws]
        if isinstance(explorer, widgets.PipelineExplorer):
            steps = box.sliders["steps"].value
            strength = box.sliders["strength"].value if "strength" in box.sliders else 1.0
            ws = [1.0, 3.0, 7.5]
            return [(w, steps, strength) for w in ws], [f"w = {w:g}" for w in ws]
        return None

    def patch(cls):
        original = cls.widget

        def widget(self, *args, **kwargs):
            box = original(self, *args, **kwargs)
            box._sdlib_site_explorer = self
            return box
        widget.__doc__ = original.__doc__
        cls.widget = widget

    for cls in (widgets.NoiseExplorer, widgets.GuidanceExplorer, widgets.PipelineExplorer):
        patch(cls)

    def static(box):
        explorer = getattr(box, "_sdlib_site_explorer", None)
        plan = frames(explorer, box) if explorer is not None else None
        if plan is None:
            return {"text/plain": repr(box)}
        fig = widgets.render_strip(explorer, plan[0], plan[1])
        png = print_figure(fig, "png", bbox_inches="tight")
        plt.close(fig)
        note = (f"{type(explorer).__name__}: in a notebook this is a slider; "
                f"on this page, frames at {', '.join(plan[1])}")
        return {"image/png": png, "text/plain": note}

    get_ipython().display_formatter.mimebundle_formatter.for_type(ipywidgets.Widget, static)


_sdlib_site_static_widgets()
del _sdlib_site_static_widgets
