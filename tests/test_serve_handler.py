"""The TorchServe handler without a server: TorchServe's own Context object, a batch in, per-item answers out."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from ts.context import Context, RequestProcessor

from ganserve.handlers import generator_handler as handler
from ganserve.sampling import sample


class RecordingMetrics:
    """Stands in for TorchServe's metrics cache: records what the handler reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []

    def add_counter(self, name, value, idx=None, dimensions=None):
        self.calls.append(("counter", name, value))

    def add_time(self, name, value, idx=None, unit="ms", dimensions=None):
        self.calls.append(("time", name, value))


# What TorchServe hands the worker for an HTTP POST of a JSON body: request headers plus the parameter's type.
HTTP = {"Host": "127.0.0.1:8080", "Content-Type": "application/json", "body": {"content-type": "application/json"}}
GRPC = {"data": {"content-type": ""}}  # gRPC: the input map's entries, no request headers


def make_context(model_dir, headers: list[dict], metrics: RecordingMetrics) -> Context:
    cfg = {"handler": {"checkpoint": "tiny-cond.safetensors", "max_images": 4, "batch_size": 8}}
    ctx = Context("tiny-cond", str(model_dir), {}, len(headers), None, "0.12", metrics=metrics, model_yaml_config=cfg)
    ctx.request_processor = [RequestProcessor(h) for h in headers]
    return ctx


@pytest.fixture
def fresh_handler(monkeypatch):
    monkeypatch.setattr(handler, "_service", None)  # the module keeps one service per worker process
    return handler


def test_a_batch_is_answered_item_by_item(fresh_handler, tiny_models_dir, tiny_cond):
    metrics = RecordingMetrics()
    bodies = [b'{"seeds": [5], "class": "triangle"}', b"{broken", {"seeds": "0-9"}, {"seeds": [6], "shape": 1}]
    ctx = make_context(tiny_models_dir, [HTTP] * len(bodies), metrics)
    out = fresh_handler.handle([{"body": b} for b in bodies], ctx)
    assert [ctx.get_response_status(i)[0] for i in range(4)] == [200, 400, 400, 400]
    assert ctx.get_response_content_type(0) == "image/png" and ctx.get_response_content_type(1) == "application/json"
    assert ctx.get_response_headers(0)["X-Ganserve-Seeds"] == "5"
    expected = sample(tiny_cond, {"seeds": [5], "class": "triangle"}).images[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out[0]))), expected)
    assert [json.loads(b)["field"] for b in out[1:]] == ["", "seeds", "shape"]
    assert ("counter", "GanserveImagesGenerated", 1) in metrics.calls
    assert ("counter", "GanserveRequestErrors", 3) in metrics.calls


def test_describe_request(fresh_handler, tiny_models_dir):
    ctx = make_context(tiny_models_dir, [{"describe": "True"}], RecordingMetrics())
    (body,) = fresh_handler.handle([{"body": b""}], ctx)
    info = json.loads(body)
    assert info["name"] == "tiny-cond" and info["classes"] == ["circle", "square", "triangle"]
    assert info["max_images"] == 4 and info["request_schema"]["type"] == "object"


def test_internal_failure_is_500_for_the_batch_and_the_worker_goes_on(fresh_handler, tiny_models_dir, monkeypatch):
    ctx = make_context(tiny_models_dir, [HTTP, HTTP], RecordingMetrics())
    assert fresh_handler.handle(None, ctx) is None  # load-time call
    service = fresh_handler._service

    def broken(bodies):
        raise MemoryError("simulated")

    monkeypatch.setattr(service, "handle_batch", broken)
    out = fresh_handler.handle([{"body": b'{"seeds": [1]}'}, {"body": b'{"seeds": [2]}'}], ctx)
    assert [ctx.get_response_status(i)[0] for i in range(2)] == [500, 500]
    assert "simulated" in json.loads(out[0])["message"]
    monkeypatch.undo()
    monkeypatch.setattr(handler, "_service", service)
    ctx = make_context(tiny_models_dir, [HTTP], RecordingMetrics())
    (body,) = fresh_handler.handle([{"body": b'{"seeds": [1], "class": "circle"}'}], ctx)
    assert ctx.get_response_status(0)[0] == 200, body


