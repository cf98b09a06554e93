"""Start a real TorchServe (Java frontend + Python workers) for ganserve checkpoints, wait for READY, stop cleanly.

    with Server({"fashion": "checkpoints/stylegan2-fashion-32.safetensors"}, workdir) as server:
        server.client().predict("fashion", {"seeds": [1]})

/ping turns healthy before workers have loaded, so readiness is read from the management API: every model listed
with all its workers READY. TorchServe runs in its own process session; stop() ends the whole group and checks that
no process is left and the ports are free.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ganserve.serving.client import Client
from ganserve.serving.config import ServerConfig, free_port
from ganserve.serving.store import ArchiveOptions, build_archive

KEY_FILE = "key_file.json"


class ServerError(RuntimeError):
    pass


def torchserve_executable() -> str:
    exe = Path(sys.executable).parent / "torchserve"
    found = str(exe) if exe.exists() else shutil.which("torchserve")
    if not found:
        raise ServerError("torchserve not found: pip install 'ganserve[serve]'")
    if not shutil.which("java"):
        raise ServerError("java not found: TorchServe needs a JDK/JRE 17 (apt-get install openjdk-17-jre-headless)")
    return found


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class Server:
    def __init__(
        self,
        checkpoints: dict[str, str | os.PathLike],
        workdir: str | os.PathLike,
        *,
        host: str = "127.0.0.1",
        inference_port: int = 0,
        management_port: int = 0,
        metrics_port: int = 0,
        grpc_ports: tuple[int, int] = (0, 0),
        auth: bool = True,
        workers: int = 1,
        archive: ArchiveOptions | None = None,
        archives: list[str | os.PathLike] = (),
    ) -> None:
        """checkpoints: model name -> .safetensors; archives: ready-made .mar files to serve as well.
        Ports of 0 are picked free on ``host`` (TorchServe's gRPC endpoints too, so servers can run side by side)."""
        self.workdir = Path(workdir).resolve()
        self.checkpoints, self.extra_archives = dict(checkpoints), [Path(a) for a in archives]
        self.archive_options = archive or ArchiveOptions(min_workers=workers, max_workers=workers)
        self.config = ServerConfig(
            model_store=self.workdir / "model-store",
            host=host,
            inference_port=inference_port or free_port(host),
            management_port=management_port or free_port(host),
            metrics_port=metrics_port or free_port(host),
            grpc_inference_port=grpc_ports[0] or free_port(host),
            grpc_management_port=grpc_ports[1] or free_port(host),
            auth=auth,
            workers=workers,
        )
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "torchserve.log"

    # ---- lifecycle -----------------------------------------------------------------------------------------------
    @property
    def ports(self) -> tuple[int, ...]:
        c = self.config
        return c.inference_port, c.management_port, c.metrics_port, c.grpc_inference_port, c.grpc_management_port

    @property
    def model_names(self) -> list[str]:
        return [*self.checkpoints, *(a.stem for a in self.extra_archives)]

    def build_store(self) -> None:
        store = self.config.model_store
        store.mkdir(parents=True, exist_ok=True)
        for name, ckpt in self.checkpoints.items():
            build_archive(ckpt, store, name=name, options=self.archive_options)
        for mar in self.extra_archives:
            shutil.copy2(mar, store / mar.name)

    def start(self, timeout: float = 240) -> Server:
        exe = torchserve_executable()
        for port in self.ports:
            if not port_is_free(self.config.host, port):
                raise ServerError(f"port {port} on {self.config.host} is in use")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.build_store()
        cfg_path = self.config.write(self.workdir / "config.properties")
        (self.workdir / KEY_FILE).unlink(missing_ok=True)
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # workers use this venv
        env["LOG_LOCATION"] = str(self.workdir / "logs")
        env["METRICS_LOCATION"] = str(self.workdir / "logs")
        (self.workdir / "tmp").mkdir(exist_ok=True)
        env["TEMP"] = str(self.workdir / "tmp")  # TorchServe unpacks archives here
        cmd = [exe, "--start", "--foreground", "--ncs", "--ts-config", str(cfg_path),
               "--model-store", str(self.config.model_store)]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"TorchServe exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.config.auth and not (self.workdir / KEY_FILE).exists():
                    raise ConnectionError("key file not written yet")
                client = self.client()
                pending = [n for n in self.model_names if not client.workers_ready(n)]
                if not pending:
                    return
                last = f"waiting for workers of {', '.join(pending)}"
            except Exception as e:  # not up yet
                last = str(e)
            time.sleep(0.5)
        raise ServerError(f"TorchServe not ready after {timeout:.0f}s ({last}):\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> None:
        """End TorchServe and every worker (its whole process group), then check the ports are free."""
        if self.process is None:
            return
        pgid = self.process.pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + wait
            while time.monotonic() < end and _group_alive(pgid):
                self.process.poll()
                time.sleep(0.2)
            if not _group_alive(pgid):
                break
        self.process.wait(timeout=10)
        self.process = None
        end = time.monotonic() + 10
        while time.monotonic() < end and not all(port_is_free(self.config.host, p) for p in self.ports):
            time.sleep(0.2)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- access --------------------------------------------------------------------------------------------------
    @property
    def key_file(self) -> Path:
        return self.workdir / KEY_FILE

    def keys(self) -> dict[str, str]:
        """{"inference": ..., "management": ...} when token authorisation is on, else {}."""
        if not self.config.auth:
            return {}
        data = json.loads(self.key_file.read_text())
        return {k: v["key"] for k, v in data.items() if isinstance(v, dict) and "key" in v}

    def client(self, **kwargs: object) -> Client:
        keys = self.keys()
        return Client(
            self.config.inference_url,
            self.config.management_url,
            inference_key=keys.get("inference"),
            management_key=keys.get("management"),
            **kwargs,
        )

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a group of zombies still "exists": reap what we can and look for live members
    return any(_pid_in_group(pid, pgid) for pid in _all_pids())


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pid_in_group(pid: int, pgid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and int(fields[2]) == pgid


def group_processes(pgid: int) -> list[int]:
    """Live processes of a process group (for tests: nothing may be left after stop())."""
    return [pid for pid in _all_pids() if _pid_in_group(pid, pgid)]
