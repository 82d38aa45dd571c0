import ipywidgets
import matplotlib.pyplot as plt
import pytest
import torch

from sdlib.classroom.widgets import NoiseExplorer
from sdlib.schedules import NoiseSchedule


@pytest.fixture
def explorer():
    digit = torch.zeros(1, 28, 28) - 1
    digit[:, 8:20, 12:16] = 1
    return NoiseExplorer(digit, [NoiseSchedule.linear(), NoiseSchedule.cosine()], seed=0)


def test_widget_works_without_a_front_end(explorer):
    box = explorer.widget(t=100)                 # no Jupyter front end is attached here
    assert isinstance(box, ipywidgets.VBox) and box.slider.value == 100
    drawn = explorer.renders
    box.slider.value = 700                       # what dragging the slider does
    assert explorer.renders == drawn + 1
    plt.close("all")


def test_render_shows_each_schedule_at_t(explorer):
    fig = explorer.render(500)
    assert len(fig.axes) >= 6                    # image, histogram, schedule (+ twin axis) per schedule
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "t=500" in titles and "ᾱ_t = " in titles
    plt.close(fig)


def test_noise_is_the_same_for_every_t(explorer):
    s = explorer.schedules[0]
    a, b = explorer.noisy(s, 1000), explorer.noisy(s, 1000)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(explorer.noisy(s, 0), explorer.x0)


def test_bad_arguments(explorer):
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1000\]"):
        explorer.render(1001)
    with pytest.raises(ValueError, match="one image"):
        NoiseExplorer(torch.zeros(28, 28), NoiseSchedule.linear())
    with pytest.raises(ValueError, match="same T"):
        NoiseExplorer(torch.zeros(1, 28, 28), [NoiseSchedule.linear(10), NoiseSchedule.linear(20)])


def test_guidance_explorer_samples_once_per_w_and_reuses_the_noise():
    from sdlib.captions import all_caption_words
    from sdlib.classroom.widgets import GuidanceExplorer
    from sdlib.clip import CLIP, CLIPConfig, PromptEncoder
    from sdlib.samplers import DDIMSampler
    from sdlib.unet import UNet, UNetConfig

    torch.manual_seed(0)
    encoder = PromptEncoder(CLIP(CLIPConfig(vocab=all_caption_words(), context_length=8, width=8, layers=1, heads=2,
                                            embed_dim=8, image_channels=(8, 8))))
    model = UNet(UNetConfig(channels=(8, 16), groups=4, patch_size=2, mid_attention=True, context_dim=8)).eval()
    explorer = GuidanceExplorer(model, encoder, ["a thick two", "a thin two"], DDIMSampler(NoiseSchedule.linear(), 2))
    box = explorer.widget(w=3.0)
    assert isinstance(box, ipywidgets.VBox) and explorer.renders == 1
    box.slider.value = 5.0
    assert explorer.renders == 2 and set(explorer.cache) == {3.0, 5.0}
    a = explorer.images(3.0)
    assert a.shape == (2, 1, 28, 28) and explorer.images(3.0) is a          # cached, not sampled again
    fig = explorer.render(1.0)
    assert "no guidance" in fig._suptitle.get_text() and "a thick two" in fig.axes[0].get_title()
    plt.close("all")


def test_pipeline_explorer_redraws_on_each_slider():
    from sdlib.captions import all_caption_words
    from sdlib.classroom.widgets import PipelineExplorer
    from sdlib.clip import CLIP, CLIPConfig, PromptEncoder
    from sdlib.pipeline import LatentDiffusion
    from sdlib.unet import UNet, UNetConfig
    from sdlib.vae import KLAutoencoder, KLConfig

    torch.manual_seed(0)
    encoder = PromptEncoder(CLIP(CLIPConfig(vocab=all_caption_words(), context_length=8, width=8, layers=1, heads=2,
                                            embed_dim=8, image_channels=(8, 8))))
    pipe = LatentDiffusion(KLAutoencoder(KLConfig(channels=(8, 8), groups=4)), encoder,
                           UNet(UNetConfig(in_channels=4, image_size=7, channels=(8, 16), groups=4, mid_attention=True,
                                           context_dim=8)))
    images = torch.zeros(2, 1, 28, 28)
    explorer = PipelineExplorer(pipe, ["a one", "a two"], images=images)
    box = explorer.widget(w=2.0, steps=2, strength=0.5)
    assert set(box.sliders) == {"w", "steps", "strength"} and explorer.renders == 1
    box.sliders["strength"].value = 0.0
    torch.testing.assert_close(explorer.results(2.0, 2, 0.0), images)        # strength 0: the input itself
    box.sliders["steps"].value = 3
    assert explorer.renders == 3 and len(explorer.cache) == 3
    with pytest.raises(ValueError, match="one prompt per image"):
        PipelineExplorer(pipe, ["a one"], images=images)
    plt.close("all")
