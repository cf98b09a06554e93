"""The management API of a real TorchServe lets nothing in: no workflow or model from a URL or a path, even with the
management key. The probes are what an attacker holding the key would send: a workflow archive served on loopback
whose handler writes a marker when imported, and file:// URLs of private files."""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading
import time
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest
import requests

from ganserve.serving.launcher import Server

pytestmark = pytest.mark.slow

HANDLER = """
from pathlib import Path
from typing import ClassVar
Path({marker!r}).write_text("the workflow's code ran")


def pre_fn(data, context):
    return data


def post_fn(data, context):
    return data
"""


def make_war(path: Path, marker: Path) -> Path:
    """A workflow archive as torch-workflow-archiver writes it: WAR-INF/MANIFEST.json, the spec, the handler."""
    workflow = {"workflowName": "evil", "specFile": "spec.yaml", "handler": "evil_handler.py"}
    manifest = {
        "createdOn": "01/01/2026 00:00:00",
        "runtime": "python",
        "archiverVersion": "0.2.11",
        "workflow": workflow,
    }
    spec = "models:\n  min-workers: 1\n  max-workers: 1\ndag:\n  pre_fn: [post_fn]\n"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("WAR-INF/MANIFEST.json", json.dumps(manifest))
        z.writestr("spec.yaml", spec)
        z.writestr("evil_handler.py", HANDLER.format(marker=str(marker)))
    return path


class Recorder(http.server.SimpleHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorder.hits.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def archive_host(tmp_path_factory):
    """A loopback HTTP server offering evil.war; it records every request it gets."""
    root = tmp_path_factory.mktemp("www")
    marker = root / "MARKER"
    make_war(root / "evil.war", marker)
    handler = lambda *a, **kw: Recorder(*a, directory=str(root), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", marker
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(tiny_server):
    """The session's default TorchServe serving 'tiny' (tests/conftest.py)."""
    return tiny_server


def management(server: Server, method: str, path: str) -> requests.Response:
    c = server.client()
    return c.request(method, f"{server.config.management_url}{path}", "management")


def test_a_workflow_archive_served_on_loopback_is_neither_fetched_nor_run(server, archive_host):
    url, marker = archive_host
    Recorder.hits.clear()
    r = management(server, "POST", f"/workflows?url={url}/evil.war&workflow_name=evil")
    assert r.status_code >= 400, r.text
    time.sleep(3)  # a worker that had been started would have imported the handler by now
    assert not marker.exists(), "the workflow's handler ran"
    assert Recorder.hits == [], f"TorchServe fetched {Recorder.hits}"
    assert management(server, "GET", "/workflows").json().get("workflows", []) == []
    assert server.client().models() == ["tiny"]


def test_file_urls_copy_nothing_into_any_store(server, tmp_path):
    secret = tmp_path / "private.war"
    make_war(secret, tmp_path / "MARKER")
    secret.chmod(0o600)
    before = {p: sorted(os.listdir(p)) for p in server.stores()}
    for api in ("workflows", "models"):
        r = management(server, "POST", f"/{api}?url=file://{secret}")
        assert r.status_code >= 400, (api, r.text)
    assert {p: sorted(os.listdir(p)) for p in server.stores()} == before
    assert not (tmp_path / "MARKER").exists()


def test_a_model_cannot_be_registered_or_deleted(server, archive_host):
    url, _ = archive_host
    assert management(server, "POST", f"/models?url={url}/x.mar").status_code == 405
    assert management(server, "DELETE", "/models/tiny").status_code == 405
    assert server.client().predict("tiny", {"seeds": [0]}).status_code == 200


def test_the_stores_are_private(server):
    for store in server.stores():
        assert stat.S_IMODE(store.stat().st_mode) == 0o700, store
    props = (server.workdir / "config.properties").read_text()
    assert "enable_model_api=false" in props


def test_grpc_register_model_is_refused_and_fetches_nothing(server, archive_host):
    import grpc

    from tests.test_serve_torchserve import _field

    url, _ = archive_host
    Recorder.hits.clear()
    request = _field(5, b"evil") + _field(9, f"{url}/x.mar".encode())  # RegisterModelRequest: model_name, url
    with grpc.insecure_channel(f"127.0.0.1:{server.config.grpc_management_port}") as channel:
        call = channel.unary_unary("/org.pytorch.serve.grpc.management.ManagementAPIsService/RegisterModel",
                                   request_serializer=bytes, response_deserializer=bytes)  # fmt: skip
        with pytest.raises(grpc.RpcError):
            call(request, metadata=[("authorization", f"Bearer {server.keys()['management']}")], timeout=30)
    assert Recorder.hits == []
    assert server.client().models() == ["tiny"]
