"""ProGAN: equalized lr, minibatch stddev, the fade-in of each new resolution in G and D, the growth schedule,
resuming mid-fade bit-exactly, requests without style fields, and export of a model mid-growth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ganserve
from ganserve.models.layers import EqualizedConv2d, EqualizedLinear, MinibatchStd, downscale2d, upscale2d
from ganserve.models.progan import (
    FeatureMapDense,
    ProGANConfig,
    ProGANDiscriminator,
    ProGANGenerator,
    lod_of,
    progress_of,
)
from ganserve.requests import RequestError
from ganserve.sampling import describe, plan, sample
from ganserve.train.loop import Trainer, TrainOptions
from ganserve.train.progan import GrowthOptions, GrowthSchedule, fade_reals

TINY = dict(resolution=16, img_channels=1, z_dim=16, channel_base=128, channel_max=16)


def tiny_g(seed: int = 0, **kw) -> ProGANGenerator:
    torch.manual_seed(seed)
    return ProGANGenerator(ProGANConfig(**{**TINY, **kw})).eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------------------------------
# Layers


def test_equalized_lr_layers_have_unit_variance_outputs_at_init():
    torch.manual_seed(0)
    x = torch.randn(64, 128, 8, 8)
    conv = EqualizedConv2d(128, 128, 3, activation=None)
    assert conv(x)[:, :, 1:-1, 1:-1].std().item() == pytest.approx(1.0, abs=0.05)  # interior: no zero padding
    # With the leaky ReLU, the sqrt(2) gain keeps the second moment at ~1 (He): 2 * (0.5 + 0.5 * 0.2^2) = 1.04.
    act = EqualizedConv2d(128, 128, 3)(x)[:, :, 1:-1, 1:-1]
    assert act.square().mean().item() == pytest.approx(1.04, abs=0.06)
    z = torch.randn(4096, 256)
    assert EqualizedLinear(256, 256)(z).std().item() == pytest.approx(1.0, abs=0.05)
    assert EqualizedLinear(256, 256, lr_multiplier=0.01)(z).std().item() == pytest.approx(1.0, abs=0.05)
    dense = FeatureMapDense(256, 32)
    pre = torch.nn.functional.linear(z, dense.weight * dense.weight_gain)
    assert pre.std().item() == pytest.approx(1.0, abs=0.05)


def test_minibatch_stddev_adds_one_channel_with_the_groups_std():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4)
    y = MinibatchStd(group_size=4)(x)
    assert y.shape == (8, 4, 4, 4) and torch.equal(y[:, :3], x)
    # Groups are strided: sample j is in group j % (N / G), with samples j, j + 2, j + 4, j + 6.
    for j in range(8):
        group = x[j % 2 :: 2]
        std = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(y[j, 3], std.expand(4, 4), atol=1e-6)
    assert not torch.allclose(y[0, 3], y[1, 3])


# ---------------------------------------------------------------------------------------------------------------------
# Progressive growing


def test_lod_and_progress():
    assert lod_of(16, 1.0, 16) == 0 and lod_of(8, 1.0, 16) == 1 and lod_of(16, 0.0, 16) == 1
    assert lod_of(16, 0.25, 16) == 0.75 and lod_of(8, 0.5, 16) == 1.5
    assert progress_of(0.0, 16) == (16, 1.0) and progress_of(0.75, 16) == (16, 0.25)
    assert progress_of(1.75, 16) == (8, 0.25) and progress_of(2.0, 16) == (4, 1)
    G = tiny_g()
    assert G.progress == (16, 1.0)  # a new model is fully grown: what loading a shipped checkpoint gives
    G.set_progress(8, 0.5)
    assert G.progress == (8, 0.5) and float(G.lod) == 1.5
    for bad in [(32, 1.0), (4, 0.5), (8, 1.5), (6, 1.0)]:
        with pytest.raises(ValueError):
            G.set_progress(*bad)


@pytest.mark.parametrize("res", [8, 16])
def test_generator_fade_in(res):
    G = tiny_g()
    z = torch.randn(4, 16)
    old = G(z, resolution=res // 2, alpha=1.0, full_size=False)
    # alpha 0: the previous resolution's image, up-sampled (bit for bit).
    assert torch.equal(G(z, resolution=res, alpha=0.0, full_size=False), upscale2d(old))
    assert torch.equal(G(z, resolution=res, alpha=0.0), G(z, resolution=res // 2))
    # alpha 1: the new resolution's own path.
    x = G.b4(G.embed(z, None))
    for r in range(3, int(math.log2(res)) + 1):
        x = getattr(G, f"b{2**r}")(x)
    new = getattr(G, f"b{res}").torgb(x)
    assert torch.equal(G(z, resolution=res, alpha=1.0, full_size=False), new)
    mid = G(z, resolution=res, alpha=0.3, full_size=False)
    assert torch.allclose(mid, 0.7 * upscale2d(old) + 0.3 * new, atol=1e-6)
    assert G(z, resolution=res, alpha=0.3).shape == (4, 1, 16, 16)  # always the final size out


@pytest.mark.parametrize("res", [8, 16])
def test_discriminator_fade_in(res):
    torch.manual_seed(1)
    D = ProGANDiscriminator(ProGANConfig(**TINY)).eval()
    img = torch.randn(4, 1, res, res)
    # alpha 0: the previous resolution's critic on the box-down-sampled image; full-size input gives the same.
    at0 = D(img, resolution=res, alpha=0.0)
    assert torch.equal(at0, D(downscale2d(img), resolution=res // 2))
    assert torch.allclose(D(upscale2d(img, 16 // res), resolution=res, alpha=0.0), at0, atol=1e-5)
    x = getattr(D, f"b{res}")(getattr(D, f"b{res}").fromrgb(img))
    for r in range(int(math.log2(res)) - 1, 2, -1):
        x = getattr(D, f"b{2**r}")(x)
    assert torch.equal(D(img, resolution=res, alpha=1.0), D.b4(x))
    assert not torch.allclose(D(img, resolution=res, alpha=0.5), at0)


def test_every_layer_trains_during_a_fade():
    G = tiny_g().requires_grad_(True)
    D = ProGANDiscriminator(ProGANConfig(**TINY))
    G.set_progress(16, 0.5)
    D.set_progress(16, 0.5)
    D(G(torch.randn(4, 16))).sum().backward()
    for name in ["b8.torgb.weight", "b16.torgb.weight", "b16.conv1.weight", "b4.dense.weight"]:
        assert G.get_parameter(name).grad.abs().sum() > 0, name
    for name in ["b8.fromrgb.weight", "b16.fromrgb.weight", "b16.conv0.weight", "b4.out.weight"]:
        assert D.get_parameter(name).grad.abs().sum() > 0, name
    assert D.b4.fromrgb.weight.grad is None  # not in use at 16 px


def test_growth_schedule_is_the_official_one():
    s = GrowthSchedule(GrowthOptions(phase_kimg=1.0, fade_kimg=2.0), 32)
    assert [s.lod(n) for n in (0, 999, 1000, 2000, 3000, 4000, 5000, 6000, 9000, 10**6)] == [
        3.0, 3.0, 3.0, 2.5, 2.0, 2.0, 1.5, 1.0, 0.0, 0.0
    ]  # fmt: skip
    assert s.progress(2000) == (8, 0.5) and s.progress(3000) == (8, 1.0)
    assert GrowthSchedule(GrowthOptions(start_resolution=8, phase_kimg=1, fade_kimg=1), 16).lod(0) == 1.0
    with pytest.raises(ValueError):
        GrowthOptions(start_resolution=64).check(32, 32, False)


def test_fade_reals_matches_the_generator_output_format():
    torch.manual_seed(0)
    real = torch.randn(2, 1, 16, 16)
    assert torch.equal(fade_reals(real, 0.0), real)
    assert torch.equal(fade_reals(real, 1.0), upscale2d(downscale2d(real)))
    half = fade_reals(real, 1.5)  # 8 px fading in: halfway between the 8 px and the 4 px image
    want = 0.5 * upscale2d(downscale2d(real)) + 0.5 * upscale2d(downscale2d(real, 4), 4)
    assert torch.allclose(half, want, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Training


def _data():
    from ganserve.data import ImageDataset

    g = torch.Generator().manual_seed(0)
    return ImageDataset(torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8, generator=g), name="random")


def _opts(tmp_path, name, family="progan", model=None, options=None, **kw) -> TrainOptions:
    """``options``: the family's options beyond the growth schedule; ``family_options`` replaces the schedule."""
    model = model or {"z_dim": 8, "channel_base": 64, "channel_max": 8}
    # batch 4, 8 px: 4 px for 2 steps, then 8 px fading in over 4 steps (alpha 0 at step 2, which is the 4 px
    # network exactly, then 0.25 a step), then 8 px.
    grow = kw.pop("family_options", {"phase_kimg": 0.008, "fade_kimg": 0.016})
    base = dict(family=family, resolution=8, out_dir=str(tmp_path / name), steps=8, batch_size=4, snap=3,
                model=model, seed=5, family_options={**grow, **(options or {})})  # fmt: skip
    return TrainOptions(**{**base, **kw})


