import pytest
import torch
from helpers import mnist_folder

from sdlib import metrics, pretrained
from sdlib.data import load_mnist


def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    a = torch.rand(5, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(5, generator=g, dtype=torch.float64) + 0.1
    # diagonal covariances: d² = |mu1 - mu2|² + Σ (sqrt(a) - sqrt(b))²
    want = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    assert metrics.frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(want.item(), rel=1e-9)
    assert metrics.frechet_distance(mu1, torch.diag(a), mu1, torch.diag(a)) == pytest.approx(0, abs=1e-9)
    # general covariances: Tr((S1 S2)^½) = Σ sqrt(eigenvalues of S1 S2), computed another way
    m1, m2 = torch.randn(5, 5, generator=g, dtype=torch.float64), torch.randn(5, 5, generator=g, dtype=torch.float64)
    s1, s2 = m1 @ m1.T + 0.1 * torch.eye(5, dtype=torch.float64), m2 @ m2.T + 0.1 * torch.eye(5, dtype=torch.float64)
    tr = torch.linalg.eigvals(s1 @ s2).real.clamp(min=0).sqrt().sum()
    want = ((mu1 - mu2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want.item(), rel=1e-8)


def test_sample_statistics():
    probs = torch.tensor([[0.95, 0.05] + [0.0] * 8, [0.5, 0.5] + [0.0] * 8, [0.0] * 9 + [1.0]])
    assert metrics.confident_fraction(probs) == pytest.approx(2 / 3)
    torch.testing.assert_close(metrics.class_histogram(probs), torch.tensor([2 / 3] + [0.0] * 8 + [1 / 3]))
    assert metrics.prompt_accuracy(probs, torch.tensor([0, 1, 9])) == pytest.approx(2 / 3)


def test_augmentation_keeps_shape_and_background():
    x = -torch.ones(4, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1
    y = metrics.random_affine(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y[:, :, 0, 0].eq(-1).all() and y.max() > 0.5
    assert not torch.equal(y[0], y[1])                          # each image its own transform


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    return load_mnist("test", local_dir=mnist_folder(), root=tmp_path_factory.mktemp("mnist"))


def test_shipped_classifier_is_accurate_and_its_fid_separates_real_from_noise(test_set):
    clf = pretrained.load_pretrained("classifier", device="cpu")
    images, labels = test_set.images[:3000], test_set.labels[:3000]
    assert metrics.accuracy(clf, images, labels) > 0.99
    _, a = metrics.predict(clf, images[:1500])
    _, b = metrics.predict(clf, images[1500:])
    _, noise = metrics.predict(clf, torch.randn(1500, 1, 28, 28).clamp(-1, 1))
    real_vs_real, real_vs_noise = metrics.classifier_fid(a, b), metrics.classifier_fid(a, noise)
    assert real_vs_real < 0.01 * real_vs_noise
    report = metrics.evaluate_samples(clf, images[:1500], b)
    assert report.confident > 0.95 and abs(report.histogram.sum().item() - 1) < 1e-6


def test_classifier_rejects_wrong_images():
    clf = metrics.DigitClassifier()
    with pytest.raises(ValueError, match="1 channel"):
        metrics.predict(clf, torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="must be 28x28"):
        metrics.predict(clf, torch.zeros(2, 1, 32, 32))


def test_public_functions_refuse_bad_inputs_clearly():
    clf = metrics.DigitClassifier()
    probs = torch.full((4, 10), 0.1)
    with pytest.raises(ValueError, match="images is an empty batch"):
        metrics.predict(clf, torch.zeros(0, 1, 28, 28))
    with pytest.raises(ValueError, match="images contains NaN"):
        metrics.predict(clf, torch.full((2, 1, 28, 28), float("nan")))
    assert metrics.predict(clf, torch.zeros(2, 1, 28, 28, dtype=torch.float64))[0].shape == (2, 10)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        metrics.predict(clf, torch.zeros(2, 1, 28, 28), batch_size=2.5)
    with pytest.raises(ValueError, match="at least 2 are needed for a covariance"):
        metrics.classifier_fid(torch.randn(1, 128), torch.randn(5, 128))
    with pytest.raises(ValueError, match=r"features_b must have shape \(N, 128\)"):
        metrics.classifier_fid(torch.randn(10, 128), torch.randn(10, 64))
    with pytest.raises(ValueError, match="features_a contains NaN"):
        metrics.classifier_fid(torch.full((10, 128), float("nan")), torch.randn(10, 128))
    with pytest.raises(ValueError, match=r"sigma2 must have shape \(3, 3\)"):
        metrics.frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(2))
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\]"):
        metrics.confident_fraction(probs, 2)
    with pytest.raises(ValueError, match="probs is an empty batch"):
        metrics.confident_fraction(torch.zeros(0, 10))
    with pytest.raises(ValueError, match=r"probs must have shape \(N, 10\)"):
        metrics.class_histogram(torch.zeros(10))
    with pytest.raises(TypeError, match="wanted must be an integer tensor"):
        metrics.prompt_accuracy(probs, torch.zeros(4))
    with pytest.raises(ValueError, match=r"wanted must have shape \(4,\)"):
        metrics.prompt_accuracy(probs, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        metrics.accuracy(clf, torch.zeros(2, 1, 28, 28), torch.zeros(3, dtype=torch.long))
