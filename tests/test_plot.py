import matplotlib.pyplot as plt
import torch

from sdlib.classroom import plot
from sdlib.schedules import NoiseSchedule


def test_grid_maps_model_range_to_unit_range():
    x = torch.tensor([-1.0, 0.0, 1.0]).reshape(3, 1, 1, 1).expand(3, 1, 4, 4)
    g = plot.grid(x, nrow=3, padding=0)
    assert g.shape == (3, 4, 12)
    torch.testing.assert_close(g[0, 0, ::4], torch.tensor([0.0, 0.5, 1.0]))
    auto = plot.grid(torch.randn(2, 1, 4, 4) * 5, value_range="auto")
    assert auto.min() >= 0 and auto.max() <= 1


def test_figures_are_one_call_away():
    ax = plot.show_images(torch.rand(10, 1, 28, 28) * 2 - 1, nrow=5, title="x")
    assert ax.get_title() == "x"
    axes = plot.plot_schedules([NoiseSchedule.linear(), NoiseSchedule.cosine()], mark_t=300)
    assert len(axes[0].get_lines()) >= 2
    fig = plot.show_rows([torch.zeros(3, 1, 8, 8), torch.ones(2, 1, 8, 8)], row_titles=["a", "b"])
    assert len(fig.axes) == 6
    ax = plot.plot_losses([1.0 / (i + 1) for i in range(200)])
    assert ax.get_yscale() == "log"
    anim = plot.animate([torch.zeros(4, 1, 8, 8), torch.ones(4, 1, 8, 8)], titles=["a", "b"], nrow=2)
    assert "<script" in anim.to_jshtml()
    plt.close("all")
