"""Request bodies in, HTTP-shaped responses out, for a batch at a time: the serving core, free of engine imports.

Each body is validated on its own (a bad one gets its own 400 and never fails its neighbours); the valid ones run as
one generator call through ``ganserve.sampling.render`` and are split back.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ganserve.backends import load_backend
from ganserve.requests import DEFAULT_MAX_IMAGES, RequestError
from ganserve.sampling import (
    DEFAULT_BATCH_SIZE,
    SampleResult,
    describe,
    encode_result,
    model_name,
    model_version,
    plan,
    render,
)
from ganserve.serving.bodies import MAX_BODY_BYTES, decode_body  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return REASONS.get(self.status, "")


REASONS = {200: "OK", 400: "Bad Request", 413: "Payload Too Large", 500: "Internal Server Error",
           503: "Service Unavailable", 507: "Insufficient Storage"}  # fmt: skip


def error_response(status: int, payload: dict[str, Any]) -> Response:
    """Every error is JSON, whatever the status (400, 413, 500 ...)."""
    return Response(status, json.dumps(payload).encode(), "application/json")


@dataclass
class BatchStats:
    images: int = 0
    generator_ms: float = 0.0
    errors: int = 0


class SampleService:
    """One loaded generator answering sample requests, a batch at a time."""

    def __init__(
        self,
        model: nn.Module,
        *,
        max_images: int = DEFAULT_MAX_IMAGES,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.model, self.max_images, self.batch_size = model, max_images, batch_size
        self.last = BatchStats()

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str,
        *,
        backend: str = "eager",
        device: str = "cpu",
        precision: str = "fp32",
        name: str | None = None,
        **options: Any,
    ) -> SampleService:
        model = load_backend(backend, checkpoint, device=device, precision=precision)
        if name:
            model.name = name
        return cls(model, **options)

    def handle_batch(self, bodies: list[Any]) -> list[Response]:
        responses: list[Response | None] = [None] * len(bodies)
        plans = {}
        for i, raw in enumerate(bodies):
            try:
                plans[i] = plan(self.model, decode_body(raw), max_images=self.max_images)
            except RequestError as e:
                responses[i] = error_response(400, e.to_dict())
            except Exception as e:  # a planning bug must not fail the neighbours
                log.exception("planning failed")
                responses[i] = error_response(500, {"error": "internal error", "message": f"{type(e).__name__}: {e}"})
        stats = BatchStats()
        if plans:
            t0 = time.perf_counter()
            try:
                images = render(self.model, list(plans.values()), self.batch_size)
            except Exception as e:
                log.exception("generator failed")
                for i in plans:
                    msg = {"error": "internal error", "message": f"generator failed: {type(e).__name__}: {e}"}
                    responses[i] = error_response(500, msg)
            else:
                stats.generator_ms = (time.perf_counter() - t0) * 1000
                for (i, p), imgs in zip(plans.items(), images):
                    result = SampleResult(imgs, p.params, p.request, model_name(self.model), model_version(self.model))
                    try:
                        enc = encode_result(result)
                    except Exception as e:
                        log.exception("encoding failed")
                        responses[i] = error_response(500, {"error": "internal error", "message": str(e)})
                        continue
                    # The batch's generator time lets clients split latency into generator and server overhead.
                    headers = {**enc.headers, "X-Ganserve-Generator-Ms": f"{stats.generator_ms:.1f}"}
                    responses[i] = Response(200, enc.body, enc.content_type, headers)
                    stats.images += len(imgs)
        stats.errors = sum(r.status != 200 for r in responses if r is not None)
        self.last = stats
        return [r for r in responses if r is not None]

    def describe(self) -> dict[str, Any]:
        return describe(self.model, max_images=self.max_images, batch_size=self.batch_size)
