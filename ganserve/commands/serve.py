"""ganserve serve: build a model store from checkpoints, start TorchServe, wait for READY workers, print the URLs;
Ctrl-C / SIGTERM stops it and leaves no processes."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ganserve.requests import DEFAULT_MAX_IMAGES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="serve models over HTTP with TorchServe")
    p.add_argument("--models", default=None, help="comma-separated model names or checkpoint paths (default: all)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8080, help="inference port")
    p.add_argument("--management-port", type=int, default=8081)
    p.add_argument("--metrics-port", type=int, default=8082)
    p.add_argument("--grpc-ports", default="7070,7071", help="TorchServe's gRPC inference,management ports")
    p.add_argument("--workers", type=int, default=1, help="workers per model")
    p.add_argument("--batch-size", type=int, default=8, help="requests TorchServe batches into one generator call")
    p.add_argument("--max-batch-delay", type=int, default=50, help="ms to wait for a batch to fill")
    p.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES, help="images per request at most")
    p.add_argument("--backend", default="eager", help="generator backend (eager, or onnx / pt2 when exported)")
    p.add_argument("--device", choices=["cpu", "gpu"], default=None, help="worker device type (default: TorchServe's)")
    p.add_argument("--workdir", default="model_server", help="model store, config, logs and the key file go here")
    p.add_argument("--no-auth", action="store_true", help="turn token authorisation off (local development only)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for workers to be READY")
    p.add_argument("--write-kserve", metavar="DIR", default=None,
                   help="write the KServe TorchServe layout (config/, model-store/) to DIR and exit")  # fmt: skip
    return p


def run(args: argparse.Namespace) -> int:
    import ganserve
    from ganserve.loading import resolve
    from ganserve.serving.launcher import Server
    from ganserve.serving.store import ArchiveOptions

    if args.models:
        names = [m.strip() for m in args.models.split(",") if m.strip()]
        checkpoints = {Path(m).stem if m.endswith(".safetensors") else m: resolve(m) for m in names}
    else:
        checkpoints = ganserve.available_models()
    if not checkpoints:
        raise ValueError("no models to serve: pass --models or put checkpoints in checkpoints/")
    options = ArchiveOptions(
        batch_size=args.batch_size, max_batch_delay_ms=args.max_batch_delay, min_workers=args.workers,
        max_workers=args.workers, backend=args.backend, max_images=args.max_images, device_type=args.device,
    )  # fmt: skip
    if args.write_kserve:
        from ganserve.serving.kserve import write_layout

        out = write_layout(args.write_kserve, checkpoints, options)
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            print(f"{path}\t{path.stat().st_size} bytes")
        return 0
    server = Server(
        checkpoints, args.workdir, host=args.host, inference_port=args.port, management_port=args.management_port,
        metrics_port=args.metrics_port, grpc_ports=tuple(int(p) for p in args.grpc_ports.split(",")),
        auth=not args.no_auth, workers=args.workers, archive=options,
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"starting TorchServe for {', '.join(checkpoints)} (log: {server.log_path})", flush=True)
    server.start(timeout=args.timeout)
    try:
        cfg = server.config
        print(f"inference:  {cfg.inference_url}/predictions/<model>")
        print(f"management: {cfg.management_url}/models")
        print(f"metrics:    {cfg.metrics_url}/metrics")
        first = next(iter(checkpoints))
        auth = ""
        if cfg.auth:
            print(f"token authorisation on; keys in {server.key_file}")
            auth = f'-H "Authorization: Bearer {server.keys()["inference"]}" '
        else:
            print("token authorisation OFF (--no-auth)")
        body = '{"seeds": [1, 2, 3, 4], "grid": true}'
        print(f"try: curl -s {auth}-H 'Content-Type: application/json' -d '{body}' "
              f"{cfg.inference_url}/predictions/{first} -o samples.png")  # fmt: skip
        print("ready", flush=True)
        while not stop.wait(0.5):
            if server.process is None or server.process.poll() is not None:
                print("TorchServe exited unexpectedly:\n" + server.log_tail(), file=sys.stderr)
                return 1
    finally:
        print("stopping TorchServe", flush=True)
        server.stop()
    print("stopped", flush=True)
    return 0
