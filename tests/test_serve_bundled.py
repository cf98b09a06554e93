"""Every bundled model behind one real TorchServe, as `ganserve serve` runs them: a hostile-input suite generated from
each family's request schema, the projection storm that used to get workers killed, and the bounded latent store."""

from __future__ import annotations

import io
import json
import os
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import ganserve
from ganserve.images import b64
from ganserve.loading import available_models, bundled_dir
from ganserve.requests import request_json_schema
from ganserve.serving.launcher import Server
from ganserve.serving.store import ArchiveOptions

pytestmark = pytest.mark.slow

BUNDLED = {name: path for name, path in available_models().items() if path.parent == bundled_dir()}
SG2 = "stylegan2-fashion-32"
LATENT_CAP = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("ts")
    saved = {k: os.environ.get(k) for k in ("GANSERVE_LATENTS", "GANSERVE_LATENTS_MAX_FILES")}
    os.environ.update(GANSERVE_LATENTS=str(work / "latents"), GANSERVE_LATENTS_MAX_FILES=str(LATENT_CAP))
    options = ArchiveOptions(batch_size=4, max_batch_delay_ms=20, max_images=16, threads=1)
    try:
        with Server(BUNDLED, work, archive=options) as s:
            yield s
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


# ---- hostile input, generated from each family's schema -------------------------------------------------------------

HOSTILE_VALUES = [
    "x" * 5000,
    -1e300,
    1e300,
    -1,
    [],
    [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]],
    {"__class__": "os.system", "args": ["id"]},
    list(range(5000)),
    True,
    "0-4294967295",
    "../../../../etc/passwd",
    "\u0000\ud7ff\u202e",
]


def hostile_bodies(family: str) -> list[tuple[str, dict]]:
    props = request_json_schema(family)["properties"]
    bodies = [(name, {name: value}) for name in props for value in HOSTILE_VALUES]
    bodies += [("sneaky", {"seeds": [1], "sneaky": 1}), ("seeds", {"seeds": list(range(10_000))})]
    return bodies


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_hostile_input_gets_a_clear_answer_and_kills_no_worker(server, name):
    family = ganserve.load(BUNDLED[name]).family
    c = server.client()
    statuses = []
    with ThreadPoolExecutor(4) as pool:
        cases = hostile_bodies(family)
        for (field, body), r in zip(cases, pool.map(lambda fb: c.predict_raw(name, fb[1]), cases)):
            statuses.append(r.status_code)
            assert r.status_code in (200, 202, 400, 404, 413), (field, body, r.status_code, r.text[:300])
            if r.status_code == 202:  # a projection that happened to be valid: don't leave it running
                c.predict_raw(name, {"job": r.json()["job"], "cancel": True})
            if r.status_code >= 400:
                err = r.json()
                root = re.split(r"[.\[]", err["field"])[0]
                assert err["message"] and root in {"", field, "seeds"}, (field, err)
    assert statuses.count(400) > len(statuses) // 2
    assert c.workers_ready(name)
    ok = c.predict(name, {"seeds": [0, 1]})  # the default request of every model, class-conditional ones included
    assert ok.status_code == 200, ok.text


# ---- the projection storm ---------------------------------------------------------------------------------------


def target(server) -> str:
    r = server.client().predict(SG2, {"seeds": [3]})
    return b64(r.content)


def test_a_projection_storm_kills_no_worker_and_short_requests_keep_answering(server):
    c = server.client()
    body = {"project": target(server), "project_steps": 1000}
    with ThreadPoolExecutor(16) as pool:
        storm = list(pool.map(lambda _: c.predict_raw(SG2, body), range(16)))
        statuses = sorted(r.status_code for r in storm)
        latencies, short = [], []
        for k in range(30):  # short requests while the storm's jobs run
            t0 = time.perf_counter()
            short.append(c.predict_raw(SG2, {"seeds": [k]}))
            latencies.append(time.perf_counter() - t0)
    accepted = [r.json()["job"] for r in storm if r.status_code == 202]
    refused = [r for r in storm if r.status_code == 429]
    assert len(accepted) + len(refused) == 16 and accepted, statuses
    assert all(int(r.headers["Retry-After"]) >= 1 and "try again" in r.json()["message"] for r in refused)
    assert [r.status_code for r in short] == [200] * 30
    polled = c.predict_raw(SG2, {"job": accepted[0]})
    assert polled.status_code == 202 and polled.json()["status"] in ("queued", "running")
    p99 = sorted(latencies)[int(0.99 * (len(latencies) - 1))]
    print(f"\nstorm: {statuses}; short requests during it: p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms")  # fmt: skip
    for job in accepted:
        assert c.predict_raw(SG2, {"job": job, "cancel": True}).status_code in (200, 202)
    end = time.monotonic() + 60
    pending = set(accepted)
    while pending and time.monotonic() < end:
        pending = {j for j in pending if c.predict_raw(SG2, {"job": j}).status_code == 202}
        time.sleep(0.2)
    assert not pending, "cancelled jobs still running"
    assert c.workers_ready(SG2)
    log = (server.workdir / "logs" / "model_log.log").read_text(errors="replace")
    assert "Worker died" not in log and "timed out" not in log.lower()


def test_a_projection_job_runs_to_its_image(server):
    c = server.client()
    r = c.predict_raw(SG2, {"project": target(server), "project_steps": 25, "truncation_psi": 0.8})
    assert r.status_code == 202, r.text
    job, end = r.json()["job"], time.monotonic() + 120
    while (r := c.predict_raw(SG2, {"job": job})).status_code == 202 and time.monotonic() < end:
        time.sleep(0.2)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.headers["X-Ganserve-Job"] == job
    params = json.loads(Image.open(io.BytesIO(r.content)).text["ganserve"])
    assert params["w"].startswith("w:") and params["project_steps"] == 25 and params["psnr"] > 10
    again = c.predict(SG2, {"w": params["w"], "truncation_psi": 0.8})  # the projected w is served like a seed
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(again.content))), np.asarray(Image.open(io.BytesIO(r.content)))
    )


# ---- the latent store ---------------------------------------------------------------------------------------------


def test_inline_latents_stay_within_the_cap_and_an_evicted_id_is_a_404(server):
    c = server.client()
    num_ws, w_dim = c.describe(SG2)["num_ws"], ganserve.load(BUNDLED[SG2]).config.w_dim
    first_ids = None
    for k in range(8):
        w = np.random.default_rng(k).standard_normal((8, num_ws, w_dim)).astype(np.float32)
        buf = io.BytesIO()
        np.save(buf, w)
        r = c.predict_raw(SG2, {"w": b64(buf.getvalue()), "format": "json"})
        assert r.status_code == 200, r.text
        ids = [img["params"]["w"] for img in r.json()["images"]]
        first_ids = first_ids or ids
    files = list((server.workdir / "latents").glob("*.npy"))
    assert len(files) <= LATENT_CAP
    r = c.predict_raw(SG2, {"w": first_ids[0]})
    assert r.status_code == 404 and r.json()["field"] == "w" and first_ids[0] in r.json()["message"]
