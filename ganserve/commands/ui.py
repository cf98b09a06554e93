"""ganserve ui [--server URL] [--management URL] [--key-file PATH] [--port 7860] [--local [--model NAME|PATH ...]]
              [--auth-file FILE] [--max-upload MB]

The Gradio latent explorer. By default it talks to a running ``ganserve serve`` (inference API on :8080, management
on :8081, the token key file when authorisation is on); ``--local`` generates in this process instead. Binds
127.0.0.1 unless --host says otherwise. ``--auth-file`` (or $GANSERVE_UI_AUTH) puts a login in front of the page and
its API, uploads are limited (``--max-upload``), and the process's temporary files go when it stops (SIGTERM too):
``ganserve.ui.service``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from ganserve.precision import PRECISIONS
from ganserve.ui.service import DEFAULT_MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from ganserve.ui.backend import Backend

DEFAULT_INFERENCE = "http://127.0.0.1:8080"  # TorchServe's default inference address
# Where `ganserve serve` (default --workdir model_server) has TorchServe write its token keys.
DEFAULT_KEY_FILE = Path("model_server") / "key_file.json"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("ui", help="the Gradio latent explorer, over a ganserve server or local models")
    p.add_argument(
        "--server", default=None, help=f"inference API URL of `ganserve serve` (default {DEFAULT_INFERENCE})"
    )
    p.add_argument("--management", default=None, help="management API URL (default: the server's host, port + 1)")
    p.add_argument(
        "--key-file",
        default=None,
        help="TorchServe key_file.json when token auth is on (`ganserve serve` prints it; default $GANSERVE_KEY_FILE, "
        f"else {DEFAULT_KEY_FILE} when it exists)",
    )
    p.add_argument("--local", action="store_true", help="generate in this process instead of calling a server")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help="with --local: a model name or checkpoint path (repeatable; default: every available model)",
    )
    p.add_argument("--device", default="cpu", help="with --local: torch device")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="with --local: inference precision")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port the UI listens on")
    p.add_argument(
        "--auth-file",
        default=None,
        help="require a login: a file of user:password lines (default: $GANSERVE_UI_AUTH, user:password, if set; "
        "a password is never taken on the command line)",
    )
    p.add_argument(
        "--max-upload",
        type=float,
        default=None,
        metavar="MB",
        help=f"largest file the page accepts, in MiB (default {DEFAULT_MAX_UPLOAD_BYTES / (1 << 20):g}); larger: 413",
    )
    return p


def upload_limit(mb: float | None) -> int:
    """--max-upload in MiB -> bytes (Gradio's max_file_size)."""
    if mb is None:
        return DEFAULT_MAX_UPLOAD_BYTES
    if not (0 < mb <= 1024):  # also refuses NaN
        raise ValueError(f"--max-upload {mb:g}: expected MiB in (0, 1024]")
    return int(mb * (1 << 20))


def management_for(server: str) -> str:
    """TorchServe's convention: management on the inference port + 1 (8080 -> 8081)."""
    parts = urlsplit(server)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port + 1}"))


def make_backend(args: argparse.Namespace) -> Backend:
    from ganserve.ui.backend import LocalBackend
    from ganserve.ui.remote import HTTPBackend

    if args.local:
        if args.server or args.management or args.key_file:
            raise ValueError("--local generates in-process: drop --server / --management / --key-file")
        models = None
        if args.model:
            from ganserve.loading import resolve

            paths = [resolve(m) for m in args.model]
            models = {p.stem: p for p in paths}
        backend = LocalBackend(models, device=args.device, precision=args.precision)
        if not backend.models():
            raise ValueError("no models found: pass --model NAME|PATH or set GANSERVE_CHECKPOINTS")
        return backend
    if args.model:
        raise ValueError("--model is for --local; a server lists its own models")
    server = args.server or DEFAULT_INFERENCE
    key_file = args.key_file or os.environ.get("GANSERVE_KEY_FILE") or None
    if key_file is None and DEFAULT_KEY_FILE.is_file():
        key_file = str(DEFAULT_KEY_FILE.resolve())
    return HTTPBackend(server, args.management or management_for(server), key_file)


def run(args: argparse.Namespace) -> int:
    from ganserve.ui.app import build_app, launch
    from ganserve.ui.backend import BackendError
    from ganserve.ui.service import AUTH_ENV, load_credentials, password_check, scratch_dir

    max_upload = upload_limit(args.max_upload)
    users = load_credentials(args.auth_file)  # before any work: a bad file is a one-line error
    backend = make_backend(args)
    key = getattr(backend, "key_file", None)
    with scratch_dir():  # Gradio's cache and the result files: removed on exit, Ctrl-C or SIGTERM
        try:
            app = build_app(backend)
        except BackendError as e:
            raise ValueError(str(e)) from None
        print(f"ganserve ui: {backend.label}" + (f" (keys: {key})" if key else "") +
              f" -> http://{args.host}:{args.port}" + (f" (login: {len(users)} user(s))" if users else ""),
              file=sys.stderr)  # fmt: skip
        if users is None and key:
            print(f"ganserve ui: note: the page uses the server's key ({key}) for whoever can reach it, without a "
                  f"key of their own; --auth-file or ${AUTH_ENV} asks them for a login", file=sys.stderr)  # fmt: skip
        if users is None and args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"ganserve ui: warning: {args.host} is reachable from other machines and there is no login: anyone "
                  f"who reaches it gets inference (use --auth-file or ${AUTH_ENV})", file=sys.stderr)  # fmt: skip
        auth = {"auth": password_check(users), "auth_message": "ganserve ui: log in"} if users else {}
        launch(app, host=args.host, port=args.port, max_file_size=max_upload, **auth)
    return 0
