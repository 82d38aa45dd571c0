import ipywidgets
import matplotlib.pyplot as plt
import pytest
import torch

from sdlib.schedules import NoiseSchedule
from sdlib.widgets import NoiseExplorer


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
