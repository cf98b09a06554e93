"""The trained-here classifier: save/load round trip, refusal of corrupt or foreign files, and the bundled one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ganserve
from ganserve.checkpoint import CheckpointError, read_metadata
from ganserve.data import ImageDataset
from ganserve.eval.classifier import (
    DEFAULT_NAME,
    TrainSettings,
    accuracy_by_class,
    load_classifier,
    predict,
    prepare,
    save_classifier,
    train_classifier,
)
from ganserve.loading import bundled_dir


def _bars(n: int, seed: int) -> ImageDataset:
    """3 classes of 16x16 grey images: a bright horizontal bar, a vertical bar, or a square, at random places."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, 16, 16, dtype=torch.uint8)
    labels = torch.arange(n) % 3
    for i in range(n):
        a, b = (int(v) for v in torch.randint(2, 12, (2,), generator=g))
        if labels[i] == 0:
            images[i, 0, a, 2:14] = 255
        elif labels[i] == 1:
            images[i, 0, 2:14, b] = 255
        else:
            images[i, 0, a : a + 4, b : b + 4] = 255
    return ImageDataset(images, labels, ["h", "v", "square"], "bars")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    settings = TrainSettings(epochs=3, batch_size=16, width=4, seed=0, lr=1e-2)
    result = train_classifier(_bars(96, 0), _bars(30, 1), settings, progress=False)
    path = tmp_path_factory.mktemp("clf") / "bars.safetensors"
    save_classifier(path, result, "bars", settings, command="test")
    return result, path


def test_round_trip_keeps_weights_predictions_and_the_model_card(trained):
    result, path = trained
    model, meta = load_classifier(path)
    for k, v in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    images = _bars(12, 2).images.permute(0, 2, 3, 1).numpy()
    assert np.array_equal(predict(model, images), predict(result.model, images))
    assert meta["kind"] == "classifier" and meta["training"]["command"] == "test"
    assert meta["test_accuracy"] == result.test_accuracy
    assert list(meta["per_class_test_accuracy"]) == ["h", "v", "square"]
    assert meta["config"]["class_names"] == ["h", "v", "square"]


def test_training_is_deterministic_per_seed(trained):
    result, _ = trained
    again = train_classifier(_bars(96, 0), _bars(30, 1), TrainSettings(epochs=3, batch_size=16, width=4, lr=1e-2),
                             progress=False)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), again.model.state_dict().values()))


@pytest.mark.parametrize("where", ["tensors", "header", "truncate"])
def test_a_corrupt_file_is_refused(trained, tmp_path, where):
    _, path = trained
    raw = bytearray(path.read_bytes())
    if where == "tensors":
        raw[-10] ^= 0xFF  # a weight byte: only the content hash can tell
    elif where == "header":
        raw[12] ^= 0xFF
    else:
        raw = raw[: len(raw) // 2]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"bad\.safetensors"):
        load_classifier(bad)


def test_a_model_is_not_a_classifier_and_a_classifier_is_not_a_model(trained, tiny_path, tmp_path, monkeypatch):
    _, path = trained
    with pytest.raises(CheckpointError, match="not a classifier"):
        load_classifier(tiny_path)
    with pytest.raises(CheckpointError, match="not a model"):
        ganserve.load(path)
    d = tmp_path / "models"
    d.mkdir()
    (d / "bars.safetensors").write_bytes(path.read_bytes())
    monkeypatch.setenv("GANSERVE_CHECKPOINTS", str(d))
    assert "bars" not in ganserve.available_models()


def test_prepare_converts_colour_and_size_as_trained(trained):
    result, _ = trained
    cfg = result.model.config  # 16 px grey
    rgb = np.zeros((2, 32, 32, 3), np.uint8)
    rgb[0] = 255
    x = prepare(rgb, cfg)
    assert x.shape == (2, 1, 16, 16)
    assert x[0].min() == pytest.approx(1.0, abs=1e-5) and x[1].max() == -1.0


def test_accuracy_by_class():
    mean, per = accuracy_by_class(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 4)
    assert mean == 0.75 and per == [1.0, 1.0, 0.5, None]


def test_the_bundled_classifier_is_accurate_on_real_test_images():
    from ganserve.data import load_fashion_mnist

    path = bundled_dir() / f"{DEFAULT_NAME}.safetensors"
    model, meta = load_classifier(path)
    assert meta["test_accuracy"] >= 0.91 and "ganserve eval --train-classifier" in meta["training"]["command"]
    assert read_metadata(path)["kind"] == "classifier"
    test = load_fashion_mnist(32, split="test")
    images = test.images[:1000].permute(0, 2, 3, 1).numpy()
    acc, _ = accuracy_by_class(predict(model, images), test.labels[:1000].numpy(), 10)
    assert acc >= 0.89  # the card's figure is over all 10,000; 1,000 of them stay close to it
