"""Start a real TorchServe (Java frontend + Python workers) for ganserve checkpoints, wait for READY, stop cleanly.

    with Server({"fashion": "checkpoints/stylegan2-fashion-32.safetensors"}, workdir) as server:
        server.client().predict("fashion", {"seeds": [1]})

Before anything starts, every checkpoint is loaded and verified (a corrupt one raises its CheckpointError), the ports
are checked, and a TorchServe left running in the same work dir (its pid file) is reported rather than clobbered.
/ping turns healthy before workers have loaded, so readiness is read from the management API: every model listed with
all its workers READY; a worker that fails to load ends the wait at once with its own error, read from the logs.

The public inference port is ganserve's front (ganserve.serving.front), run in a thread of this process: it answers
a body over the limit with ganserve's JSON 413 at every size and streams everything else to TorchServe's inference
API, which listens on a loopback port of its own (``config.upstream_url``). Management, metrics and gRPC are
TorchServe's own ports, as they were.

Lifetime: TorchServe runs under a small watchdog process, the leader of its own process group. The watchdog holds the
read end of a pipe whose only write end is this process's: when this process dies in any way, SIGKILL included, the
pipe reads EOF and the watchdog ends the whole group (frontend, Java, workers). stop() ends the group itself, then
checks that no process is left and the ports are free.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ganserve.serving.client import Client
from ganserve.serving.config import KEY_LIFETIME_MIN, LOG4J2_XML, ServerConfig, free_port
from ganserve.serving.front import Front, FrontLimits
from ganserve.serving.store import ArchiveOptions, build_archive

KEY_FILE = "key_file.json"
UPSTREAM_ROLE = "TorchServe inference, behind the front"
PID_FILE = "torchserve.pid"
WATCHDOG_TAG = "ganserve-watchdog"

# Run as ``python -c WATCHDOG ganserve-watchdog CMD...``: no ganserve import, so it costs a bare interpreter.
WATCHDOG = r"""
import os, select, signal, subprocess, sys, time
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))  # the group's stop: wait for the child, then go
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's to handle
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)
while child.poll() is None:
    ready, _, _ = select.select([0], [], [], 0.5)
    if ready and not os.read(0, 1):  # EOF: the parent is gone, however it died
        os.killpg(0, signal.SIGTERM)
        end = time.monotonic() + 20
        while child.poll() is None and time.monotonic() < end:
            time.sleep(0.2)
        time.sleep(1)  # workers leave after the frontend
        os.killpg(0, signal.SIGKILL)  # whatever is left, this process included
