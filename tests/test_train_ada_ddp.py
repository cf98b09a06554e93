"""Adaptive discriminator augmentation, data-parallel training under torchrun, device and mixed-precision options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganserve.checkpoint import read_tensors
from ganserve.train.augment import AdaController, AugmentPipe
from ganserve.train.loop import Trainer, TrainOptions

MODEL = '{"z_dim": 16, "w_dim": 16, "mapping_layers": 2, "channel_base": 128, "channel_max": 16}'


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.RandomState(0)
    for cls in ("a", "b"):
        (root / cls).mkdir()
        for i in range(8):
            Image.fromarray((rng.rand(16, 16, 3) * 255).astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_augmentation_off_is_the_identity_and_on_is_differentiable():
    x = torch.randn(8, 3, 16, 16, requires_grad=True)
    assert torch.equal(AugmentPipe(0.0)(x), x)
    torch.manual_seed(0)
    y = AugmentPipe(1.0)(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_each_augmentation_applies_with_probability_p():
    """At p = 0.5 about half the images change; the same seed gives the same augmentation."""
    x = torch.randn(4000, 1, 8, 8)
    torch.manual_seed(1)
    y = AugmentPipe(0.5)(x)
    changed = (y - x).abs().flatten(1).amax(1) > 1e-6
    # at least one of five augmentations hits with probability 1 - 0.5^5 (grey images: no saturation)
    assert 0.93 < float(changed.float().mean()) < 0.99
    torch.manual_seed(1)
    assert torch.equal(AugmentPipe(0.5)(x), y)


def test_translation_reflects_and_keeps_the_pixels():
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    pipe = AugmentPipe(1.0, brightness_std=0.0, contrast_std=0.0, cutout_size=0.0)
    torch.manual_seed(3)
    y = pipe(x)
    assert set(y.flatten().tolist()) <= set(x.flatten().tolist())  # flips and shifts only move pixels


def test_ada_moves_p_toward_the_target():
    pipe = AugmentPipe(0.0)
    ada = AdaController(pipe, target=0.6, interval=4, ada_kimg=1, batch_size=32)
    for step in range(8):  # D is sure of every real image: overfitting, p rises
        ada.accumulate(torch.ones(32))
        ada.update(step)
    assert pipe.p == pytest.approx(2 * 32 * 4 / 1000)
    assert ada.rt == 1.0
    saved = ada.state()
    for step in range(8, 24):  # D calls real images fake: p falls, never below 0
        ada.accumulate(-torch.ones(32))
        ada.update(step)
    assert pipe.p == 0.0
    ada.load(saved)
    assert pipe.p == pytest.approx(0.256)


def _opts(folder, out, steps, **family) -> TrainOptions:
    import json

    return TrainOptions(family="stylegan2", data=str(folder), resolution=16, out_dir=str(out), steps=steps,
                        batch_size=8, snap=steps or 1, model=json.loads(MODEL), threads=1,
                        family_options={"aug": "ada", "aug_p": 0.2, "ada_interval": 1, **family})  # fmt: skip


def test_ada_run_resumes_bit_exactly(folder, tmp_path):
    straight = Trainer(_opts(folder, tmp_path / "a", 4))
    straight.run(progress=False)
    half = Trainer(_opts(folder, tmp_path / "b", 2))
    half.run(progress=False)
    resumed = Trainer(_opts(folder, tmp_path / "b", 4))
    assert resumed.resume() and resumed.step == 2
    resumed.run(progress=False)
    a, _ = read_tensors(tmp_path / "a" / "training-state.safetensors")
    b, _ = read_tensors(tmp_path / "b" / "training-state.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert float(a["ada.p"]) != 0.2  # p moved


def test_bf16_mixed_precision_step_runs(folder, tmp_path):
    opts = _opts(folder, tmp_path / "amp", 1)
    opts.amp, opts.device = "bf16", "cpu"
    t = Trainer(opts)
    logs = t.train_step()
    assert all(np.isfinite(v) for v in logs.values())
    with pytest.raises(ValueError, match="amp"):
        TrainOptions(amp="fp8")


@pytest.mark.slow
def test_two_processes_equal_one_process_on_the_same_global_batch(folder, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun ships with torch"
    args = ["train", "stylegan2", "--data", str(folder), "--resolution", "16", "--steps", "2", "--batch", "8",
            "--snap", "2", "--model", MODEL, "--threads", "1", "--aug", "ada", "--aug-p", "0.3",
            "--ada-interval", "1"]  # fmt: skip
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "ganserve.cli", *args, "--out-dir", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "ganserve.cli", *args, "--out-dir",
                          str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    a, _ = read_tensors(tmp_path / "one" / "training-state.safetensors")
    b, _ = read_tensors(tmp_path / "two" / "training-state.safetensors")
    assert set(a) == set(b)
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert worst < 1e-5, worst  # the same update, up to the order of floating-point sums
    assert float(a["ada.p"]) == float(b["ada.p"])
    assert float(a["loss.pl_mean"]) == pytest.approx(float(b["loss.pl_mean"]))
