"""The latent diffusion pipeline on tiny untrained parts: shapes, ranges, seeding, the SDEdit and
inpainting rules, and every bad input named in lesson 08."""
import pytest
import torch

from sdlib.captions import all_caption_words
from sdlib.clip import CLIP, CLIPConfig, PromptEncoder, UnknownWordWarning
from sdlib.pipeline import LatentDiffusion
from sdlib.unet import UNet, UNetConfig
from sdlib.vae import KLAutoencoder, KLConfig


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    vae = KLAutoencoder(KLConfig(channels=(8, 8), latent_channels=4, groups=4))
    encoder = PromptEncoder(CLIP(CLIPConfig(vocab=all_caption_words(), context_length=8, width=8, layers=1, heads=2,
                                            embed_dim=8, image_channels=(8, 8))))
    unet = UNet(UNetConfig(in_channels=4, image_size=7, channels=(8, 16), groups=4, mid_attention=True, context_dim=8))
    for p in unet.parameters():                          # untrained but not zero: every branch matters
        torch.nn.init.normal_(p, std=0.05)
    return LatentDiffusion(vae, encoder, unet)


def digits(n=3):
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0
    return x


def test_text_to_image_shapes_range_and_seeding(pipe):
    out = pipe.text_to_image(["a one", "a thick two", "3"], steps=3, seed=1)
    assert out.images.shape == (3, 1, 28, 28) and out.latents.shape == (3, 4, 7, 7)
    assert out.images.min() >= 0 and out.images.max() <= 1
    again = pipe.text_to_image(["a one", "a thick two", "3"], steps=3, seed=1)
    torch.testing.assert_close(out.images, again.images)
    other = pipe.text_to_image(["a one", "a thick two", "3"], steps=3, seed=2)
    assert not torch.allclose(out.images, other.images)
    steps = pipe.text_to_image("a five", steps=4, return_steps=True)
    assert len(steps.steps) == 4 and steps.steps[0].shape == (1, 4, 7, 7) and steps.timesteps[0] == 1000


def test_batches_agree_with_one_batch(pipe):
    prompts = ["a one", "a two", "a three", "a four", "a five"]
    whole = pipe.text_to_image(prompts, steps=3, batch_size=10, seed=0).images
    parts = pipe.text_to_image(prompts, steps=3, batch_size=5, seed=0).images
    torch.testing.assert_close(whole, parts)


def test_negative_prompt_changes_the_result(pipe):
    a = pipe.text_to_image(["a seven"] * 2, steps=3).latents
    b = pipe.text_to_image(["a seven"] * 2, steps=3, negative_prompt="a thick seven").latents
    assert not torch.allclose(a, b)


def test_image_to_image_strength_zero_returns_the_input_and_one_ignores_it(pipe):
    x = digits()
    torch.testing.assert_close(pipe.image_to_image(x, "a one", strength=0.0).images, x)
    a = pipe.image_to_image(x, "a one", strength=1.0, steps=4, seed=3).images
    b = pipe.image_to_image(1 - x, "a one", strength=1.0, steps=4, seed=3).images
    torch.testing.assert_close(a, b)                                   # strength 1: the input does not matter
    c = pipe.image_to_image(x, "a one", strength=0.5, steps=4, seed=3, return_steps=True)
    assert len(c.steps) == 2                                           # half of the 4 steps
    d = pipe.image_to_image(1 - x, "a one", strength=0.5, steps=4, seed=3).images
    assert not torch.allclose(c.images, d)                             # strength 0.5: the input matters


def test_inpainting_keeps_the_known_region(pipe):
    x = digits()
    keep_all = torch.zeros(3, 1, 28, 28)
    torch.testing.assert_close(pipe.inpaint(x, keep_all, "a one", steps=3).images, x)   # nothing to repaint
    latent_only = pipe.inpaint(x, keep_all, "a one", steps=3, paste_known=False)
    with torch.no_grad():
        recon = (pipe.vae.decode_scaled(pipe.vae.encode_scaled(x * 2 - 1)) + 1) / 2
    torch.testing.assert_close(latent_only.images, recon.clamp(0, 1))   # without the paste: the VAE's reconstruction
    half = torch.zeros(3, 1, 28, 28, dtype=torch.bool)
    half[:, :, 16:] = True
    out = pipe.inpaint(x, half, "a one", steps=3)
    assert torch.equal(out.images[:, :, :16], x[:, :, :16])            # the kept upper half, exactly
    z_known = pipe.vae.encode_scaled(x * 2 - 1)
    keep = 1 - pipe.latent_mask(half.float())
    assert keep[0, 0, :4].eq(1).all() and keep[0, 0, 4:].eq(0).all()   # rows 16-27 are latent rows 4-6
    torch.testing.assert_close(out.latents * keep, z_known * keep)
    with pytest.raises(ValueError, match="soft"):
        pipe.inpaint(x, half.float() * 0.5, "a one", steps=3)


