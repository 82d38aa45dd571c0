import pytest
import torch

from sdlib.unet import UNet, UNetConfig, timestep_embedding


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return UNet(UNetConfig(channels=(16, 32, 32), blocks=1)).eval()


def test_output_has_the_input_shape(small):
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([1, 500, 1000])
    assert small(x, t).shape == x.shape
    assert small(x, 7).shape == x.shape                                    # one int for the whole batch


@pytest.mark.parametrize("config, shape", [
    (UNetConfig(in_channels=4, channels=(32, 64), image_size=7), (2, 4, 7, 7)),          # VAE latents
    (UNetConfig(channels=(16, 32, 32, 32), blocks=2), (2, 1, 28, 28)),                   # 28 -> 14 -> 7 -> 4
    (UNetConfig(channels=(16, 32), attention=(1,), mid_attention=True, context_dim=24), (2, 1, 28, 28)),
])
def test_other_shapes_depths_and_attention(config, shape):
    model = UNet(config)
    ctx = torch.randn(shape[0], 5, config.context_dim) if config.context_dim else None
    assert model(torch.randn(shape), torch.tensor([3, 900]), ctx).shape == shape


def test_timestep_embedding_formula():
    t = torch.tensor([0, 1, 10, 999])
    emb = timestep_embedding(t, 8)
    for i in range(4):
        w = 10_000 ** (-i / 4)
        torch.testing.assert_close(emb[:, i], torch.sin(t.float() * w))
        torch.testing.assert_close(emb[:, 4 + i], torch.cos(t.float() * w))


def test_time_step_changes_the_output(small):
    x = torch.randn(1, 1, 28, 28)
    assert not torch.allclose(small(x, torch.tensor([10])), small(x, torch.tensor([900])))


def test_channels_last_gives_the_same_answer(small):
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 600])
    want = small(x, t)
    fast = UNet(small.config).eval()
    fast.load_state_dict(small.state_dict())
    fast.to(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x, t), want, atol=1e-5, rtol=1e-4)


def test_conditional_model_without_a_prompt_uses_the_learned_empty_prompt():
    model = UNet(UNetConfig(channels=(16, 32), attention=(1,), context_dim=8)).eval()
    with torch.no_grad():
        model.null_context.normal_()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
    torch.testing.assert_close(model(x, t), model(x, t, model.null_context.expand(2, 1, 8)))


@pytest.mark.parametrize("make, error, message", [
    (lambda: (torch.randn(2, 3, 28, 28), torch.tensor([1, 2])), ValueError, r"shape \(B, 1, H, W\)"),
    (lambda: (torch.randn(1, 28, 28), torch.tensor([1])), ValueError, r"shape \(B, 1, H, W\)"),
    (lambda: (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.tensor([1, 2])), TypeError, "floating-point"),
    (lambda: (torch.full((2, 1, 28, 28), 255.0), torch.tensor([1, 2])), ValueError, "to_model_range"),
    (lambda: (torch.full((2, 1, 28, 28), float("nan")), torch.tensor([1, 2])), ValueError, "NaN"),
    (lambda: (torch.zeros(2, 1, 28, 28), torch.tensor([0.5, 2.0])), TypeError, "integer tensor"),
    (lambda: (torch.zeros(2, 1, 28, 28), torch.tensor([1, 2, 3])), ValueError, "one time step per image"),
    (lambda: (torch.zeros(2, 1, 28, 28), torch.tensor([1, 1001])), ValueError, r"\[0, 1000\]"),
])
def test_bad_inputs_are_refused_clearly(small, make, error, message):
    x, t = make()
    with pytest.raises(error, match=message):
        small(x, t)


def test_a_diverging_sampler_is_not_mistaken_for_pixels(small):
    """Values far outside [-1, 1] but of both signs (an untrained model's samples blow up by up to
    1/sqrt(alpha_bar_T) ≈ 160) are passed on; only non-negative large inputs look like [0, 255] pixels."""
    x = torch.randn(2, 1, 28, 28) * 100
    assert small(x, torch.tensor([5, 5])).shape == x.shape


