"""The checkpoint format shared by every family: one .safetensors file with a JSON metadata block.

Metadata key ``ganserve`` holds JSON: format_version, family, config, dataset, training (command, step, kimg),
content_hash, created. Buffers such as ``mapping.w_avg`` are tensors like any other. Nothing here unpickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
METADATA_KEY = "ganserve"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def content_hash(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename into place, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the mode a plain open() would
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Write tensors and JSON metadata atomically; fills in format_version, content_hash and created."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = dict(meta)
    meta.setdefault("format_version", FORMAT_VERSION)
    meta["content_hash"] = content_hash(tensors)
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(meta)}))
    return meta


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Parse only the header: cheap, and enough to list models."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(path, f"truncated: {size} bytes is too short for a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > min(size - 8, 100_000_000):
            raise CheckpointError(path, "not a safetensors file (header length out of range; truncated or corrupt)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(path, f"corrupt safetensors header ({e})") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if size < 8 + n + end:
        raise CheckpointError(path, f"truncated: {size} bytes, the header describes {8 + n + end}")
    raw_meta = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw_meta is None:
        raise CheckpointError(path, f"no '{METADATA_KEY}' metadata: not a ganserve checkpoint")
    try:
        meta = json.loads(raw_meta)
    except json.JSONDecodeError as e:
        raise CheckpointError(path, f"metadata is not valid JSON ({e})") from None
    for key in ("format_version", "family", "config", "content_hash"):
        if key not in meta:
            raise CheckpointError(path, f"metadata lacks '{key}'")
    if meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError(path, f"format_version {meta['format_version']} is newer than this ganserve reads")
    return meta


def read_tensors(path: str | os.PathLike, *, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(path, f"unreadable tensors ({e})") from None
    if verify and content_hash(tensors) != meta["content_hash"]:
        raise CheckpointError(path, "content hash mismatch: the tensor data is corrupt or was altered")
    return tensors, meta


def load_state_into(path: str | os.PathLike, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy tensors into ``module`` after checking that names and shapes match its state dict exactly."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise CheckpointError(path, "config does not match the tensors: " + "; ".join(parts))
    for name, t in expected.items():
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise CheckpointError(
                path,
                f"config does not match the tensors: {name} has shape {tuple(tensors[name].shape)}, "
                f"the config expects {tuple(t.shape)}",
            )
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
