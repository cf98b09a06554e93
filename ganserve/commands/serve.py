"""ganserve serve: verify the checkpoints, build a model store, start TorchServe, wait for READY workers, print the
URLs; Ctrl-C / SIGTERM stops it (also during start-up) and leaves no processes, and so does this process dying in any
other way (TorchServe runs under a watchdog tied to it)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ganserve.backends import backend_names
from ganserve.precision import PRECISIONS
from ganserve.requests import DEFAULT_MAX_IMAGES

# The flag that sets each port, for "port in use" messages.
PORT_FLAGS = {"inference": "--port", "management": "--management-port", "metrics": "--metrics-port",
              "gRPC inference": "--grpc-ports", "gRPC management": "--grpc-ports"}  # fmt: skip
WORKER_MB = 600  # a CPU worker's resident memory for a small model (measured ~360 MB) plus headroom
FRONTEND_MB = 1024  # the JVM (512 MB heap) and this process


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve", help="serve models over HTTP with TorchServe",
        description="Serve checkpoints with a real TorchServe on loopback, token authorisation on.",
    )  # fmt: skip
    p.add_argument("--models", "--model", dest="models", default=None, metavar="NAME,NAME",
                   help="comma-separated model names or checkpoint paths (default: all)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address of the inference, management and gRPC endpoints "
                   "(the metrics endpoint has no authentication and stays on 127.0.0.1)")  # fmt: skip
    p.add_argument("--port", type=int, default=8080, help="inference port")
    p.add_argument("--management-port", type=int, default=8081, help="management port")
    p.add_argument("--metrics-port", type=int, default=8082, help="Prometheus metrics port (127.0.0.1)")
    p.add_argument("--grpc-ports", default=None, metavar="INFERENCE,MANAGEMENT",
                   help="TorchServe's gRPC ports (default: two free ports)")  # fmt: skip
    p.add_argument("--workers", type=int, default=None,
                   help="workers per model (default: 2 where memory allows, else 1). Two workers keep serving when "
                        "one dies or restarts (clients retry once) and use two cores, at the cost of a second copy "
                        "of the model in memory (~360 MB for the bundled model)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: torch's, one per core, as `ganserve sample` uses: pinning "
                        "a different count can change rare pixels by one level, a rounding difference of the conv "
                        "kernels)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=8, help="requests TorchServe batches into one generator call")
    p.add_argument("--max-batch-delay", type=int, default=5,
                   help="ms a batch waits to fill once it has a request (a lone request waits this long)")  # fmt: skip
    p.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES, help="images per request at most")
    p.add_argument("--backend", default="eager",
                   help=f"generator backend: {' | '.join(backend_names())} (a graph backend exports each model once "
                        "into its cache, or uses the graphs beside the checkpoint)")  # fmt: skip
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="inference precision of the eager backend, as `ganserve sample --precision` (recorded in "
                        "each PNG's parameters); graph backends run as exported "
                        "(ganserve export --precision)")  # fmt: skip
    p.add_argument("--device", choices=["cpu", "gpu"], default=None, help="worker device type (default: TorchServe's)")
    p.add_argument("--workdir", default="model_server", help="model store, config, logs and the key file go here")
    p.add_argument("--no-auth", action="store_true", help="turn token authorisation off (local development only)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for workers to be READY")
    p.add_argument("--write-kserve", metavar="DIR", default=None,
                   help="write the KServe TorchServe layout (config/, model-store/) to DIR and exit")  # fmt: skip
    return p


def available_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return None


def default_workers(checkpoints: dict[str, Path]) -> int:
    """2 workers per model when the host's available memory holds them all, else 1."""
    need = FRONTEND_MB + sum(2 * (WORKER_MB + 3 * Path(p).stat().st_size // 2**20) for p in checkpoints.values())
    free = available_mb()
    return 2 if free is None or free >= need else 1


class _Interrupted(BaseException):
    """SIGINT / SIGTERM before the server was ready (a BaseException, so no `except Exception` swallows it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum


def run(args: argparse.Namespace) -> int:
    import ganserve
    from ganserve.commands import CommandError
    from ganserve.loading import resolve
    from ganserve.serving.launcher import PortInUse, Server, ServerError
    from ganserve.serving.store import ArchiveOptions

    if args.models:
        names = [m.strip() for m in args.models.split(",") if m.strip()]
        checkpoints = {Path(m).stem if m.endswith(".safetensors") else m: resolve(m) for m in names}
    else:
        checkpoints = ganserve.available_models()
    if not checkpoints:
        raise ValueError("no models to serve: pass --models or put checkpoints in checkpoints/")
    if args.backend not in backend_names():  # before TorchServe starts: a worker would only log it
        raise CommandError(f"--backend: unknown backend '{args.backend}' (backends: {', '.join(backend_names())})")
    if args.backend != "eager" and args.precision != "fp32":
        raise CommandError(f"--precision {args.precision} applies to --backend eager; the {args.backend} backend runs "
                           "its graphs as exported (ganserve export --precision fp16)")  # fmt: skip
    workers = args.workers or default_workers(checkpoints)
    if workers < 1:
        raise CommandError("--workers must be at least 1")
    options = ArchiveOptions(
        batch_size=args.batch_size, max_batch_delay_ms=args.max_batch_delay, min_workers=workers,
        max_workers=workers, backend=args.backend, max_images=args.max_images, device_type=args.device,
        threads=args.threads, precision=args.precision,
    )  # fmt: skip
    if args.write_kserve:
        from ganserve.serving.kserve import write_layout
        from ganserve.serving.launcher import verify_checkpoints

        verify_checkpoints(checkpoints, args.precision)  # what the workers will load, refused here rather than there
        out = write_layout(args.write_kserve, checkpoints, options)
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            print(f"{path}\t{path.stat().st_size} bytes")
        return 0
    grpc = (0, 0)  # 0: picked free
    if args.grpc_ports:
        parts = args.grpc_ports.split(",")
        if len(parts) != 2 or not all(p.strip().isascii() and p.strip().isdigit() for p in parts):
            raise CommandError(f"--grpc-ports takes two ports, INFERENCE,MANAGEMENT (got {args.grpc_ports!r})")
        grpc = (int(parts[0]), int(parts[1]))
    server = Server(
        checkpoints, args.workdir, host=args.host, inference_port=args.port, management_port=args.management_port,
        metrics_port=args.metrics_port, grpc_ports=grpc, auth=not args.no_auth, workers=workers, archive=options,
    )  # fmt: skip

    stop = threading.Event()
    ready = False

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        if not ready:  # start-up: unwind now (Server.start stops what it started); later signals wait for that
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, lambda *_: None)
            raise _Interrupted(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    print(f"starting TorchServe for {', '.join(checkpoints)} with {workers} worker(s) each "
          f"(log: {server.log_path})", flush=True)  # fmt: skip
    try:
        try:
            server.start(timeout=args.timeout)
        except PortInUse as e:
            raise CommandError(f"{e}: stop what uses it or pick another port with {PORT_FLAGS[e.role]}") from None
        except ServerError as e:
            raise CommandError(str(e)) from None
        ready = True
        _print_ready(server, next(iter(checkpoints)))
        while not stop.wait(0.5):
            if server.process is None or server.process.poll() is not None:
                print("TorchServe exited unexpectedly:\n" + server.log_tail(), file=sys.stderr)
                return 1
    except _Interrupted as e:
        print(f"interrupted ({signal.Signals(e.signum).name}) during start-up", file=sys.stderr, flush=True)
        return 128 + e.signum
    finally:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, lambda *_: None)  # nothing interrupts the clean-up
        if ready:
            print("stopping TorchServe", flush=True)
        server.stop()
    print("stopped", flush=True)
    return 0


def _print_ready(server: object, first: str) -> None:
    cfg = server.config
    print(f"inference:  {cfg.inference_url}/predictions/<model>")
    print(f"management: {cfg.management_url}/models")
    print(f"metrics:    {cfg.metrics_url}/metrics (no authentication; loopback only)")
    auth = ""
    if cfg.auth:
        print(f"token authorisation on; keys in {server.key_file} (valid while the server runs)")
        auth = f'-H "Authorization: Bearer {server.keys()["inference"]}" '
    else:
        print("token authorisation OFF (--no-auth)")
    body = '{"seeds": [1, 2, 3, 4], "grid": true}'
    print(f"try: curl -s {auth}-H 'Content-Type: application/json' -d '{body}' "
          f"{cfg.inference_url}/predictions/{first} -o samples.png")  # fmt: skip
    print("ready", flush=True)
