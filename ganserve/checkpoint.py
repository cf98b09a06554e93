"""The checkpoint format shared by every family: one .safetensors file with a JSON metadata block.

Metadata key ``ganserve`` holds JSON: format_version, family, config (or ``parts``: name -> {config} for models made
of several components, whose tensors are prefixed ``name.``), dataset, training (command, step, kimg), created,
content_hash. Format 2's hash covers every tensor *and* the metadata, so an edited config is as detectable as an
edited weight; format 1 files (tensors only) still load. Nothing here unpickles, and every problem with a file
raises ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 2
METADATA_KEY = "ganserve"
_UNHASHED = ("content_hash",)  # metadata keys outside the hash (the hash itself)


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def _hash_tensors(h: Any, tensors: dict[str, torch.Tensor]) -> None:
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def content_hash(tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes in name order, then (format 2) the metadata as
    canonical JSON without the hash itself. ``meta=None`` gives format 1's tensors-only hash."""
    h = hashlib.sha256()
    _hash_tensors(h, tensors)
    if meta is not None:
        body = {k: v for k, v in meta.items() if k not in _UNHASHED}
        h.update(b"|meta|" + json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return "sha256:" + h.hexdigest()


def current_umask() -> int:
    """The process umask, read without changing it where /proc says it (os.umask can only be read by setting it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def plain_mode(path: str | os.PathLike) -> None:
    """Give a file (0666) or folder (0777) made by mkstemp / mkdtemp (0600 / 0700) the mode a plain open() or
    mkdir() would have given it under the umask: a written checkpoint or export is readable by whom the user intends."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~current_umask())


def atomic_write(path: str | os.PathLike, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename into place, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        plain_mode(tmp)  # after write: some writers replace the file
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Write tensors and JSON metadata atomically; fills in format_version, created and content_hash."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = dict(meta)
    meta["format_version"] = FORMAT_VERSION
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    meta.pop("content_hash", None)
    meta["content_hash"] = content_hash(tensors, meta)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(meta)}))
    return meta


def _check_meta(path: Path, meta: Any) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise CheckpointError(path, f"metadata must be a JSON object, got {type(meta).__name__}")
    expected = {"format_version": int, "family": str, "content_hash": str}
    for key, kind in expected.items():
        if key not in meta:
            raise CheckpointError(path, f"metadata lacks '{key}'")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise CheckpointError(path, f"metadata '{key}' must be {kind.__name__}, got {type(meta[key]).__name__}")
    if meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError(path, f"format_version {meta['format_version']} is newer than this ganserve reads "
                                    f"({FORMAT_VERSION})")  # fmt: skip
    if "parts" in meta:
        parts = meta["parts"]
        if not isinstance(parts, dict) or not parts:
            raise CheckpointError(path, "metadata 'parts' must be a non-empty object of part name -> {config}")
        for name, part in parts.items():
            if not isinstance(part, dict) or not isinstance(part.get("config"), dict):
                raise CheckpointError(path, f"metadata part '{name}' lacks a 'config' object")
    elif not isinstance(meta.get("config"), dict):
        raise CheckpointError(path, "metadata lacks a 'config' object")
    return meta


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and check only the header: cheap, and enough to list models."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    size = path.stat().st_size
    if size < 8:
        raise CheckpointError(path, f"truncated: {size} bytes is too short for a safetensors header")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata()
    except SafetensorError as e:
        problem = str(e)
        if any(s in problem.lower() for s in ("incomplete", "not fully covered", "too small")):
            raise CheckpointError(path, f"truncated or corrupt: {size} bytes do not hold what the header describes "
                                        f"({problem})") from None  # fmt: skip
        raise CheckpointError(path, f"not a valid safetensors file ({problem})") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(path, f"unreadable safetensors header ({e})") from None
    raw_meta = (header or {}).get(METADATA_KEY)
    if raw_meta is None:
        raise CheckpointError(path, f"no '{METADATA_KEY}' metadata: not a ganserve checkpoint")
    try:
        meta = json.loads(raw_meta)
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(path, f"metadata is not valid JSON ({e})") from None
    return _check_meta(path, meta)


def read_tensors(path: str | os.PathLike, *, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every tensor and the checked metadata; ``verify`` checks the content hash (format 2: tensors + metadata)."""
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(path, f"unreadable tensors ({e})") from None
    if verify:
        expected = content_hash(tensors, meta if meta["format_version"] >= 2 else None)
        if expected != meta["content_hash"]:
            raise CheckpointError(path, "content hash mismatch: tensors or metadata are corrupt or were altered")
    return tensors, meta


def update_metadata(path: str | os.PathLike, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into the top level of a checkpoint's metadata (e.g. ``{"evaluation": {...}}``) and rewrite
    the file atomically with the same tensors and a new content hash. Keys that define the model are refused."""
    protected = {"format_version", "family", "config", "parts", "content_hash"}
    if protected & set(updates):
        raise ValueError(f"update_metadata cannot change {sorted(protected & set(updates))}")
    tensors, meta = read_tensors(path)
    meta.update(updates)
    return save_tensors(path, tensors, meta)


def check_state_shapes(path: str | os.PathLike, expected: dict[str, Any], tensors: dict[str, Any], prefix: str = ""):
    """Refuse unless ``tensors`` has exactly the names and shapes of ``expected`` (a state dict, possibly on the meta
    device); ``prefix`` says which part of the file is meant in the message."""
    where = f" in part '{prefix}'" if prefix else ""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise CheckpointError(path, f"config does not match the tensors{where}: " + "; ".join(parts))
    for name, t in expected.items():
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise CheckpointError(
                path,
                f"config does not match the tensors{where}: {name} has shape {tuple(tensors[name].shape)}, "
                f"the config expects {tuple(t.shape)}",
            )


def load_state_into(path: str | os.PathLike, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy tensors into ``module`` after checking that names and shapes match its state dict exactly."""
    expected = module.state_dict()
    check_state_shapes(path, expected, tensors)
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