def resume_mid_fade_is_bit_exact(tmp_path, family, model=None, options=None):
    data = _data()
    straight = Trainer(_opts(tmp_path, "straight", family, model, options), data, command="test")
    logs = [straight.train_step() for _ in range(8)]
    assert [(lg["resolution"], lg["alpha"]) for lg in logs] == [
        (4, 1), (4, 1), (4, 1), (8, 0.25), (8, 0.5), (8, 0.75), (8, 1), (8, 1)
    ]  # fmt: skip
    assert all(np.isfinite(v) for lg in logs for v in lg.values())

    first = Trainer(_opts(tmp_path, "resumed", family, model, options, steps=4), data, command="test")
    first.run(progress=False)  # snapshot at step 3 (alpha 0.25 done) and at step 4
    from ganserve.checkpoint import read_tensors

    tensors, meta = read_tensors(first.state_path)
    assert meta["step"] == 4 and int(tensors["progress.resolution"]) == 8
    assert float(tensors["progress.alpha"]) == 0.25  # step 3's alpha: mid-fade
    second = Trainer(_opts(tmp_path, "resumed", family, model, options), data, command="test")
    assert second.resume() and second.step == 4
    second.run(progress=False)
    for mod in ("G", "D", "G_ema"):
        a, b = getattr(straight, mod).state_dict(), getattr(second, mod).state_dict()
        for k in a:
            assert torch.equal(a[k], b[k]), (mod, k)
    for name in ("opt_G", "opt_D"):
        a = getattr(straight.training, name).state_dict()["state"]
        b = getattr(second.training, name).state_dict()["state"]
        assert a.keys() == b.keys() and all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)

    # The schedule is part of the run: resuming with another one is refused.
    other = _opts(tmp_path, "resumed", family, model, options, steps=10, family_options={"phase_kimg": 0.004})
    third = Trainer(other, data, command="test")
    assert third.resume()
    with pytest.raises(ValueError, match="schedule"):
        third.train_step()
    return straight


