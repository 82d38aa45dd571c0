import torch
import torch.nn.functional as F

from sdlib.diffusion import DDPMObjective, ddpm_loss, drop_prompts
from sdlib.schedules import NoiseSchedule
from sdlib.unet import UNet, UNetConfig

S = NoiseSchedule.linear(1000)


def test_simple_loss_is_algorithm_1():
    torch.manual_seed(0)
    model = UNet(UNetConfig(channels=(8, 16), groups=4))
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    got = ddpm_loss(model, S, x0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)                     # the same random numbers, drawn by hand
    t = torch.randint(1, 1001, (4,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    ab = S.alpha_bar[t].float().reshape(4, 1, 1, 1)
    want = F.mse_loss(model(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t), eps)
    torch.testing.assert_close(got, want)


def test_prompt_dropout_uses_the_learned_empty_prompt():
    model = UNet(UNetConfig(channels=(8, 16), groups=4, attention=(1,), context_dim=6))
    with torch.no_grad():
        model.null_context.fill_(0.5)
    ctx, mask = torch.randn(3, 4, 6), torch.tensor([[True, True, False, False]] * 3)
    new_ctx, new_mask = drop_prompts(model, ctx, mask, torch.tensor([True, False, True]))
    assert torch.all(new_ctx[0] == 0.5) and torch.equal(new_ctx[1], ctx[1])
    assert new_mask[0].tolist() == [True, False, False, False] and torch.equal(new_mask[1], mask[1])

    seen = []
    encode = lambda batch, generator: (ctx[: len(batch[0])], mask[: len(batch[0])])
    objective = DDPMObjective(S, encode_prompts=encode, p_uncond=1.0)
    original = model.forward
    model.forward = lambda x, t, c=None, m=None: seen.append(c) or original(x, t, c, m)
    objective(model, (torch.zeros(3, 1, 28, 28),), torch.Generator().manual_seed(0))
    assert torch.all(seen[0] == 0.5)                        # p_uncond = 1: every prompt dropped
