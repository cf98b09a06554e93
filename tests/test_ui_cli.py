"""``ganserve ui``: flag handling, and one real launch of the command serving a local model."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from ganserve.cli import build_parser, main
from ganserve.commands.ui import make_backend, management_for
from ganserve.ui.backend import LocalBackend
from ganserve.ui.remote import HTTPBackend
from tests.conftest import ganserve_cmd


def args_for(*argv: str):
    return build_parser().parse_args(["ui", *argv])


def test_management_url_follows_torchserve_convention():
    assert management_for("http://127.0.0.1:8080") == "http://127.0.0.1:8081"
    assert management_for("http://example.org:9000/") == "http://example.org:9001/"


def test_backend_choice(tiny_path, monkeypatch, tmp_path):
    monkeypatch.delenv("GANSERVE_KEY_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    b = make_backend(args_for("--server", "http://10.0.0.5:9080"))
    assert isinstance(b, HTTPBackend)
    assert (b.inference_url, b.management_url, b.key_file) == ("http://10.0.0.5:9080", "http://10.0.0.5:9081", None)
    (tmp_path / "model_server").mkdir()  # where `ganserve serve` keeps TorchServe's keys by default
    (tmp_path / "model_server" / "key_file.json").write_text("{}")
    assert make_backend(args_for()).key_file == tmp_path / "model_server" / "key_file.json"
    monkeypatch.setenv("GANSERVE_KEY_FILE", "/srv/ts/key_file.json")
    assert str(make_backend(args_for()).key_file) == "/srv/ts/key_file.json"
    local = make_backend(args_for("--local", "--model", str(tiny_path)))  # the env key file does not get in the way
    assert isinstance(local, LocalBackend) and local.models() == ["tiny"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--local", "--server", "http://x:1"], "--local generates in-process"),
        (["--model", "tiny"], "--model is for --local"),
        (["--local", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--server", "http://127.0.0.1:9", "--management", "http://127.0.0.1:9"], "cannot reach the server"),
    ],
)
def test_bad_invocations_are_one_line(argv, message, capsys):
    assert main(["ui", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
def test_command_serves_a_local_model(tiny_path, tiny, tmp_path):
    gradio_client = pytest.importorskip("gradio_client")
    from ganserve.sampling import sample

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GANSERVE_CHECKPOINTS": str(tmp_path)}  # nothing else to find
    log = open(tmp_path / "ui.log", "w")  # noqa: SIM115 (closed below, after the process)
    proc = subprocess.Popen(ganserve_cmd("ui", "--local", "--model", str(tiny_path), "--port", str(port)),
                            stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 90
        client = None
        while client is None:
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()
            try:
                client = gradio_client.Client(url, verbose=False)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        path, params, _ = client.predict(model="tiny", seed=8, psi=0.5, cutoff=6, noise_mode="const", class_index=None,
                                         temperature=1.0, top_k=0, top_p=1.0, api_name="/generate")  # fmt: skip
        with Image.open(path) as im:
            np.testing.assert_array_equal(np.asarray(im), sample(tiny, seeds=[8], truncation_psi=0.5).images[0])
        assert params["seeds"] == [8]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert "127.0.0.1" in (tmp_path / "ui.log").read_text()
