"""The bundled checkpoint: loads by name, documents how it was made, and samples varied images."""

from __future__ import annotations

import numpy as np

import ganserve
from ganserve.checkpoint import read_metadata
from ganserve.loading import bundled_dir

REPO_CHECKPOINTS = bundled_dir()


def test_bundled_fashion_model_loads_and_samples():
    path = REPO_CHECKPOINTS / "stylegan2-fashion-32.safetensors"
    meta = read_metadata(path)
    assert meta["family"] == "stylegan2" and meta["dataset"] == "fashion-mnist"
    assert meta["training"]["command"].startswith("ganserve train stylegan2 --data fashion-mnist")
    assert meta["training"]["command"] in (REPO_CHECKPOINTS / "README.md").read_text().replace(" \\\n    ", " ")
    G = ganserve.load("stylegan2-fashion-32")
    imgs = G.sample(seeds="0-7").images
    assert imgs.shape == (8, 32, 32, 1)
    assert len({img.tobytes() for img in imgs}) == 8
    # Fashion-MNIST has a black background: the border is darker than the centre
    assert imgs[:, :2].mean() < imgs[:, 12:20, 12:20].mean()
    avg = G.sample(seeds="0-3", truncation_psi=0.0).images
    assert all(np.array_equal(avg[0], a) for a in avg)
