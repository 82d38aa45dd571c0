"""sdlib.runtime.validate: every check refuses what it should with a message that says what was wrong and what
is expected, and lets through what it should (the entry points' own tests attack them one by one)."""
import math

import numpy as np
import pytest
import torch

from sdlib import data
from sdlib.runtime import validate

# -- numbers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [True, False, np.bool_(True), torch.tensor(True)])
def test_bools_are_not_numbers(value):
    with pytest.raises(TypeError, match="strength must be a number, got the bool"):
        validate.finite_number(value, "strength")
    with pytest.raises(TypeError, match="steps must be an int"):
        validate.positive_int(value, "steps")


@pytest.mark.parametrize("value", ["0.5", None, [1.0], torch.ones(2), 1 + 2j])
def test_finite_number_refuses_what_is_not_one_real_number(value):
    with pytest.raises(TypeError, match="w must be a number"):
        validate.finite_number(value, "w")


@pytest.mark.parametrize("value, expected", [(3, 3.0), (2.5, 2.5), (np.float32(0.25), 0.25), (np.int64(4), 4.0),
                                             (torch.tensor(1.5), 1.5)])
def test_finite_number_accepts_real_numbers(value, expected):
    assert validate.finite_number(value, "w") == expected


def test_finite_number_range_and_non_negative():
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="eta must be a finite number"):
            validate.finite_number(bad, "eta")
    with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\], got 1.5"):
        validate.finite_number(1.5, "strength", low=0.0, high=1.0)
    with pytest.raises(ValueError, match="grad_clip must be >= 0, got -1"):
        validate.non_negative(-1, "grad_clip")
    assert validate.non_negative(0, "grad_clip") == 0.0


def test_positive_int():
    assert validate.positive_int(np.int64(7), "steps") == 7 and type(validate.positive_int(np.int64(7), "steps")) is int
    with pytest.raises(TypeError, match=r"steps must be an int, got float 3.0"):
        validate.positive_int(3.0, "steps")
    with pytest.raises(ValueError, match="steps must be at least 1 and at most 50, got 51"):
        validate.positive_int(51, "steps", maximum=50)


# -- time steps --------------------------------------------------------------------------------------

@pytest.mark.parametrize("t, error, message", [
    (2.7, TypeError, r"int or an integer tensor.*got float 2.7.*not truncated"),
    (torch.tensor([2.7, 3.0]), TypeError, "integer time steps.*float32"),
    (True, TypeError, "bool"),
    (torch.tensor([True, False]), TypeError, "bool"),
    (torch.tensor([1, 11]), ValueError, r"t must lie in \[0, 10\].*got values in \[1, 11\]"),
    (torch.tensor([[1], [2]]), ValueError, r"shape \(B,\)"),
    (torch.tensor([1, 2, 3]), ValueError, "3 entries but the batch has 2 images"),
    ("5", TypeError, "int or an integer tensor"),
])
def test_timesteps_refuse(t, error, message):
    with pytest.raises(error, match=message):
        validate.timesteps(t, 10, 2)


def test_timesteps_accept_ints_and_integer_tensors():
    assert validate.timesteps(3, 10, 2).tolist() == [3, 3]
    assert validate.timesteps(np.int64(3), 10, 2).tolist() == [3, 3]
    assert validate.timesteps(torch.tensor(4), 10, 3).tolist() == [4, 4, 4]                # 0-d: one for all
    assert validate.timesteps(torch.tensor([1, 10], dtype=torch.int32), 10, 2).dtype == torch.long
    with pytest.raises(ValueError, match=r"\[1, 10\]"):
        validate.timesteps(0, 10, 2, lowest=1)


# -- prompts ---------------------------------------------------------------------------------------------

def test_prompts():
    assert validate.prompts("a seven") == ["a seven"]
    assert validate.prompts(("a", "b")) == ["a", "b"]
    with pytest.raises(TypeError, match="got a set.*PYTHONHASHSEED.*pass a list"):
        validate.prompts({"a seven", "a two"})
    with pytest.raises(TypeError, match="got a set"):
        validate.prompts(frozenset({"a"}))
    with pytest.raises(TypeError, match="string or a list of strings, got dict"):
        validate.prompts({"a": 1})
    with pytest.raises(TypeError, match="string or a list of strings, but it holds int 7"):
        validate.prompts(["a", 7])
    with pytest.raises(TypeError, match="string or a list of strings, got generator"):
        validate.prompts(p for p in ["a"])
    with pytest.raises(ValueError, match="negative_prompt is empty"):
        validate.prompts([], "negative_prompt")


# -- tensors ----------------------------------------------------------------------------------------------

def test_an_empty_batch_is_called_an_empty_batch():
    for check in (lambda x: validate.images(x, channels=4), lambda x: validate.model_range(x, "x"),
                  lambda x: validate.shaped(x, "x", "B C H W", what="image", C=4)):
        with pytest.raises(ValueError, match=r"empty batch \(shape \(0, 1, 28, 28\)\): give at least one image"):
            check(torch.zeros(0, 1, 28, 28))


