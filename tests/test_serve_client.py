"""ganserve.serving.client against a scripted loopback stand-in (no TorchServe): retries of 503 / 507 with the same
body, Retry-After, no retry of other errors, keys re-read after a refusal, and the UI's HTTP backend doing the same.
The real server's side of these (a worker SIGKILLed under load, a burst over the queue) is in test_serve_workers.py."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ganserve.serving import client as client_module
from ganserve.serving.client import Client, KeyFileError, read_keys

REFUSED = {"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed. Token either incorrect"}
PNG = b"\x89PNG\r\n\x1a\n-stand-in"


class Script:
    """Answers POST /predictions/* from a list of (status, body, headers); records what was sent."""

    def __init__(self, answers: list[tuple[int, dict | bytes, dict]], key: str | None = None) -> None:
        self.answers, self.key, self.seen = list(answers), key, []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                script.seen.append((self.headers.get("Authorization"), body))
                if script.key and self.headers.get("Authorization") != f"Bearer {script.key}":
                    status, payload, headers = 400, REFUSED, {}
                else:
                    status, payload, headers = script.answers.pop(0) if script.answers else (200, PNG, {})
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"Content-Length": str(len(data)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Script:
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Record the client's waits instead of sleeping them."""
    waits: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", waits.append)
    return waits


WORKER_DIED = (507, {"code": 507, "type": "InternalServerException", "message": "Worker died."}, {})
WORKER_DIED_500 = (500, {"code": 500, "type": "InternalServerException", "message": "Worker died."}, {})
QUEUE_FULL = (503, {"code": 503, "type": "ServiceUnavailableException", "message": "Please use scale workers"}, {})


@pytest.mark.parametrize("failure", [WORKER_DIED, WORKER_DIED_500, QUEUE_FULL])
def test_a_lost_request_is_sent_again_once_with_the_same_body(failure, sleeps):
    with Script([failure]) as s:
        r = Client(s.url).predict_raw("m", {"seeds": [5], "truncation_psi": 0.5})
    assert r.status_code == 200 and r.content == PNG
    assert len(s.seen) == 2 and s.seen[0][1] == s.seen[1][1] == b'{"seeds": [5], "truncation_psi": 0.5}'
    assert sleeps == [0.5]


def test_only_once(sleeps):
    with Script([WORKER_DIED, WORKER_DIED, (200, PNG, {})]) as s:
        r = Client(s.url).predict_raw("m", b'{"seeds": [1]}')
        assert r.status_code == 507 and len(s.seen) == 2
    with Script([WORKER_DIED]) as s:
        assert Client(s.url, retries=0).predict_raw("m", {"seeds": [1]}).status_code == 507 and len(s.seen) == 1


def test_retry_after_is_honoured_and_capped(sleeps):
    busy = (503, {"message": "busy"}, {"Retry-After": "2"})
    very_busy = (503, {"message": "busy"}, {"Retry-After": "3600"})
    with Script([busy, (200, PNG, {}), very_busy, very_busy]) as s:
        c = Client(s.url)
        assert c.predict_raw("m", {"seeds": [1]}).status_code == 200
        assert c.predict_raw("m", {"seeds": [1]}).status_code == 503
    assert sleeps == [2.0, client_module.MAX_RETRY_WAIT_S]


@pytest.mark.parametrize("status", [400, 404, 413, 500])
def test_other_errors_are_not_retried(status, sleeps):  # a 500 of ganserve's handler would only repeat
    with Script([(status, {"error": "x", "field": "", "message": "no"}, {})]) as s:
        assert Client(s.url).predict_raw("m", {"seeds": [1]}).status_code == status
    assert len(s.seen) == 1 and sleeps == []


def key_file_with(path, inference: str) -> None:
    entries = {"inference": inference, "management": "m", "API": "a"}
    path.write_text(json.dumps({k: {"key": v, "expiration time": "2036-01-01T00:00:00Z"} for k, v in entries.items()}))


def test_keys_are_read_again_after_a_refusal(tmp_path, sleeps):
    keys = tmp_path / "key_file.json"
    key_file_with(keys, "old-key")
    with Script([], key="old-key") as s:
        c = Client(s.url, key_file=keys)
        assert c.predict_raw("m", {"seeds": [1]}).status_code == 200
        s.key = "new-key"  # regenerated (TorchServe's token API rewrites the file)
        key_file_with(keys, "new-key")
        assert c.predict_raw("m", {"seeds": [1]}).status_code == 200
        assert s.seen[-1][0] == "Bearer new-key"
        # an explicit key is what the caller asked for: refused, not replaced
        assert c.predict_raw("m", {"seeds": [1]}, key="old-key").status_code == 400
        assert c.predict_raw("m", {"seeds": [1]}, key=None).status_code == 400 and s.seen[-1][0] is None


def test_key_file_errors_are_named(tmp_path):
    with pytest.raises(KeyFileError, match="not found"):
        read_keys(tmp_path / "missing.json")
    half = tmp_path / "half.json"
    half.write_text('{"inference": {"key": "ab')  # TorchServe rewrites the file in place: a read can land mid-write
    with pytest.raises(KeyFileError, match="cannot read"):
        read_keys(half)


def test_the_ui_backend_retries_too(tmp_path, sleeps):
    from ganserve.ui.remote import HTTPBackend

    keys = tmp_path / "key_file.json"
    key_file_with(keys, "k")
    body = json.dumps({"model": "m", "model_version": "v", "seeds": [1], "images": []}).encode()
    with Script([WORKER_DIED, (200, body, {"Content-Type": "application/json"})], key="k") as s:
        assert HTTPBackend(s.url, s.url, keys).generate("m", {"seeds": [1]}) == []
    assert len(s.seen) == 2 and s.seen[0][1] == s.seen[1][1] and sleeps == [0.5]


def test_the_ui_says_busy_when_the_retry_fails_too(tmp_path, sleeps):
    from ganserve.ui.backend import BackendError
    from ganserve.ui.remote import HTTPBackend

    with Script([QUEUE_FULL, QUEUE_FULL]) as s, pytest.raises(BackendError, match=r"busy \(503: its queue"):
        HTTPBackend(s.url, s.url).generate("m", {"seeds": [1]})
    assert len(s.seen) == 2
