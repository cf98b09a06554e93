"""``ganserve ui`` as a service: login (--auth-file / $GANSERVE_UI_AUTH), the upload limit, and its temporary folder
removed on SIGTERM. The slow test runs the real command and talks to its Gradio server on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from ganserve.cli import main
from ganserve.commands.ui import upload_limit
from ganserve.ui.service import (
    AUTH_ENV,
    DEFAULT_MAX_UPLOAD_BYTES,
    AuthError,
    load_credentials,
    parse_credentials,
    password_check,
    scratch_dir,
)
from tests.conftest import ganserve_cmd


def test_credentials_from_a_file_or_the_environment(tmp_path):
    f = tmp_path / "users"
    f.write_text("# who may log in\nalice: s3cret:with:colons\n\nbob:pw\n")
    f.chmod(0o600)
    assert load_credentials(str(f), {}) == {"alice": " s3cret:with:colons", "bob": "pw"}
    assert load_credentials(None, {AUTH_ENV: "carol:pw2"}) == {"carol": "pw2"}
    assert load_credentials(str(f), {AUTH_ENV: "carol:pw2"})["bob"] == "pw"  # the flag wins over the variable
    assert load_credentials(None, {}) is None  # no login asked for


@pytest.mark.parametrize(
    "text, fragment",
    [("alice\n", "line 1 is not user:password"), (":pw\n", "line 1"), ("alice:\n", "line 1"),
     ("a:1\na:2\n", "given twice"), ("# only a comment\n", "no user:password")],
)  # fmt: skip
def test_bad_credentials_are_named(text, fragment):
    with pytest.raises(AuthError, match=fragment) as e:
        parse_credentials(text, "--auth-file F")
    assert str(e.value).startswith("--auth-file F: ")
    with pytest.raises(AuthError, match=r"^\$GANSERVE_UI_AUTH: "):
        load_credentials(None, {AUTH_ENV: "no-colon"})


def test_password_check():
    check = password_check({"alice": "pw", "bob": "other"})
    assert check("alice", "pw") and check("bob", "other")
    assert not check("alice", "other") and not check("bob", "pw") and not check("eve", "pw") and not check("", "")


def test_upload_limit():
    assert upload_limit(None) == DEFAULT_MAX_UPLOAD_BYTES > 4 << 20  # an image the decoder takes fits
    assert upload_limit(0.5) == 1 << 19
    for bad in (0.0, -1.0, float("nan"), 4096.0):
        with pytest.raises(ValueError, match="--max-upload"):
            upload_limit(bad)


def test_scratch_dir_holds_gradio_files_and_goes_away():
    before = os.environ.get("GRADIO_TEMP_DIR")
    with scratch_dir() as root:
        assert os.environ["GRADIO_TEMP_DIR"].startswith(str(root))
        assert Path(tempfile.mkdtemp()).parent == root  # the explorer's result files land inside it too
        (root / "gradio").mkdir()
        (root / "gradio" / "upload.png").write_bytes(b"x")
    assert not root.exists()
    assert os.environ.get("GRADIO_TEMP_DIR") == before and Path(tempfile.mkdtemp()).parent != root


def test_scratch_dir_in_a_thread_leaves_signals_alone():
    import threading

    before = signal.getsignal(signal.SIGTERM)
    seen: list = []

    def body() -> None:
        with scratch_dir() as root:
            seen.append((root, signal.getsignal(signal.SIGTERM)))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    ((root, during),) = seen
    assert during is before and not root.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--auth-file", "/no/such/file"], "--auth-file /no/such/file: not a file"),
        (["--max-upload", "0"], "--max-upload 0: expected MiB"),
    ],
)
def test_bad_service_flags_are_one_line(argv, message, capsys, tiny_path):
    assert main(["ui", "--local", "--model", str(tiny_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _png_bytes(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    import requests

    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            requests.get(url, timeout=5)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
def test_login_upload_limit_and_cleanup_on_sigterm(tiny_path, tiny, tmp_path):
    gradio_client = pytest.importorskip("gradio_client")
    import requests

    from ganserve.sampling import sample

    auth = tmp_path / "users"
    auth.write_text("alice:correct horse\n")
    auth.chmod(0o600)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GANSERVE_CHECKPOINTS": str(tmp_path), "TMPDIR": str(tmp_path)}
    env.pop(AUTH_ENV, None)
    env.pop("GRADIO_TEMP_DIR", None)
    log = tmp_path / "ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(ganserve_cmd("ui", "--local", "--model", str(tiny_path), "--port", str(port),
                                             "--auth-file", str(auth), "--max-upload", "0.01"),
                                stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        _wait_up(url, proc, log)
        scratch = [p for p in tmp_path.iterdir() if p.name.startswith("ganserve-ui-")]
        assert len(scratch) == 1, list(tmp_path.iterdir())
        png = _png_bytes(np.zeros((8, 8), np.uint8))

        # without a login: the upload route, the API and the client are all refused
        r = requests.post(url + "gradio_api/upload", files={"files": ("a.png", png, "image/png")}, timeout=30)
        assert r.status_code == 401
        with pytest.raises(Exception):  # noqa: B017 (gradio_client raises its own or httpx's errors)
            gradio_client.Client(url, verbose=False)
        s = requests.Session()
        assert s.post(url + "login", data={"username": "alice", "password": "wrong"}, timeout=30).status_code >= 400
        assert s.post(url + "gradio_api/upload", files={"files": ("a.png", png)}, timeout=30).status_code == 401

        # logged in: small uploads land in the process's own folder, large ones get 413
        assert s.post(url + "login", data={"username": "alice", "password": "correct horse"}, timeout=30).ok
        r = s.post(url + "gradio_api/upload", files={"files": ("a.png", png, "image/png")}, timeout=30)
        assert r.status_code == 200, r.text
        uploaded = Path(r.json()[0])
        assert uploaded.is_file() and scratch[0] in uploaded.parents
        big = b"\0" * (64 << 10)  # over --max-upload 0.01 MiB
        r = s.post(url + "gradio_api/upload", files={"files": ("big.bin", big)}, timeout=30)
        assert r.status_code == 413, (r.status_code, r.text)

        client = gradio_client.Client(url, auth=("alice", "correct horse"), verbose=False)
        path, params, _ = client.predict(model="tiny", seed=8, psi=0.5, cutoff=6, noise_mode="const", class_index=None,
                                         temperature=1.0, top_k=0, top_p=1.0, api_name="/generate")  # fmt: skip
        from PIL import Image

        with Image.open(path) as im:
            np.testing.assert_array_equal(np.asarray(im), sample(tiny, seeds=[8], truncation_psi=0.5).images[0])
        assert params["seeds"] == [8]
        assert any(scratch[0] in p.parents for p in scratch[0].rglob("*.png"))  # result files live there too

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert not scratch[0].exists(), log.read_text()
    assert "login: 1 user(s)" in log.read_text()
