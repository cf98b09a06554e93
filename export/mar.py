"""TorchServe archives (.mar): ganserve's handler + the checkpoint (+ exported graphs) + model-config.yaml.

The archive is built by ganserve.serving.store.build_archive (the same archives ``ganserve serve`` uses); this module
only adds the exported graphs as extra files and selects the backend in model-config.yaml. TorchServe unpacks extra
files flat into the model folder, beside the checkpoint, and the onnx / pt2 backends pick up an export folder found
next to the checkpoint it was made from (ganserve.export.cache).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ganserve.export.bundle import (
    ExportResult,
    atomic_output,
    check_output,
    export_graphs,
    list_files,
    read_manifest,
)
from ganserve.export.formats import ExportError, graph_formats


def mar_backends() -> list[str]:
    """What a .mar can run: the checkpoint itself, or the graphs of any graph format."""
    return ["eager", *graph_formats()]


def mar_target(model: str | os.PathLike, out: str | os.PathLike) -> Path:
    """``out`` ending in .mar is the file; anything else is a model-store folder that gets MODEL.mar."""
    out = Path(out)
    if out.suffix == ".mar":
        return out
    from ganserve.loading import resolve

    return out / f"{resolve(model).stem}.mar"


def export_mar(
    model: str | os.PathLike,
    out: str | os.PathLike,
    *,
    backend: str = "eager",
    opset: int | None = None,
    fp16: bool = False,
    precision: str = "fp32",
    force: bool = False,
    batch_size: int | None = None,
    device_type: str | None = None,
    graphs: str | os.PathLike | None = None,
) -> ExportResult:
    """Write a .mar running ``backend``. ``graphs``: reuse an export folder of that backend's format (else exported
    now and parity-checked). ``precision``: what the handler runs an eager archive at (graph backends: ``fp16``)."""
    if backend not in mar_backends():
        raise ExportError(f"unknown backend '{backend}' for a .mar (backends: {', '.join(mar_backends())})")
    if device_type not in (None, "cpu", "gpu"):
        raise ExportError(f"--device must be cpu or gpu (TorchServe deviceType), got '{device_type}'")
    try:
        from ganserve.serving.store import ArchiveOptions, build_archive
    except ImportError as e:
        raise ExportError(f"the mar format needs the serving extra: pip install 'ganserve[serve]' ({e})") from None
    import ganserve
    from ganserve.loading import resolve

    checkpoint = resolve(model)
    if precision != "fp32":  # refused now (unknown, or mixed for a family without it), not by the worker at load
        ganserve.load(checkpoint, precision=precision)
    target = check_output(mar_target(checkpoint, out), force)
    if backend != "eager" and precision != "fp32":
        raise ExportError(f"precision '{precision}' is for eager archives; the {backend} graphs run as exported "
                          "(fp16: --precision fp16 exports them in float16)")  # fmt: skip
    options = ArchiveOptions(backend=backend, device_type=device_type, precision=precision)
    if batch_size:
        options.batch_size = batch_size
    result = ExportResult(target)
    with tempfile.TemporaryDirectory(prefix=".ganserve-mar-", dir=target.absolute().parent) as tmp:
        extra: list[Path] = []
        if backend != "eager":
            folder = Path(graphs) if graphs else Path(tmp) / "graphs"
            if graphs is None:
                exported = export_graphs(ganserve.load(checkpoint), backend, folder, opset=opset, fp16=fp16)
                result.parity = exported.parity
            elif read_manifest(folder)["format"] != backend:
                raise ExportError(f"{folder} is not a '{backend}' export")
            extra = sorted(p for p in folder.iterdir() if p.is_file())
        with atomic_output(target, directory=False) as tmp_file:
            store = Path(tmp) / "store"
            built = build_archive(checkpoint, store, name=target.stem, options=options, extra_files=extra)
            os.replace(built, tmp_file)
    result.files = list_files(target)
    return result
