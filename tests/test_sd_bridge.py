"""Appendix 08b's claim, tested: the course's sampling loop and classifier-free guidance, driving diffusers'
Stable Diffusion networks through the appendix's adapter, give what diffusers' own StableDiffusionPipeline gives
from the same initial latents, with its DDIMScheduler set to the course's grid (the conventions that
tests/test_against_diffusers.py pins down: k = t - 1, trailing spacing, set_alpha_to_one, no clipping, a step
count that divides T). The adapter is the one the appendix shows, read from its cell."""
import warnings

import nbformat
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="install the appendix's extra: pip install -e .[sd]")
pytest.importorskip("transformers", reason="diffusers' Stable Diffusion pipeline needs transformers: "
                                           "pip install -e .[sd]")
from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionPipeline,  # noqa: E402
                       UNet2DConditionModel)
from helpers import ROOT  # noqa: E402

from sdlib.samplers import ClassifierFreeGuidance, DDIMSampler, sample  # noqa: E402
from sdlib.schedules import NoiseSchedule  # noqa: E402

APPENDIX = ROOT / "notebooks" / "08b_from_mnist_to_stable_diffusion.ipynb"
T, WIDTH = 1000, 16


def appendix_adapter():
    """The DiffusersDenoiser class exactly as the appendix's cell "adapter" defines it."""
    cell = next(c for c in nbformat.read(str(APPENDIX), as_version=4).cells if c.get("id") == "adapter")
    namespace = {}
    exec(compile(cell.source, f"{APPENDIX.name}#adapter", "exec"), namespace)
    return namespace["DiffusersDenoiser"]


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=WIDTH, attention_head_dim=8, norm_num_groups=8).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2).eval()
    return unet, vae


def course_scheduler(**changes) -> DDIMScheduler:
    settings = dict(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                    timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False, steps_offset=1)
    return DDIMScheduler(**{**settings, **changes})


def their_pipeline(networks, scheduler) -> StableDiffusionPipeline:
    unet, vae = networks
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def inputs(n=2, length=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, length, WIDTH, generator=g), torch.randn(n, length, WIDTH, generator=g),
            torch.randn(n, 4, 8, 8, generator=g))


def ours(networks, adapter, context, negative, latents, w, steps):
    unet, vae = networks
    guided = ClassifierFreeGuidance(adapter(unet, T), context, w, negative_context=negative)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "sampling diverged")            # random weights: no pictures
        z = sample(guided, DDIMSampler(NoiseSchedule.linear(T), steps), x_T=latents.clone(), progress=False)
        return z, vae.decode(z / vae.config.scaling_factor).sample


def relative_gap(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("w, steps", [(3.0, 10), (7.5, 20), (1.0, 4)])
def test_the_course_loop_equals_diffusers_pipeline_on_the_same_networks(networks, w, steps):
    context, negative, latents = inputs()
    z, images = ours(networks, appendix_adapter(), context, negative, latents, w, steps)
    pipe = their_pipeline(networks, course_scheduler())
    with torch.no_grad():
        theirs = pipe(prompt_embeds=context, negative_prompt_embeds=negative, latents=latents.clone(),
                      guidance_scale=w, num_inference_steps=steps, height=16, width=16, output_type="latent").images
        pictures = pipe(prompt_embeds=context, negative_prompt_embeds=negative, latents=latents.clone(),
                        guidance_scale=w, num_inference_steps=steps, height=16, width=16, output_type="pt").images
    assert relative_gap(z, theirs) < 1e-5
    # the pipeline's own decoding: the decoder's image mapped from [-1, 1] to [0, 1] and clipped
    torch.testing.assert_close(((images + 1) / 2).clamp(0, 1), pictures, rtol=1e-4, atol=1e-4)


def test_each_convention_matters(networks):
    """The test above can fail: the adapter without the index shift, or DDIM's default spacing, disagree."""
    context, negative, latents = inputs(seed=1)
    z, _ = ours(networks, appendix_adapter(), context, negative, latents, 3.0, 10)

    class Unshifted(appendix_adapter()):
        def forward(self, x, t, context=None, context_mask=None):
            return self.unet(x, t, encoder_hidden_states=context).sample          # k = t: one step off

    shifted_wrong, _ = ours(networks, Unshifted, context, negative, latents, 3.0, 10)
    assert relative_gap(shifted_wrong, z) > 1e-4
    with torch.no_grad():
        leading = their_pipeline(networks, course_scheduler(timestep_spacing="leading"))(
            prompt_embeds=context, negative_prompt_embeds=negative, latents=latents.clone(), guidance_scale=3.0,
            num_inference_steps=10, height=16, width=16, output_type="latent").images
    assert relative_gap(leading, z) > 1e-4


def test_the_adapter_feeds_the_guidance_checks(networks):
    unet, _ = networks
    adapter = appendix_adapter()(unet, T)
    assert adapter.config.context_dim == WIDTH and adapter.config.max_t == T
    with pytest.raises(ValueError, match=r"context must have shape \(B, L, 16\)"):
        ClassifierFreeGuidance(adapter, torch.zeros(1, 5, 8), 3.0, negative_context=torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match="trained with T = 1000 time steps"):
        sample(ClassifierFreeGuidance(adapter, *inputs(n=1)[:1], 3.0, negative_context=inputs(n=1)[1]),
               DDIMSampler(NoiseSchedule.linear(500), 2), (1, 4, 8, 8), progress=False)