FORM = {"Host": "h", "Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    "item, headers, words",
    [
        # curl -d '{"seeds":[5]}' without a JSON content type: the frontend splits the "form" into a field
        ({'{"seeds":[5],"truncation_psi":0.5}': b""}, FORM, "form"),
        ({"seeds": b"5"}, {**FORM, "Content-Type": "multipart/form-data; boundary=x"}, "form"),
        ({"body": b'{"seeds": [5]}', "seeds": "7"}, HTTP, "besides the body"),
        ({"input": b'{"seeds": [5]}'}, GRPC, "gRPC: the input"),
        ({}, {"Host": "h"}, "no body"),
        ({"body": b""}, HTTP, "empty"),
        ({"body": b"[" * 100_000}, HTTP, "nested"),
        ({"body": b'{"seeds": [' + b"9" * 5000 + b"]}"}, HTTP, "5000 digits"),
        ({"body": b'{"seeds": [1], "seeds": [2]}'}, HTTP, "duplicate"),
        ({"body": '{"seeds": [١٢]}'.encode()}, HTTP, "0-9"),
    ],
)
def test_anything_but_one_json_object_body_is_a_400_naming_it(fresh_handler, tiny_models_dir, item, headers, words):
    metrics = RecordingMetrics()
    ctx = make_context(tiny_models_dir, [headers, HTTP], metrics)
    out = fresh_handler.handle([item, {"body": b'{"seeds": [2], "class": "circle"}'}], ctx)
    assert [ctx.get_response_status(i)[0] for i in range(2)] == [400, 200]
    err = json.loads(out[0])
    assert err["error"] == "invalid request" and words in err["message"], err
    assert ("counter", "GanserveRequestErrors", 1) in metrics.calls


def test_an_oversized_body_is_a_json_413(fresh_handler, tiny_models_dir):
    ctx = make_context(tiny_models_dir, [HTTP], RecordingMetrics())
    (out,) = fresh_handler.handle([{"body": b'{"seeds": [1], "pad": "' + b"x" * (1 << 20) + b'"}'}], ctx)
    assert ctx.get_response_status(0) == (413, "Payload Too Large")
    assert ctx.get_response_content_type(0) == "application/json"
    assert json.loads(out)["error"] == "request too large"


def test_grpc_batches_that_fail_alike_fail_as_a_batch_for_a_grpc_status(fresh_handler, tiny_models_dir):
    from ts.utils.util import PredictionException

    # TorchServe carries only the batch's status to gRPC (400 -> INVALID_ARGUMENT): a failing gRPC-only batch
    # must fail as a whole, with the JSON error as the message.
    ctx = make_context(tiny_models_dir, [GRPC], RecordingMetrics())
    with pytest.raises(PredictionException) as err:
        fresh_handler.handle([{"data": b'{"seeds": [1], "truncation_psi": 9}'}], ctx)
    assert err.value.error_code == 400 and json.loads(err.value.message)["field"] == "truncation_psi"
    ctx = make_context(tiny_models_dir, [GRPC], RecordingMetrics())
    (out,) = fresh_handler.handle([{"data": b'{"seeds": [1], "class": "square"}'}], ctx)
    assert ctx.get_response_status(0)[0] == 200 and out[:4] == b"\x89PNG"
    # mixed with an HTTP request, each keeps its own answer (the HTTP one must not become TorchServe's error)
    ctx = make_context(tiny_models_dir, [GRPC, HTTP], RecordingMetrics())
    out = fresh_handler.handle([{"data": b"{oops"}, {"body": b"{oops"}], ctx)
    assert [ctx.get_response_status(i)[0] for i in range(2)] == [400, 400]
