"""StyleGAN2's pixels stay what they were before the family interface landed.

tests/data/stylegan2-reference holds npy grids rendered by the code as it was before the move onto the family
interface (requests.json says which request made each) from the generator then bundled (``generator.safetensors``,
the 136 kimg stylegan2-fashion-32, kept here when the bundled file was retrained); every refactor since must
reproduce them byte for byte. One deliberate numerical change re-rendered one file: issue 22's demodulation as a
styles^2 x sum(w^2) product and the per-row batched linear moved one pixel of interp-z.npy (frame 4, row 3, column
5) from 8 to 9; the other 21,503 pixels of the five files were unchanged.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import ganserve
from ganserve.sampling import sample

REF = Path(__file__).parent / "data" / "stylegan2-reference"
REQUESTS = json.loads((REF / "requests.json").read_text())


@pytest.fixture(scope="module")
def bundled():
    return ganserve.load(REF / "generator.safetensors")


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_bundled_pixels_unchanged(bundled, name):
    want = np.load(io.BytesIO((REF / f"{name}.npy").read_bytes()), allow_pickle=False)
    got = sample(bundled, REQUESTS[name]).images
    assert got.shape == want.shape
    assert np.array_equal(got, want)
