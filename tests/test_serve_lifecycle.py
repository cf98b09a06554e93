"""`ganserve serve` as a process, against the real TorchServe: refusals before anything starts (corrupt checkpoint,
busy port, a live server in the work dir), a worker that cannot load, signals during start-up, and SIGKILL of the
serve process leaving nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from ganserve.serving.config import free_port
from ganserve.serving.kserve import read_properties
from ganserve.serving.launcher import PID_FILE, Server, ServerError, WorkerLoadFailed, group_processes, port_is_free
from ganserve.serving.store import ArchiveOptions
from tests.conftest import ganserve_cmd

pytestmark = pytest.mark.slow


def serve(*args: str, workdir: Path, ports: list[int] | None = None) -> tuple[subprocess.Popen, list[int]]:
    ports = ports or [free_port() for _ in range(3)]
    cmd = ganserve_cmd("serve", *args, "--port", str(ports[0]), "--management-port", str(ports[1]),
                       "--metrics-port", str(ports[2]), "--workers", "1", "--workdir", str(workdir))  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc, ports


def read_until(proc: subprocess.Popen, word: str, limit_s: float = 180) -> list[str]:
    lines, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if not line or line.strip() == word or line.startswith(word):
            break
    return lines


def wait_gone(pgid: int, ports: list[int], limit_s: float = 60) -> tuple[list[int], list[int]]:
    """(processes left in the group, ports still bound) once both are empty or ``limit_s`` has passed."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        left, bound = group_processes(pgid), [p for p in ports if not port_is_free("127.0.0.1", p)]
        if not left and not bound:
            break
        time.sleep(0.2)
    return group_processes(pgid), [p for p in ports if not port_is_free("127.0.0.1", p)]


def one_line_error(proc: subprocess.Popen, limit_s: float = 120) -> str:
    out, err = proc.communicate(timeout=limit_s)
    assert proc.returncode == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_a_corrupt_checkpoint_is_refused_before_torchserve_starts(tmp_path, tiny_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(tiny_path.read_bytes()[:5000])  # truncated: the header promises more bytes than there are
    proc, _ = serve("--models", str(bad), workdir=tmp_path / "ws")
    err = one_line_error(proc)
    assert str(bad) in err
    assert not (tmp_path / "ws" / "model-store").exists()  # refused before anything was built or started


def test_a_busy_port_names_itself_and_the_flag(tmp_path, tiny_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc, _ = serve("--models", str(tiny_path), workdir=tmp_path, ports=[free_port(), port, free_port()])
        err = one_line_error(proc)
    assert f"port {port} on 127.0.0.1 (management) is in use" in err and "--management-port" in err


def test_help_shows_the_defaults():
    out = subprocess.run(ganserve_cmd("serve", "--help"), capture_output=True, text=True, timeout=60).stdout
    flat = " ".join(out.split())
    for text in ("(default: 8080)", "(default: 8081)", "(default: 8082)", "(default: model_server)",
                 "(default: 5)", "2 where memory allows", "two free ports"):  # fmt: skip
        assert text in flat, text


def test_an_unknown_backend_is_refused_before_torchserve_starts(tmp_path, tiny_path):
    # serve checks --backend against the registered formats: a worker would only have logged it (the worker-load
    # failure path itself is test_worker_load_failure_through_the_library's)
    proc, ports = serve("--models", str(tiny_path), "--backend", "no-such-backend", workdir=tmp_path)
    err = one_line_error(proc, limit_s=60)
    assert "--backend: unknown backend 'no-such-backend'" in err and "eager" in err
    assert not (tmp_path / PID_FILE).exists() and all(port_is_free("127.0.0.1", p) for p in ports)


def test_sigterm_during_start_up_stops_everything(tmp_path, tiny_path):
    proc, ports = serve("--models", str(tiny_path), workdir=tmp_path)
    assert read_until(proc, "starting TorchServe")[-1].startswith("starting TorchServe")
    deadline = time.monotonic() + 120
    while not (tmp_path / PID_FILE).exists() and time.monotonic() < deadline:  # TorchServe has been launched
        time.sleep(0.05)
    pgid = int((tmp_path / PID_FILE).read_text())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 128 + signal.SIGTERM and "interrupted (SIGTERM) during start-up" in err, (out, err)
    assert wait_gone(pgid, ports) == ([], [])
    assert not (tmp_path / PID_FILE).exists()


def test_sigkill_of_serve_leaves_nothing_running(tmp_path, tiny_path):
    proc, ports = serve("--models", str(tiny_path), workdir=tmp_path)
    lines = read_until(proc, "ready")
    assert lines[-1].strip() == "ready", "".join(lines)
    props = read_properties(tmp_path / "config.properties")
    grpc = [int(props["grpc_inference_port"]), int(props["grpc_management_port"])]
    assert 7070 not in grpc and 7071 not in grpc  # picked free unless --grpc-ports says otherwise
    pgid = int((tmp_path / PID_FILE).read_text())
    assert len(group_processes(pgid)) >= 3  # watchdog, TorchServe's launcher, Java, the worker
    proc.kill()
    proc.wait(timeout=30)
    assert wait_gone(pgid, [*ports, *grpc]) == ([], [])
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{ports[0]}/ping", timeout=5)


def test_a_live_server_in_the_work_dir_is_reported_not_clobbered(tmp_path, tiny_path):
    with Server({"tiny": tiny_path}, tmp_path, archive=ArchiveOptions(batch_size=1)) as first:
        key = first.keys()["inference"]
        proc, _ = serve("--models", str(tiny_path), workdir=tmp_path)
        err = one_line_error(proc)
        pgid = first.process.pid
        assert f"still running (process group {pgid}" in err and f"kill -- -{pgid}" in err
        assert first.keys()["inference"] == key  # its key file is untouched
        assert first.client().predict_raw("tiny", {"seeds": [1]}).status_code == 200
        # even with its watchdog gone (an orphan), the frontend and worker still count as running
        os.kill(pgid, signal.SIGKILL)
        with pytest.raises(ServerError, match="still running"):
            Server({"tiny": tiny_path}, tmp_path).start()
        assert first.client().predict_raw("tiny", {"seeds": [2]}).status_code == 200
    assert group_processes(pgid) == [] and not (tmp_path / PID_FILE).exists()


def test_worker_load_failure_through_the_library(tmp_path, tiny_path):
    server = Server({"tiny": tiny_path}, tmp_path, archive=ArchiveOptions(backend="no-such-backend"))
    with pytest.raises(WorkerLoadFailed, match="unknown backend 'no-such-backend'"):
        server.start(timeout=300)
    assert server.process is None and all(port_is_free("127.0.0.1", p) for p in server.ports)
