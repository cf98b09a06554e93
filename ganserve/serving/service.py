"""Request bodies in, HTTP-shaped responses out, for a batch at a time: the serving core, free of engine imports.

Each body is validated on its own (a bad one gets its own 400 and never fails its neighbours); the valid ones run as
one generator call through ``ganserve.sampling.render`` and are split back.

Long work never runs in the batch: a request that needs it (a projection) is queued as a job (ganserve.jobs) and
answered 202 with its id; ``{"job": ID}`` polls it (202 with progress, then the result as the request would have
been answered), ``{"job": ID, "cancel": true}`` cancels it. A full queue answers 429 with Retry-After.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ganserve import jobs
from ganserve.backends import load_backend
from ganserve.families import family_of
from ganserve.requests import DEFAULT_MAX_IMAGES, RequestError, validate_request
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


REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 410: "Gone", 413: "Payload Too Large",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
           507: "Insufficient Storage"}  # fmt: skip
JOB_FIELDS = {"job", "cancel"}


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
        self._jobs: jobs.JobStore | None = None
        self._runner: jobs.JobRunner | None = None

    def prepare(self) -> SampleService:
        """Load-time work (the family's ``prepare``: edit directions) and this process's job runner."""
        family_of(self.model).sampler.prepare(self.model)
        self.job_runner()
        return self

    # ---- jobs ----------------------------------------------------------------------------------------------------
    @property
    def jobs(self) -> jobs.JobStore:
        if self._jobs is None:  # one folder per model and version, shared by its workers
            folder = jobs.root() / f"{model_name(self.model)}-{model_version(self.model)}"
            self._jobs = jobs.JobStore(folder, jobs.JobLimits.from_env())
        return self._jobs

    def job_runner(self) -> jobs.JobRunner:
        if self._runner is None:
            self._runner = jobs.JobRunner(self.jobs, self._run_job, _job_error).start()
        return self._runner

    def _run_job(self, request: dict[str, Any], hook: Any) -> jobs.StoredResponse:
        with jobs.reporting(hook):
            p = plan(self.model, request, max_images=self.max_images)
        (images,) = render(self.model, [p], self.batch_size)
        result = SampleResult(images, p.params, p.request, model_name(self.model), model_version(self.model))
        enc = encode_result(result)
        return jobs.StoredResponse(200, enc.body, enc.content_type, enc.headers)

    def _submit(self, body: dict[str, Any], steps: int) -> Response:
        try:
            job = self.jobs.submit(body, steps)
        except jobs.JobQueueFull as e:
            payload = {"error": "too many jobs", "field": "", "message": str(e), "retry_after_s": e.retry_after}
            return Response(429, json.dumps(payload).encode(), headers={"Retry-After": str(e.retry_after)})
        self.job_runner().wake()
        return _job_response(202, {**job.public(), "position": self.jobs.position(job)}, job.id)

    def job_call(self, body: dict[str, Any]) -> Response:
        """``{"job": ID}`` (poll) or ``{"job": ID, "cancel": true}``."""
        extra = sorted(set(body) - JOB_FIELDS)
        job_id, cancel = body.get("job"), body.get("cancel", False)
        if extra:
            return error_response(400, RequestError(extra[0], "unknown field for a job call").to_dict())
        if not isinstance(job_id, str) or not isinstance(cancel, bool):
            field_name = "job" if not isinstance(job_id, str) else "cancel"
            msg = "a job id ('j:' + 16 hex digits)" if field_name == "job" else "true or false"
            return error_response(400, RequestError(field_name, f"must be {msg}").to_dict())
        try:
            job = self.jobs.cancel(job_id) if cancel else self.jobs.status(job_id)
        except jobs.UnknownJob as e:
            return error_response(404, RequestError("job", str(e), 404).to_dict())
        if cancel:  # a queued job is cancelled now, a running one at its next step; a finished one stays as it was
            cancelling = job.state == jobs.RUNNING
            return _job_response(202 if cancelling else 200, {**job.public(), **({"status": "cancelling"}
                                 if cancelling else {})}, job.id)  # fmt: skip
        if job.state in (jobs.PENDING, jobs.RUNNING):
            position = {"position": self.jobs.position(job)} if job.state == jobs.PENDING else {}
            return _job_response(202, {**job.public(), **position}, job.id)
        if job.state == jobs.DONE:
            stored = self.jobs.result(job.id)
            return Response(
                stored.status, stored.body, stored.content_type, {**stored.headers, "X-Ganserve-Job": job.id}
            )
        if job.state == jobs.CANCELLED:
            return _job_response(410, {**job.public(), "error": "job cancelled"}, job.id)
        status = int((job.error or {}).get("status", 500))
        return _job_response(status, {"error": "job failed", **job.public()}, job.id)

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
        fam = family_of(self.model)
        for i, raw in enumerate(bodies):
            try:
                body = decode_body(raw)
                if isinstance(body, dict) and "job" in body:
                    responses[i] = self.job_call(body)
                    continue
                req = validate_request(fam.request, body, fam.name)
                if req.job_steps():  # long work: checked now, run beside the batch
                    if req.image_count() > self.max_images:
                        raise RequestError("seeds", f"{req.image_count()} images; the limit is {self.max_images}")
                    fam.sampler.check(self.model, req)
                    responses[i] = self._submit(body, req.job_steps())
                    continue
                plans[i] = plan(self.model, req, max_images=self.max_images)
            except RequestError as e:
                responses[i] = error_response(e.status, e.to_dict())
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


def _job_response(status: int, payload: dict[str, Any], job_id: str) -> Response:
    return Response(status, json.dumps(payload).encode(), headers={"X-Ganserve-Job": job_id})


def _job_error(e: BaseException) -> dict[str, Any]:
    """What polling a failed job answers: the request's own error (4xx naming the field), else an internal one."""
    if isinstance(e, RequestError):
        return {"status": e.status, "field": e.field, "message": e.message}
    log.error("job failed", exc_info=e)
    return {"status": 500, "field": "", "message": f"internal error: {type(e).__name__}: {str(e)[:300]}"}
