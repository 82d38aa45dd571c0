"""Nothing silent at the edges: input that used to be accepted without a word, or refused with a message from
deep inside torch, now gets a clear error (or a warning) at the public entry point that names what was wrong
and what is expected."""
import subprocess
import sys
import warnings

import pytest
import torch

from helpers import ROOT
from sdlib import data, metrics, pretrained, runtime
from sdlib.diffusion import variational_bound
from sdlib.flow import time_of_alpha_bar
from sdlib.runtime import validate
from sdlib.samplers import (ClassifierFreeGuidance, ClassifierGuidance, DDIMSampler, SampleNoise, prompt_guidance,
                            sample, schedule_of)
from sdlib.schedules import NoiseSchedule
from sdlib.train import TrainConfig
from sdlib.unet import UNet, UNetConfig


def tiny_unet(**changes) -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(channels=(8,), groups=4, image_size=8, max_t=50, **changes)).eval()


@pytest.fixture(scope="module")
def shipped():
    return {name: pretrained.load_pretrained(name, device="cpu") for name in ("ddpm", "noisy_classifier", "vae")}


# -- guidance that would drop what it was asked for ----------------------------------------------------------

def test_classifier_guidance_with_more_labels_than_samples_is_refused_before_any_step(shipped):
    schedule, calls = NoiseSchedule.linear(1000), []
    guide = ClassifierGuidance(shipped["ddpm"], shipped["noisy_classifier"], torch.tensor([3, 7, 1]), 2.0, schedule)
    with pytest.raises(ValueError, match="carries 3 labels but 2 samples are asked for"):
        sample(guide, DDIMSampler(schedule, 3), (2, 1, 28, 28), seed=0, progress=False,
               on_step=lambda t, t_prev, x: calls.append(t) or x)
    assert calls == []


def test_classifier_free_guidance_with_more_prompts_than_samples_is_refused():
    unet = tiny_unet(context_dim=4, null_context="zero")
    guide = ClassifierFreeGuidance(unet, torch.randn(3, 2, 4), 2.0)
    with pytest.raises(ValueError, match="carries 3 prompts but 2 samples"):
        sample(guide, DDIMSampler(NoiseSchedule.linear(50), 2), (2, 1, 8, 8), seed=0, progress=False)
    with pytest.raises(ValueError, match="carries 3 prompts but 4 samples"):
        sample(guide, DDIMSampler(NoiseSchedule.linear(50), 2), x_T=torch.randn(4, 1, 8, 8), progress=False)


def test_a_diverging_guided_sampler_names_its_guidance_scale():
    unet = tiny_unet(context_dim=4, null_context="zero")
    guide = ClassifierFreeGuidance(unet, torch.randn(2, 2, 4), 1e300)
    with pytest.raises(FloatingPointError, match=r"NaN or infinite values; the guidance scale w = 1e\+300 is probably"):
        sample(guide, DDIMSampler(NoiseSchedule.linear(50), 3), (2, 1, 8, 8), seed=0, progress=False)


# -- images in the wrong range ---------------------------------------------------------------------------------

def test_images_in_zero_one_warn_at_the_doors_that_take_a_users_images(shipped):
    unit = torch.rand(4, 1, 28, 28)
    with pytest.warns(UserWarning, match=r"never below 0: images in \[0, 1\]\?.*from_unit_range"):
        shipped["vae"].encode(unit)
    with pytest.warns(UserWarning, match="never below 0"):
        shipped["vae"].encode_scaled(unit)
    with pytest.warns(UserWarning, match="never below 0"):
        metrics.predict(pretrained.load_pretrained("classifier", device="cpu"), unit)
    eight_bit = (torch.randint(128, 256, (2, 1, 28, 28)) / 255) * 2 - 1      # on the 8-bit grid, all >= 0
    with pytest.warns(UserWarning, match="never below 0"):
        variational_bound(shipped["ddpm"], NoiseSchedule.linear(1000), eight_bit, n_t=1,
                          generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shipped["vae"].encode(unit * 2 - 1)                                   # the right range: no word
        shipped["vae"].encode(unit[:1])                                       # one image may be all ink


def test_a_training_step_does_not_warn_about_the_range():
    from sdlib.train import TrainConfig, fit
    from sdlib.vae import KLAutoencoder, KLConfig, VAEObjective

    vae = KLAutoencoder(KLConfig(channels=(4, 8), groups=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit(vae, VAEObjective(1.0), (torch.rand(16, 1, 28, 28),), TrainConfig(steps=2, batch_size=8, warmup=1),
            progress=False)


# -- NaN is out of every range; non-finite weights do not load -----------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, 1.5])
def test_time_of_alpha_bar_refuses_nan_and_values_outside_zero_one(bad):
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\]"):
        time_of_alpha_bar(torch.tensor([bad, 0.5]))


def test_within_treats_nan_as_out_of_range():
    with pytest.raises(ValueError, match="got NaN"):
        validate.within(torch.tensor([0.2, float("nan")]), "p", 0.0, 1.0)
    assert validate.within(torch.tensor([0.0, 1.0]), "p", 0.0, 1.0) is not None


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_weights_holding_non_finite_values_are_refused_naming_the_tensor(tmp_path, value):
    classifier = pretrained.load_pretrained("classifier", device="cpu")
    name = next(k for k, v in classifier.state_dict().items() if v.is_floating_point())
    classifier.state_dict()[name].view(-1)[0] = value
    pretrained.save_pretrained("broken", classifier, kind="classifier", config=pretrained.entry("classifier")["config"],
                               recipe="a test", metrics={}, directory=tmp_path)      # its hash matches the file
    with pytest.raises(pretrained.WeightsError, match=rf"tensor '{name}' holds NaN or infinite values"):
        pretrained.load_pretrained("broken", device="cpu", directory=tmp_path)


# -- errors a learner can act on ---------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda: runtime.pick_device("meta"),
    lambda: runtime.setup(device="meta", verbose=False),
    lambda: pretrained.load_pretrained("classifier", device="meta"),
    lambda: sample(tiny_unet(), DDIMSampler(NoiseSchedule.linear(50), 2), (1, 1, 8, 8), device="meta", progress=False),
    lambda: NoiseSchedule.linear(50).add_noise(torch.zeros(2, 1, 4, 4, device="meta"),
                                               torch.zeros(2, 1, 4, 4, device="meta"), 3),
    lambda: tiny_unet()(torch.zeros(1, 1, 8, 8, device="meta"), 3),
])
def test_the_meta_device_is_refused_in_words(call):
    with pytest.raises(ValueError, match="meta.*shapes but no values"):
        call()


