"""VectorQuantizer (ganserve.models.layers): nearest codes through ganserve.kernels.vq_nearest, the straight-through
estimator, the codebook/commitment loss, l2-normalised codes and the factorised lookup."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganserve.models.layers import VectorQuantizer


def _quantizer(**kw) -> VectorQuantizer:
    torch.manual_seed(0)
    vq = VectorQuantizer(kw.pop("num_codes", 24), kw.pop("dim", 8), **kw)
    with torch.no_grad():
        vq.codebook.weight.normal_()  # spread the codes out (the default init is tiny)
    return vq


def test_channels_first_forward_picks_the_nearest_code():
    vq = _quantizer()
    z = torch.randn(2, 8, 5, 3)
    out = vq(z)
    assert out.quantized.shape == z.shape and out.indices.shape == (2, 5, 3) and out.indices.dtype == torch.int64
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
    expected = torch.cdist(flat, vq.codebook.weight).argmin(1)
    assert torch.equal(out.indices.reshape(-1), expected)
    torch.testing.assert_close(out.quantized.permute(0, 2, 3, 1).reshape(-1, 8), vq.codebook.weight[expected])
    torch.testing.assert_close(out.quantized, vq.lookup(out.indices))


def test_loss_and_straight_through_gradients():
    vq = _quantizer(beta=0.25)
    z = torch.randn(3, 7, 8, requires_grad=True)  # tokens [N, L, D]
    out = vq(z)
    e = vq.codebook.weight[out.indices]
    mse = F.mse_loss(e, z.detach())
    torch.testing.assert_close(out.loss, mse * 1.25)
    g = torch.randn_like(z)
    (out.quantized * g).sum().backward(retain_graph=True)
    torch.testing.assert_close(z.grad, g)  # identity through the quantizer
    assert vq.codebook.weight.grad is None  # the codes learn only from the loss
    z.grad = None
    out.loss.backward()
    assert vq.codebook.weight.grad is not None and vq.codebook.weight.grad.abs().sum() > 0
    torch.testing.assert_close(z.grad, 0.25 * 2 * (z - e).detach() / z.numel())


def test_normalised_codes_use_cosine_similarity():
    vq = _quantizer(normalize=True)
    z = torch.randn(4, 8, 3, 3) * 5
    out = vq(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
    cos = F.normalize(flat, dim=1) @ F.normalize(vq.codebook.weight, dim=1).t()
    assert torch.equal(out.indices.reshape(-1), cos.argmax(1))
    norms = out.quantized.permute(0, 2, 3, 1).reshape(-1, 8).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_factorised_lookup_searches_in_the_low_dimensional_projection():
    vq = _quantizer(dim=16, lookup_dim=4, normalize=True)
    z = torch.randn(2, 16, 4, 4, requires_grad=True)
    out = vq(z)
    assert out.quantized.shape == z.shape and out.indices.shape == (2, 4, 4)
    low = F.normalize(vq.proj_in(z.detach().permute(0, 2, 3, 1).reshape(-1, 16)), dim=1)
    expected = (low @ F.normalize(vq.codebook.weight, dim=1).t()).argmax(1)
    assert torch.equal(out.indices.reshape(-1), expected)
    torch.testing.assert_close(out.quantized, vq.lookup(out.indices))
    out.quantized.sum().backward()
    assert z.grad is not None and vq.proj_in.weight.grad is not None and vq.proj_out.weight.grad is not None


def test_bad_input_names_the_problem():
    vq = _quantizer()
    with pytest.raises(ValueError, match="channels"):
        vq(torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        vq(torch.randn(8))
    with pytest.raises(ValueError, match="positive"):
        VectorQuantizer(0, 8)
