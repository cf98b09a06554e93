"""TorchServe handler for ganserve checkpoints: a thin shell around ganserve.serving.service.

TorchServe's batch in -> SampleService.handle_batch -> per-item status, content type, headers and body out. Each item
is answered on its own, so one bad request never fails the batch (TorchServe fails the whole batch if a handler
raises). Settings come from the archive's model-config.yaml, section ``handler``: checkpoint, backend, max_images,
batch_size, threads, precision. ``GET /models/NAME?customized=true`` on the management API returns ``describe()``.

What reaches ``handle`` per request is a dict of TorchServe "parameters": ``{"body": raw}`` for an HTTP body sent
as-is, one entry per field for a form (``application/x-www-form-urlencoded``, curl ``-d``'s default, or multipart),
one per query parameter, and for gRPC the request's input map (``{"data": raw}`` by convention). ganserve's
config.properties sets ``decode_input_request=false``, so ``raw`` is the bytes the client sent and
``ganserve.serving.bodies`` alone decides what they mean. Anything but exactly one body is refused with a 400 that
says what arrived instead: a form post must never be read as an empty request (seed 0).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import torch

from ganserve.requests import RequestError
from ganserve.serving.bodies import decode_body
from ganserve.serving.service import BatchStats, Response, SampleService, error_response

log = logging.getLogger(__name__)
_service: SampleService | None = None
BODY_NAMES = ("body", "data")  # HTTP's raw body; gRPC clients' conventional input name


def _device(context: Any) -> str:
    gpu = context.system_properties.get("gpu_id")
    return f"cuda:{gpu}" if gpu is not None and torch.cuda.is_available() else "cpu"


def initialize(context: Any) -> SampleService:
    cfg = (getattr(context, "model_yaml_config", None) or {}).get("handler", {})
    if cfg.get("threads"):  # before loading: several workers on few cores must not oversubscribe them
        torch.set_num_threads(int(cfg["threads"]))
    model_dir = context.system_properties["model_dir"]
    checkpoint = os.path.join(model_dir, cfg.get("checkpoint", "model.safetensors"))
    precision = str(cfg.get("precision", "fp32"))
    try:
        service = SampleService.from_checkpoint(
            checkpoint,
            backend=cfg.get("backend", "eager"),
            device=_device(context),
            precision=precision,
            name=context.model_name,
            max_images=int(cfg.get("max_images", 64)),
            batch_size=int(cfg.get("batch_size", 16)),
        )
    except ValueError as e:  # the worker log must say which setting of the archive is wrong
        if "precision" in str(e):
            raise ValueError(f"model-config.yaml handler.precision: {e}") from None
        raise
    service.prepare()  # directions found now, and this worker's job runner started: no request waits for either
    log.info("ganserve: loaded %s on %s at %s", checkpoint, _device(context), precision)
    return service


def _headers(context: Any, idx: int) -> dict[str, Any]:
    try:
        return context.request_processor[idx].get_request_properties() or {}
    except (AttributeError, IndexError, TypeError):
        return {}


def _request_headers(headers: dict[str, Any]) -> dict[str, str]:
    """The request's own headers, lower-cased (TorchServe mixes in {param: {"content-type": ...}} entries)."""
    return {k.lower(): v for k, v in headers.items() if isinstance(v, str)}


def is_grpc(context: Any, idx: int) -> bool:
    """gRPC requests reach the worker without request headers (an HTTP request always has some: Host, length)."""
    return not _request_headers(_headers(context, idx))


