"""The family conformance suite: every bundled model of every registered family, the same contract.

A family gets these for free by registering and shipping a checkpoint in checkpoints/: determinism per seed,
batch-size invariance, the same pixels from every front end (Python, CLI, the TorchServe handler, the UI backend),
bad fields refused with a RequestError naming the field, export parity, and a description clients can build on.
Field by field: tests/test_field_conformance.py (every field of every family from the CLI, HTTP, Python and the UI)
and tests/test_backend_conformance.py (every request kind on eager, onnx and pt2).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

import ganserve
from ganserve.families import family_names, get_family
from ganserve.loading import available_models, bundled_dir, read_metadata
from ganserve.requests import RequestError
from ganserve.sampling import describe, plan, sample

BUNDLED = {p.stem: p for p in sorted(bundled_dir().glob("*.safetensors")) if p.stem in available_models()}


@pytest.fixture(scope="module", params=sorted(BUNDLED))
def bundled(request):
    return ganserve.load(BUNDLED[request.param])


def valid_request(model, seeds=(1, 2, 3)) -> dict:
    """A plain request any model of the family accepts: seeds, plus a class for class-conditional models."""
    req: dict = {"seeds": list(seeds)}
    if describe(model)["classes"]:
        req["class"] = 1
    return req


def test_every_registered_family_ships_a_checkpoint():
    shipped = {read_metadata(p)["family"] for p in BUNDLED.values()}
    assert set(family_names()) <= shipped, f"families without a bundled checkpoint: {set(family_names()) - shipped}"


def test_determinism_and_batch_size_invariance(bundled):
    req = valid_request(bundled, seeds=range(8))
    a = sample(bundled, req, batch_size=8).images
    assert a.dtype == np.uint8 and a.shape[0] == 8
    assert np.array_equal(a, sample(bundled, req, batch_size=8).images)
    assert np.array_equal(a, sample(bundled, req, batch_size=1).images)
    assert np.array_equal(a, sample(bundled, req, batch_size=3).images)
    reversed_req = {**req, "seeds": list(range(8))[::-1]}
    assert np.array_equal(a, sample(bundled, reversed_req, batch_size=5).images[::-1])
    assert len({img.tobytes() for img in a}) == 8  # seeds really differ


def test_cli_gives_the_same_pixels(bundled, tmp_path, capsys):
    """``ganserve sample``'s entry point, run in this process (a fresh interpreter per model would add only its
    start-up: tests/test_cli.py runs the CLI as a subprocess end to end)."""
    from ganserve.cli import main

    req = valid_request(bundled)
    out = tmp_path / "x.npy"
    args = ["sample", "--model", str(BUNDLED[bundled.name]), "--seeds", "1,2,3", "--out", str(out)]
    if "class" in req:
        args += ["--class", str(req["class"])]
    assert main(args) == 0, capsys.readouterr().err
    assert np.array_equal(np.load(out), sample(bundled, req).images)


def test_handler_gives_the_same_pixels(bundled, tmp_path, monkeypatch):
    from ts.context import Context, RequestProcessor

    from ganserve.handlers import generator_handler as handler

    monkeypatch.setattr(handler, "_service", None)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").symlink_to(BUNDLED[bundled.name])
    headers = {"Content-Type": "application/json", "body": {"content-type": "application/json"}}
    ctx = Context(bundled.name, str(model_dir), {}, 2, None, "0.12", model_yaml_config={"handler": {}})
    ctx.request_processor = [RequestProcessor(dict(headers)) for _ in range(2)]
    req = valid_request(bundled)
    bodies = [{"body": json.dumps({**req, "format": "npy"}).encode()}, {"body": b'{"seeds": [1], "colour": 2}'}]
    handler.handle(None, ctx)
    out = handler.handle(bodies, ctx)
    assert np.array_equal(np.load(io.BytesIO(out[0])), sample(bundled, req).images)
    assert json.loads(out[1])["field"] == "colour"


def test_ui_backend_gives_the_same_pixels(bundled):
    from ganserve.ui.backend import LocalBackend

    backend = LocalBackend({bundled.name: BUNDLED[bundled.name]})
    req = valid_request(bundled)
    pictures = backend.generate(bundled.name, req)
    want = sample(bundled, req).images
    got = np.stack([p.array() for p in pictures])
    assert np.array_equal(got, want)
    assert [p.params for p in pictures] == sample(bundled, req).params
    info = backend.describe(bundled.name)
    assert info.family == bundled.family and info.schema["properties"]


def test_bad_fields_name_the_field(bundled):
    for body, field in [
        ({"seeds": [1], "colour": "red"}, "colour"),
        ({"seeds": "one"}, "seeds"),
        ({"seeds": [-1]}, "seeds"),
        ({"seeds": [1], "format": "gif"}, "format"),
        ({"seeds": "0-999"}, "seeds"),  # over the image limit
    ]:
        with pytest.raises(RequestError) as e:
            plan(bundled, {**valid_request(bundled), **body})
        assert e.value.field == field, (body, e.value)
    if describe(bundled)["classes"]:
        for bad in (10**6, "no-such-class"):
            with pytest.raises(RequestError) as e:
                plan(bundled, {"seeds": [1], "class": bad})
            assert e.value.field == "class"


def test_describe(bundled):
    d = describe(bundled)
    json.dumps(d)  # serialisable as the server sends it
    fam = get_family(bundled.family)
    assert d["family"] == fam.name and d["name"] == bundled.name
    first = sample(bundled, valid_request(bundled, seeds=[0])).images[0]
    assert (d["resolution"], d["resolution"], d["img_channels"]) == first.shape
    assert "seeds" in d["request_schema"]["properties"]


def test_onnx_export_parity(bundled):
    """The checkpoint's onnx export (the session's one export of it: tests/conftest.py) samples the eager pixels."""
    pytest.importorskip("onnxruntime")
    from ganserve.export import load_exported
    from ganserve.export.cache import cached_export

    backend = load_exported(cached_export("onnx", BUNDLED[bundled.name]), fmt="onnx")
    req = valid_request(bundled, seeds=range(4))
    want = sample(bundled, req).images.astype(int)
    got = backend.sample(req).images.astype(int)
    assert np.abs(got - want).max() <= 1


def test_png_metadata_restores_the_request(bundled):
    from ganserve.images import read_png_params
    from ganserve.sampling import encode_result

    req = valid_request(bundled, seeds=[4])
    body = encode_result(sample(bundled, req)).body
    params = read_png_params(body)
    assert params["seeds"] == [4] and params["model"] == bundled.name
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(body))).reshape(sample(bundled, req).images[0].shape),
                          sample(bundled, req).images[0])  # fmt: skip
