"""Shared layers of the class-conditional families: spectral norm, orthogonal regularisation, conditional batch norm
with standing statistics, self-attention."""

from __future__ import annotations

import torch
from torch import nn

from ganserve.models.layers import (
    ConditionalBatchNorm,
    SelfAttention,
    SNConv2d,
    SNEmbedding,
    SNLinear,
    batch_invariant,
    collect_statistics,
    orthogonal_regularization,
)


def top_singular_value(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1).double(), ord=2))


def test_spectral_norm_keeps_the_top_singular_value_near_one():
    torch.manual_seed(0)
    for layer in (SNLinear(40, 24), SNConv2d(8, 16, 3), SNEmbedding(10, 32)):
        with torch.no_grad():
            layer.weight_orig.mul_(7.0).add_(torch.randn_like(layer.weight_orig))
        layer.train()
        for _ in range(30):  # one power iteration per training forward converges u and v
            w = layer.sn_weight()
        assert abs(top_singular_value(w.detach()) - 1) < 1e-3
        assert top_singular_value(layer.weight_orig.detach()) > 5
        layer.eval()  # inference: no power iteration, the stored u and v
        u = layer.weight_u.clone()
        assert torch.equal(layer.sn_weight(), layer.sn_weight()) and torch.equal(u, layer.weight_u)


def test_spectral_norm_matches_torch_and_its_names():
    """Same names as torch.nn.utils.spectral_norm (what pytorch-pretrained-BigGAN's state dicts hold) and the same
    values, in training (power iteration) and in eval."""
    torch.manual_seed(1)
    ours = SNConv2d(6, 10, 3)
    ref = nn.utils.spectral_norm(nn.Conv2d(6, 10, 3, padding=1), eps=1e-4)
    assert set(ours.state_dict()) == set(ref.state_dict()) == {"weight_orig", "weight_u", "weight_v", "bias"}
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 5, 5)
    for mode in ("train", "eval", "train"):
        ours.train(mode == "train")
        ref.train(mode == "train")
        assert torch.allclose(ours(x), ref(x), atol=1e-6)
        assert torch.allclose(ours.weight_u, ref.weight_u) and torch.allclose(ours.weight_v, ref.weight_v)


def test_orthogonal_regularisation_is_zero_for_orthogonal_weights_only():
    q = torch.linalg.qr(torch.randn(16, 16))[0]
    assert float(orthogonal_regularization([q[:8]], 1.0)) < 1e-10  # orthonormal rows
    assert float(orthogonal_regularization([3 * q[:8]], 1.0)) < 1e-8  # only off-diagonal terms count, not norms
    conv = q[:8].reshape(8, 4, 2, 2)  # filters are flattened: [out, in*k*k]
    assert float(orthogonal_regularization([conv], 1.0)) < 1e-10
    w = torch.randn(8, 16)
    gram = w @ w.t()
    expected = 0.5 * (gram.square().sum() - gram.diagonal().square().sum())
    assert torch.allclose(orthogonal_regularization([w], 0.5), expected, rtol=1e-5)


def test_attention_with_gamma_zero_is_the_identity():
    torch.manual_seed(2)
    attn = SelfAttention(16).eval()
    x = torch.randn(3, 16, 8, 8)
    assert torch.equal(attn(x), x)
    with torch.no_grad():
        attn.gamma.fill_(0.5)
    assert not torch.equal(attn(x), x)
    weights = attn.attention(x)
    assert weights.shape == (3, 64, 16)  # every query over the max-pooled 4x4 keys
    assert torch.allclose(weights.sum(-1), torch.ones(3, 64))
    names = {k.split(".")[0] for k in attn.state_dict()}
    assert names == {"snconv1x1_theta", "snconv1x1_phi", "snconv1x1_g", "snconv1x1_o_conv", "gamma"}
    assert attn.snconv1x1_theta.weight_orig.shape[0] == 2 and attn.snconv1x1_g.weight_orig.shape[0] == 8


def test_attention_rows_do_not_depend_on_the_batch():
    torch.manual_seed(3)
    attn = SelfAttention(16).eval()
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    x = torch.randn(7, 16, 8, 8)
    with batch_invariant():
        whole = attn(x)
        parts = torch.cat([attn(x[0:2]), attn(x[2:4]), attn(x[4:7])])  # the core never renders a batch of 1
    assert torch.equal(whole, parts)


def test_conditional_batch_norm_interpolates_standing_statistics_per_row():
    bn = ConditionalBatchNorm(3, 5, n_stats=11).eval()
    with torch.no_grad():
        bn.running_means.copy_(torch.arange(11.0).reshape(11, 1).expand(11, 3))
        bn.running_vars.copy_(torch.linspace(1, 3, 11).reshape(11, 1).expand(11, 3))
    t = torch.tensor([0.0, 0.05, 0.5, 0.93, 1.0])
    mean, var = bn.statistics(t, 5)
    assert torch.allclose(mean[:, 0], t * 10)  # linear between slots: slot k holds truncation k / 10
    assert torch.allclose(var[:, 0], 1 + 2 * t)
    assert torch.equal(bn.statistics(torch.tensor([0.3]), 1)[0][0], bn.running_means[3])  # exact on the grid
    assert torch.equal(bn.statistics(None, 2)[0], bn.running_means[10].expand(2, 3))  # None: truncation 1
    # Per-row truncation in one batch equals separate calls.
    x, cond = torch.randn(5, 3, 4, 4), torch.randn(5, 5)
    together = bn(x, cond, t)
    alone = torch.cat([bn(x[i : i + 1], cond[i : i + 1], t[i : i + 1]) for i in range(5)])
    assert torch.allclose(together, alone, atol=1e-6)


def test_collected_statistics_are_batch_averages():
    bn = ConditionalBatchNorm(2, None, n_stats=3).eval()
    batches = [torch.randn(4, 2, 3, 3) * 2 + 5 for _ in range(3)]
    with collect_statistics(bn, 1):
        for b in batches:
            out = bn(b)
            assert abs(float(out.mean())) < 1e-5  # normalised with the batch's own statistics while collecting
    means = torch.stack([b.mean(dim=[0, 2, 3]) for b in batches]).mean(0)
    vars_ = torch.stack([b.var(dim=[0, 2, 3], unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(bn.running_means[1], means, atol=1e-5) and torch.allclose(bn.running_vars[1], vars_)
    assert torch.equal(bn.running_means[0], torch.zeros(2)) and torch.equal(bn.running_vars[2], torch.ones(2))
    assert bn._collect is None


def test_inference_reuses_the_normalised_weight_until_it_changes():
    layer = SNLinear(6, 4).eval()
    with torch.no_grad():
        a = layer.sn_weight()
        assert layer.sn_weight() is a  # cached
        layer.weight_orig.mul_(2.0)  # an in-place update (EMA, load_state_dict) invalidates it
        b = layer.sn_weight()
        assert b is not a and torch.allclose(b, a)  # spectral norm is scale-invariant
        layer.weight_u.copy_(torch.nn.functional.normalize(torch.randn(4), dim=0))
        assert layer.sn_weight() is not b
    assert layer.sn_weight().requires_grad  # with gradients: computed, never cached
