"""The onnx and pt2 generator backends: an export folder as is, or a checkpoint exported once into a cache.

The cache key is the checkpoint's content hash and the cache revision, so neither a retrained model nor a newer
ganserve reuses stale graphs. Each format's ``GraphFormat`` (ganserve.export.formats) is its backend and calls
``load_or_export``; the core finds them through the ``ganserve.backends`` entry points and never imports this package.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from ganserve.export.bundle import MANIFEST, export_graphs, load_exported, read_manifest

# What an export holds grows with ganserve (2: StyleGAN exports carry their semantic directions). A cached export of an
# older revision is never reused, so an upgrade re-exports rather than serving graphs without what they now ship.
# 3: pt2 programs run their layers as the batch-invariant ganserve::invariant_* ops.
CACHE_REVISION = 3


def cache_root() -> Path:
    """$GANSERVE_EXPORT_CACHE, else $XDG_CACHE_HOME/ganserve/exports (default ~/.cache/ganserve/exports)."""
    if os.environ.get("GANSERVE_EXPORT_CACHE"):
        return Path(os.environ["GANSERVE_EXPORT_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ganserve" / "exports"


def is_export(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


def load_or_export(fmt: str, source: str | os.PathLike, device: str = "cpu", **options: Any) -> nn.Module:
    """Load ``source`` (an export folder, a model name or a checkpoint path) as ``fmt`` graphs on ``device``."""
    if is_export(source):
        return load_exported(source, device, fmt, **options)
    from ganserve.checkpoint import read_metadata
    from ganserve.loading import resolve

    ckpt = resolve(source)
    content_hash = read_metadata(ckpt)["content_hash"]
    beside = ckpt.parent  # a TorchServe model folder: graphs unpacked next to the checkpoint they came from
    if is_export(beside):
        manifest = read_manifest(beside)
        if manifest["format"] == fmt and manifest.get("checkpoint_info", {}).get("content_hash") == content_hash:
            return load_exported(beside, device, fmt, **options)
    return load_exported(cached_export(fmt, ckpt), device, fmt, **options)


def cached_export(fmt: str, checkpoint: str | os.PathLike) -> Path:
    """The cache folder holding ``checkpoint``'s ``fmt`` export, exported first if it is not there yet."""
    import ganserve
    from ganserve.checkpoint import read_metadata

    ckpt = Path(checkpoint)
    digest = read_metadata(ckpt)["content_hash"].split(":", 1)[1][:16]
    folder = cache_root() / f"{ckpt.stem}-{digest}-{fmt}-r{CACHE_REVISION}"
    if not is_export(folder):
        export_graphs(ganserve.load(ckpt), fmt, folder, force=True)
        _drop_older_revisions(folder, f"{ckpt.stem}-{digest}-{fmt}")
    return folder


def _drop_older_revisions(current: Path, stem: str) -> None:
    """Remove this checkpoint's cached exports of earlier revisions: one export per model and format stays."""
    older = [current.parent / stem] + [current.parent / f"{stem}-r{r}" for r in range(1, CACHE_REVISION)]
    for stale in older:
        if is_export(stale):
            shutil.rmtree(stale, ignore_errors=True)
