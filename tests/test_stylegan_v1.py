"""StyleGAN (v1): AdaIN, the learned constant, the two losses of the paper (logistic + R1, WGAN-GP + drift), resuming
a run mid-fade with either. The style fields (truncation, cutoff, mixing, noise modes, interpolation) are tested with
StyleGAN2's in tests/test_sampling.py (``style_model``); export parity in tests/test_conformance.py."""

from __future__ import annotations

import pytest
import torch

import ganserve
from ganserve.models.layers import AdaIN
from ganserve.models.stylegan import StyleGANConfig, StyleGANGenerator
from ganserve.train.loop import Trainer
from ganserve.train.progan import WGANGPOptions, wgan_gp_d_loss
from ganserve.train.stylegan import StyleGANOptions
from tests.test_progan import _data, _opts, resume_mid_fade_is_bit_exact

TINY_V1 = {"z_dim": 8, "w_dim": 8, "mapping_layers": 2, "channel_base": 64, "channel_max": 8}


def test_adain_output_has_the_styles_mean_and_std_per_channel():
    torch.manual_seed(0)
    layer = AdaIN(w_dim=6, channels=5)
    with torch.no_grad():
        layer.affine.bias.normal_()  # non-trivial styles: scale 1 + y_s and bias y_b both far from (1, 0)
    x = torch.randn(3, 5, 8, 8) * 4 + 2
    w = torch.randn(3, 6)
    out = layer(x, w)
    scale, bias = layer.styles(w)
    mean = out.mean(dim=[2, 3])
    std = out.var(dim=[2, 3], unbiased=False).sqrt()
    assert torch.allclose(mean, bias, atol=1e-5)
    assert torch.allclose(std, scale.abs(), atol=1e-4)
    # Each sample's statistics come from its own style: swapping the ws swaps the outputs' statistics.
    swapped = layer(x, w.flip(0)).mean(dim=[2, 3])
    assert torch.allclose(swapped, bias.flip(0), atol=1e-5)


def test_the_4px_layer_starts_from_the_learned_constant():
    torch.manual_seed(0)
    G = StyleGANGenerator(StyleGANConfig(resolution=8, img_channels=1, **TINY_V1)).eval()
    const = G.synthesis.b4.const
    assert torch.equal(const.const, torch.ones_like(const.const))  # the official init
    ws = G.mapping(torch.randn(4, 8))
    with torch.no_grad():
        const.const.copy_(torch.randn_like(const.const))
        a = G.synthesis(ws, noise_mode="none")
        const.const.mul_(2)  # instance norm: a scaled constant gives the same first layer...
        b = G.synthesis(ws, noise_mode="none")
        const.const.add_(torch.randn_like(const.const))  # ... another pattern does not
        c = G.synthesis(ws, noise_mode="none")
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)


class _LinearCritic(torch.nn.Module):
    """D(x) = <a, x>: its input gradient is a everywhere, so the gradient penalty is known in closed form."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(a)

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        return (x * self.a).sum(dim=[1, 2, 3]).unsqueeze(1)


@pytest.mark.parametrize("norm", [1.0, 2.0, 0.5])
def test_wgan_gp_loss_is_the_papers(norm):
    torch.manual_seed(0)
    a = torch.randn(1, 1, 4, 4)
    D = _LinearCritic(a / a.norm() * norm)
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    o = WGANGPOptions(gp_lambda=10.0, gp_target=1.0, drift=0.001)
    loss, logs = wgan_gp_d_loss(D, real, fake, None, None, o)
    with torch.no_grad():
        d_real, d_fake = D(real).double(), D(fake).double()
    want_w = float(d_real.mean() - d_fake.mean())
    want_gp = 10.0 * (norm - 1.0) ** 2
    want = -want_w + want_gp + 0.001 * float(d_real.square().mean())
    assert logs["W"] == pytest.approx(want_w, rel=1e-5)
    assert logs["gp"] == pytest.approx(want_gp, abs=1e-4)
    assert float(loss) == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_bad_loss_is_refused():
    with pytest.raises(ValueError, match="--loss must be one of logistic, wgan-gp"):
        StyleGANOptions(loss="hinge").check(32, 32, False)


@pytest.mark.parametrize("loss", ["logistic", "wgan-gp"])
def test_resume_mid_fade_is_bit_exact(tmp_path, loss):
    straight = resume_mid_fade_is_bit_exact(tmp_path, "stylegan", model=TINY_V1, options={"loss": loss})
    logged = straight.train_step()
    assert ("W" in logged and "gp" in logged) == (loss == "wgan-gp")
    assert ("r1" in logged) == (loss == "logistic")
    straight.export(tmp_path / "g.safetensors")
    G = ganserve.load(tmp_path / "g.safetensors")
    assert G.family == "stylegan" and G.progress == (8, 1.0)
    from ganserve.checkpoint import read_metadata

    assert read_metadata(tmp_path / "resumed" / "training-state.safetensors")["family_options"]["loss"] == loss


def test_the_two_losses_train_differently(tmp_path):
    runs = {}
    for loss in ("logistic", "wgan-gp"):
        t = Trainer(_opts(tmp_path, loss, "stylegan", TINY_V1, {"loss": loss}), _data(), command="test")
        for _ in range(3):
            t.train_step()
        runs[loss] = t.G.state_dict()
    assert any(not torch.equal(runs["logistic"][k], runs["wgan-gp"][k]) for k in runs["logistic"])
