"""StyleGAN2 model: shapes, modulation/demodulation numerics, truncation, discriminator, conditioning."""

from __future__ import annotations

import math

import pytest
import torch

from ganserve.models.layers import (
    EqualizedLinear,
    MinibatchStd,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)
from ganserve.models.stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator
from tests.conftest import TINY, make_tiny_generator


def test_generator_and_discriminator_shapes():
    G = make_tiny_generator()
    z = torch.randn(3, G.config.z_dim)
    ws = G.mapping(z)
    assert ws.shape == (3, G.num_ws, G.config.w_dim)
    # 16px: b4 (1 conv) + b8, b16 (2 convs each) + the last toRGB
    assert G.num_ws == 1 + 2 + 2 + 1
    img = G.synthesis(ws)
    assert img.shape == (3, 3, 16, 16)
    D = StyleGAN2Discriminator(G.config)
    assert D(img).shape == (3, 1)
    assert len(G.synthesis.noise_shapes()) == G.num_ws - 1


def test_fused_equals_non_fused_including_upsampling():
    G = make_tiny_generator()
    ws = G.mapping(torch.randn(4, G.config.z_dim))
    a = G.synthesis(ws, fused=True)
    b = G.synthesis(ws, fused=False)
    assert (a - b).abs().max() < 1e-5
    assert a.abs().max() > 0.01  # not a trivial all-zero comparison


def test_modulated_conv_matches_float64_reference():
    torch.manual_seed(1)
    x, w, s = torch.randn(2, 5, 7, 7), torch.randn(6, 5, 3, 3), torch.randn(2, 5)
    out = modulated_conv2d(x, w, s, padding=1, demodulate=True)
    x64, w64, s64 = x.double(), w.double(), s.double()
    expected = []
    for i in range(2):
        wi = w64 * s64[i].reshape(1, -1, 1, 1)
        wi = wi / wi.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        expected.append(torch.nn.functional.conv2d(x64[i : i + 1], wi, padding=1))
    assert (out.double() - torch.cat(expected)).abs().max() < 1e-4


def test_demodulation_keeps_unit_variance():
    torch.manual_seed(0)
    x = torch.randn(8, 64, 16, 16)  # unit-variance input
    w = torch.randn(64, 64, 3, 3)
    styles = torch.randn(8, 64) * 3 + 1  # arbitrary style scales
    y = modulated_conv2d(x, w, styles, padding=1, demodulate=True)
    std = y[:, :, 1:-1, 1:-1].std(dim=[0, 2, 3])  # interior pixels, per output channel
    assert ((std - 1).abs() < 0.1).all(), std
    y_raw = modulated_conv2d(x, w, styles, padding=1, demodulate=False)
    assert y_raw.std() > 3  # without demodulation the scale follows the styles


def test_upsample_fir_preserves_a_constant_image():
    f = setup_filter([1, 3, 3, 1])
    assert math.isclose(float(f.sum()), 1.0, rel_tol=1e-6)
    x = torch.full([1, 2, 4, 4], 0.7)
    up = upsample2d(x, f)
    assert up.shape == (1, 2, 8, 8)
    assert torch.allclose(up[:, :, 1:-1, 1:-1], torch.full_like(up[:, :, 1:-1, 1:-1], 0.7), atol=1e-6)
    # upfirdn2d with an identity filter is the identity
    assert torch.equal(upfirdn2d(x, torch.ones(1, 1)), x)


def test_equalized_lr_scales_at_runtime():
    layer = EqualizedLinear(100, 10, lr_multiplier=0.01)
    # stored weights are N(0, 1/lr^2); the effective weight is N(0, 1/fan_in)
    assert 50 < float(layer.weight.detach().std()) < 200
    eff = layer.weight.detach() * layer.weight_gain
    assert abs(float(eff.std()) - 0.1) < 0.02


def test_minibatch_std_appends_a_group_statistic():
    x = torch.randn(8, 4, 3, 3)
    y = MinibatchStd(group_size=4)(x)
    assert y.shape == (8, 5, 3, 3)
    assert torch.equal(y[:, :4], x)
    x_same = x[:1].repeat(8, 1, 1, 1)
    assert MinibatchStd(4)(x_same)[:, 4].abs().max() < 1e-3  # identical samples: zero spread


def test_truncation_psi_and_cutoff():
    G = make_tiny_generator()
    z = torch.randn(5, G.config.z_dim)
    plain = G.mapping(z)
    assert torch.allclose(G.mapping(z, truncation_psi=1.0), plain)
    avg = G.mapping(z, truncation_psi=0.0)
    assert torch.allclose(avg, G.mapping.w_avg.expand_as(avg))
    half = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(half[:, 2:], plain[:, 2:])
    assert torch.allclose(half[:, :2], G.mapping.w_avg.lerp(plain[:, :2], 0.5), atol=1e-6)


def test_w_avg_tracks_with_beta():
    G = make_tiny_generator()
    before = G.mapping.w_avg.clone()
    z = torch.randn(16, G.config.z_dim)
    ws = G.mapping(z, update_emas=True)
    expected = ws[:, 0].mean(0).lerp(before, G.config.w_avg_beta)
    assert torch.allclose(G.mapping.w_avg, expected, atol=1e-6)


def test_class_conditioning_in_mapping_and_projection_discriminator():
    cfg = StyleGAN2Config(**{**TINY, "c_dim": 3})
    G, D = StyleGAN2Generator(cfg), StyleGAN2Discriminator(cfg)
    z = torch.randn(2, cfg.z_dim).repeat(2, 1)
    c = torch.tensor([0, 0, 1, 1])
    ws = G.mapping(z, c)
    assert not torch.allclose(ws[0], ws[2])  # same z, different class
    img = G.synthesis(ws)
    scores = D(img, c)
    assert scores.shape == (4, 1)
    assert not torch.allclose(D(img, torch.tensor([2, 2, 2, 2])), scores)
    with pytest.raises(ValueError, match="class"):
        G.mapping(z, None)


def test_config_rejects_bad_resolution():
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Config(resolution=24)