sys.exit(child.returncode or 0)
"""

# A worker that cannot load: TorchServe's frontend logs "Load model failed: NAME, error: ..." or the worker's
# traceback reaches the model log; both end the wait instead of TorchServe's retries with back-off.
LOAD_FAILED = re.compile(r"Load model failed: (?P<model>[^,\s]+), error: (?P<error>.*)")
WORKER_DIED = re.compile(r"Backend worker process died|Failed to load model (?P<model>\S+)")
MODEL_LOG_ERROR = re.compile(r"MODEL_LOG - (?P<error>(?:[A-Za-z_][\w.]*(?:Error|Exception)|[\w.]+Error):.*)$")


class ServerError(RuntimeError):
    pass


class PortInUse(ServerError):
    def __init__(self, port: int, host: str, role: str) -> None:
        self.port, self.host, self.role = port, host, role
        super().__init__(f"port {port} on {host} ({role}) is in use")


class WorkerLoadFailed(ServerError):
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
    """Nothing listens on (host, port). SO_REUSEADDR as servers set it, so a port whose last connections are
    still in TIME_WAIT counts as free (TorchServe can bind it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def worker_env(total_workers: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the workers: several of them share the cores, so OpenMP threads must not spin after each op
    (libgomp's default), which starves the other workers and the frontend; measured on 2 busy cores, p50 went from
    40 ms to 1.3 s. A value the user set wins."""
    environ = os.environ if environ is None else environ
    if total_workers > 1 and "OMP_WAIT_POLICY" not in environ:
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {}


def verify_checkpoints(checkpoints: dict[str, str | os.PathLike], precision: str = "fp32") -> None:
    """Load every checkpoint as the worker will (raises ganserve.checkpoint.CheckpointError naming the file), so
    a bad file, or a precision its family cannot run, is refused in a second instead of after TorchServe's retries."""
    import ganserve

    for path in checkpoints.values():
        try:
            ganserve.load(path, precision=precision)
        except ValueError as e:
            if "precision" not in str(e):
                raise
            raise ValueError(f"{path}: precision: {e}") from None


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
        token_expiration_min: float = KEY_LIFETIME_MIN,
        workers: int = 1,
        archive: ArchiveOptions | None = None,
        archives: list[str | os.PathLike] = (),
        verify: bool = True,
        netty_threads: int = 0,
        job_queue_size: int = 100,
        properties: dict[str, str] | None = None,
        quiet_logs: bool = True,
        front: FrontLimits | None = None,
    ) -> None:
        """checkpoints: model name -> .safetensors; archives: ready-made .mar files to serve as well.
        Ports of 0 are picked free on ``host`` (TorchServe's gRPC endpoints too, so servers can run side by side).
        The metrics endpoint has no authentication and always binds 127.0.0.1. ``properties``: further
        config.properties keys, written last (they win). ``front``: the limits of the front on the inference port
        (default: FrontLimits, its response timeout above TorchServe's)."""
        self.workdir = Path(workdir).resolve()
        self.checkpoints, self.extra_archives = dict(checkpoints), [Path(a) for a in archives]
        self.archive_options = archive or ArchiveOptions(min_workers=workers, max_workers=workers)
        self.verify = verify
        # Ports of 0 are picked one after another, each distinct from those already chosen (none is bound yet).
        chosen: list[int] = []
        for port, bind in ((inference_port, host), (management_port, host), (metrics_port, "127.0.0.1"),
                           (grpc_ports[0], host), (grpc_ports[1], host)):  # fmt: skip
            chosen.append(port or free_port(bind, exclude=chosen))
        upstream_port = free_port("127.0.0.1", exclude=chosen)  # TorchServe's inference API, behind the front
        self.config = ServerConfig(
            model_store=self.workdir / "model-store",
            host=host,
            inference_port=chosen[0],
            upstream_port=upstream_port,
            management_port=chosen[1],
            metrics_port=chosen[2],
            grpc_inference_port=chosen[3],
            grpc_management_port=chosen[4],
            auth=auth,
            token_expiration_min=token_expiration_min,
            workers=workers,
            # only this server's archives: a store reused from an earlier run may hold others
            models=",".join(f"{n}.mar" for n in [*self.checkpoints, *(a.stem for a in self.extra_archives)]),
            netty_threads=netty_threads,
            job_queue_size=job_queue_size,
            log_config=self.workdir / "log4j2.xml" if quiet_logs else None,
            extra=dict(properties or {}),
        )
        # above TorchServe's response timeout, so TorchServe's own answer (500 "Worker died.") comes before a 504
        answer_s = max(self.archive_options.response_timeout_s, self.config.response_timeout_s) + 30
        self.front_limits = front or FrontLimits(response_timeout_s=answer_s)
        self.front: Front | None = None
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "torchserve.log"
        self._log_start: dict[Path, int] = {}

    # ---- lifecycle -----------------------------------------------------------------------------------------------
    @property
    def ports(self) -> tuple[int, ...]:
        c = self.config
        return (c.inference_port, c.management_port, c.metrics_port, c.grpc_inference_port, c.grpc_management_port,
                c.upstream_port)  # fmt: skip

    def _port_roles(self) -> list[tuple[str, int, str]]:
        c = self.config
        return [(c.host, c.inference_port, "inference"), (c.host, c.management_port, "management"),
                (c.metrics_host, c.metrics_port, "metrics"), (c.host, c.grpc_inference_port, "gRPC inference"),
                (c.host, c.grpc_management_port, "gRPC management"),
                ("127.0.0.1", c.upstream_port, UPSTREAM_ROLE)]  # fmt: skip

    @property
    def model_names(self) -> list[str]:
        return [*self.checkpoints, *(a.stem for a in self.extra_archives)]

    @property
    def total_workers(self) -> int:
        return self.archive_options.max_workers * len(self.model_names)

    def stores(self) -> list[Path]:
        """The folders TorchServe reads archives from: private to this user (0700)."""
        return [self.config.model_store, self.config.workflow_store]

    @property
    def pid_file(self) -> Path:
        return self.workdir / PID_FILE

    def build_store(self) -> None:
        for folder in self.stores():
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
        store = self.config.model_store
        for name, ckpt in self.checkpoints.items():
            build_archive(ckpt, store, name=name, options=self.archive_options)
        for mar in self.extra_archives:
            shutil.copy2(mar, store / mar.name)

    def check_workdir(self) -> None:
        """Refuse to start over a TorchServe that still runs from this work dir (its key file and store are in use)."""
        pgid = read_pid_file(self.pid_file)
        if pgid is not None and torchserve_group_alive(pgid):
            raise ServerError(
                f"a TorchServe started earlier from {self.workdir} is still running (process group {pgid}, see "
                f"{self.pid_file}): stop it with `kill -- -{pgid}` or use another --workdir"
            )
        self.pid_file.unlink(missing_ok=True)

    def start(self, timeout: float = 240) -> Server:
        exe = torchserve_executable()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.check_workdir()
        for host, port, role in self._port_roles():
            if role == UPSTREAM_ROLE and not port_is_free(host, port):  # picked by us, taken since: pick again
                self.config.upstream_port = free_port(host, exclude=self.ports)
            elif not port_is_free(host, port):
                raise PortInUse(port, host, role)
        if self.verify:
            verify_checkpoints(self.checkpoints, self.archive_options.precision)
        self.build_store()
        if self.config.log_config:
            Path(self.config.log_config).write_text(LOG4J2_XML)
        cfg_path = self.config.write(self.workdir / "config.properties")
        (self.workdir / KEY_FILE).unlink(missing_ok=True)
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # workers use this venv
        env["LOG_LOCATION"] = str(self.workdir / "logs")
        env["METRICS_LOCATION"] = str(self.workdir / "logs")
        (self.workdir / "tmp").mkdir(exist_ok=True)
        env["TEMP"] = str(self.workdir / "tmp")  # TorchServe unpacks archives and puts worker sockets here
        env.update(worker_env(self.total_workers, env))
        env.setdefault("GANSERVE_JOBS", str(self.workdir / "jobs"))  # this server's job queue, not another's
        cmd = [exe, "--start", "--foreground", "--ncs", "--ts-config", str(cfg_path),
               "--model-store", str(self.config.model_store)]  # fmt: skip
        self._mark_logs()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WATCHDOG, WATCHDOG_TAG, *cmd], cwd=self.workdir, env=env, stdin=subprocess.PIPE,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            self.pid_file.write_text(f"{self.process.pid}\n")
            self.start_front()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_front(self) -> None:
        """Bind the public inference port (ganserve's front) and forward it to TorchServe's loopback port."""
        c = self.config
        try:
            self.front = Front((c.host, c.inference_port), ("127.0.0.1", c.upstream_port), self.front_limits).start()
        except OSError:
            raise PortInUse(c.inference_port, c.host, "inference") from None

    def _log_files(self) -> list[Path]:
        return [self.log_path, self.workdir / "logs" / "model_log.log", self.workdir / "logs" / "ts_log.log"]

    def _mark_logs(self) -> None:
        """Remember where each log ends, so only this start's lines are searched for failures."""
        self._log_start = {p: (p.stat().st_size if p.exists() else 0) for p in self._log_files()}

    def _new_log_lines(self) -> list[str]:
        lines: list[str] = []
        for path in self._log_files():
            try:
                with open(path, "rb") as f:
                    f.seek(self._log_start.get(path, 0))
                    lines += f.read().decode(errors="replace").splitlines()
            except OSError:
                continue
        return lines

    def worker_failure(self) -> str | None:
        """The error of a worker that failed to load in this start, or None."""
        lines = self._new_log_lines()
        if not any(LOAD_FAILED.search(ln) or WORKER_DIED.search(ln) for ln in lines):
            return None
        # The frontend's "Load model failed" / "Worker died." and the worker's traceback reach different files, line
        # by line, and on a busy machine the traceback can lag by seconds: wait (bounded) until the worker's error is
        # there and the logs have settled, so the actual error is what gets reported.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.5)
            settled = self._new_log_lines()
            if len(settled) == len(lines) and any(MODEL_LOG_ERROR.search(ln) for ln in settled):
                break
            lines = settled
        errors = [m.group("error").strip() for ln in lines if (m := MODEL_LOG_ERROR.search(ln))]
        failed = [m for ln in lines if (m := LOAD_FAILED.search(ln))]
        model = failed[0].group("model") if failed else "a model"
        if errors:
            return f"worker for {model} failed to load: {errors[-1]}"
        if failed:
            return f"worker for {model} failed to load: {failed[0].group('error').strip()}"
        return None  # died without a load error yet: wait for its message

    def wait_ready(self, timeout: float, poll: Callable[[], None] | None = None) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"TorchServe exited with {self.process.returncode}:\n{self.log_tail()}")
            failure = self.worker_failure()
            if failure:
                raise WorkerLoadFailed(f"{failure} (log: {self.workdir / 'logs' / 'model_log.log'})")
            try:
                if self.config.auth and not (self.workdir / KEY_FILE).exists():
                    raise ConnectionError("key file not written yet")
                client = self.client(retries=0)
                pending = [n for n in self.model_names if not client.workers_ready(n)]
                if not pending:
                    return
                last = f"waiting for workers of {', '.join(pending)}"
            except Exception as e:  # not up yet
                last = str(e)
            if poll is not None:
                poll()
            time.sleep(0.5)
        raise ServerError(f"TorchServe not ready after {timeout:.0f}s ({last}):\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> None:
        """End the front, TorchServe and every worker (its whole process group), then check the ports are free."""
        if self.front is not None:
            self.front.close()
            self.front = None
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
        if self.process.stdin:
            self.process.stdin.close()
        self.process = None
        self.pid_file.unlink(missing_ok=True)
        end = time.monotonic() + 10
        while time.monotonic() < end and not all(port_is_free(h, p) for h, p, _ in self._port_roles()):
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
        """A client that reads its keys from the key file (and again whenever a key is refused)."""
        return Client(
            self.config.inference_url,
            self.config.management_url,
            key_file=self.key_file if self.config.auth else None,
            **kwargs,
        )

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def read_pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def torchserve_group_alive(pgid: int) -> bool:
    """A live process of group ``pgid`` is ganserve's watchdog, TorchServe, its Java frontend or a worker (not some
    unrelated process that reused the number)."""
    for pid in group_processes(pgid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if any(tag in cmdline for tag in (WATCHDOG_TAG.encode(), b"torchserve", b"org.pytorch.serve", b"ts/")):
            return True
    return False


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
