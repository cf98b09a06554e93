"""TorchServe handler for ganserve checkpoints: a thin shell around ganserve.serving.service.

TorchServe's batch in -> SampleService.handle_batch -> per-item status, content type, headers and body out. Each item
is answered on its own, so one bad request never fails the batch (TorchServe fails the whole batch if a handler
raises). Settings come from the archive's model-config.yaml, section ``handler``: checkpoint, backend, max_images,
batch_size. ``GET /models/NAME?customized=true`` on the management API returns ``describe()``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch

from ganserve.serving.service import SampleService, error_response

log = logging.getLogger(__name__)
_service: SampleService | None = None


def _device(context: Any) -> str:
    gpu = context.system_properties.get("gpu_id")
    return f"cuda:{gpu}" if gpu is not None and torch.cuda.is_available() else "cpu"


def initialize(context: Any) -> SampleService:
    cfg = (getattr(context, "model_yaml_config", None) or {}).get("handler", {})
    model_dir = context.system_properties["model_dir"]
    checkpoint = os.path.join(model_dir, cfg.get("checkpoint", "model.safetensors"))
    service = SampleService.from_checkpoint(
        checkpoint,
        backend=cfg.get("backend", "eager"),
        device=_device(context),
        name=context.model_name,
        max_images=int(cfg.get("max_images", 64)),
        batch_size=int(cfg.get("batch_size", 16)),
    )
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    log.info("ganserve: loaded %s on %s", checkpoint, _device(context))
    return service


def _is_describe(context: Any) -> bool:
    return context.get_request_header(0, "describe") == "True"


def _record_metrics(context: Any, service: SampleService) -> None:
    from ts.metrics.dimension import Dimension

    dims = [Dimension("ModelName", context.model_name)]
    stats = service.last
    context.metrics.add_counter("GanserveImagesGenerated", stats.images, None, dims)
    context.metrics.add_time("GanserveGeneratorTime", stats.generator_ms, None, "ms", dims)
    if stats.errors:
        context.metrics.add_counter("GanserveRequestErrors", stats.errors, None, dims)


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[bytes] | None:
    global _service
    if _service is None:
        _service = initialize(context)
    if data is None:  # TorchServe's load-time call
        return None
    if _is_describe(context):
        return [json.dumps(_service.describe()).encode()]
    bodies = [item.get("body", item.get("data")) if isinstance(item, dict) else item for item in data]
    try:
        responses = _service.handle_batch(bodies)
    except Exception as e:  # never let the batch fail as a whole
        log.exception("ganserve: batch failed")
        responses = [error_response(500, {"error": "internal error", "message": str(e)})] * len(bodies)
    for i, r in enumerate(responses):
        context.set_response_status(r.status, r.reason, idx=i)
        context.set_response_content_type(i, r.content_type)
        for key, value in r.headers.items():
            context.set_response_header(i, key, value)
    try:
        _record_metrics(context, _service)
    except Exception:  # metrics must never cost a response
        log.exception("ganserve: metrics failed")
    return [r.body for r in responses]
