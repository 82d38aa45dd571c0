"""The lesson diagrams (sdlib.classroom.plot.draw_*): each renders with the Agg backend, the U-Net is drawn from
the model its config builds (so the drawing changes with the config), the Stable Diffusion figure names
only sdlib objects that exist, and bad input gets a clear error."""
import importlib
from dataclasses import replace

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch

from sdlib.classroom import plot
from sdlib.pipeline import LatentDiffusion
from sdlib.recipes.configs import latent_ddpm, text_ddpm
from sdlib.unet import UNet, UNetConfig

matplotlib.use("Agg")


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def rendered(fig):
    """Draw the figure (mathtext is parsed only then) and return it."""
    fig.canvas.draw()
    return fig


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def noisy_strip(n=4, size=12):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, size, size, generator=g) * 2 - 1), [0, 1, 100, 1000][:n]


@pytest.mark.parametrize("draw", [
    plot.draw_latent_variable_model, plot.draw_vae, plot.draw_hierarchical_vae,
    lambda: plot.draw_hierarchical_vae(T=8), plot.draw_diffusion_chain, lambda: plot.draw_diffusion_chain(1000, 500),
    lambda: plot.draw_diffusion_chain(2), lambda: plot.draw_forward_chain(*noisy_strip()),
    plot.draw_autoencoder_vs_vae, plot.draw_clip, lambda: plot.draw_unet(text_ddpm.LESSON_UNET),
    plot.draw_stable_diffusion], ids=["lvm", "vae", "hvae", "hvae-long", "chain", "chain-long", "chain-2",
                                      "forward", "ae-vae", "clip", "unet", "sd"])
def test_every_diagram_renders_and_returns_its_figure(draw):
    fig = rendered(draw())
    assert isinstance(fig, matplotlib.figure.Figure) and fig.axes[0].patches


def test_diagrams_draw_on_a_given_axes():
    fig, axes = plt.subplots(1, 2)
    assert plot.draw_vae(ax=axes[0]) is fig and plot.draw_unet(latent_ddpm.LATENT_UNET, ax=axes[1]) is fig
    assert axes[0].patches and axes[1].patches


def test_chains_name_their_arrows_and_the_posterior():
    labels = texts(rendered(plot.draw_diffusion_chain(T=4, t=3)))
    assert r"$q(x_{3} \mid x_{2})$" in labels and r"$p_\theta(x_{2} \mid x_{3})$" in labels
    assert any(r"q(x_{2} \mid x_{3}, x_0)" in s for s in labels)
    assert sum("$x_{" in s and len(s) < 9 for s in labels) == 5            # the nodes x_0 .. x_4
    long = texts(plot.draw_hierarchical_vae(T=9))
    assert "⋯" in long and "$z_{9}$" in long and "$z_{5}$" not in long


def test_draw_unet_follows_the_model_its_config_builds():
    small = text_ddpm.LESSON_UNET
    deeper = replace(small, channels=(32, 64, 96), blocks=2, attention=(1,), context_dim=None, mid_attention=False)
    a, b = texts(plot.draw_unet(small)), texts(plot.draw_unet(deeper))
    count = lambda labels, word: sum(word in s for s in labels)                        # noqa: E731
    # (blocks down + blocks + 1 up) per level, plus the two in the middle
    assert count(a, "ResBlock\n") == 2 * (1 + 2) + 2 and count(b, "ResBlock\n") == 3 * (2 + 3) + 2
    assert count(a, "cross-attn") == 1 and count(b, "cross-attn") == 0
    assert count(b, "self-attn") == 2 + 3 and count(a, "Downsample") == 1 and count(b, "Upsample") == 2
    for config, labels in ((small, a), (deeper, b)):
        for width in config.channels:
            assert any(f"→ {width}" in s for s in labels), (width, labels)
    assert any("level 1\n7×7" in s for s in a) and any("level 2\n4×4" in s for s in b)      # 28/2 = 14 → 7 (→ 4)
    assert any("context (B, L, 64)" in s for s in a) and not any("context (B" in s for s in b)


