"""Projected latents kept by id, so a client can say ``"w": "w:0123abcd..."`` instead of sending the array again.

Content-addressed (the id is a hash of the array's bytes), stored as .npy without pickle under
$GANSERVE_LATENTS, else $XDG_CACHE_HOME/ganserve/latents, written atomically: every worker on the machine sees them.
Bounded: after each save the least recently used files go until at most $GANSERVE_LATENTS_MAX_FILES files (default
4096) of at most $GANSERVE_LATENTS_MAX_BYTES bytes in all (256 MiB) are left, none unused for longer than
$GANSERVE_LATENTS_MAX_AGE_S seconds (7 days); reading an id counts as using it. An evicted id is unknown (HTTP 404).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganserve.checkpoint import atomic_write_bytes

ID = re.compile(r"w:[0-9a-f]{16}", re.ASCII)
MAX_NPY_BYTES = 1 << 20  # a w sent inline, decoded


@dataclass(frozen=True)
class StoreLimits:
    max_files: int = 4096
    max_bytes: int = 256 << 20
    max_age_s: float = 7 * 24 * 3600

    @classmethod
    def from_env(cls) -> StoreLimits:
        env = {k: os.environ.get(f"GANSERVE_LATENTS_{k.upper()}") for k in ("max_files", "max_bytes", "max_age_s")}
        types = {"max_files": int, "max_bytes": int, "max_age_s": float}
        return cls(**{k: types[k](v) for k, v in env.items() if v})


class UnknownLatent(ValueError):
    status = 404  # the request is well formed; this server does not hold (or no longer holds) the id


def root() -> Path:
    if os.environ.get("GANSERVE_LATENTS"):
        return Path(os.environ["GANSERVE_LATENTS"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ganserve" / "latents"


def to_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def latent_id(array: np.ndarray) -> str:
    return "w:" + hashlib.sha256(to_npy(array)).hexdigest()[:16]


def save(array: np.ndarray) -> str:
    """Store ``array`` (float32) and return its id."""
    return save_many([array])[0]


def save_many(arrays: list[np.ndarray]) -> list[str]:
    """Store each array, then evict what the limits no longer allow (once for the lot); their ids."""
    ids = []
    for array in arrays:
        data = to_npy(array)
        lid = "w:" + hashlib.sha256(data).hexdigest()[:16]
        path = root() / f"{lid[2:]}.npy"
        if path.exists():
            _touch(path)
        else:
            atomic_write_bytes(path, data)
        ids.append(lid)
    evict()
    return ids


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):  # evicted meanwhile by another worker: nothing to keep fresh
        os.utime(path)


def evict(limits: StoreLimits | None = None, now: float | None = None) -> int:
    """Remove the least recently used files beyond the limits; how many were removed."""
    limits = limits or StoreLimits.from_env()
    now = time.time() if now is None else now
    entries = []
    with contextlib.suppress(FileNotFoundError), os.scandir(root()) as it:
        for e in it:
            if e.name.endswith(".npy"):
                with contextlib.suppress(OSError):
                    st = e.stat()
                    entries.append((st.st_mtime, st.st_size, e.path))
    entries.sort(reverse=True)  # newest first: these stay
    kept_files = kept_bytes = removed = 0
    for mtime, size, path in entries:
        if kept_files < limits.max_files and kept_bytes + size <= limits.max_bytes and now - mtime <= limits.max_age_s:
            kept_files, kept_bytes = kept_files + 1, kept_bytes + size
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed += 1
    return removed


def from_npy(data: bytes) -> np.ndarray:
    """A .npy file's float array; refuses pickled objects, other dtypes and oversized data with ValueError."""
    if len(data) > MAX_NPY_BYTES:
        raise ValueError(f"is over {MAX_NPY_BYTES} bytes")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"is not a .npy array ({str(e)[:100]})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise ValueError("must be a float array")
    array = array.astype(np.float32)
    if array.size == 0:
        raise ValueError(f"is empty (shape {list(array.shape)})")
    if not np.isfinite(array).all():
        raise ValueError("holds NaN or infinite values")
    return array


def resolve(value: str) -> np.ndarray:
    """An id from ``save`` or a base64 .npy -> the array (ValueError says what is wrong)."""
    if ID.fullmatch(value):
        path = root() / f"{value[2:]}.npy"
        try:
            data = path.read_bytes()
        except OSError:
            raise UnknownLatent(f"unknown latent id '{value}' on this server (never stored here, or evicted as least "
                                "recently used): send the w itself as a base64 .npy") from None  # fmt: skip
        _touch(path)
        return from_npy(data)
    if len(value) > MAX_NPY_BYTES * 4 // 3 + 4:
        raise ValueError(f"is over {MAX_NPY_BYTES} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be a latent id ('w:' + 16 hex digits) or a base64 .npy array") from None
    return from_npy(data)
