"""Long work as jobs (ganserve.jobs through the serving core): submit -> 202 + id, progress, result, cancel, bounds;
and the bounded latent store."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ganserve import jobs, latents_store
from ganserve.images import b64, encode_png
from ganserve.requests import RequestError
from ganserve.sampling import plan, sample
from ganserve.serving.service import SampleService


@pytest.fixture(autouse=True)
def stores(tmp_path, monkeypatch):
    monkeypatch.setenv("GANSERVE_JOBS", str(tmp_path / "jobs"))
    monkeypatch.setenv("GANSERVE_LATENTS", str(tmp_path / "latents"))
    return tmp_path


def target_png(tiny) -> str:
    return b64(encode_png(sample(tiny, seeds=[5]).images[0]))


def call(service: SampleService, body: dict):
    (r,) = service.handle_batch([json.dumps(body).encode()])
    return r


def wait_done(service: SampleService, job_id: str, timeout: float = 120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = call(service, {"job": job_id})
        if r.status != 202:
            return r
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still pending after {timeout}s")


def test_a_projection_is_a_job_whose_result_equals_the_inline_answer(tiny):
    service = SampleService(tiny)
    body = {"project": target_png(tiny), "project_steps": 12, "truncation_psi": 0.9}
    r = call(service, body)
    assert r.status == 202, r.body
    info = json.loads(r.body)
    assert info["status"] == "queued" and jobs.ID.fullmatch(info["job"]) and r.headers["X-Ganserve-Job"] == info["job"]
    done = wait_done(service, info["job"])
    assert done.status == 200 and done.content_type == "image/png"
    inline = sample(tiny, body)  # the Python API still runs it inline: same pixels, same w
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(done.body))), inline.images[0])
    params = json.loads(Image.open(io.BytesIO(done.body)).text["ganserve"])
    assert params["w"] == inline.params[0]["w"] and params["project_steps"] == 12
    assert call(service, {"job": info["job"]}).body == done.body  # fetched again: the same stored answer
    service.job_runner().stop()


def test_progress_is_reported_and_a_running_job_cancels(tiny):
    service = SampleService(tiny)
    r = call(service, {"project": target_png(tiny), "project_steps": 1000})
    job_id = json.loads(r.body)["job"]
    end = time.monotonic() + 60
    seen = {}
    while time.monotonic() < end and not seen.get("progress", {}).get("step"):
        seen = json.loads(call(service, {"job": job_id}).body)
        time.sleep(0.05)
    assert seen["status"] == "running" and 0 < seen["progress"]["step"] < 1000 and seen["progress"]["steps"] == 1000
    c = call(service, {"job": job_id, "cancel": True})
    assert c.status == 202 and json.loads(c.body)["status"] == "cancelling"  # stops at its next step
    final = wait_done(service, job_id, timeout=30)
    assert final.status == 410 and json.loads(final.body)["status"] == "cancelled"
    service.job_runner().stop()


def test_the_queue_is_bounded_and_a_queued_job_cancels_at_once(tiny, monkeypatch):
    monkeypatch.setenv("GANSERVE_JOBS_MAX_PENDING", "2")
    service = SampleService(tiny)
    body = {"project": target_png(tiny), "project_steps": 1000}
    _running, second = (json.loads(call(service, body).body) for _ in range(2))  # one runs, one waits
    assert second["status"] == "queued"
    full = call(service, body)
    assert full.status == 429 and int(full.headers["Retry-After"]) >= 1
    assert "try again" in json.loads(full.body)["message"]
    c = call(service, {"job": second["job"], "cancel": True})
    assert c.status == 200 and json.loads(c.body)["status"] == "cancelled"
    assert call(service, {"job": second["job"]}).status == 410
    assert call(service, body).status == 202  # the cancelled job's slot is free again
    for job in jobs.JobStore(service.jobs.folder)._all():
        service.jobs.cancel(job.id)
    service.job_runner().stop()


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"job": "j:0123456789abcdef"}, 404, "job"),
        ({"job": "../../etc"}, 404, "job"),
        ({"job": 7}, 400, "job"),
        ({"job": "j:0123456789abcdef", "cancel": "yes"}, 400, "cancel"),
        ({"job": "j:0123456789abcdef", "seeds": [1]}, 400, "seeds"),
        ({"project": b64(b"GIF89a..."), "project_steps": 5}, 400, "project"),
        ({"project": "AAAA", "truncation_psi": 9}, 400, "truncation_psi"),
        ({"project": "AAAA", "style_mix": {"seeds": list(range(40)), "layers": "coarse"}}, 400, "seeds"),
    ],
)
def test_bad_job_calls_and_bad_submissions_are_refused_at_once(tiny, body, status, field):
    service = SampleService(tiny, max_images=16)
    r = call(service, body)
    assert r.status == status and json.loads(r.body)["field"] == field, r.body
    assert not list(jobs.root().glob("*/*/request.json"))  # nothing was queued


def test_a_job_whose_worker_died_is_reported_failed(tiny, stores):
    service = SampleService(tiny)  # no runner started here: the job is claimed below as a worker would
    job_id = service.jobs.submit({"project": target_png(tiny), "project_steps": 5}, steps=5).id
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    job = service.jobs.claim()
    assert job.id == job_id
    job.pid = int(dead.stdout)  # the worker that claimed it has exited since
    service.jobs._write(job)
    r = call(service, {"job": job_id})
    assert r.status == 500 and "worker running this job stopped" in json.loads(r.body)["message"]


def test_finished_jobs_are_evicted_oldest_first(tiny):
    store = jobs.JobStore(jobs.root() / "m", jobs.JobLimits(max_kept=2))
    ids = []
    for _ in range(3):
        job = store.submit({"seeds": [0]})
        store.finish(store.claim(), jobs.StoredResponse(200, b"x", "text/plain"))
        ids.append(job.id)
    with pytest.raises(jobs.UnknownJob):
        store.status(ids[0])
    assert [store.status(i).state for i in ids[1:]] == ["done", "done"]
    assert len(os.listdir(store.folder)) == 3  # two jobs and the lock file


def test_a_failed_job_answers_with_its_error():
    store = jobs.JobStore(jobs.root() / "m")

    def run(request, hook):
        hook(1, 3)
        raise RequestError("project", "image is too dark")

    runner = jobs.JobRunner(store, run, lambda e: {"status": 400, "field": e.field, "message": e.message})
    job = store.submit({})
    runner.run_one(store.claim())
    state = store.status(job.id)
    assert state.state == "failed" and state.error == {
        "status": 400,
        "field": "project",
        "message": "image is too dark",
    }
    assert state.public()["field"] == "project"


def test_edits_directions_are_found_when_the_service_prepares(tiny):
    service = SampleService(tiny).prepare()
    assert set(tiny.__dict__.get("_directions", {})) >= {"sefa", "pca"}
    service.job_runner().stop()


# ---- the latent store ---------------------------------------------------------------------------------------------


def test_the_latent_store_keeps_the_most_recently_used(tiny, monkeypatch):
    monkeypatch.setenv("GANSERVE_LATENTS_MAX_FILES", "4")
    ids = [latents_store.save(np.full(32, i, np.float32)) for i in range(4)]
    time.sleep(0.02)
    latents_store.resolve(ids[0])  # used: stays
    time.sleep(0.02)
    newer = latents_store.save_many([np.full(32, 10 + i, np.float32) for i in range(2)])
    kept = {f"w:{p.stem}" for p in latents_store.root().glob("*.npy")}
    assert kept == {ids[0], ids[3], *newer}
    with pytest.raises(RequestError) as e:
        plan(tiny, {"w": ids[1]})
    assert e.value.field == "w" and e.value.status == 404 and "evicted" in e.value.message
    (r,) = SampleService(tiny).handle_batch([json.dumps({"w": ids[1]}).encode()])
    assert r.status == 404 and json.loads(r.body)["field"] == "w"


def test_the_latent_store_bounds_bytes_and_age():
    for i in range(3):
        latents_store.save(np.full(32, i, np.float32))
    size = next(latents_store.root().glob("*.npy")).stat().st_size
    assert latents_store.evict(latents_store.StoreLimits(max_bytes=2 * size)) == 1
    assert latents_store.evict(latents_store.StoreLimits(max_age_s=60), now=time.time() + 120) == 2
    assert not list(latents_store.root().glob("*.npy"))


def test_inline_w_rows_stay_within_the_cap(tiny, monkeypatch):
    monkeypatch.setenv("GANSERVE_LATENTS_MAX_FILES", "64")
    service = SampleService(tiny)
    for k in range(5):
        w = np.random.default_rng(k).standard_normal((16, 1, 32)).astype(np.float32)
        buf = io.BytesIO()
        np.save(buf, w)
        assert call(service, {"w": b64(buf.getvalue())}).status == 200
    assert len(list(latents_store.root().glob("*.npy"))) == 64


@pytest.mark.parametrize("shape", [(0,), (0, 32), (0, 4, 32)])
def test_an_empty_w_is_a_clear_400(tiny, shape):
    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, np.float32))
    (r,) = SampleService(tiny).handle_batch([json.dumps({"w": b64(buf.getvalue())}).encode()])
    assert r.status == 400 and json.loads(r.body)["field"] == "w" and "empty" in json.loads(r.body)["message"]


def test_prepare_survives_an_export_that_ships_no_directions(tiny, monkeypatch):
    import ganserve.families.stylegan2 as sg2

    def no_directions(model, method, field):
        raise RequestError(field, f"this export ships no {method} directions")

    monkeypatch.setattr(sg2, "latent_directions", no_directions)
    service = SampleService(tiny).prepare()  # loads; an edits request would then be refused by name
    assert call(service, {"seeds": [0]}).status == 200
    r = call(service, {"seeds": [0], "edits": [{"direction": 0, "amount": 1.0}]})
    assert r.status == 400 and json.loads(r.body)["field"].startswith("edits")
    service.job_runner().stop()