def test_draw_unet_shows_the_decoder_inputs_of_the_real_model():
    for config in (text_ddpm.LESSON_UNET, latent_ddpm.LATENT_UNET,
                   UNetConfig(channels=(16, 32, 48), blocks=2, groups=8)):
        labels = texts(plot.draw_unet(config, show_concat=True))
        drawn = [s.split("\n")[1] for s in labels if s.startswith("ResBlock\n") and "+" in s]
        sums = [sum(int(v) for v in s.split(" → ")[0].split(" + ")) for s in drawn]
        model = UNet(config)
        real = [res.conv1.in_channels for level in model.up for res in level.res]
        assert sorted(sums) == sorted(real) and len(drawn) == len(real)
        # the drawn level sizes are those of a forward pass: the folded input, then each downsample's output
        sizes = [config.image_size // config.patch_size]
        for m in model.downsample:
            m.register_forward_hook(lambda m, i, out: sizes.append(out.shape[-1]))
        with torch.no_grad():
            model(torch.zeros(1, config.in_channels, config.image_size, config.image_size), 0)
        assert sizes == plot._unet_sizes(model)
        assert any(f"middle\n{sizes[-1]}×{sizes[-1]}" in s for s in labels)


def test_stable_diffusion_boxes_name_sdlib_objects_that_exist():
    fig = plot.draw_stable_diffusion()
    names = [t.get_text().replace("\n", "") for t in fig.axes[0].texts if t.get_fontfamily() == ["monospace"]]
    assert len(names) >= 10
    modules = [importlib.import_module(f"sdlib.{m}") for m in ("pipeline", "samplers", "vae", "clip", "unet",
                                                               "schedules")] + [LatentDiffusion]
    for name in names:
        if name.startswith("sdlib."):
            module, attr = name.rsplit(".", 1)
            owners = [importlib.import_module(module)]
        else:
            attr, owners = name, modules
        first, *rest = attr.split(".")
        found = [getattr(m, first) for m in owners if hasattr(m, first)]
        assert found, f"{name} is not an sdlib object"
        for part in rest:
            assert hasattr(found[0], part), f"{name}: no {part}"
    for entry in ("text_to_image", "image_to_image", "inpaint"):
        assert entry in names


def test_forward_chain_shows_each_image_with_its_step():
    images, ts = noisy_strip(4)
    fig = rendered(plot.draw_forward_chain(images[:, None], ts))
    assert len(fig.axes[0].images) == 4
    labels = texts(fig)
    assert "$x_{100}$" in labels and r"$q(x_{1} \mid x_{0})$" in labels and "99 × $q$" in labels


def test_clip_shows_a_given_similarity_matrix():
    s = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.0, 0.3, 0.7]])
    labels = texts(plot.draw_clip(3, ["a one", "a two", "a three"], s, images=torch.zeros(3, 1, 28, 28)))
    assert {"0.90", "0.70", "0.30", "a three"} <= set(labels)
    assert "$I_{2} \\cdot T_{3}$" in texts(plot.draw_clip(3))


@pytest.mark.parametrize("call, error, message", [
    (lambda: plot.draw_unet({"channels": (32, 64)}), TypeError, "sdlib.unet.UNetConfig"),
    (lambda: plot.draw_unet(UNet()), TypeError, "UNetConfig"),
    (lambda: plot.draw_forward_chain(torch.zeros(3, 2, 8, 8), [0, 1, 2]), ValueError, "(N, H, W)"),
    (lambda: plot.draw_forward_chain(torch.zeros(3, 8, 8), [0, 1]), ValueError, "one time step per image"),
    (lambda: plot.draw_forward_chain(torch.zeros(2, 8, 8), [5, 1]), ValueError, "increase"),
    (lambda: plot.draw_forward_chain(torch.full((2, 8, 8), float("nan")), [0, 1]), ValueError, "NaN"),
    (lambda: plot.draw_forward_chain(torch.zeros(2, 8, 8, dtype=torch.uint8), [0, 1]), TypeError, "[-1, 1]"),
    (lambda: plot.draw_forward_chain([torch.zeros(8, 8), torch.zeros(9, 9)], [0, 1]), ValueError, "one shape"),
    (lambda: plot.draw_forward_chain(torch.zeros(2, 8, 8), [0, 1.5]), TypeError, "ts[1]"),
    (lambda: plot.draw_clip(3, ["a", "b"]), ValueError, "3 captions"),
    (lambda: plot.draw_clip(3, similarity=torch.zeros(3, 4)), ValueError, "similarity"),
    (lambda: plot.draw_diffusion_chain(T=1), ValueError, "T must be at least 2"),
    (lambda: plot.draw_diffusion_chain(T=4, t=1), ValueError, "t must lie in [2, 4]"),
    (lambda: plot.draw_hierarchical_vae(T=2.0), TypeError, "T must be an int"),
])
def test_bad_input_is_refused_with_a_clear_message(call, error, message):
    with pytest.raises(error, match=None) as caught:
        call()
    assert message in str(caught.value)