def test_the_same_seed_gives_the_same_images_whatever_the_batch_size(pipe):
    prompts, x = ["a 3", "a 4", "a 5", "a 6"], digits(4)
    half = torch.zeros(4, 1, 28, 28)
    half[:, :, 14:] = 1
    for call in (lambda b: pipe.text_to_image(prompts, steps=5, seed=7, batch_size=b),
                 lambda b: pipe.image_to_image(x, prompts, strength=0.5, steps=5, seed=7, batch_size=b),
                 lambda b: pipe.inpaint(x, half, prompts, steps=5, seed=7, batch_size=b)):
        whole, pairs, singles = call(4), call(2), call(3)
        # Equal up to float rounding: a convolution may sum in another order for another batch size.
        for other in (pairs, singles):
            torch.testing.assert_close(other.images, whole.images, rtol=0, atol=1e-4)
            torch.testing.assert_close(other.latents, whole.latents, rtol=1e-4, atol=1e-4)
    # One image does not depend on the others in its batch.
    first = pipe.text_to_image(prompts[:1], steps=5, seed=7)
    torch.testing.assert_close(first.images[0], pipe.text_to_image(prompts, steps=5, seed=7).images[0],
                               rtol=0, atol=1e-4)


def test_seed_none_is_fresh_and_seed_with_generator_is_refused(pipe):
    a = pipe.text_to_image("a one", steps=2, seed=None).latents
    b = pipe.text_to_image("a one", steps=2, seed=None).latents
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="a seed or a generator, not both"):
        pipe.text_to_image("a one", steps=2, seed=3, generator=torch.Generator().manual_seed(3))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(pipe.text_to_image("a one", steps=2, generator=g1).latents,     # replaces the default seed
                       pipe.text_to_image("a one", steps=2, seed=None, generator=g2).latents)
    with pytest.raises(ValueError, match="not both"):
        pipe.text_to_image("a one", steps=2, seed=0, generator=g1)                      # an explicit 0 is a seed


def test_image_to_image_starts_at_the_exact_step_its_strength_selects(pipe):
    x = digits()
    low = pipe.image_to_image(x, "a one", strength=0.01, steps=5, seed=1, return_steps=True)
    mid = pipe.image_to_image(x, "a one", strength=0.2, steps=5, seed=1, return_steps=True)
    assert low.timesteps == [10] and mid.timesteps == [200]
    assert not torch.allclose(low.images, mid.images)
    assert pipe.image_to_image(x, "a one", strength=0.5, steps=5, seed=1, return_steps=True).timesteps == [500, 400, 200]


def test_the_pipeline_is_the_one_sampling_loop(pipe):
    """text_to_image and image_to_image equal decoding sample() with classifier-free guidance."""
    from sdlib.samplers import ClassifierFreeGuidance, DDIMSampler, SampleNoise, sample

    prompts, w, steps = ["a one", "a two"], 3.0, 4
    context, mask = pipe.encoder(prompts)
    guide = ClassifierFreeGuidance(pipe.unet, context, w, mask)
    sampler = DDIMSampler(pipe.schedule, steps)
    decode = lambda z: ((pipe.vae.decode_scaled(z) + 1) / 2).clamp(0, 1)          # noqa: E731
    noise = SampleNoise(2, seed=11)
    z = sample(guide, sampler, x_T=noise.randn((2, 4, 7, 7)), generator=noise, progress=False)
    torch.testing.assert_close(pipe.text_to_image(prompts, guidance_scale=w, steps=steps, seed=11).images, decode(z))

    x = digits(2)
    z_known = pipe.vae.encode_scaled(x * 2 - 1)
    noise = SampleNoise(2, seed=12)
    z_start = pipe.schedule.add_noise(z_known, noise.randn(z_known.shape), 300)
    z = sample(guide, sampler, x_T=z_start, generator=noise, timesteps=[300, 250], progress=False)
    torch.testing.assert_close(pipe.image_to_image(x, prompts, 0.3, guidance_scale=w, steps=steps, seed=12).images,
                               decode(z))


