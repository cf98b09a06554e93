"""Projected latents kept by id, so a client can say ``"w": "w:0123abcd..."`` instead of sending the array again.

Content-addressed (the id is a hash of the array's bytes), stored as .npy without pickle under
$GANSERVE_LATENTS, else $XDG_CACHE_HOME/ganserve/latents, written atomically: every worker on the machine sees them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
from pathlib import Path

import numpy as np

from ganserve.checkpoint import atomic_write_bytes

ID = re.compile(r"w:[0-9a-f]{16}", re.ASCII)
MAX_NPY_BYTES = 1 << 20  # a w sent inline, decoded


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
    lid = latent_id(array)
    path = root() / f"{lid[2:]}.npy"
    if not path.exists():
        atomic_write_bytes(path, to_npy(array))
    return lid


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
    if not np.isfinite(array).all():
        raise ValueError("holds NaN or infinite values")
    return array


def resolve(value: str) -> np.ndarray:
    """An id from ``save`` or a base64 .npy -> the array (ValueError says what is wrong)."""
    if ID.fullmatch(value):
        path = root() / f"{value[2:]}.npy"
        if not path.is_file():
            raise ValueError(f"unknown latent id '{value}' on this server; send the w itself as a base64 .npy")
        return from_npy(path.read_bytes())
    if len(value) > MAX_NPY_BYTES * 4 // 3 + 4:
        raise ValueError(f"is over {MAX_NPY_BYTES} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be a latent id ('w:' + 16 hex digits) or a base64 .npy array") from None
    return from_npy(data)