def read_request(item: Any, context: Any, idx: int) -> dict[str, Any]:
    """One TorchServe request item -> the request dict, or a RequestError saying what arrived instead of a body."""
    if not isinstance(item, dict):  # an engine that hands bodies over directly
        return decode_body(item)
    headers = _request_headers(_headers(context, idx))
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    names = list(item)
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise RequestError(
            "",
            f"the request was sent as a form (Content-Type: {ctype}, curl -d's default), which the server splits "
            "into fields: send the JSON object as the body with 'Content-Type: application/json'",
        )
    bodies = [n for n in names if n in BODY_NAMES]
    extra = [n for n in names if n not in BODY_NAMES]
    shown = ", ".join(repr(n[:40]) for n in extra[:5])
    if len(bodies) != 1:
        got = f"; got the fields {shown}" if extra else ""
        raise RequestError("", 'the request has no body (HTTP: the raw body; gRPC: the input "data"): send a JSON '
                               f'object such as {{"seeds": [0]}}{got}')  # fmt: skip
    if extra:
        raise RequestError("", f"fields besides the body are not read ({shown}): put every field in the JSON body")
    return decode_body(item[bodies[0]])


def _is_describe(context: Any) -> bool:
    return context.get_request_header(0, "describe") == "True"


def _record_metrics(context: Any, service: SampleService, errors: int) -> None:
    from ts.metrics.dimension import Dimension

    dims = [Dimension("ModelName", context.model_name)]
    stats = service.last
    context.metrics.add_counter("GanserveImagesGenerated", stats.images, None, dims)
    context.metrics.add_time("GanserveGeneratorTime", stats.generator_ms, None, "ms", dims)
    if errors:
        context.metrics.add_counter("GanserveRequestErrors", errors, None, dims)


def answer(data: list[Any], context: Any, service: SampleService) -> list[Response]:
    """Per-item responses for a batch: bodies that cannot be read are answered here, the rest by the service."""
    responses: list[Response | None] = [None] * len(data)
    readable: dict[int, dict[str, Any]] = {}
    for i, item in enumerate(data):
        try:
            readable[i] = read_request(item, context, i)
        except RequestError as e:
            responses[i] = error_response(getattr(e, "status", 400), e.to_dict())
    if readable:
        try:
            served = service.handle_batch(list(readable.values()))
        except Exception as e:  # never let the batch fail as a whole
            log.exception("ganserve: batch failed")
            served = [error_response(500, {"error": "internal error", "message": str(e)})] * len(readable)
        for i, r in zip(readable, served):
            responses[i] = r
    return [r for r in responses if r is not None]


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[bytes] | None:
    global _service
    if _service is None:
        _service = initialize(context)
    if data is None:  # TorchServe's load-time call
        return None
    if _is_describe(context):
        return [json.dumps(_service.describe()).encode()]
    t0 = time.perf_counter()
    _service.last = BatchStats()  # a batch of unreadable bodies runs nothing: report no images for it
    responses = answer(data, context, _service)
    # The worker's own time for the batch: what a client's latency minus this leaves is frontend, IPC and HTTP.
    handler_ms = f"{(time.perf_counter() - t0) * 1000:.1f}"
    try:
        _record_metrics(context, _service, sum(r.status != 200 for r in responses))
    except Exception:  # metrics must never cost a response
        log.exception("ganserve: metrics failed")
    # TorchServe passes one status per batch to gRPC (the per-item status is HTTP only): when every request of the
    # batch came over gRPC and failed alike, fail the batch with that status, which TorchServe maps to a gRPC code
    # (400 -> INVALID_ARGUMENT, 413 -> RESOURCE_EXHAUSTED, 500 -> INTERNAL) with the JSON error as the description.
    statuses = {r.status for r in responses}
    if len(statuses) == 1 and 200 not in statuses and all(is_grpc(context, i) for i in range(len(responses))):
        from ts.utils.util import PredictionException

        raise PredictionException(responses[0].body.decode(), responses[0].status)
    for i, r in enumerate(responses):
        context.set_response_status(r.status, r.reason, idx=i)
        context.set_response_content_type(i, r.content_type)
        for key, value in r.headers.items():
            context.set_response_header(i, key, value)
        context.set_response_header(i, "X-Ganserve-Handler-Ms", handler_ms)
    return [r.body for r in responses]
