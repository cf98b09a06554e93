"""The explorer over HTTP: HTTPBackend and the app against a server speaking ganserve's TorchServe API.

The server here is a STAND-IN (``StandInServer``), not TorchServe: two small threads answering the management and
inference routes with the bodies the real handler sends (``ganserve.sampling.encode_result``, 400 {"error", "field",
"message"}, the model description as customizedMetadata) and checking TorchServe-style bearer tokens from a
key_file.json. It lets these tests run without Java or a model store.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

import ganserve
from ganserve.sampling import describe, sample
from ganserve.serving.service import SampleService
from ganserve.ui.backend import BackendError, decode_body
from ganserve.ui.remote import HTTPBackend, read_key

KEYS = {"management": "mgmt-key-123", "inference": "inf-key-456", "API": "api-key-789"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandInServer:
    """A stand-in for ``ganserve serve``: management and inference APIs on two ports, token auth on."""

    def __init__(self, models_dir: Path) -> None:
        self.models = {n: ganserve.load(models_dir / f"{n}.safetensors") for n in ("tiny", "tiny-cond")}
        self.services = {n: SampleService(m) for n, m in self.models.items()}
        self.posts: list[dict] = []
        self._servers = [
            ThreadingHTTPServer(("127.0.0.1", 0), self._handler(api)) for api in ("management", "inference")
        ]
        self.management_url, self.inference_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in self._servers)

    def __enter__(self) -> StandInServer:
        for s in self._servers:
            threading.Thread(target=s.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()

    def describe(self, name: str) -> dict:
        """What ganserve's handler puts in customizedMetadata: ``ganserve.sampling.describe`` of the model."""
        return {**describe(self.models[name]), "model": name}

    def _handler(self, api: str):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, obj) -> None:
                self._send(status, json.dumps(obj).encode())

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {KEYS[api]}":
                    return True
                # as TorchServe 0.12 answers a wrong or missing token
                msg = "Token Authorization failed. Token either incorrect, expired, or not provided correctly"
                self._json(400, {"code": 400, "type": "InvalidKeyException", "message": msg})
                return False

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if api != "management" or not self._authorised():
                    return None if api == "management" else self._json(404, {"code": 404, "message": "no route"})
                names = list(server.models)
                if url.path == "/models":  # one model per page, to exercise nextPageToken
                    q = parse_qs(url.query)
                    start = int(q.get("next_page_token", ["0"])[0])
                    page = {"models": [{"modelName": n, "modelUrl": f"{n}.mar"} for n in names[start : start + 1]]}
                    if start + 1 < len(names):
                        page["nextPageToken"] = str(start + 1)
                    return self._json(200, page)
                name = url.path.removeprefix("/models/")
                if name not in server.models:
                    return self._json(404, {"code": 404, "type": "ModelNotFoundException", "message": f"{name}?"})
                meta = json.dumps(server.describe(name))
                return self._json(200, [{"modelName": name, "modelVersion": "1.0", "customizedMetadata": meta}])

            def do_POST(self) -> None:
                if api != "inference" or not self._authorised():
                    return None if api == "inference" else self._json(405, {"code": 405, "message": "no"})
                name = self.path.removeprefix("/predictions/")
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                server.posts.append(json.loads(raw))
                (r,) = server.services[name].handle_batch([raw])  # the serving core, as the real handler runs it
                return self._send(r.status, r.body, r.content_type)

        return Handler


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "key_file.json"
    path.write_text(json.dumps({k: {"key": v, "expiration time": "2099-01-01T00:00:00Z"} for k, v in KEYS.items()}))
    return path


@pytest.fixture(scope="module")
def server(tiny_models_dir):
    with StandInServer(tiny_models_dir) as s:
        yield s


@pytest.fixture(scope="module")
def backend(server, key_file) -> HTTPBackend:
    return HTTPBackend(server.inference_url, server.management_url, key_file)


def direct(server, name: str, request: dict) -> list:
    """What the server itself answers for ``request``, without the UI in between."""
    import requests

    resp = requests.post(f"{server.inference_url}/predictions/{name}", json={**request, "format": "json"},
                         headers={"Authorization": f"Bearer {KEYS['inference']}"}, timeout=30)  # fmt: skip
    assert resp.status_code == 200
    return decode_body(resp.content, resp.headers["Content-Type"])


def test_key_file_formats(tmp_path, key_file):
    assert read_key(key_file, "management") == "mgmt-key-123"
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"inference": "abc"}))
    assert read_key(plain, "inference") == "abc" and read_key(plain, "management") is None
    with pytest.raises(BackendError, match="not found"):
        read_key(tmp_path / "missing.json", "inference")


def test_models_and_description(backend):
    assert backend.models() == ["tiny", "tiny-cond"]  # across two pages
    info = backend.describe("tiny-cond")
    assert (info.family, info.num_ws, info.resolution) == ("stylegan2", 6, 16)
    assert info.classes == ["circle", "square", "triangle"]
    assert "style_mix" in info.schema["properties"]
    assert info.directions["methods"] == ["sefa", "pca"] and info.layer_groups == {"coarse": [0, 3], "middle": [4, 5]}


def test_generate_equals_server_and_core(backend, server):
    req = {"seeds": [4, 9], "truncation_psi": 0.6, "noise_mode": "random"}
    pics = backend.generate("tiny", req)
    want = sample(server.models["tiny"], req)
    assert [p.params for p in pics] == want.params
    for p, img in zip(pics, want.images):
        np.testing.assert_array_equal(p.array(), img)
    assert server.posts[-1]["format"] == "json"


