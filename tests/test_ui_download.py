"""The whole grid to download: one PNG of the grid (the images row by row, their parameters embedded) and a zip of
the images, each its own PNG with its parameters, plus params.json; for a seed grid and a class-by-seed grid."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

import ganserve
from ganserve.images import make_grid, read_png_params
from ganserve.sampling import sample
from ganserve.ui.actions import Explorer
from ganserve.ui.backend import LocalBackend


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        a = np.asarray(im)
    return a[:, :, None] if a.ndim == 2 else a


@pytest.mark.parametrize(("name", "extra", "cols"), [("tiny", {}, 3), ("tiny-biggan", {"grid_classes": [2, 0]}, 3)])
def test_grid_png_and_zip(tiny_models_dir, tmp_path, name, extra, cols):
    from tests.family_fixtures import make_tiny_biggan, save_tiny

    path = save_tiny(tmp_path, name, make_tiny_biggan()) if extra else tiny_models_dir / f"{name}.safetensors"
    ex = Explorer(LocalBackend({name: path}))
    r = ex.grid({"model": name, "grid": "4-6" if extra else "0-8", "psi": 0.5, **extra})
    sheet_path, zip_path = r["grid_files"]
    kwargs = {"classes": [2, 0], "seeds": [4, 5, 6]} if extra else {"seeds": "0-8"}
    want = sample(ganserve.load(path), truncation_psi=0.5, **kwargs)
    assert len(want.images) == (6 if extra else 9)

    with open(sheet_path, "rb") as f:
        sheet = f.read()
    np.testing.assert_array_equal(pixels(sheet), make_grid(want.images, cols))  # one row per class; else a square
    assert read_png_params(sheet) == {"grid": want.params}

    with zipfile.ZipFile(zip_path) as z:
        names = z.namelist()
        assert names[-1] == "params.json" and len(names) == len(want.images) + 1
        assert json.loads(z.read("params.json")) == want.params
        for k, (img, prm) in enumerate(zip(want.images, want.params)):
            data = z.read(names[k])
            assert names[k].startswith(f"{k:03d}-{name}-seed")
            np.testing.assert_array_equal(pixels(data), img)
            assert read_png_params(data) == prm


def test_class_grid_captions_name_the_classes(tmp_path):
    """A class-by-seed grid captions each image with its class's name (the model's names), then its seed."""
    from tests.family_fixtures import make_tiny_biggan, save_tiny

    path = save_tiny(tmp_path, "tiny-biggan", make_tiny_biggan())
    ex = Explorer(LocalBackend({"tiny-biggan": path}))
    names = ex.spec("tiny-biggan").classes
    assert len(names) > 2
    r = ex.grid({"model": "tiny-biggan", "grid": "4-5", "psi": 0.5, "grid_classes": [2, 0]})
    captions = [c for _, c in r["grid_gallery"]]
    assert captions == [f"{names[c]} · seed {s}" for c in (2, 0) for s in (4, 5)]
    assert [c for _, c in ex.grid({"model": "tiny-biggan", "grid": "4-5", "psi": 0.5})["grid_gallery"]] == [
        "seed 4",
        "seed 5",
    ]
