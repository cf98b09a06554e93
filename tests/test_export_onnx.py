"""ONNX export of StyleGAN2: checker, parity at batch 1/3/8, dynamic batch, and the onnx backend against eager."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

import ganserve
from ganserve.backends import load_backend
from ganserve.export import export_graphs, get_exporter, load_exported, read_manifest
from ganserve.export.onnx import OnnxRunner, export_graph
from ganserve.export.parity import FP32_TOLERANCE, measure
from ganserve.sampling import plan, render, sample


@pytest.fixture(scope="module")
def eager(tiny_path):
    return ganserve.load(tiny_path)


@pytest.fixture(scope="module")
def exported(eager, tmp_path_factory):
    """One dynamo export for the whole module (it is the slow part)."""
    out = tmp_path_factory.mktemp("onnx") / "tiny-onnx"
    return export_graphs(eager, "onnx", out)


def test_export_writes_checked_graphs_and_manifest(exported, eager):
    names = {name.split("/", 1)[1] for name, _ in exported.files}
    assert names == {"mapping.onnx", "synthesis.onnx", "constants.safetensors", "ganserve-export.json"}
    for graph in ("mapping", "synthesis"):
        onnx.checker.check_model(str(exported.path / f"{graph}.onnx"), full_check=True)
    manifest = read_manifest(exported.path)
    assert manifest == json.loads((exported.path / "ganserve-export.json").read_text())
    assert manifest["family"] == "stylegan2" and manifest["format"] == "onnx"
    assert manifest["num_ws"] == eager.num_ws
    assert manifest["checkpoint_info"]["content_hash"] == eager.checkpoint_info["content_hash"]
    assert manifest["graphs"]["synthesis"]["inputs"] == ["ws"] + [
        f"noise{i}" for i in range(len(eager.synthesis.noise_shapes()))
    ]
    assert max(manifest["parity"]["synthesis"].values()) <= FP32_TOLERANCE
    consts = load_file(str(exported.path / "constants.safetensors"))
    assert torch.equal(consts["w_avg"], eager.mapping.w_avg)
    assert not list(exported.path.parent.glob(".*"))  # no temporary leftovers


def test_parity_on_fresh_inputs_at_batch_1_3_8(exported, eager):
    specs = {s.name: s for s in get_exporter("stylegan2").graphs(eager)}
    for graph in ("mapping", "synthesis"):
        errors = measure(specs[graph], OnnxRunner(exported.path / f"{graph}.onnx"), (1, 3, 8), seed=1234)
        assert set(errors) == {1, 3, 8}
        assert max(errors.values()) <= FP32_TOLERANCE, (graph, errors)


def test_batch_axis_is_dynamic(exported, eager):
    sess = ort.InferenceSession(str(exported.path / "synthesis.onnx"), providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    assert all(isinstance(i.shape[0], str) for i in inputs)  # symbolic, not a pinned number
    assert isinstance(sess.get_outputs()[0].shape[0], str)
    for n in (2, 5, 11):
        ws = torch.randn(n, eager.num_ws, eager.config.w_dim)
        noise = [torch.randn(n, 1, h, w) for h, w in eager.synthesis.noise_shapes()]
        (img,) = sess.run(None, {i.name: t.numpy() for i, t in zip(inputs, [ws, *noise])})
        expected = eager.synthesis(ws, noise_mode="random", noise=noise, fused=False)
        assert img.shape == (n, 3, 16, 16)
        assert np.abs(img - expected.numpy()).max() <= FP32_TOLERANCE


def test_mapping_graph_truncates_like_eager(exported, eager):
    runner = OnnxRunner(exported.path / "mapping.onnx")
    z = torch.randn(4, eager.config.z_dim)
    for psi, cutoff in [(1.0, None), (0.0, None), (0.5, 2), (-0.3, 1)]:
        expected = eager.mapping(z, None, psi, cutoff)
        got = runner(z, torch.tensor(psi), torch.tensor(eager.num_ws if cutoff is None else cutoff))
        assert (got - expected).abs().max() <= FP32_TOLERANCE
    got = runner(z, torch.tensor(0.0), torch.tensor(eager.num_ws))
    assert (got - eager.mapping.w_avg).abs().max() <= FP32_TOLERANCE  # psi 0: every w is w_avg


REQUESTS = [
    {"seeds": "0-9", "truncation_psi": 0.7},
    {"seeds": [3, 4], "noise_mode": "random"},
    {"seeds": [5], "noise_mode": "none", "truncation_psi": 0.5, "truncation_cutoff": 2},
    {"seeds": [1, 2], "style_mix": {"seeds": [8, 9], "layers": [0, 2]}},
    {"seeds": [6], "interpolate": {"to_seed": 7, "steps": 3, "space": "z"}},
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: ",".join(sorted(r)))
def test_onnx_backend_gives_eager_images(exported, eager, request_):
    backend = load_backend("onnx", exported.path)
    a = sample(eager, request_).images.astype(int)
    b = sample(backend, request_).images.astype(int)
    assert a.shape == b.shape
    diff = np.abs(a - b)
    assert diff.max() <= 1  # within one uint8 level per pixel ...
    assert (diff > 0).mean() < 0.01  # ... and almost every pixel exact
    assert sample(backend, request_).params == sample(eager, request_).params


def test_onnx_backend_is_batch_invariant(exported):
    backend = load_exported(exported.path, fmt="onnx")
    p = plan(backend, seeds=list(range(7)), truncation_psi=0.7)
    (whole,) = render(backend, [p], batch_size=7)
    parts = np.concatenate(render(backend, [plan(backend, seeds=[s], truncation_psi=0.7) for s in range(7)], 3))
    assert np.array_equal(whole, parts)


def test_onnx_backend_surface(exported, eager):
    backend = load_backend("onnx", exported.path)
    assert backend.family == "stylegan2" and backend.num_ws == eager.num_ws and backend.name == "tiny"
    assert backend.synthesis.noise_shapes() == eager.synthesis.noise_shapes()
    assert next(backend.parameters()).device.type == "cpu"
    consts = [m.noise_const for m in backend.synthesis.modules() if hasattr(m, "noise_const")]
    assert all(
        torch.equal(a, m.noise_const)
        for a, m in zip(consts, (m for m in eager.synthesis.modules() if hasattr(m, "noise_const")))
    )
    with pytest.raises(ValueError, match="holds a 'onnx' export, not 'pt2'"):
        load_backend("pt2", exported.path)


def test_conditional_mapping_graph(tiny_cond_path, tmp_path):
    cond = ganserve.load(tiny_cond_path)
    spec = next(s for s in get_exporter("stylegan2").graphs(cond) if s.name == "mapping")
    assert spec.input_names == ["z", "c", "psi", "cutoff"]
    export_graph(spec, tmp_path / "mapping.onnx")
    errors = measure(spec, OnnxRunner(tmp_path / "mapping.onnx"), (1, 3, 8), seed=5)
    assert max(errors.values()) <= FP32_TOLERANCE
    # The class changes ws: the id really goes through the graph.
    runner = OnnxRunner(tmp_path / "mapping.onnx")
    z = torch.randn(1, cond.config.z_dim)
    a, b = (runner(z, torch.tensor([k]), torch.tensor(1.0), torch.tensor(cond.num_ws)) for k in (0, 2))
    assert (a - b).abs().max() > 1e-3


@pytest.mark.slow
def test_onnx_archive_serves_in_torchserve(exported, eager, tiny_path, tmp_path, monkeypatch):
    """A .mar carrying the ONNX graphs, backend onnx in model-config.yaml: a real TorchServe loads it and answers."""
    import io
    import zipfile

    import yaml
    from PIL import Image

    from ganserve.export.mar import export_mar
    from ganserve.serving.launcher import Server

    result = export_mar(tiny_path, tmp_path / "tiny-onnx.mar", backend="onnx", graphs=exported.path, batch_size=2)
    mar = result.path
    with zipfile.ZipFile(mar) as z:
        names = set(z.namelist())
        config = yaml.safe_load(z.read("model-config.yaml"))
    assert {"mapping.onnx", "synthesis.onnx", "ganserve-export.json", "tiny.safetensors"} <= names
    assert config["handler"]["backend"] == "onnx" and config["batchSize"] == 2
    body = {"seeds": [3], "truncation_psi": 0.7, "noise_mode": "random"}
    cache = tmp_path / "export-cache"
    monkeypatch.setenv("GANSERVE_EXPORT_CACHE", str(cache))  # the worker must use the archived graphs, not re-export
    with Server({}, tmp_path / "ts", archives=[mar]) as server:
        resp = server.client().predict("tiny-onnx", body)
        assert resp.status_code == 200, resp.text
        served = np.asarray(Image.open(io.BytesIO(resp.content))).astype(int)
    expected = sample(eager, body).images[0].astype(int)
    assert np.abs(served - expected).max() <= 1
    assert not cache.exists()
