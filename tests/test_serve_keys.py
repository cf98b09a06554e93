"""Token keys against the real TorchServe: TorchServe expires them (60 minutes unless token_expiration_min says
otherwise) and renews nothing, so ganserve sets the expiry to outlive the server; a short expiry shows the setting
is what TorchServe obeys; keys regenerated through TorchServe's token API reach clients that read the key file."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from ganserve.serving.launcher import Server
from ganserve.serving.store import ArchiveOptions
from ganserve.ui.remote import HTTPBackend

pytestmark = pytest.mark.slow
OPTIONS = ArchiveOptions(batch_size=1, max_batch_delay_ms=1)


def expiry(server: Server, api: str) -> datetime:
    stamp = json.loads(server.key_file.read_text())[api]["expiration time"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def server(tiny_server):
    """The session's default TorchServe (tests/conftest.py); the short expiry below needs, and starts, its own."""
    return tiny_server


def test_keys_outlive_torchserves_default_hour(server):
    now = datetime.now(timezone.utc)
    for api in ("inference", "management"):
        assert expiry(server, api) > now + timedelta(days=5 * 365)
    assert server.key_file.stat().st_mode & 0o777 == 0o600


def test_a_short_expiry_is_what_torchserve_obeys(tiny_path, tmp_path):
    # 0.5 min: long enough to become ready, short enough to watch the keys die
    with Server({"tiny": tiny_path}, tmp_path, archive=OPTIONS, token_expiration_min=0.5) as s:
        c = s.client(retries=0)
        assert c.predict_raw("tiny", {"seeds": [1]}).status_code == 200
        ends = expiry(s, "inference")
        assert ends < datetime.now(timezone.utc) + timedelta(minutes=1)
        deadline = time.monotonic() + 90
        while datetime.now(timezone.utc) <= ends + timedelta(seconds=1) and time.monotonic() < deadline:
            time.sleep(0.5)
        r = c.predict_raw("tiny", {"seeds": [1]})
        assert r.status_code == 400 and "Token Authorization failed" in r.text


def test_regenerated_keys_reach_clients_that_read_the_key_file(server):
    client = server.client(retries=0)
    backend = HTTPBackend(server.config.inference_url, server.config.management_url, server.key_file)
    assert client.predict_raw("tiny", {"seeds": [1]}).status_code == 200 and backend.models() == ["tiny"]
    old = server.keys()
    for api in ("inference", "management"):  # TorchServe's token API rewrites key_file.json with a new key
        r = requests.get(f"{server.config.management_url}/token", params={"type": api},
                         headers={"Authorization": f"Bearer {old['API']}"}, timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
    new = server.keys()
    assert new["inference"] != old["inference"] and new["management"] != old["management"]
    refused = client.predict_raw("tiny", {"seeds": [1]}, key=old["inference"])
    assert refused.status_code == 400  # the old key is dead ...
    assert client.predict_raw("tiny", {"seeds": [2]}).status_code == 200  # ... and the file's new one is used
    assert client.models() == ["tiny"]
    assert backend.models() == ["tiny"] and backend.generate("tiny", {"seeds": [3]})[0].params["seeds"] == [3]
