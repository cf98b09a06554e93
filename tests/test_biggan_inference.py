"""BigGAN's inference fast paths (issue 22): every norm's per-row affine computed at once, channels-last blocks with
1x1 convolutions as per-row products, and the attention product laid out channels-last. Each must give what the plain
per-layer computation gives (within float rounding), stay bitwise batch-invariant, and follow new weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganserve.models import biggan as biggan_module
from ganserve.models.biggan import BigGANConfig, BigGANGenerator
from ganserve.models.layers import ConditionalBatchNorm, SelfAttention, batch_invariant, conv2d

DEEP = dict(resolution=16, img_channels=3, c_dim=5, z_dim=16, embed_dim=8, channel_width=8, deep=True, n_stats=11,
            layers=[[False, 4, 4], [True, 4, 2], [True, 2, 1]], attention_layer_position=1)  # fmt: skip
HIER = dict(resolution=16, img_channels=3, c_dim=5, z_dim=24, embed_dim=8, channel_width=8, n_stats=11,
            layers=[[True, 4, 2], [True, 2, 1]], attention_layer_position=1)  # fmt: skip


def _model(cfg: dict, seed: int = 0) -> BigGANGenerator:
    torch.manual_seed(seed)
    g = BigGANGenerator(BigGANConfig(**cfg)).eval().requires_grad_(False)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, ConditionalBatchNorm):  # statistics that differ per truncation, so the gather matters
                m.running_means.normal_(0, 0.3)
                m.running_vars.uniform_(0.5, 1.5)
                if not m.conditional:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.2)
            if isinstance(m, SelfAttention):
                m.gamma.fill_(0.5)
    return g


def _inputs(n: int, cfg: dict, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([n, cfg["z_dim"]], generator=gen).clamp(-2, 2)
    return z, torch.randint(0, cfg["c_dim"], [n], generator=gen), torch.rand([n], generator=gen) * 0.9 + 0.1


def _per_norm(model: BigGANGenerator, *args: torch.Tensor) -> torch.Tensor:
    """The forward with every norm computing its own statistics and linears (the training-time code path)."""
    orig = biggan_module.Generator.affines
    biggan_module.Generator.affines = lambda *a, **k: None
    try:
        return model(*args)
    finally:
        biggan_module.Generator.affines = orig


@pytest.mark.parametrize("cfg", [DEEP, HIER], ids=["deep", "hierarchical"])
def test_the_fused_affines_give_the_per_norm_result(cfg, monkeypatch):
    model = _model(cfg)
    z, c, t = _inputs(6, cfg)
    with torch.no_grad():
        plain = _per_norm(model, z, c, t)
        with monkeypatch.context() as m:  # the fused path never calls a norm's own forward
            m.setattr(ConditionalBatchNorm, "forward", lambda *a, **k: pytest.fail("per-norm forward at inference"))
            fused = model(z, c, t)
    assert fused.shape == plain.shape == (6, 3, 16, 16)
    assert (fused - plain).abs().max() < 1e-5


@pytest.mark.parametrize("cfg", [DEEP, HIER], ids=["deep", "hierarchical"])
def test_rows_are_bitwise_the_same_alone_and_in_batches(cfg):
    model = _model(cfg)
    z, c, t = _inputs(16, cfg)
    with torch.no_grad(), batch_invariant():
        full = model(z, c, t)
        for b in (1, 2, 7):
            parts = [model(z[i : i + b], c[i : i + b], t[i : i + b]) for i in range(0, 16, b)]
            assert torch.equal(torch.cat(parts), full), f"batch of {b}"


def test_cached_tables_follow_new_weights_and_statistics():
    model, other = _model(DEEP, seed=0), _model(DEEP, seed=3)
    z, c, t = _inputs(3, DEEP)
    with torch.no_grad():
        before = model(z, c, t)
        model.load_state_dict(other.state_dict())
        after = model(z, c, t)
        assert not torch.allclose(before, after)
        assert torch.equal(after, other(z, c, t))
        bn = model.generator.layers[0].bn_1
        bn.running_means.add_(1.0)  # an in-place change to one norm's statistics
        assert not torch.equal(model(z, c, t), after)


def test_a_channels_last_1x1_convolution_is_a_batch_invariant_product():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 24, 8, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(40, 24, 1, 1, generator=gen), torch.randn(40, generator=gen)
    with torch.no_grad(), batch_invariant():
        full = conv2d(x, w, b)
        assert full.is_contiguous(memory_format=torch.channels_last)  # stays channels-last for the next layer
        assert (full - F.conv2d(x, w, b)).abs().max() < 1e-4
        for n in (1, 3, 16):
            assert torch.equal(torch.cat([conv2d(x[i : i + n], w, b) for i in range(0, 32, n)]), full)


def test_channels_last_attention_matches_the_nchw_layout():
    torch.manual_seed(0)
    attn = SelfAttention(16).eval()
    attn.gamma.data.fill_(0.7)
    x = torch.randn(4, 16, 8, 8)
    with torch.no_grad():
        plain = attn(x)
        cl = attn(x.contiguous(memory_format=torch.channels_last))
    assert cl.is_contiguous(memory_format=torch.channels_last)
    assert (plain - cl).abs().max() < 1e-5


def test_a_channels_last_sn_convolution_follows_its_weight():
    """SNConv2d keeps a channels-last copy of its normalised filter for channels-last maps: same result as on an
    NCHW map, and a new one once the weight changes."""
    from ganserve.models.layers import SNConv2d

    torch.manual_seed(0)
    conv = SNConv2d(8, 16, 3).eval()
    x = torch.randn(2, 8, 6, 6)
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), batch_invariant():
        before = conv(xc)
        assert (before - conv(x)).abs().max() < 1e-5
        conv.weight_orig.add_(torch.randn_like(conv.weight_orig))  # in place: a new normalised filter
        after = conv(xc)
        assert (after - F.conv2d(x, conv.sn_weight(), conv.bias, padding=1)).abs().max() < 1e-5
        assert not torch.allclose(before, after)


def test_the_vq_decoders_transposed_upsample_matches_upsample_then_convolve():
    """VQ-GAN's Upsample at inference: one stride-2 transposed convolution with a combined 4x4 filter on the source
    map instead of a 3x3 one on the 2x nearest-upsampled map; the same result up to float rounding, it follows a
    changed weight, and in batch-invariant mode every row gets its bits of a batch of one (32 channels, 3 and 7 rows:
    where oneDNN's batched deconvolution moved rows by an ulp at two threads)."""
    from ganserve.models.vqgan import Upsample, transposed_upsample_weight

    torch.manual_seed(0)
    up = Upsample(8).eval()
    up.conv.bias.data.normal_()
    x = torch.randn(3, 8, 5, 7)

    def reference() -> torch.Tensor:
        return up.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

    with torch.no_grad():
        fast = up(x)
        assert fast.shape == (3, 8, 10, 14)
        torch.testing.assert_close(fast, reference(), rtol=1e-5, atol=1e-5)
        w64 = transposed_upsample_weight(up.conv.weight.double())  # the filter algebra itself, in float64
        ref64 = F.conv2d(F.interpolate(x.double(), scale_factor=2.0), up.conv.weight.double(), padding=1)
        torch.testing.assert_close(F.conv_transpose2d(x.double(), w64, stride=2, padding=1), ref64, rtol=1e-12,
                                   atol=1e-12)  # fmt: skip
        up.conv.weight.add_(torch.randn_like(up.conv.weight))
        torch.testing.assert_close(up(x), reference(), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(up(x), fast)
        wide = Upsample(32).eval()
        xs = torch.randn(7, 32, 16, 16)
        with batch_invariant():
            alone = torch.cat([wide(xs[i : i + 1]) for i in range(7)])
            assert torch.equal(wide(xs), alone)
            assert torch.equal(wide(xs[:3]), alone[:3])
    x.requires_grad_(True)  # training: the plain path, so gradients reach the 3x3 weight as it is
    up(x).sum().backward()
    assert up.conv.weight.grad is not None
