"""The engine-independent serving core (no TorchServe): per-item errors, batching, internal failures."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from ganserve.requests import RequestError
from ganserve.sampling import sample
from ganserve.serving.service import SampleService, decode_body


def test_batch_mixing_valid_and_invalid_bodies(tiny):
    service = SampleService(tiny, max_images=8)
    bodies = [
        b'{"seeds": [1]}',
        b"{not json",
        {"seeds": [2], "truncation_psi": 0.5},
        {"seeds": [3], "colour": 1},
        "[1, 2]",
        {"seeds": "0-20"},
    ]
    out = service.handle_batch(bodies)
    assert [r.status for r in out] == [200, 400, 200, 400, 400, 400]
    assert json.loads(out[3].body)["field"] == "colour"
    assert json.loads(out[5].body)["field"] == "seeds" and "limit" in json.loads(out[5].body)["message"]
    img = np.asarray(Image.open(io.BytesIO(out[2].body)))
    assert np.array_equal(img, sample(tiny, seeds=[2], truncation_psi=0.5).images[0])
    assert service.last.images == 2 and service.last.errors == 4
    assert float(out[0].headers["X-Ganserve-Generator-Ms"]) == pytest.approx(service.last.generator_ms, abs=0.1)


def test_generator_failure_is_a_500_and_the_service_goes_on(tiny, monkeypatch):
    service = SampleService(tiny)
    original = tiny.synthesis.forward

    def broken(*a, **k):
        raise RuntimeError("simulated device fault")

    monkeypatch.setattr(tiny.synthesis, "forward", broken)
    out = service.handle_batch([{"seeds": [1]}, {"seeds": "x"}])
    assert [r.status for r in out] == [500, 400]
    assert "simulated device fault" in json.loads(out[0].body)["message"]
    monkeypatch.setattr(tiny.synthesis, "forward", original)
    assert service.handle_batch([{"seeds": [1]}])[0].status == 200


def test_describe(tiny_cond):
    info = SampleService(tiny_cond).describe()
    assert info["family"] == "stylegan2" and info["classes"] == ["circle", "square", "triangle"]
    assert info["num_ws"] == tiny_cond.num_ws and "seeds" in info["request_schema"]["properties"]


@pytest.mark.parametrize("raw", [b"", "", b"  \n", None])
def test_an_empty_body_is_refused_not_read_as_the_defaults(raw, tiny):
    with pytest.raises(RequestError, match="body"):
        decode_body(raw)
    (r,) = SampleService(tiny).handle_batch([raw])
    assert r.status == 400 and json.loads(r.body)["field"] == ""


def test_committed_openapi_matches_the_request_models():
    from pathlib import Path

    from ganserve.serving.openapi import build_openapi

    committed = json.loads((Path(__file__).resolve().parents[1] / "docs" / "openapi.json").read_text())
    assert committed == build_openapi()
    assert "StyleGAN2Request" in committed["components"]["schemas"]
