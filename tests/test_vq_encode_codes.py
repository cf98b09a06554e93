"""Encoding to codes takes a shorter path than ``encode`` (``VectorQuantizer.nearest``: the indices alone, the
codebook's squared norms kept between calls; in-place swish and residual adds in the blocks): the codes, and the
quantised maps and decodings, must stay the ones the full path gives."""

from __future__ import annotations

import pytest
import torch

import ganserve
from ganserve.loading import available_models
from ganserve.models.layers import VectorQuantizer, batch_invariant

VQ_MODELS = [m for m in ("vqgan-fashion-32", "vit-vqgan-fashion-32") if m in available_models()]


def _images(n: int, resolution: int, channels: int) -> torch.Tensor:
    """64 seeds' images: each seed's own random picture in [-1, 1], smoothed so it looks like an image to an
    encoder (structure at several scales), not white noise."""
    out = []
    for seed in range(n):
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(1, channels, resolution // 4, resolution // 4, generator=g)
        fine = torch.rand(1, channels, resolution, resolution, generator=g)
        img = torch.nn.functional.interpolate(coarse, size=resolution, mode="bilinear") * 0.8 + fine * 0.2
        out.append(img * 2 - 1)
    return torch.cat(out)


@pytest.mark.parametrize("name", VQ_MODELS)
@pytest.mark.parametrize("invariant", [False, True], ids=["plain", "batch-invariant"])
def test_encode_codes_are_the_full_encodes_codes(name, invariant):
    model = ganserve.load(name)
    fs = model.first_stage
    cfg = fs.config
    x = _images(64, int(cfg.resolution), int(cfg.img_channels))
    with torch.no_grad(), batch_invariant(invariant):
        full = fs.encode(x).indices.reshape(64, *fs.code_shape)
        for b in (1, 7, 64):
            codes = torch.cat([model.encode_codes(x[i : i + b]) for i in range(0, 64, b)])
            assert torch.equal(codes, full), f"batch of {b}"
    assert len(full.unique()) > 8  # the images reach many codes (a constant picture would prove little)


@pytest.mark.parametrize("kw", [{}, {"ema": True}], ids=["learned", "ema"])
def test_nearest_is_forwards_indices_and_follows_the_codebook(kw):
    torch.manual_seed(0)
    vq = VectorQuantizer(64, 8, **kw).eval()
    with torch.no_grad():
        vq.embedding.weight.normal_()
        z = torch.randn(5, 8, 6, 7)
        assert torch.equal(vq.nearest(z), vq(z).indices)
        before = vq.nearest(z)
        vq.embedding.weight.mul_(-1.0)  # in place: the kept squared norms are the same, the products are not
        vq.embedding.weight[:32].mul_(3.0)  # now the norms differ too
        after = vq.nearest(z)
        assert torch.equal(after, vq(z).indices) and not torch.equal(after, before)
        tokens = torch.randn(3, 10, 8)
        assert torch.equal(vq.nearest(tokens), vq(tokens).indices)
        with pytest.raises(ValueError, match="channels"):
            vq.nearest(torch.randn(2, 5, 3, 3))


def test_nearest_with_gradients_on_takes_the_op_and_agrees():
    torch.manual_seed(1)
    vq = VectorQuantizer(32, 4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    assert torch.equal(vq.nearest(z), vq(z).indices)


def test_cosine_codebooks_agree():
    torch.manual_seed(2)
    vq = VectorQuantizer(32, 10, lookup_dim=3, normalize=True).eval()
    with torch.no_grad():
        z = torch.randn(2, 9, 10)
        assert torch.equal(vq.nearest(z), vq(z).indices)
