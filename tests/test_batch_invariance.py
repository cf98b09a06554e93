"""Bitwise batch-size invariance: every bundled model (one per family) on every backend (eager, onnx, pt2) gives a
seed the same uint8 image whether it is rendered alone (a batch of one, which the core no longer pads where the
backend is row-invariant) or among 1, 6, 15, 31 or 63 other rows (batches of 2, 7, 16, 32, 64).

A few probe seeds are compared; the rest of each batch is filler seeds, so every batch size really runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganserve.backends import load_backend
from ganserve.loading import available_models, bundled_dir
from ganserve.models import invariant_ops, layers  # noqa: F401  (invariant_ops registers the ops)
from ganserve.sampling import describe, sample

BUNDLED = {p.stem: p for p in sorted(bundled_dir().glob("*.safetensors")) if p.stem in available_models()}
BACKENDS = ("eager", "onnx", "pt2")
BATCHES = (2, 7, 16, 32, 64)
PROBES = [5, 12]


def _request(model, seeds: list[int]) -> dict:
    req: dict = {"seeds": seeds}
    if describe(model)["classes"]:
        req["class"] = 1
    return req


def _params() -> list:
    return [pytest.param((m, b), id=f"{m}-{b}") for m in sorted(BUNDLED) for b in BACKENDS]


@pytest.fixture(scope="module", params=_params())
def model(request, tmp_path_factory, monkeypatch_module):
    name, backend = request.param
    if backend != "eager":
        pytest.importorskip("onnxruntime" if backend == "onnx" else "torch.export")
        monkeypatch_module.setenv("GANSERVE_EXPORT_CACHE", str(tmp_path_factory.getbasetemp() / "exports"))
    return load_backend(backend, BUNDLED[name])


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_a_seed_gives_the_same_pixels_at_every_batch_size(model):
    alone = sample(model, _request(model, PROBES), batch_size=1).images
    assert len({img.tobytes() for img in alone}) == len(PROBES)
    for b in BATCHES:
        seeds = PROBES + list(range(1000, 1000 + b - len(PROBES)))
        got = sample(model, _request(model, seeds), batch_size=b, max_images=64).images
        assert np.array_equal(got[: len(PROBES)], alone), f"batch of {b}"


def test_the_batch_invariant_convolutions_match_rows_alone_and_in_batches():
    """The layer behind it: a 3x3 and a 1x1 convolution and a 2x transposed one give each row the same bits alone as in
    batches of 2-64 (PyTorch's own dispatch gives a row of one other kernels, and 1x1 below 16 rows others again)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 32, 8, 8, generator=gen)
    w3, w1 = torch.randn(16, 32, 3, 3, generator=gen), torch.randn(1, 32, 1, 1, generator=gen)
    wt = torch.randn(32, 16, 3, 3, generator=gen)
    ops = [
        lambda t: layers.conv2d(t, w3, padding=1),
        lambda t: layers.conv2d(t, w1),
        lambda t: layers.conv_transpose2d(t, wt, stride=2),
        lambda t: layers.linear(t.flatten(1)[:, :288], w3.flatten(1)),
    ]
    with torch.no_grad(), layers.batch_invariant():
        for op in ops:
            full = op(x)
            for b in (1, 2, 7, 16, 32):
                assert torch.equal(torch.cat([op(x[i : i + b]) for i in range(0, 64, b)]), full)


def test_an_exported_program_keeps_the_batch_invariant_layers():
    """pt2 programs are traced under ``layers.invariant_ops()``: each linear and convolution is one
    ganserve::invariant_* node, so the program gives a row the bits eager batch-invariant mode gives it at every batch
    size (traced as aten ops, PyTorch picks their kernels by the batch size at run time: a 1x1 convolution of 16 or
    more rows, and linear layers, moved)."""
    gen = torch.Generator().manual_seed(1)
    w3, w1 = torch.randn(16, 8, 3, 3, generator=gen), torch.randn(4, 16, 1, 1, generator=gen)
    wt, wl = torch.randn(4, 4, 3, 3, generator=gen), torch.randn(24, 36, generator=gen)
    bl = torch.randn(24, generator=gen)

    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = layers.conv2d(layers.conv2d(x, w3, padding=1), w1)
            h = layers.conv_transpose2d(h, wt, stride=2)[:, :, :6, :6]
            return layers.linear(h.flatten(1)[:, :36], wl, bl)

    x = torch.randn(64, 8, 6, 6, generator=gen)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad(), layers.invariant_ops():
        program = torch.export.export(Net(), (x[:2],), dynamic_shapes=({0: batch},), strict=False)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert {f"ganserve.invariant_{op}.default" for op in ("conv2d", "conv_transpose2d", "linear")} <= targets
    assert not [t for t in targets if "convolution" in t or "linear" in t.replace("invariant_linear", "")]
    run = program.module()
    with torch.no_grad(), layers.batch_invariant():
        eager = Net()(x)
    with torch.no_grad():
        for b in (1, 2, 7, 16, 32, 64):
            assert torch.equal(torch.cat([run(x[i : i + b]) for i in range(0, 64, b)]), eager), f"batch of {b}"
