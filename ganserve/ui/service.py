"""Running the explorer as a service: who may use it, how much they may upload, and what it leaves behind.

- **Authentication.** The UI holds the server's inference key (or the models themselves), so whoever reaches its port
  gets inference. ``ganserve ui --auth-file FILE`` (one ``user:password`` per line) or ``$GANSERVE_UI_AUTH``
  (``user:password``) puts Gradio's login in front of every route, uploads and the API included. A password is never
  taken from the command line, where other local users can read it (``ps``).
- **Uploads.** Gradio's ``/gradio_api/upload`` takes files of any size unless told otherwise: ``max_file_size`` is
  set (``--max-upload``, default a little over the largest image a request may carry) and larger uploads get 413.
- **Temporary files.** Gradio's upload cache and the result files live in one folder made for this process
  (``$GRADIO_TEMP_DIR`` points into it, so nothing lands in the shared ``/tmp/gradio``), removed when the server stops:
  normal exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import atexit
import hmac
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ganserve.images import MAX_IMAGE_BYTES

AUTH_ENV = "GANSERVE_UI_AUTH"
# Uploads are images (VQ source, projection target, a PNG to restore) or a w.npy: the decoder refuses images over
# MAX_IMAGE_BYTES anyway, so an upload needs little more than that.
DEFAULT_MAX_UPLOAD_BYTES = MAX_IMAGE_BYTES + (1 << 20)
MAX_USERS = 1000


class AuthError(ValueError):
    """An unusable credential source; the message names the flag or variable."""


def parse_credentials(text: str, source: str) -> dict[str, str]:
    """``user:password`` lines (blank lines and ``#`` comments skipped) -> {user: password}; errors name ``source``."""
    users: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        user = user.strip()
        if not sep or not user or not password:
            raise AuthError(f"{source}: line {n} is not user:password (both non-empty)")
        if user in users:
            raise AuthError(f"{source}: user '{user[:40]}' is given twice (line {n})")
        users[user] = password
        if len(users) > MAX_USERS:
            raise AuthError(f"{source}: more than {MAX_USERS} users")
    if not users:
        raise AuthError(f"{source}: no user:password line")
    return users


def load_credentials(auth_file: str | None, environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """The users allowed in: from ``--auth-file`` if given, else ``$GANSERVE_UI_AUTH``; None when neither is set."""
    env = os.environ if environ is None else environ
    if auth_file:
        path = Path(auth_file)
        try:
            if not path.is_file():
                raise AuthError(f"--auth-file {auth_file}: not a file")
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise AuthError(f"--auth-file {auth_file}: {getattr(e, 'strerror', None) or e}") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            print(f"ganserve ui: warning: {auth_file} is readable by other users (chmod 600 it)", file=sys.stderr)
        return parse_credentials(text, f"--auth-file {auth_file}")
    if env.get(AUTH_ENV):
        return parse_credentials(env[AUTH_ENV], f"${AUTH_ENV}")
    return None


def password_check(users: dict[str, str]) -> Callable[[str, str], bool]:
    """Gradio's ``auth`` callable: every user's password compared in constant time (no early exit on a wrong name)."""
    items = [(u.encode(), p.encode()) for u, p in users.items()]

    def check(username: str, password: str) -> bool:
        u, p = str(username).encode(), str(password).encode()
        ok = False
        for user, pw in items:
            ok |= hmac.compare_digest(u, user) & hmac.compare_digest(p, pw)
        return ok

    return check


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A private temporary folder for this UI process, with Gradio's cache in it; removed on exit and on SIGTERM.

    SIGTERM (what service managers and ``kill`` send) would end the process without running ``finally`` blocks or
    atexit hooks; it is turned into KeyboardInterrupt, which Gradio's main loop handles as Ctrl-C (server closed),
    so the folder goes in every ordinary way a server is stopped.
    """
    root = Path(tempfile.mkdtemp(prefix="ganserve-ui-"))
    previous_env, previous_tempdir = os.environ.get("GRADIO_TEMP_DIR"), tempfile.tempdir
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    tempfile.tempdir = str(root)  # the explorer's result files (ui.actions.Files) and any other temporary file
    remove = lambda: shutil.rmtree(root, ignore_errors=True)  # noqa: E731
    atexit.register(remove)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Only the main thread may set handlers (an embedding app that runs the UI in a thread keeps its own).
    main = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGTERM, on_sigterm) if main else None
    try:
        yield root
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous_handler)
        tempfile.tempdir = previous_tempdir
        if previous_env is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous_env
        remove()
        atexit.unregister(remove)


__all__ = [
    "AUTH_ENV",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "AuthError",
    "load_credentials",
    "parse_credentials",
    "password_check",
    "scratch_dir",
]
