"""Upscaled downloads: the Seed tab's image enlarged 2x / 4x / 8x by nearest neighbour, its parameters embedded, and
the dropdown + file sit in the Seed tab; a bad factor is a named message."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

from ganserve.images import read_png_params
from ganserve.ui.app import build_app
from ganserve.ui.backend import LocalBackend
from ganserve.ui.page import Page
from ganserve.ui.panels import upscale


@pytest.fixture(scope="module")
def backend(tiny_models_dir):
    return LocalBackend({"tiny-cond": tiny_models_dir / "tiny-cond.safetensors"})


def array(path: str) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_enlarged_nearest_with_params(backend, factor):
    page = Page(backend)
    r = page.ex.seed_image({"model": "tiny-cond", "seed": 7, "psi": 0.7, "class": 1})
    path = upscale.upscaled(page, r["image"], factor)
    small, big = array(r["image"]), array(path)
    assert big.shape[:2] == (small.shape[0] * factor, small.shape[1] * factor)
    for dy in range(factor):  # every pixel of each block is the source pixel
        for dx in range(factor):
            np.testing.assert_array_equal(big[dy::factor, dx::factor], small)
    with open(path, "rb") as f:
        assert read_png_params(f.read()) == r["params"]
    assert f"-x{factor}.png" in path


def test_no_image_and_bad_factor(backend):
    page = Page(backend)
    assert upscale.upscaled(page, None, 4) is None
    r = page.ex.seed_image({"model": "tiny-cond", "seed": 1, "class": 0})
    with pytest.raises(ValueError, match="Invalid upscale factor: expected one of 2, 4, 8, got 3"):
        upscale.upscaled(page, r["image"], 3)


def test_dropdown_and_file_in_the_seed_tab(backend):
    app = build_app(backend)
    by_id = {getattr(b, "elem_id", None): b for b in app.blocks.values()}
    factor, file = by_id["upscale-factor"], by_id["upscale-file"]
    assert factor.value == 4 and [c[1] for c in factor.choices] == [2, 4, 8]
    seed_tab = next(b for b in app.blocks.values() if getattr(b, "id", None) == "seed")
    parents, block = [], file
    while getattr(block, "parent", None) is not None:
        block = block.parent
        parents.append(block)
    assert seed_tab in parents
