"""The VQ training step on the shared loop, on tiny models and data: the first stage (L1 + perceptual + quantiser +
adaptive hinge GAN after disc_start, dead-code restarts) and the prior stage (frozen first stage loaded from a
checkpoint, next-code cross entropy); the adaptive weight's rule and the perceptual distance."""

from __future__ import annotations

import pytest
import torch

import ganserve
from ganserve.data import ImageDataset
from ganserve.train.loop import Trainer, TrainOptions
from ganserve.train.vqgan import PerceptualDistance, adaptive_weight
from tests.vq_fixtures import TINY_VQGAN


@pytest.fixture(scope="module")
def data() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset(torch.randint(0, 256, [64, 1, 16, 16], generator=g, dtype=torch.uint8),
                        torch.randint(0, 3, [64], generator=g), ["a", "b", "c"], "random")  # fmt: skip


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from ganserve.eval.classifier import ClassifierConfig, SmallCNN, TrainResult, TrainSettings, save_classifier

    torch.manual_seed(0)
    model = SmallCNN(ClassifierConfig(["a", "b", "c"], resolution=16, channels=1, width=4)).eval()
    path = tmp_path_factory.mktemp("clf") / "clf.safetensors"
    save_classifier(path, TrainResult(model, 0.5, [0.5, 0.5, 0.5]), "random", TrainSettings(), command="test")
    return path


def _options(tmp_path, name, **family) -> TrainOptions:
    return TrainOptions(family="vqgan", resolution=16, out_dir=str(tmp_path / name), steps=4, batch_size=8, snap=4,
                        conditional=True, model={k: v for k, v in TINY_VQGAN.items() if k not in ("resolution",
                                                                                                 "img_channels")},
                        family_options=family, export=str(tmp_path / name / "model.safetensors"),
                        export_dtype="float32")  # fmt: skip


def test_first_stage_then_prior(tmp_path, data, classifier):
    first = Trainer(_options(tmp_path, "first", disc_start=2, restart_every=2, perceptual=str(classifier),
                             warmup=2), data)  # fmt: skip
    logs = [first.train_step() for _ in range(4)]
    assert all(torch.isfinite(torch.tensor(list(entry.values()))).all() for entry in logs)
    assert "d" not in logs[1] and logs[3]["d_weight"] > 0 and "d" in logs[3] and logs[2]["p"] > 0
    assert "restarted" in logs[2]
    first.snapshot()
    exported = tmp_path / "first" / "model.safetensors"

    prior = Trainer(_options(tmp_path, "prior", stage="prior", first_stage=str(exported)), data)
    fs_before = {k: v.clone() for k, v in prior.G.first_stage.state_dict().items()}
    for k, v in ganserve.load(exported).first_stage.state_dict().items():
        assert torch.equal(fs_before[k], v), k
    nll = [prior.train_step()["nll"] for _ in range(3)]
    assert all(0 < x < 10 for x in nll)
    for k, v in prior.G.first_stage.state_dict().items():
        assert torch.equal(fs_before[k], v), k  # frozen
    with pytest.raises(ValueError, match="first-stage"):
        Trainer(_options(tmp_path, "bad", stage="prior"), data)


def test_adaptive_weight_is_the_gradient_norm_ratio():
    w = torch.randn(3, 3, requires_grad=True)
    x = torch.randn(5, 3)
    nll = (x @ w).abs().mean()
    g = -(x @ w).sum() * 7
    want = torch.autograd.grad(nll, w, retain_graph=True)[0].norm() / (
        torch.autograd.grad(g, w, retain_graph=True)[0].norm() + 1e-4
    )
    torch.testing.assert_close(adaptive_weight(nll, g, w), want)


def test_perceptual_distance_is_zero_for_equal_images(classifier):
    from ganserve.eval.classifier import load_classifier

    d = PerceptualDistance(load_classifier(classifier)[0])
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.allclose(d(x, x), torch.zeros(2)) and (d(x, x.flip(3)) > 0).all()