def test_resume_mid_fade_is_bit_exact(tmp_path):
    straight = resume_mid_fade_is_bit_exact(tmp_path, "progan")
    straight.export(tmp_path / "g.safetensors")
    G = ganserve.load(tmp_path / "g.safetensors")
    assert G.progress == (8, 1.0) and describe(G)["grown_to"] == {"resolution": 8, "alpha": 1.0}
    assert sample(G, seeds=[0, 1]).images.std() > 0


def test_optimizer_state_resets_when_a_fade_starts_and_ends(tmp_path):
    t = Trainer(_opts(tmp_path, "reset"), _data(), command="test")
    counts = []
    for _ in range(7):
        t.train_step()
        counts.append(int(next(iter(t.training.opt_D.state.values()))["step"]))
    assert counts == [1, 2, 3, 1, 2, 3, 1]  # reset at step 3 (the fade's first alpha > 0) and 6 (the fade ends)


# ---------------------------------------------------------------------------------------------------------------------
# Requests, checkpoints, export


@pytest.fixture(scope="module")
def progan_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("progan")
    G = tiny_g(3)
    ganserve.save_generator(d / "tiny-progan.safetensors", G, dataset="random", training={"step": 0})
    G.set_progress(16, 0.4)
    ganserve.save_generator(d / "tiny-progan-growing.safetensors", G, dataset="random", training={"step": 0})
    return d


