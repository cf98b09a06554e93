"""SAGAN: config checks, class conditioning, the attention map of a query pixel as an image, batching, requests,
and the ONNX export with the class vector and the attention query as inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ganserve
from ganserve.models.sagan import SAGANConfig
from ganserve.requests import RequestError
from ganserve.sampling import describe, plan, render, sample
from tests.family_fixtures import TINY_SAGAN, family_registered, make_tiny_sagan, save_tiny


@pytest.fixture(scope="module", autouse=True)
def sagan_registered():
    with family_registered("sagan"):
        yield


@pytest.fixture(scope="module")
def G(tmp_path_factory, sagan_registered):
    return ganserve.load(save_tiny(tmp_path_factory.mktemp("sagan"), "tiny-sagan", make_tiny_sagan()))


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"g_channels": [32, 16]}, "g_channels"),
        ({"g_channels": [32, 16, 10**9]}, "g_channels"),
        ({"attention_resolution": 32}, "attention_resolution"),
        ({"attention_resolution": 6}, "attention_resolution"),
        ({"g_channels": [32, 12, 16]}, "multiple of 8"),
        ({"d_attention_layer_position": 9}, "past the last"),
    ],
)
def test_hostile_configs_are_refused(override, fragment):
    with pytest.raises(ValueError, match=fragment):
        SAGANConfig(**{**TINY_SAGAN, **override})


def test_class_changes_the_image_and_class_plus_seed_fixes_it(G):
    a = sample(G, seeds=[1], **{"class": "circle"}).images
    assert np.array_equal(a, sample(G, seeds=[1], **{"class": 0}).images)
    assert not np.array_equal(a, sample(G, seeds=[1], **{"class": "triangle"}).images)
    req = {"seeds": list(range(6)), "class": 2}
    assert np.array_equal(sample(G, req, batch_size=6).images, sample(G, req, batch_size=1).images)


def test_attention_map_of_a_query_pixel(G):
    r = sample(G, seeds=[3, 4], attention={"query": [2, 13]}, **{"class": 1})
    assert r.params[0]["attention"] == {"query": [2, 13]}
    img = r.images
    assert img.shape == (2, 16, 16, 3) and img.max() == 255  # normalised: the most attended key is white
    assert np.array_equal(img[..., 0], img[..., 2])  # grey scale
    blocks = img[0, :, :, 0].reshape(4, 4, 4, 4)  # 4x4 pooled keys of the 8 px map, each 4x4 image pixels
    assert (blocks == blocks[:, :1, :, :1]).all()
    other = sample(G, seeds=[3], attention={"query": [15, 0]}, **{"class": 1}).images[0]
    assert not np.array_equal(other, img[0])
    plain = sample(G, seeds=[3], **{"class": 1}).images[0]
    assert not np.array_equal(plain, img[0])


def test_attention_map_matches_the_attention_weights():
    G = make_tiny_sagan()
    z, c = torch.randn(2, 16), torch.tensor([0, 2])
    captured = {}
    hook = G.attention.register_forward_hook(lambda m, i, o: captured.update(attn=o[1]))
    G(z, c, torch.tensor([[2, 13], [-1, -1]]))
    hook.remove()
    weights = captured["attn"][0, 1 * 8 + 6].reshape(4, 4)
    expected = weights / weights.max() * 2 - 1
    got = G(z, c, torch.tensor([[2, 13], [-1, -1]]))
    assert torch.allclose(got[0, 0, ::4, ::4], expected, atol=1e-6)
    assert torch.equal(got[1], G(z, c)[1])  # rows without a query get their image


def test_image_and_attention_rows_batch_together(G):
    plans = [plan(G, seeds=[1, 2], **{"class": 0}), plan(G, seeds=[1], attention={"query": [8, 8]}, **{"class": 0})]
    together = np.concatenate(render(G, plans, batch_size=8))
    alone = np.concatenate([render(G, [p])[0] for p in plans])
    assert np.array_equal(together, alone)


def test_classes_and_interpolation(G):
    r = sample(G, seeds=[5, 6], classes=["square", "triangle"])
    assert [(p["class"], p["seeds"][0]) for p in r.params] == [(1, 5), (1, 6), (2, 5), (2, 6)]
    f = sample(G, seeds=[5], interpolate={"to_class": 2, "steps": 3}, **{"class": 1})
    assert np.array_equal(f.images[0], r.images[0]) and np.array_equal(f.images[2], r.images[2])


@pytest.mark.parametrize(
    "body, field",
    [
        ({"seeds": [1], "class": "hexagon"}, "class"),
        ({"seeds": [1], "class": 0, "attention": {"query": [16, 0]}}, "attention.query"),
        ({"seeds": [1], "class": 0, "attention": {"query": [1]}}, "attention.query"),
        ({"seeds": [1], "class": 0, "attention": {"pixel": [1, 1]}}, "attention.query"),  # missing comes first
        ({"seeds": [1], "class": 0, "truncation_psi": 0.5}, "truncation_psi"),
    ],
)
def test_bad_requests_name_the_field(G, body, field):
    with pytest.raises(RequestError) as e:
        plan(G, body)
    assert e.value.field == field, e.value


def test_describe(G):
    d = describe(G)
    assert d["family"] == "sagan" and d["attention_resolution"] == 8
    assert {"attention", "classes", "interpolate"} <= set(d["request_schema"]["properties"])


def test_onnx_export(G, tmp_path):
    from ganserve.export import export_graphs, get_exporter, load_exported
    from ganserve.export.onnx import OnnxRunner
    from ganserve.export.parity import FP32_TOLERANCE, measure

    result = export_graphs(G, "onnx", tmp_path / "onnx")
    assert result.manifest["graphs"]["generator"]["inputs"] == ["z", "class_vector", "attention_query"]
    (spec,) = get_exporter("sagan").graphs(G)
    errors = measure(spec, OnnxRunner(result.path / "generator.onnx"), (1, 3, 8), seed=7)
    assert max(errors.values()) <= FP32_TOLERANCE, errors
    backend = load_exported(result.path, fmt="onnx")
    for req in ({"seeds": "0-5", "class": 2}, {"seeds": [1, 2], "class": 0, "attention": {"query": [3, 3]}}):
        a, b = sample(G, req), sample(backend, req)
        assert np.abs(a.images.astype(int) - b.images.astype(int)).max() <= 1 and a.params == b.params
