"""Lesson 07's premises: classifier guidance (ClassifierGuidance and its noise-aware classifier) and the
three kinds of empty prompt a conditional U-Net can be trained with."""
import math

import pytest
import torch

from sdlib.diffusion import DDPMObjective, NoisyClassifierObjective, drop_prompts
from sdlib.metrics import DigitClassifier
from sdlib.samplers import ClassifierGuidance, DDIMSampler, sample
from sdlib.schedules import NoiseSchedule
from sdlib.unet import NoisyClassifier, NoisyClassifierConfig, UNet, UNetConfig

S = NoiseSchedule.linear(1000)
SMALL = UNetConfig(channels=(8, 16), blocks=1, context_dim=4, mid_attention=True, image_size=8, heads=2, groups=4)


class LinearClassifier(torch.nn.Module):
    """A toy noise-aware classifier: logits = A x + b (the time step is accepted and ignored), so that
    ∇_x log softmax(logits)_y = A_y − Σ_k p_k A_k has a closed form."""
    takes_time = True

    def __init__(self, pixels: int, classes: int = 10, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A, self.b = torch.randn(classes, pixels, generator=g), torch.randn(classes, generator=g)

    def forward(self, x, t):
        return x.flatten(1) @ self.A.T + self.b


class ScaledNoise(torch.nn.Module):
    """A stand-in ε-model: ε(x, t) = 0.5 x."""
    def forward(self, x, t):
        return 0.5 * x


def test_classifier_guidance_shifts_eps_by_the_scaled_classifier_score():
    torch.manual_seed(0)
    x = torch.randn(5, 1, 3, 3)
    t = torch.tensor([1, 10, 200, 600, 1000])
    labels = torch.tensor([0, 3, 9, 3, 7])
    classifier = LinearClassifier(9)
    s = 2.5
    shift = ClassifierGuidance(ScaledNoise(), classifier, labels, s, S)(x, t) - 0.5 * x
    # closed form of the gradient of log softmax for a linear classifier
    p = torch.softmax(x.flatten(1) @ classifier.A.T + classifier.b, dim=1)
    score = (classifier.A[labels] - p @ classifier.A).view_as(x)
    want = -s * (1 - S.alpha_bar[t]).sqrt().float().view(-1, 1, 1, 1) * score
    torch.testing.assert_close(shift, want, atol=1e-5, rtol=1e-5)
    # and the same by hand with autograd, on a classifier that does use t
    net = NoisyClassifier(NoisyClassifierConfig(channels=(8, 16), groups=4, image_size=8))
    xs = torch.randn(2, 1, 8, 8)
    ts = torch.tensor([50, 700])
    guided = ClassifierGuidance(ScaledNoise(), net, torch.tensor([4, 1]), s, S)(xs, ts)
    leaf = xs.clone().requires_grad_(True)
    log_p = torch.log_softmax(net(leaf, ts), dim=1)
    (grad,) = torch.autograd.grad(log_p[0, 4] + log_p[1, 1], leaf)
    hand = 0.5 * xs - s * torch.sqrt(1 - S.alpha_bar[ts]).float().view(-1, 1, 1, 1) * grad
    torch.testing.assert_close(guided, hand, atol=1e-5, rtol=1e-5)


def test_classifier_guidance_at_scale_zero_is_the_model_and_raises_the_wanted_class():
    torch.manual_seed(1)
    x = torch.randn(4, 1, 3, 3)
    t = torch.full((4,), 300)
    classifier, labels = LinearClassifier(9), torch.tensor([2, 2, 5, 5])
    torch.testing.assert_close(ClassifierGuidance(ScaledNoise(), classifier, labels, 0.0, S)(x, t), 0.5 * x)
    # a small step against the guided ε (as a sampler moves) raises log p(y | x) more than the unguided one
    before = torch.log_softmax(classifier(x, t), 1).gather(1, labels[:, None])
    step = lambda eps: x - 0.01 * eps                                           # noqa: E731
    plain = torch.log_softmax(classifier(step(0.5 * x), t), 1).gather(1, labels[:, None])
    guided = torch.log_softmax(classifier(step(ClassifierGuidance(ScaledNoise(), classifier, labels, 5.0, S)(x, t)), t),
                               1).gather(1, labels[:, None])
    assert bool((guided - before > plain - before).all())


def test_classifier_guided_sampling_does_not_depend_on_the_batch_size():
    torch.manual_seed(2)
    model = ScaledNoise()
    net = NoisyClassifier(NoisyClassifierConfig(channels=(8, 16), groups=4, image_size=8)).eval()
    guided = ClassifierGuidance(model, net, torch.arange(5), 1.0, S)
    sampler = DDIMSampler(S, 4)
    whole = sample(guided, sampler, (5, 1, 8, 8), seed=0, progress=False, device="cpu")
    parts = sample(guided, sampler, (5, 1, 8, 8), seed=0, progress=False, device="cpu", batch_size=2)
    torch.testing.assert_close(whole, parts, atol=1e-5, rtol=1e-5)
    unguided = sample(model, sampler, (5, 1, 8, 8), seed=0, progress=False, device="cpu")
    assert not torch.allclose(whole, unguided)


@pytest.mark.parametrize("make, error, message", [
    (lambda c: ClassifierGuidance(ScaledNoise(), c, torch.arange(3), float("nan"), S), ValueError, "finite"),
    (lambda c: ClassifierGuidance(ScaledNoise(), c, torch.arange(3), float("inf"), S), ValueError, "finite"),
    (lambda c: ClassifierGuidance(ScaledNoise(), DigitClassifier(), torch.arange(3), 1.0, S), TypeError, "time step"),
    (lambda c: ClassifierGuidance(ScaledNoise(), c, torch.tensor([0, 10]), 1.0, S), ValueError, r"\[0, 9\]"),
    (lambda c: ClassifierGuidance(ScaledNoise(), c, torch.tensor([-1, 2]), 1.0, S), ValueError, r"\[0, 9\]"),
    (lambda c: ClassifierGuidance(ScaledNoise(), c, torch.tensor([1.0, 2.0]), 1.0, S), TypeError, "integer"),
    (lambda c: ClassifierGuidance(ScaledNoise(), c, torch.arange(3), 1.0, NoiseSchedule.linear(100)), ValueError,
     "T = 1000"),
    (lambda c: ClassifierGuidance(ScaledNoise(), c, torch.arange(3), 1.0, S)(torch.zeros(2, 1, 8, 8),
                                                                            torch.tensor([5, 5])), ValueError, "labels"),
])
def test_classifier_guidance_refuses_bad_input(make, error, message):
    net = NoisyClassifier(NoisyClassifierConfig(channels=(8, 16), groups=4, image_size=8))
    with pytest.raises(error, match=message):
        make(net)


def test_noisy_classifier_checks_its_inputs_and_its_objective_trains_on_noised_images():
    net = NoisyClassifier(NoisyClassifierConfig(channels=(8, 16), groups=4, image_size=8))
    with pytest.raises(ValueError, match="8, 8|8x8|8 × 8|size"):
        net(torch.zeros(2, 1, 28, 28), 5)
    with pytest.raises(TypeError, match="integer"):
        net(torch.zeros(2, 1, 8, 8), 2.5)
    with pytest.raises(ValueError, match=r"\[0, 1000\]"):
        net(torch.zeros(2, 1, 8, 8), 1001)
    assert net(torch.zeros(3, 1, 8, 8), torch.tensor([0, 1, 1000])).shape == (3, 10)

    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x, t):
            seen["x"], seen["t"] = x, t
            return net(x, t)

    x0 = torch.rand(6, 1, 8, 8) * 2 - 1
    labels = torch.arange(6)
    loss, logs = NoisyClassifierObjective(S)(Spy(), (x0, labels), torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and math.isfinite(loss.item()) and 0 <= logs["accuracy"] <= 1
    t = seen["t"]
    assert t.min() >= 1 and t.max() <= 1000
    eps = (seen["x"] - S.alpha_bar[t].sqrt().view(-1, 1, 1, 1) * x0) / (1 - S.alpha_bar[t]).sqrt().view(-1, 1, 1, 1)
    assert 0.3 < eps.std() < 3.0                 # x_t is x0 plus unit Gaussian noise at step t, not x0 itself
    with pytest.raises(TypeError, match="NoiseSchedule"):
        NoisyClassifierObjective("linear")


def test_the_three_empty_prompts():
    learned, zero, text = (UNet(UNetConfig(**{**SMALL.to_dict(), "null_context": k, "null_tokens": n}))
                           for k, n in (("learned", 1), ("zero", 1), ("text", 2)))
    assert isinstance(learned.null_context, torch.nn.Parameter)
    assert not isinstance(zero.null_context, torch.nn.Parameter) and "null_context" in zero.state_dict()
    assert all(p is not zero.null_context for p in zero.parameters())
    context, mask = zero.empty_prompt(3, 5)
    assert context.shape == (3, 5, 4) and bool((context == 0).all()) and mask.tolist() == [[True] + [False] * 4] * 3
    # "text": the encoder's tokens for "" (two real ones here), padded to the context's length
    encoded = torch.randn(1, 5, 4)
    encoded_mask = torch.tensor([[True, True, False, False, False]])
    text.set_empty_prompt(encoded, encoded_mask)
    context, mask = text.empty_prompt(2, 5)
    torch.testing.assert_close(context[:, :2], encoded[:, :2].expand(2, -1, -1))
    assert bool((context[:, 2:] == encoded[:, 1:2]).all())                 # masked-out padding
    assert mask.tolist() == [[True, True, False, False, False]] * 2
    copy = UNet(text.config)
    copy.load_state_dict(text.state_dict())
    torch.testing.assert_close(copy.empty_prompt(1, 2)[0], encoded[:, :2])
    # dropping prompts uses it, and a forward pass without a context uses it with its mask
    prompts = torch.randn(2, 5, 4)
    dropped, dropped_mask = drop_prompts(text, prompts, torch.ones(2, 5, dtype=torch.bool), torch.tensor([True, False]))
    torch.testing.assert_close(dropped[0], context[0])
    torch.testing.assert_close(dropped[1], prompts[1])
    assert dropped_mask[0].tolist() == mask[0].tolist() and bool(dropped_mask[1].all())
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 400])
    torch.testing.assert_close(text(x, t), text(x, t, *text.empty_prompt(2, 5)), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="2 real tokens|null_tokens"):
        UNet(UNetConfig(**{**SMALL.to_dict(), "null_context": "text", "null_tokens": 3})).set_empty_prompt(encoded,
                                                                                                         encoded_mask)
    with pytest.raises(ValueError, match="'text'"):
        learned.set_empty_prompt(encoded, encoded_mask)
    with pytest.raises(ValueError, match="null_context must be one of"):
        UNetConfig(null_context="nothing")
    with pytest.raises(ValueError, match="null_tokens"):
        UNetConfig(null_context="zero", null_tokens=2)