def test_bad_contexts():
    uncond = UNet(UNetConfig(channels=(16, 32)))
    cond = UNet(UNetConfig(channels=(16, 32), attention=(1,), context_dim=8))
    x, t = torch.zeros(2, 1, 28, 28), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="unconditional"):
        uncond(x, t, torch.zeros(2, 3, 8))
    with pytest.raises(ValueError, match=r"shape \(B, L, 8\)"):
        cond(x, t, torch.zeros(2, 3, 9))
    with pytest.raises(ValueError, match="context_mask must have shape"):
        cond(x, t, torch.zeros(2, 3, 8), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="without a context"):
        cond(x, t, None, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiple of groups"):
        UNetConfig(channels=(12, 32))


def test_padded_prompt_tokens_do_not_change_the_prediction_but_the_prompt_does():
    torch.manual_seed(0)
    model = UNet(UNetConfig(channels=(16, 32), mid_attention=True, context_dim=8)).eval()
    torch.nn.init.normal_(model.mid_attn.proj_out.weight, std=0.1)    # starts at zero: the prompt would not act
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10, 700])
    ctx, mask = torch.randn(2, 5, 8), torch.tensor([[True] * 5, [True, True, False, False, False]])
    with torch.no_grad():
        want = model(x, t, ctx, mask)
        garbage = ctx.clone()
        garbage[~mask] = 100.0
        torch.testing.assert_close(model(x, t, garbage, mask), want)
        assert not torch.allclose(model(x, t, torch.randn(2, 5, 8), mask), want)


def test_other_float_dtypes_are_computed_in_the_models_and_answered_in_theirs(small):
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 700])
    with torch.no_grad():
        want = small(x, t)
        for dtype, tol in ((torch.float64, 1e-5), (torch.float16, 1e-2), (torch.bfloat16, 5e-2)):
            got = small(x.to(dtype), t)
            assert got.dtype == dtype
            torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol)


@pytest.mark.parametrize("t, error, message", [
    (2.7, TypeError, r"got float 2.7.*not truncated"),
    (torch.tensor([2.7, 3.0]), TypeError, "integer time steps.*float32"),
    (True, TypeError, "bool"),
    (-1, ValueError, r"t must lie in \[0, 1000\]"),
])
def test_time_steps_are_never_truncated(small, t, error, message):
    with pytest.raises(error, match=message):
        small(torch.zeros(2, 1, 28, 28), t)


def test_one_time_step_as_a_0d_tensor_is_for_the_whole_batch(small):
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(small(x, torch.tensor(5)), small(x, 5))


def test_an_empty_batch_is_called_one():
    latent = UNet(UNetConfig(in_channels=4, channels=(16, 32), image_size=7))
    with pytest.raises(ValueError, match="x is an empty batch"):
        latent(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))


def test_the_uint8_hint_gives_an_input_the_unet_accepts(small):
    from sdlib.data import to_model_range

    pixels = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"to_model_range\(x\), then add the channel dimension with \[:, None\]"):
        small(pixels, 5)
    assert small(to_model_range(pixels)[:, None], 5).shape == (2, 1, 28, 28)


def test_bad_contexts_and_masks_are_refused_before_the_attention():
    cond = UNet(UNetConfig(channels=(16, 32), attention=(1,), context_dim=8))
    x, t, ctx = torch.zeros(2, 1, 28, 28), torch.tensor([1, 2]), torch.randn(2, 3, 8)
    with pytest.raises(TypeError, match="context_mask must be a bool tensor"):
        cond(x, t, ctx, torch.ones(2, 3))
    with pytest.raises(ValueError, match="every row of context_mask needs at least one True"):
        cond(x, t, ctx, torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="context contains NaN"):
        cond(x, t, torch.full((2, 3, 8), float("nan")))
    with pytest.raises(ValueError, match=r"context must have shape \(B, L, 8\) with B = 2"):
        cond(x, t, torch.randn(3, 3, 8))
    assert cond(x, t, ctx.double()).dtype == torch.float32                   # a float64 context is converted
    with pytest.raises(ValueError, match="multiples of 2"):
        UNet(UNetConfig(channels=(16, 32), patch_size=2))(torch.zeros(1, 1, 27, 27), 1)


def test_attention_layers_check_shapes_and_convert_dtypes():
    from sdlib.attention import MultiHeadAttention, SpatialTransformer, attention

    m = MultiHeadAttention(8, 2, context_dim=12)
    with pytest.raises(ValueError, match=r"x must have shape \(B, L, 8\)"):
        m(torch.zeros(1, 3, 6), torch.zeros(1, 3, 12))
    with pytest.raises(ValueError, match=r"context must have shape \(B, L, 12\) with B = 1"):
        m(torch.zeros(1, 3, 8), torch.zeros(2, 3, 12))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        m(torch.zeros(1, 3, 8), torch.zeros(1, 3, 12), mask=torch.ones(1, 3))
    assert m(torch.zeros(1, 3, 8, dtype=torch.float64), torch.zeros(1, 3, 12)).dtype == torch.float64
    with pytest.raises(ValueError, match="do not fit together"):
        attention(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 5, 4), torch.zeros(1, 2, 6, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 16, H, W\)"):
        SpatialTransformer(16)(torch.zeros(1, 8, 4, 4))
