"""BigGAN ONNX export: one graph with class vector and truncation as inputs, parity <= 1e-4 at batch 1/3/8 on fresh
inputs, a dynamic batch, and the onnx backend giving the eager images for every kind of request."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import ganserve
from ganserve.backends import load_backend
from ganserve.export import export_graphs, get_exporter, load_exported, read_manifest
from ganserve.export.onnx import OnnxRunner
from ganserve.export.parity import FP32_TOLERANCE, measure
from ganserve.sampling import plan, render, sample
from tests.family_fixtures import make_tiny_biggan, save_tiny


@pytest.fixture(scope="module")
def eager(tmp_path_factory):
    return ganserve.load(save_tiny(tmp_path_factory.mktemp("biggan-export"), "tiny-biggan", make_tiny_biggan()))


@pytest.fixture(scope="module")
def exported(eager, tmp_path_factory):
    return export_graphs(eager, "onnx", tmp_path_factory.mktemp("onnx") / "tiny-biggan-onnx")


def test_one_graph_with_class_and_truncation_inputs(exported, eager):
    manifest = read_manifest(exported.path)
    assert manifest["family"] == "biggan" and list(manifest["graphs"]) == ["generator"]
    assert manifest["graphs"]["generator"]["inputs"] == ["z", "class_vector", "truncation"]
    assert max(manifest["parity"]["generator"].values()) <= FP32_TOLERANCE
    sess = ort.InferenceSession(str(exported.path / "generator.onnx"), providers=["CPUExecutionProvider"])
    assert all(isinstance(i.shape[0], str) for i in sess.get_inputs())  # dynamic batch on every input


def test_parity_on_fresh_inputs(exported, eager):
    (spec,) = get_exporter("biggan").graphs(eager)
    errors = measure(spec, OnnxRunner(exported.path / "generator.onnx"), (1, 3, 8), seed=99)
    assert max(errors.values()) <= FP32_TOLERANCE, errors


def test_truncation_and_class_are_live_inputs(exported, eager):
    runner = OnnxRunner(exported.path / "generator.onnx")
    z = torch.randn(2, eager.config.z_dim).clamp(-1, 1) * 0.5
    cv = torch.eye(3)[[0, 0]]
    for t in (0.5, 0.37, 1.0):
        got = runner(z, cv, torch.full([2], t))
        assert (got - eager(z, cv, torch.full([2], t))).abs().max() <= FP32_TOLERANCE
    a = runner(z, cv, torch.tensor([0.5, 1.0]))
    assert (a[0] - a[1]).abs().max() > 1e-4  # same z and class, different statistics
    b = runner(z, torch.eye(3)[[0, 2]], torch.tensor([0.5, 0.5]))
    assert (b[0] - b[1]).abs().max() > 1e-4


REQUESTS = [
    {"seeds": "0-9", "class": 1, "truncation_psi": 0.7},
    {"seeds": [3, 4], "classes": [2, "circle"]},
    {"seeds": [5], "class": 0, "interpolate": {"to_class": 2, "to_seed": 8, "steps": 3}, "truncation_psi": 0.45},
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: ",".join(sorted(r)))
def test_onnx_backend_gives_eager_images(exported, eager, request_):
    backend = load_backend("onnx", exported.path)
    a, b = sample(eager, request_), sample(backend, request_)
    diff = np.abs(a.images.astype(int) - b.images.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert a.params == b.params


def test_onnx_backend_batches_mixed_requests(exported):
    backend = load_exported(exported.path, fmt="onnx")
    plans = [plan(backend, seeds=[1, 2], truncation_psi=psi, **{"class": k}) for psi, k in [(1.0, 0), (0.3, 2)]]
    together = np.concatenate(render(backend, plans, batch_size=4))
    alone = np.concatenate([render(backend, [p], batch_size=4)[0] for p in plans])
    assert np.array_equal(together, alone)
    assert backend.family == "biggan" and backend.name == "tiny-biggan"


@pytest.mark.slow
def test_onnx_archive_serves_in_torchserve(exported, eager, tmp_path, monkeypatch):
    """A .mar carrying BigGAN's ONNX graph, backend onnx: a real TorchServe loads it and answers class requests."""
    import io

    from PIL import Image

    from ganserve.export.mar import export_mar
    from ganserve.serving.launcher import Server

    ckpt = tmp_path / "tiny-biggan.safetensors"
    ganserve.save_generator(ckpt, make_tiny_biggan(), dataset="random", training={"step": 0})
    result = export_mar(ckpt, tmp_path / "tiny-biggan.mar", backend="onnx", graphs=exported.path, batch_size=2)
    monkeypatch.setenv("GANSERVE_EXPORT_CACHE", str(tmp_path / "export-cache"))
    body = {"seeds": [3], "class": "square", "truncation_psi": 0.6}
    with Server({}, tmp_path / "ts", archives=[result.path]) as server:
        resp = server.client().predict("tiny-biggan", body)
        assert resp.status_code == 200, resp.text
        served = np.asarray(Image.open(io.BytesIO(resp.content))).astype(int)
        with pytest.raises(RuntimeError, match=r'400: .*"field": "class"'):
            server.client().predict("tiny-biggan", {"seeds": [3], "class": "hexagon"})
    expected = sample(eager, body).images[0].astype(int)
    assert np.abs(served - expected).max() <= 1
