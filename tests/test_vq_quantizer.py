"""The vector quantiser of the VQ families: nearest code (l2 and cosine), straight-through gradients, the EMA codebook,
dead-code restarts, usage statistics; and the VQ-GAN first stage's taming-transformers names."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ganserve.models.layers import VectorQuantizer, codebook_usage
from ganserve.models.vqgan import PatchDiscriminator, VQGANFirstStage, VQGANFirstStageConfig


def _vq(**kw) -> VectorQuantizer:
    torch.manual_seed(0)
    vq = VectorQuantizer(kw.pop("num_codes", 12), kw.pop("dim", 6), **kw)
    with torch.no_grad():
        vq.embedding.weight.normal_()
        if vq.ema:
            vq.embedding.embed_avg.copy_(vq.embedding.weight)
    return vq


def test_l2_picks_the_nearest_code():
    vq = _vq()
    z = torch.randn(3, 6, 4, 5)
    out = vq(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 6)
    assert torch.equal(out.indices.reshape(-1), torch.cdist(flat, vq.embedding.weight).argmin(1))
    torch.testing.assert_close(out.quantized, vq.lookup(out.indices))


def test_cosine_picks_the_most_similar_factorised_code():
    vq = _vq(dim=10, lookup_dim=3, normalize=True)
    z = torch.randn(2, 7, 10)  # tokens
    out = vq(z)
    low = F.normalize(vq.proj_in(z.reshape(-1, 10)), dim=1)
    sim = low @ F.normalize(vq.embedding.weight, dim=1).t()
    assert torch.equal(out.indices.reshape(-1), sim.argmax(1))


def test_straight_through_gradient_and_loss():
    vq = _vq(beta=0.25)
    z = torch.randn(2, 6, 3, 3, requires_grad=True)
    out = vq(z)
    g = torch.randn_like(z)
    (out.quantized * g).sum().backward(retain_graph=True)
    torch.testing.assert_close(z.grad, g)  # identity through the quantiser
    e = vq.embedding.weight[out.indices].permute(0, 3, 1, 2)
    torch.testing.assert_close(out.loss, 1.25 * F.mse_loss(z.detach(), e.detach()))


def test_ema_codebook_moves_to_the_mean_of_its_inputs():
    vq = _vq(num_codes=4, dim=2, ema=True, decay=0.5, eps=0.0)
    vq.train()
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]))
        vq.embedding.embed_avg.copy_(vq.embedding.weight)
        vq.embedding.cluster_size.fill_(1.0)
    z = torch.tensor([[[1.0, 1.0], [3.0, -1.0], [9.0, 1.0]]], requires_grad=True)  # two near code 0, one near code 1
    out = vq(z)
    assert out.indices.tolist() == [[0, 0, 1]]
    # cluster_size = 0.5 * 1 + 0.5 * count; embed_avg = 0.5 * old + 0.5 * sum; weight = embed_avg / cluster_size
    expected0 = (0.5 * torch.tensor([0.0, 0.0]) + 0.5 * torch.tensor([4.0, 0.0])) / 1.5
    expected1 = (0.5 * torch.tensor([10.0, 0.0]) + 0.5 * torch.tensor([9.0, 1.0])) / 1.0
    torch.testing.assert_close(vq.embedding.weight[0], expected0)
    torch.testing.assert_close(vq.embedding.weight[1], expected1)
    torch.testing.assert_close(vq.embedding.weight[2], torch.tensor([0.0, 10.0]) * 0.5 / 0.5)
    out.loss.backward()  # beta * commitment only: the codebook learns by EMA, never by gradient
    assert vq.embedding.weight.grad is None and z.grad is not None
    names = set(vq.state_dict())
    assert {"embedding.weight", "embedding.cluster_size", "embedding.embed_avg"} <= names and "usage" not in names


def test_dead_codes_restart_onto_recent_inputs():
    vq = _vq(num_codes=8, dim=2)
    with torch.no_grad():
        vq.embedding.weight[4:] = 1000.0  # far from every input: never picked
    vq.train()
    z = torch.randn(1, 64, 2)
    for _ in range(5):
        vq(z)
    assert (vq.usage[4:] == 0).all() and (vq.usage[:4] > 0).any()
    before = vq.embedding.weight.detach().clone()
    alive = vq.usage >= 0.01 * vq.usage.mean()
    moved = vq.restart_dead_codes(threshold=0.01, generator=torch.Generator().manual_seed(0))
    assert moved == int((~alive).sum()) >= 4
    w = vq.embedding.weight.detach()
    for k in (~alive).nonzero()[:, 0].tolist():
        assert (w[k] - z[0]).abs().sum(1).min() == 0  # now exactly one of the recent inputs
    assert torch.equal(w[alive], before[alive])  # codes in use stay where they are
    assert (vq.usage > 0).all()  # restarted codes get a grace period


def test_codebook_usage():
    perplexity, used = codebook_usage(torch.tensor([0, 1, 2, 3] * 5), 8)
    assert math.isclose(perplexity, 4.0, rel_tol=1e-9) and used == 0.5


def test_first_stage_and_discriminator_use_taming_names():
    cfg = VQGANFirstStageConfig(resolution=16, ch=8, ch_mult=[1, 2], z_channels=8, embed_dim=4, n_embed=16,
                                norm_groups=4, attn_resolutions=[8])  # fmt: skip
    names = set(VQGANFirstStage(cfg).state_dict())
    for name in [
        "encoder.conv_in.weight", "encoder.down.0.block.0.norm1.weight", "encoder.down.0.downsample.conv.weight",
        "encoder.down.1.block.0.nin_shortcut.weight", "encoder.down.1.attn.0.q.weight",
        "encoder.mid.block_1.conv1.bias",
        "encoder.mid.attn_1.proj_out.weight", "encoder.norm_out.weight", "encoder.conv_out.weight",
        "decoder.conv_in.weight", "decoder.mid.block_2.norm2.bias", "decoder.up.1.block.1.conv2.weight",
        "decoder.up.1.upsample.conv.weight", "decoder.up.0.block.0.nin_shortcut.weight", "decoder.conv_out.weight",
        "quant_conv.weight", "post_quant_conv.bias", "quantize.embedding.weight",
    ]:  # fmt: skip
        assert name in names, name
    d_names = set(PatchDiscriminator(1, 8, 2).state_dict())
    assert {"main.0.weight", "main.2.weight", "main.3.running_mean", "main.5.weight"} <= d_names