def test_errors_become_backend_errors(backend, server, key_file, tmp_path):
    with pytest.raises(BackendError) as err:
        backend.generate("tiny-cond", {"seeds": [0], "class": "hexagon"})
    assert err.value.field == "class" and "unknown class 'hexagon'" in err.value.message

    bad = tmp_path / "bad_keys.json"
    bad.write_text(json.dumps({"management": {"key": "wrong"}, "inference": {"key": "wrong"}}))
    with pytest.raises(BackendError, match="refused the request \\(400, token authorisation\\)"):
        HTTPBackend(server.inference_url, server.management_url, bad).models()
    with pytest.raises(BackendError, match="server error 404"):
        backend.describe("nope")
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendError, match="cannot reach the server"):
        HTTPBackend(down, down, key_file, timeout=5).models()


@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
def test_app_over_http_returns_the_servers_images(backend, server):
    gradio_client = pytest.importorskip("gradio_client")
    from PIL import Image

    from ganserve.ui.app import build_app, launch

    app = build_app(backend)
    _, url, _ = launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(url, verbose=False)
        common = dict(psi=0.8, cutoff=6, noise_mode="const", class_index=1, temperature=1.0, top_k=0, top_p=1.0)

        def pixels(path):
            with Image.open(path) as im:
                return np.asarray(im)

        path, params, _ = client.predict(model="tiny-cond", seed=12, **common, api_name="/generate")
        (want,) = direct(server, "tiny-cond", {"seeds": [12], "truncation_psi": 0.8, "class": 1})
        np.testing.assert_array_equal(pixels(path), want.array())
        assert params == want.params

        _, gallery, _, _ = client.predict(model="tiny-cond", row_seeds="1-2", col_seeds="5", layers="coarse",
                                          start=0, stop=4, **common, api_name="/style_mix")  # fmt: skip
        want = direct(server, "tiny-cond", {"seeds": [1, 2], "style_mix": {"seeds": [5], "layers": "coarse"},
                                            "truncation_psi": 0.8, "class": 1})  # fmt: skip
        assert len(gallery) == 2
        for item, w in zip(gallery, want):
            np.testing.assert_array_equal(pixels(item["image"]), w.array())

        gallery, _, _ = client.predict(model="tiny", seeds="3,4", **{**common, "class_index": None}, api_name="/grid")
        for item, w in zip(gallery, direct(server, "tiny", {"seeds": [3, 4], "truncation_psi": 0.8})):
            np.testing.assert_array_equal(pixels(item["image"]), w.array())

        with pytest.raises(gradio_client.exceptions.AppError, match="Invalid class: unknown class 'hexagon'"):
            client.predict(model="tiny-cond", seed=1, **{**common, "class_index": "hexagon"}, api_name="/generate")
    finally:
        app.close()


@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
def test_app_over_http_edits_projects_and_starts_from_the_w(backend, server, tmp_path, monkeypatch):
    """Over HTTP projection is a job (submitted, then polled until the server has the answer); its w lives in the
    server's latent store and is then sent back by id."""
    import base64

    gradio_client = pytest.importorskip("gradio_client")
    from PIL import Image

    from ganserve.ui.app import build_app, launch

    monkeypatch.setenv("GANSERVE_LATENTS", str(tmp_path / "latents"))  # the stand-in server's store
    G = server.models["tiny"]
    target = tmp_path / "target.png"
    Image.fromarray(sample(G, seeds=[2]).images[0]).save(target)
    app = build_app(backend)
    _, url, _ = launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(url, verbose=False)
        common = dict(psi=1.0, cutoff=6, noise_mode="const", class_index=None, temperature=1.0, top_k=0, top_p=1.0)

        def pixels(path):
            with Image.open(path) as im:
                return np.asarray(im)

        path, params, _ = client.predict(model="tiny", image=gradio_client.handle_file(str(target)), steps=4,
                                         **common, api_name="/project")  # fmt: skip
        b64 = base64.b64encode(target.read_bytes()).decode()
        (submitted,) = [p for p in server.posts if "project" in p]
        assert submitted["project"] == b64 and submitted["project_steps"] == 4
        assert set(server.posts[-1]) == {"job"}  # the last poll fetched the answer
        inline = sample(G, {"project": b64, "project_steps": 4, "truncation_psi": 1.0})  # the Python API: inline
        np.testing.assert_array_equal(pixels(path), inline.images[0])
        assert params == inline.params[0]
        w = params["w"]
        path, params, _ = client.predict(model="tiny", seed=0, w=w, **{**common, "edit_1": -2.0},
                                         api_name="/generate")  # fmt: skip
        edits = [{"direction": 1, "amount": -2.0, "method": "sefa"}]
        assert server.posts[-1]["w"] == w and server.posts[-1]["edits"] == edits
        (want,) = direct(server, "tiny", {"w": w, "edits": edits, "truncation_psi": 1.0})
        np.testing.assert_array_equal(pixels(path), want.array())
        *strips, status = client.predict(model="tiny", seed=3, **common, api_name="/strips")
        assert all(strips) and "10 direction strips" in status  # 61 requests, 4 at a time
    finally:
        app.close()
