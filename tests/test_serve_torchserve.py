"""A real TorchServe (Java frontend, Python workers) serving tiny checkpoints through ganserve's handler."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

from ganserve.sampling import sample
from ganserve.serving.config import free_port
from ganserve.serving.launcher import Server, group_processes, port_is_free
from ganserve.serving.store import ArchiveOptions
from tests.conftest import ganserve_cmd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_models_dir, tmp_path_factory):
    ckpts = {"tiny": tiny_models_dir / "tiny.safetensors", "tiny-cond": tiny_models_dir / "tiny-cond.safetensors"}
    options = ArchiveOptions(batch_size=4, max_batch_delay_ms=300, max_images=16)
    with Server(ckpts, tmp_path_factory.mktemp("ts"), archive=options) as s:
        yield s


def png(resp: requests.Response) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.content)))


def test_png_equals_the_cli_for_the_same_request(server, tiny_models_dir, tmp_path):
    body = {"seeds": [3], "truncation_psi": 0.7, "noise_mode": "random", "style_mix": {"seeds": [9], "layers": [0, 2]}}
    http = png(server.client().predict("tiny", body))
    out = tmp_path / "cli.png"
    env = {**os.environ, "GANSERVE_CHECKPOINTS": str(tiny_models_dir)}
    subprocess.run(
        ganserve_cmd("sample", "--model", "tiny", "--seeds", "3", "--psi", "0.7", "--noise-mode", "random",
                     "--mix", "9:0-2", "--out", str(out)),
        check=True, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert np.array_equal(http, np.asarray(Image.open(out)))


def test_headers_grid_and_json_list(server, tiny):
    c = server.client()
    r = c.predict("tiny", {"seeds": "0-3", "grid": True, "grid_cols": 2})
    assert r.headers["X-Ganserve-Seeds"] == "0,1,2,3" and r.headers["X-Ganserve-Model"] == "tiny"
    assert len(r.headers["X-Ganserve-Model-Version"]) == 12
    assert png(r).shape == (32, 32, 3)
    r = c.predict("tiny", {"seeds": [4, 5]})
    assert r.headers["content-type"] == "application/json"
    items = r.json()["images"]
    expected = sample(tiny, seeds=[4, 5]).images
    import base64

    for item, exp in zip(items, expected):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(item["png"])))), exp)
    cls = c.predict("tiny-cond", {"seeds": [1], "class": "square"})
    assert png(cls).shape == (16, 16, 3)


BAD = [
    (b"{not json", ""),
    (b'["a", "list"]', ""),
    (b'{"seeds": [1], "sneaky": true}', "sneaky"),
    (b'{"seeds": [1], "truncation_psi": "high"}', "truncation_psi"),
    (b'{"seeds": [1], "truncation_psi": NaN}', "truncation_psi"),
    (b'{"seeds": [1], "truncation_psi": Infinity}', "truncation_psi"),
    (b'{"seeds": [1], "truncation_psi": 7}', "truncation_psi"),
    (b'{"seeds": "0-40"}', "seeds"),
    (b'{"seeds": [4294967296]}', "seeds"),
    (b'{"seeds": [1], "temperature": 0.9}', "temperature"),
    (b'{"seeds": [1], "class": 2}', "class"),
    (b'{"seeds": [1], "noise_mode": "loud"}', "noise_mode"),
]


@pytest.mark.parametrize("body, field", BAD)
def test_bad_requests_get_400_naming_the_field(server, body, field):
    r = server.client().predict_raw("tiny", body)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["field"] == field and err["message"]


def test_unknown_class_on_a_conditional_model(server):
    r = server.client().predict_raw("tiny-cond", {"seeds": [1], "class": "hexagon"})
    assert r.status_code == 400 and r.json()["field"] == "class" and "circle" in r.json()["message"]


def test_a_batch_mixing_valid_and_invalid_requests(server, tiny):
    c = server.client()
    bodies = [{"seeds": [11]}, b"{oops", {"seeds": [12], "truncation_psi": 9}, {"seeds": [13]}]
    with ThreadPoolExecutor(len(bodies)) as pool:  # sent together: the 300 ms batch delay gathers them
        rs = list(pool.map(lambda b: c.predict_raw("tiny", b), bodies))
    assert [r.status_code for r in rs] == [200, 400, 400, 200]
    assert np.array_equal(png(rs[0]), sample(tiny, seeds=[11]).images[0])
    assert np.array_equal(png(rs[3]), sample(tiny, seeds=[13]).images[0])


def test_sixteen_concurrent_clients(server, tiny):
    c = server.client()
    expected = sample(tiny, seeds=list(range(16)), truncation_psi=0.8).images
    with ThreadPoolExecutor(16) as pool:
        rs = list(pool.map(lambda s: c.predict_raw("tiny", {"seeds": [s], "truncation_psi": 0.8}), range(16)))
    assert [r.status_code for r in rs] == [200] * 16
    for s, r in enumerate(rs):
        assert np.array_equal(png(r), expected[s])


def test_token_authorisation(server):
    c = server.client()
    refused = c.predict_raw("tiny", {"seeds": [1]}, key=None)
    assert refused.status_code in (400, 401) and "Token Authorization failed" in refused.text
    wrong = c.predict_raw("tiny", {"seeds": [1]}, key="not-the-key")
    assert wrong.status_code in (400, 401)
    assert c.predict_raw("tiny", {"seeds": [1]}).status_code == 200
    mgmt = requests.get(f"{server.config.management_url}/models", timeout=10)
    assert mgmt.status_code in (400, 401)


def test_models_describe_and_metrics(server):
    c = server.client()
    assert sorted(c.models()) == ["tiny", "tiny-cond"]
    info = c.describe("tiny-cond")
    assert info["classes"] == ["circle", "square", "triangle"] and info["max_images"] == 16
    assert info["request_schema"]["additionalProperties"] is False
    c.predict("tiny", {"seeds": [1, 2]})
    text = c.metrics(server.config.metrics_url)
    images = [ln for ln in text.splitlines() if ln.startswith("GanserveImagesGenerated{") and '"tiny"' in ln]
    assert images and float(images[0].rsplit(" ", 1)[1]) >= 2
    assert "GanserveGeneratorTime" in text


def test_registration_api_is_off(server):
    r = requests.post(
        f"{server.config.management_url}/models?url=https://example.invalid/x.mar",
        headers={"Authorization": f"Bearer {server.keys()['management']}"}, timeout=10,
    )  # fmt: skip
    assert r.status_code >= 400


def test_serve_cli_stops_cleanly_and_frees_ports(tiny_path, tmp_path):
    ports = [free_port() for _ in range(5)]
    proc = subprocess.Popen(
        ganserve_cmd("serve", "--models", str(tiny_path), "--port", str(ports[0]), "--management-port",
                     str(ports[1]), "--metrics-port", str(ports[2]),
                     "--grpc-ports", f"{ports[3]},{ports[4]}", "--no-auth", "--workdir", str(tmp_path)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.strip() == "ready" or not line:
            break
    assert lines[-1].strip() == "ready", "".join(lines)
    assert "token authorisation OFF" in "".join(lines)
    r = requests.post(f"http://127.0.0.1:{ports[0]}/predictions/tiny", json={"seeds": [1]}, timeout=60)
    assert r.status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert "stopped" in proc.stdout.read()
    assert group_processes(proc.pid) == []
    assert all(port_is_free("127.0.0.1", p) for p in ports)
