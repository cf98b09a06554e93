"""Training the class-conditional families (BigGAN, SAGAN) through the shared loop: finite steps, a class-by-row
snapshot grid, an export that loads with its standing statistics, and bit-exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ganserve
from ganserve.data import ImageDataset
from ganserve.train.loop import Trainer, TrainOptions
from tests.family_fixtures import family_registered

MODELS = {
    "biggan": dict(z_dim=12, embed_dim=8, channel_width=8, layers=[[True, 2, 1], [True, 1, 1]],
                   attention_layer_position=1, n_stats=3, d_channel_width=8, d_layers=[[True, 1], [False, 1]],
                   d_attention_layer_position=1),
    "sagan": dict(z_dim=8, g_channels=[16, 8, 8], attention_resolution=8, d_channel_width=8,
                  d_layers=[[True, 1], [False, 1]], d_attention_layer_position=1),
}  # fmt: skip
FAST = {"standing_batches": 2, "standing_batch_size": 8}


@pytest.fixture(scope="module", autouse=True)
def sagan_registered():
    with family_registered("sagan"):
        yield


@pytest.fixture(scope="module")
def data():
    """Three classes of 16x16 grey blobs at class-dependent places."""
    gen = torch.Generator().manual_seed(0)
    n = 48
    labels = torch.arange(n) % 3
    images = torch.zeros(n, 1, 16, 16, dtype=torch.uint8)
    for i in range(n):
        k = int(labels[i])
        images[i, 0, 2 + 4 * k : 6 + 4 * k, 4:12] = 200 + int(torch.randint(0, 50, [], generator=gen))
    return ImageDataset(images, labels, ["a", "b", "c"], "blobs")


def _opts(tmp_path, family, name, **kw) -> TrainOptions:
    base = dict(family=family, resolution=16, out_dir=str(tmp_path / name), steps=4, batch_size=4, snap=2, seed=5,
                conditional=True, model=MODELS[family], family_options=FAST)  # fmt: skip
    return TrainOptions(**{**base, **kw})


@pytest.mark.parametrize("family", ["biggan", "sagan"])
def test_train_snapshot_export_and_exact_resume(tmp_path, data, family):
    export = tmp_path / f"{family}.safetensors"
    straight = Trainer(_opts(tmp_path, family, "straight", export=str(export)), data, command="test")
    logs = [straight.train_step() for _ in range(2)]
    assert all(np.isfinite(v) for step in logs for v in step.values())
    assert {"G", "D_real", "D_fake"} <= set(logs[0])
    straight.snapshot()
    grid = np.asarray(Image.open(tmp_path / "straight" / "samples-000002.png"))
    assert grid.shape == (3 * 16, 8 * 16)  # one row per class
    model = ganserve.load(export)
    bn = next(m for m in model.modules() if hasattr(m, "running_vars"))
    assert not torch.all(bn.running_vars == 1)  # standing statistics were measured before the export
    imgs = model.sample(seeds=[0, 1], **{"class": "b"}).images
    assert imgs.shape == (2, 16, 16, 1) and imgs.std() > 0
    straight.run(progress=False)

    first = Trainer(_opts(tmp_path, family, "resumed", steps=2), data, command="test")
    first.run(progress=False)
    second = Trainer(_opts(tmp_path, family, "resumed"), data, command="test")
    assert second.resume() and second.step == 2
    second.run(progress=False)
    for (k, a), b in zip(straight.G_ema.state_dict().items(), second.G_ema.state_dict().values()):
        assert torch.equal(a, b), k
    for (k, a), b in zip(straight.D.state_dict().items(), second.D.state_dict().values()):
        assert torch.equal(a, b), k
    for (k, a), b in zip(straight.G.state_dict().items(), second.G.state_dict().values()):
        assert torch.equal(a, b), k


def test_class_conditional_families_refuse_unconditional_runs(tmp_path, data):
    with pytest.raises(ValueError, match="class-conditional"):
        Trainer(_opts(tmp_path, "biggan", "x", conditional=False), data, command="test")


def test_family_options_reach_the_step(tmp_path, data):
    t = Trainer(_opts(tmp_path, "biggan", "x", family_options={**FAST, "d_steps": 3, "g_lr": 1e-3}), data)
    assert t.training.options.d_steps == 3 and t.training.opt_G.param_groups[0]["lr"] == 1e-3