def test_inpainting_keeps_the_known_latents_and_repaints_the_rest(pipe):
    """What inpainting must do, seen from outside: the kept latent cells end as the input's latents, the
    repainted ones are generated, a full mask is text-to-image, an empty one changes nothing."""
    prompts, settings = ["a one", "a two"], dict(guidance_scale=3.0, steps=4, seed=13, paste_known=False)
    x = digits(2)
    z_known = pipe.vae.encode_scaled(x * 2 - 1)
    masks = torch.zeros(2, 1, 28, 28)
    masks[:, :, :, 14:] = 1
    keep = (1 - pipe.latent_mask(masks)).bool().expand_as(z_known)
    out = pipe.inpaint(x, masks, prompts, **settings)
    torch.testing.assert_close(out.latents[keep], z_known[keep], atol=1e-5, rtol=1e-5)
    assert (out.latents[~keep] - z_known[~keep]).abs().mean() > 0.1
    full = pipe.inpaint(x, torch.ones_like(masks), prompts, **settings)
    torch.testing.assert_close(full.latents, pipe.text_to_image(prompts, guidance_scale=3.0, steps=4, seed=13).latents)
    empty = pipe.inpaint(x, torch.zeros_like(masks), prompts, **settings)
    torch.testing.assert_close(empty.latents, z_known, atol=1e-5, rtol=1e-5)


def test_sets_of_prompts_are_refused(pipe):
    with pytest.raises(TypeError, match="got a set"):
        pipe.text_to_image({"a one", "a two"}, steps=2)
    with pytest.raises(TypeError, match="got a set"):
        pipe.text_to_image(["a one", "a two"], negative_prompt={"a three", "a four"}, steps=2)


def test_diverging_guidance_warns(pipe):
    with pytest.warns(RuntimeWarning, match="sampling diverged"):
        pipe.text_to_image("a one", guidance_scale=1e6, steps=3)


@pytest.mark.parametrize("call, error, message", [
    (lambda p: p.text_to_image("a one", steps=0), ValueError, "steps must be at least 1"),
    (lambda p: p.text_to_image("a one", steps=1001), ValueError, "at most 1000"),
    (lambda p: p.text_to_image("a one", guidance_scale=float("nan")), ValueError, "guidance_scale"),
    (lambda p: p.text_to_image(["a one", "a two"], negative_prompt=["a", "b", "c"]), ValueError, "one negative prompt"),
    (lambda p: p.text_to_image(7), TypeError, "prompts must be a string"),
    (lambda p: p.image_to_image(digits(), "a one", strength=1.5), ValueError, r"strength must lie in \[0, 1\]"),
    (lambda p: p.image_to_image(digits(), "a one", strength=float("nan")), ValueError, "strength"),
    (lambda p: p.image_to_image(digits(), "a one", strength=0.0, steps=0), ValueError, "steps must be at least 1"),
    (lambda p: p.image_to_image(digits(), "a one", strength=0.0, guidance_scale=float("inf")), ValueError,
     "guidance_scale"),
    (lambda p: p.image_to_image(digits() * 255, "a one"), ValueError, r"must lie in \[0, 1\]"),
    (lambda p: p.image_to_image(digits()[0], "a one"), ValueError, "add a batch dimension"),
    (lambda p: p.image_to_image(torch.zeros(2, 1, 32, 32), "a one"), ValueError, "must be 28x28"),
    (lambda p: p.image_to_image(digits(), ["a one", "a two"]), ValueError, "got 3 images but 2 prompts"),
    (lambda p: p.inpaint(digits(), torch.zeros(2, 1, 28, 28), "a one"), ValueError, "3 images but 2 masks"),
    (lambda p: p.inpaint(digits(), torch.zeros(3, 1, 14, 14), "a one"), ValueError, "masks must be 28x28"),
    (lambda p: p.inpaint(digits(), torch.full((3, 1, 28, 28), 2.0), "a one"), ValueError, r"masks must lie in \[0, 1\]"),
])
def test_bad_inputs(pipe, call, error, message):
    with pytest.raises(error, match=message):
        call(pipe)


def test_unknown_words_warn_and_still_run(pipe):
    with pytest.warns(UnknownWordWarning, match="giraffe"):
        out = pipe.text_to_image("a giraffe", steps=2)
    assert torch.isfinite(out.images).all()


def test_parts_that_do_not_fit_are_refused(pipe):
    wide = UNet(UNetConfig(in_channels=4, image_size=7, channels=(8, 16), groups=4, mid_attention=True, context_dim=16))
    with pytest.raises(ValueError, match="width 16 but the text encoder makes width 8"):
        LatentDiffusion(pipe.vae, pipe.encoder, wide)
    pixel = UNet(UNetConfig(in_channels=1, image_size=28, channels=(8, 16), groups=4, mid_attention=True, context_dim=8))
    with pytest.raises(ValueError, match="latents are"):
        LatentDiffusion(pipe.vae, pipe.encoder, pixel)