def test_only_the_learned_empty_prompt_is_a_parameter():
    names = {}
    for kind, n in (("learned", 1), ("zero", 1), ("text", 2)):
        model = UNet(UNetConfig(**{**SMALL.to_dict(), "null_context": kind, "null_tokens": n}))
        names[kind] = {name for name, _ in model.named_parameters()}
        assert "null_context" in model.state_dict()              # stored with the weights in every case
    assert "null_context" in names["learned"]
    assert "null_context" not in names["zero"] | names["text"]    # the optimizer never sees it
    assert names["zero"] == names["text"] == names["learned"] - {"null_context"}


def test_prompt_report_gives_binomial_and_bootstrap_standard_errors():
    from sdlib.metrics import prompt_report

    torch.manual_seed(0)
    classifier = DigitClassifier().eval()
    images = torch.rand(60, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        said = classifier(images).argmax(1)
    digits = said.clone()
    digits[:15] = (said[:15] + 1) % 10                      # 45 of 60 obeyed
    reference = torch.randn(200, 128)
    report = prompt_report(classifier, images, digits, reference, bootstrap=20)
    assert report.n == 60 and report.prompt_accuracy == pytest.approx(0.75)
    assert report.prompt_accuracy_se == pytest.approx(math.sqrt(0.75 * 0.25 / 60))
    assert report.classifier_fid > 0 and 0 < report.classifier_fid_se < report.classifier_fid
    again = prompt_report(classifier, images, digits, reference, bootstrap=20)
    assert again.classifier_fid_se == report.classifier_fid_se          # seeded
    assert "±" in str(report)
    with pytest.raises(ValueError, match="bootstrap"):
        prompt_report(classifier, images, digits, reference, bootstrap=1)