def test_the_uint8_hint_names_a_conversion_whose_output_is_accepted():
    """The hint depends on what the caller expects, and following it gives an accepted input."""
    pixels = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)          # like MNIST's raw `.data`
    with pytest.raises(TypeError, match=r"to_model_range\(x\), then add the channel dimension with \[:, None\]"):
        validate.images(pixels, channels=1, size=(28, 28))
    validate.images(data.to_model_range(pixels)[:, None], channels=1, size=(28, 28))
    # the pipeline takes images in [0, 1]: to_model_range's [-1, 1] would be refused there
    with pytest.raises(TypeError, match=r"\[0, 1\] with x.float\(\) / 255"):
        validate.images(pixels[:, None], value_range=(0.0, 1.0))
    validate.images(pixels[:, None].float() / 255, value_range=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"images in \[-1, 1\]\? sdlib.data.to_unit_range"):
        validate.images(data.to_model_range(pixels)[:, None], value_range=(0.0, 1.0))


def test_shape_hints():
    with pytest.raises(ValueError, match=r"a batch of \(H, W\) images\? add the channel dimension with x\[:, None\]"):
        validate.images(torch.zeros(5, 28, 28), channels=1)
    with pytest.raises(ValueError, match=r"a single image\? add a batch dimension with x\[None\]"):
        validate.images(torch.zeros(1, 28, 28), channels=1)


@pytest.mark.parametrize("bad, message", [(math.nan, "NaN"), (math.inf, "infinite"), (-math.inf, "infinite")])
def test_non_finite_values_are_refused(bad, message):
    x = torch.zeros(2, 1, 4, 4)
    x[1, 0, 2, 2] = bad
    for check in (lambda: validate.images(x), lambda: validate.model_range(x, "images"),
                  lambda: validate.finite(x, "images"), lambda: validate.images(x, value_range=None)):
        with pytest.raises(ValueError, match=f"images contains {message} values"):
            check()


def test_model_range_refuses_pixels_but_not_noise_or_latents():
    with pytest.raises(ValueError, match=r"x0 has values in \[255, 255\].*pixels in \[0, 255\].*to_model_range"):
        validate.model_range(torch.full((2, 1, 4, 4), 255.0), "x0")
    validate.model_range(torch.randn(2, 4, 7, 7) * 3, "latents")         # both signs: noise or latents
    validate.model_range(torch.randn(2, 8) * 100, "x_t")                  # a diverging sampler, still both signs
    validate.model_range(torch.full((1, 4, 7, 7), 3.0), "z_known")         # the latent of a blank image may be > 0
    with pytest.raises(TypeError, match="floating-point.*to_model_range"):
        validate.model_range(torch.zeros(2, 3, dtype=torch.uint8), "x0")


def test_shaped_messages():
    with pytest.raises(ValueError, match=r"context must have shape \(B, L, 8\) with B = 2, got \(3, 5, 8\)"):
        validate.shaped(torch.zeros(3, 5, 8), "context", "B L C", B=2, C=8)
    with pytest.raises(ValueError, match=r"latents must have shape \(B, 4, 7, 7\), got \(2, 4, 8, 8\)"):
        validate.shaped(torch.zeros(2, 4, 8, 8), "latents", "B 4 7 7")
    with pytest.raises(ValueError, match=r"mu must have shape \(128,\)"):
        validate.shaped(torch.zeros(64), "mu", "D", D=128)


def test_mask():
    with pytest.raises(TypeError, match="bool tensor"):
        validate.mask(torch.ones(2, 3), "mask", (2, 3))
    with pytest.raises(ValueError, match=r"shape \(B, L\) = \(2, 3\) to match the context"):
        validate.mask(torch.ones(2, 4, dtype=torch.bool), "mask", (2, 3))
    with pytest.raises(ValueError, match="at least one True"):
        validate.mask(torch.tensor([[True, False], [False, False]]), "mask", (2, 2))
    validate.mask(torch.tensor([[1, 0], [1, 1]]), "mask", (2, 2))


def test_like_matrix_labels_generator():
    with pytest.raises(ValueError, match="x0 and eps must have the same shape"):
        validate.like(torch.zeros(2, 3), torch.zeros(2, 4), "x0", "eps")
    with pytest.raises(ValueError, match="at least 2 are needed"):
        validate.matrix(torch.zeros(1, 5), "features", min_rows=2)
    with pytest.raises(TypeError, match="integer tensor of class indices"):
        validate.labels(torch.zeros(3), "labels", 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        validate.labels(torch.tensor([0, 10]), "labels", 2, classes=10)
    with pytest.raises(TypeError, match=r"torch.Generator\(\).manual_seed\(seed\) instead of the seed"):
        validate.generator(0)


def test_to_model_dtype():
    layer = torch.nn.Linear(2, 2)
    assert validate.to_model_dtype(torch.zeros(1, 2, dtype=torch.float64), layer).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):                      # autocast chooses dtypes itself
        assert validate.to_model_dtype(torch.zeros(1, 2, dtype=torch.bfloat16), layer).dtype == torch.bfloat16
