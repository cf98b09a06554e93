"""Export a generator to a folder of graphs + manifest + constants, and load such a folder back as a backend.

Layout of an export folder (format onnx or pt2):
    ganserve-export.json   manifest: family, config, checkpoint metadata, graphs (file, inputs, dtype), parity
    constants.safetensors  tensors the runtime needs beside the graphs (StyleGAN2: w_avg, const noise)
    mapping.onnx ...       one file per graph
The folder is built under a temporary name next to its destination and renamed into place only after every graph
has passed its parity check, so a failure or Ctrl-C never leaves a half-written export.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ganserve.checkpoint import plain_mode
from ganserve.export import parity
from ganserve.export.formats import ExportError, get_format, graph_formats
from ganserve.export.registry import get_exporter
from ganserve.loading import attach_sampling

MANIFEST = "ganserve-export.json"
CONSTANTS = "constants.safetensors"
MANIFEST_VERSION = 1


@dataclass
class ExportResult:
    path: Path
    files: list[tuple[str, int]] = field(default_factory=list)  # (name relative to path's folder, bytes)
    parity: dict[str, dict[int, float]] = field(default_factory=dict)  # graph -> batch -> max abs error
    manifest: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------------
# Output paths


def check_output(out: str | os.PathLike, force: bool) -> Path:
    """Refuse an existing output without ``force`` and an unwritable destination, before any slow work."""
    out = Path(out)
    if out.exists() and not force:
        raise ExportError(f"{out} already exists (pass --force to replace it)")
    parent = out.absolute().parent
    blocker = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ExportError(f"cannot write to {parent}: {blocker} is not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent)
        os.rmdir(probe)
    except OSError as e:
        raise ExportError(f"cannot write to {parent}: {e.strerror or e}") from None
    return out


@contextlib.contextmanager
def atomic_output(out: str | os.PathLike, *, directory: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``out``; on success rename it to ``out`` (replacing what was there)."""
    out = Path(out)
    parent = out.absolute().parent
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkdtemp / mkstemp make it private (0700 / 0600), and safetensors' writer makes 0600 files: the umask
        # decides, as for any file
        for p in (tmp, *(tmp.rglob("*") if tmp.is_dir() else ())):
            if not p.is_symlink():
                plain_mode(p)
        old = None
        if out.exists() or out.is_symlink():
            old = parent / f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def list_files(path: Path) -> list[tuple[str, int]]:
    if path.is_file():
        return [(path.name, path.stat().st_size)]
    return [(str(p.relative_to(path.parent)), p.stat().st_size) for p in sorted(path.rglob("*")) if p.is_file()]


# ---------------------------------------------------------------------------------------------------------------------
# Export


def export_graphs(
    model: nn.Module,
    fmt: str,
    out: str | os.PathLike,
    *,
    opset: int | None = None,
    fp16: bool = False,
    force: bool = False,
    parity_seed: int = 1,
) -> ExportResult:
    """Export ``model``'s graphs in the graph format ``fmt`` (onnx, pt2, a registered one) to the folder ``out``, each
    parity-checked against eager."""
    graph_format = get_format(fmt)
    exporter = get_exporter(model.family)
    out = check_output(out, force)
    result = ExportResult(out)
    # Graphs hold standard ops only: keep ganserve.kernels' custom ops out even when exporting from a CUDA model.
    with _kernels_off(), atomic_output(out) as tmp:
        graphs = {}
        for spec in exporter.graphs(model):
            file = spec.name + graph_format.suffix
            dtype = "float16" if fp16 and spec.half else "float32"
            graph_format.export_graph(spec, tmp / file, opset=opset, fp16=fp16)
            errors = parity.measure(spec, make_runner(fmt, tmp / file, "cpu", dtype), seed=parity_seed)
            parity.check(spec, errors, fp16)
            result.parity[spec.name] = errors
            graphs[spec.name] = {"file": file, "inputs": spec.input_names, "output": spec.output_name,
                                 "batched": spec.batched, "dtype": dtype}  # fmt: skip
        save_file(exporter.constants(model), str(tmp / CONSTANTS))
        result.manifest = {
            "manifest_version": MANIFEST_VERSION,
            "format": fmt,
            "family": model.family,
            "name": getattr(model, "name", ""),
            "config": model.config.to_dict(),
            **exporter.manifest(model),
            "checkpoint_info": getattr(model, "checkpoint_info", {}) or {},
            "graphs": graphs,
            "opset": opset,
            "fp16": fp16,
            "parity": {g: {str(b): e for b, e in errs.items()} for g, errs in result.parity.items()},
            "torch": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / MANIFEST).write_text(json.dumps(result.manifest, indent=2))
    result.files = list_files(out)
    return result


def _kernels_off() -> contextlib.AbstractContextManager:
    try:
        from ganserve.kernels import use_kernels
    except ImportError:
        return contextlib.nullcontext()
    return use_kernels(False)


# ---------------------------------------------------------------------------------------------------------------------
# Load


def make_runner(fmt: str, path: str | os.PathLike, device: str = "cpu", dtype: str = "float32", **options: Any) -> Any:
    """One saved graph of format ``fmt`` as a callable (tensors in, a float32 tensor out)."""
    return get_format(fmt).make_runner(path, device, dtype, **options)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    file = path / MANIFEST if path.is_dir() else path
    if not file.is_file():
        raise ExportError(f"{path}: not a ganserve export (no {MANIFEST})")
    manifest = json.loads(file.read_text())
    if manifest.get("manifest_version", 0) > MANIFEST_VERSION:
        raise ExportError(f"{path}: export manifest version {manifest['manifest_version']} is newer than this ganserve")
    return manifest


def load_exported(path: str | os.PathLike, device: str = "cpu", fmt: str | None = None, **options: Any) -> nn.Module:
    """An export folder as a module with the generator's sampling surface (``fmt`` checks the folder's format)."""
    folder = Path(path)
    manifest = read_manifest(folder)
    if fmt is not None and manifest["format"] != fmt:
        raise ExportError(f"{folder} holds a '{manifest['format']}' export, not '{fmt}'")
    if manifest["format"] not in graph_formats():  # e.g. made with a format plugin that is no longer installed
        raise ExportError(f"{folder} holds a '{manifest['format']}' export and no such format is installed "
                          f"(graph formats: {', '.join(graph_formats())})")  # fmt: skip
    runners = {
        name: make_runner(manifest["format"], folder / g["file"], device, g.get("dtype", "float32"), **options)
        for name, g in manifest["graphs"].items()
    }
    constants = load_file(str(folder / CONSTANTS))
    model = get_exporter(manifest["family"]).runtime(manifest, runners, constants, device)
    model.graph_precision = "fp16" if manifest.get("fp16") else "fp32"
    pad = get_format(manifest["format"]).pad_batch_one
    model.pad_batch_one = pad(device, model.graph_precision) if callable(pad) else pad  # read by sampling.render
    model.runtime_info = {"backend": manifest["format"], "graph_precision": model.graph_precision}
    providers = next((r.providers for r in runners.values() if getattr(r, "providers", None)), None)
    if providers:  # onnxruntime: the first provider of the session runs every node it supports
        model.runtime_info.update(provider=providers[0], providers=list(providers))
    return attach_sampling(model)