def test_requests_refuse_style_fields_and_w(progan_path):
    G = ganserve.load(progan_path / "tiny-progan.safetensors")
    for body, field in [
        ({"truncation_psi": 0.5}, "truncation_psi"),
        ({"truncation_cutoff": 2}, "truncation_cutoff"),
        ({"noise_mode": "none"}, "noise_mode"),
        ({"style_mix": {"seeds": [1], "layers": "coarse"}}, "style_mix"),
        ({"class": 1}, "class"),  # unconditional
        ({"interpolate": {"to_seed": 3, "space": "w"}}, "interpolate.space"),
    ]:
        with pytest.raises(RequestError) as e:
            plan(G, {"seeds": [1], **body})
        assert e.value.field == field, body
    frames = sample(G, seeds=[1], interpolate={"to_seed": 7, "steps": 4}).images
    assert frames.shape == (4, 16, 16, 1)
    assert np.array_equal(frames[0], sample(G, seeds=[1]).images[0])
    assert np.array_equal(frames[-1], sample(G, seeds=[7]).images[0])
    assert "truncation_psi" not in describe(G)["request_schema"]["properties"]


def test_a_checkpoint_written_mid_growth_samples_as_it_was(progan_path):
    G = ganserve.load(progan_path / "tiny-progan-growing.safetensors")
    assert G.progress[0] == 16 and G.progress[1] == pytest.approx(0.4, abs=1e-3)  # lod stored in fp16
    z = torch.from_numpy(np.random.RandomState(2).randn(1, 16)).float().repeat(2, 1)
    want = G(z, resolution=16, alpha=G.progress[1])
    assert torch.equal(G(z), want)


def test_conditional_progan():
    G = tiny_g(c_dim=3, class_names=["a", "b", "c"])
    z = torch.randn(2, 16)
    assert not torch.allclose(G(z, torch.tensor([0, 0])), G(z, torch.tensor([1, 1])))
    D = ProGANDiscriminator(G.config)
    img = torch.randn(2, 1, 16, 16)
    scores = D.b4(D.b8(D.b16(D.b16.fromrgb(img))))  # [2, 3]: one score per class
    assert torch.equal(D(img, torch.tensor([2, 0])).flatten(), scores[[0, 1], [2, 0]])
    with pytest.raises(ValueError):
        ProGANConfig(**TINY, c_dim=2, class_names=["a"])


@pytest.mark.parametrize("name", ["tiny-progan", "tiny-progan-growing"])
def test_onnx_export_parity(progan_path, tmp_path, name):
    pytest.importorskip("onnxruntime")
    from ganserve.export import export_graphs, load_exported

    G = ganserve.load(progan_path / f"{name}.safetensors")
    result = export_graphs(G, "onnx", tmp_path / "onnx")
    assert max(result.parity["generator"].values()) <= 1e-4
    backend = load_exported(tmp_path / "onnx", fmt="onnx")
    assert backend.progress == pytest.approx(G.progress)
    want = sample(G, seeds=list(range(4))).images.astype(int)
    got = backend.sample(seeds=list(range(4))).images.astype(int)
    assert np.abs(got - want).max() <= 1