@pytest.mark.parametrize("call", [
    lambda: runtime.pick_device("tpu"),
    lambda: runtime.setup(device="tpu", verbose=False),
    lambda: pretrained.load_pretrained("classifier", device="tpu"),
    lambda: pretrained.load_prompt_encoder(device="tpu"),
    lambda: sample(tiny_unet(), DDIMSampler(NoiseSchedule.linear(50), 2), (1, 1, 8, 8), device="tpu", progress=False),
])
def test_an_unknown_device_is_refused_with_the_ones_there_are(call):
    with pytest.raises(ValueError, match=r"'tpu' is not a device torch knows: use 'cpu', 'cuda'"):
        call()


@pytest.mark.parametrize("call", [
    lambda seed: runtime.setup(seed=seed, verbose=False),
    lambda seed: SampleNoise(2, seed=seed),
    lambda seed: sample(tiny_unet(), DDIMSampler(NoiseSchedule.linear(50), 2), (1, 1, 8, 8), seed=seed,
                        progress=False),
    lambda seed: TrainConfig(seed=seed),
])
def test_seeds_out_of_range_or_given_as_text_are_refused(call):
    with pytest.raises(ValueError, match=r"seed must lie between 0 and 2\*\*63 - 1"):
        call(2**70)
    with pytest.raises(TypeError, match=r"got str '0' \(the string '0'\? pass the number, 0\)"):
        call("0")
    call(2**63 - 1)                                                   # the largest seed torch takes


def test_labels_given_as_one_number_are_refused_with_the_fix(shipped):
    classifier = pretrained.load_pretrained("classifier", device="cpu")
    with pytest.raises(ValueError, match=r"a single number \(a 0-d tensor\): write torch.tensor\(\[3\]\)"):
        metrics.accuracy(classifier, torch.zeros(1, 1, 28, 28), torch.tensor(3))
    with pytest.raises(ValueError, match=r"write torch.tensor\(\[7\]\)"):
        ClassifierGuidance(shipped["ddpm"], shipped["noisy_classifier"], torch.tensor(7), 1.0, NoiseSchedule.linear(1000))


def test_an_mnist_folder_that_is_a_file_is_called_a_file(tmp_path):
    path = tmp_path / "mnist"
    path.write_text("not a folder")
    with pytest.raises(data.MNISTUnavailable, match="is a file, not a folder"):
        data.load_mnist("test", local_dir=path)


def student(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sdlib.classroom.student", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.parametrize("name, content", [("lesson.py", b"print(1)\n"), ("data.ipynb", b'{"a": 1}'),
                                           ("binary.ipynb", bytes(range(256))), ("empty.ipynb", b"")])
def test_the_student_tool_refuses_what_is_not_a_notebook_in_one_line(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    result = student(name, "--out", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"{name} is not a Jupyter notebook" in result.stderr or f"{name} is JSON but not" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_student_tool_refuses_an_out_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("mine")
    result = student(ROOT / "notebooks" / "02_forward_noising.ipynb", "--out", "taken", cwd=tmp_path)
    assert result.returncode == 1 and "--out taken is a file" in result.stderr and "Errno" not in result.stderr
    assert (tmp_path / "taken").read_text() == "mine"


# -- attacks on the public functions this round added ----------------------------------------------------------

def test_prompt_guidance_checks_its_prompts_before_encoding():
    encoded = []
    encoder = lambda prompts: encoded.append(prompts) or (torch.zeros(len(prompts), 2, 4), None)   # noqa: E731
    unet = tiny_unet(context_dim=4, null_context="zero")
    with pytest.raises(TypeError, match="got a set"):
        prompt_guidance(unet, encoder, {"a one", "a two"}, 2.0)
    with pytest.raises(ValueError, match="prompts is empty"):
        prompt_guidance(unet, encoder, [], 2.0)
    with pytest.raises(ValueError, match="one negative prompt, or one per prompt"):
        prompt_guidance(unet, encoder, ["a one", "a two"], 2.0, negative_prompt=["a", "b", "c"])
    with pytest.raises(ValueError, match="guidance scale w"):
        prompt_guidance(unet, encoder, ["a one"], float("nan"))
    assert encoded == [["a one"]]                    # only the last call got as far as the encoder
    assert prompt_guidance(unet, encoder, "a one", 2.0).n_conditions == 1


def test_schedule_of_is_the_shipped_schedule_or_the_linear_one():
    assert schedule_of(tiny_unet()).T == 50 and schedule_of(tiny_unet()).name == "linear"
    shipped = pretrained.load_pretrained("ddpm", device="cpu")
    assert schedule_of(shipped) is shipped.schedule and shipped.schedule.T == 1000
