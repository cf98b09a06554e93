"""Export formats: one ``GraphFormat`` declaration per format, found through one entry-point group.

A format (onnx, pt2, or one from another package) is one module defining ``FORMAT = GraphFormat(...)``: its name,
file suffix, how to export one graph and how to run a saved one. The same object is the generator backend of that
name (calling it loads a checkpoint or an export folder as graphs of the format), so one entry point in the
``ganserve.backends`` group registers both: ``ganserve export --format NAME`` and ``--backend NAME`` on
sample / serve / bench. Adding a format is that module plus one line in its package's pyproject.toml:

    [project.entry-points."ganserve.backends"]
    myformat = "mypkg.myformat:FORMAT"

In-process (tests, notebooks): ``register_format(GraphFormat(...))``. The core never imports this package: it finds
the backends through the entry points (``ganserve.backends``); this module reads the same group for the formats.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from ganserve.export.registry import Runner

ENTRY_POINT_GROUP = "ganserve.backends"  # the group ganserve.backends reads: a format is a backend
ARCHIVE = "mar"  # a TorchServe archive wraps one of the graph formats (or eager): not a format of its own

_REGISTERED: dict[str, GraphFormat] = {}
_WARNED: set[str] = set()
# sys.path -> the group's entry points: a scan of every installed distribution costs ~20-30 ms and the CLI lists the
# formats while building its parsers; a new sys.path (a plugin folder added) scans again, as ganserve.families does.
_SCANNED: tuple[tuple[str, ...], tuple[metadata.EntryPoint, ...]] | None = None


class ExportError(ValueError):
    """A user-facing export problem (bad output path, unknown format ...): one line, exit status 2 in the CLI."""


@dataclass(frozen=True)
class GraphFormat:
    """Everything ganserve needs to write, check, run and serve graphs in one format."""

    name: str
    suffix: str  # file suffix of one graph: ".onnx"
    # (spec, path, *, opset, fp16) -> None: export spec.module to one self-contained file at path
    export_graph: Callable[..., None]
    # (path, device, dtype, **options) -> Runner: the saved graph as a callable, tensors in, float32 tensor out
    make_runner: Callable[..., Runner]
    description: str = ""  # one line for --help
    # Its graphs pick other kernels for a batch of one than for larger batches: the sampling core then pads a one-row
    # chunk to two, so an image never depends on the batch. A callable (device, graph precision) -> bool says where
    # (pt2 programs run ganserve's fixed kernels on the CPU in fp32, PyTorch's dispatch elsewhere).
    pad_batch_one: bool | Callable[[str, str], bool] = False

    def __call__(self, checkpoint: str | os.PathLike, device: str = "cpu", **options: Any) -> nn.Module:
        """The backend: ``checkpoint`` (an export folder of this format, a model name or a checkpoint path, exported
        once into the cache) as a model with its family's sampling surface."""
        from ganserve.export.cache import load_or_export

        return load_or_export(self.name, checkpoint, device, **options)


def register_format(fmt: GraphFormat) -> GraphFormat:
    """Register ``fmt`` in this process (entry points need an installed package; tests and notebooks use this)."""
    if not isinstance(fmt, GraphFormat):
        raise TypeError(f"register_format takes a GraphFormat, got {type(fmt).__name__}")
    _REGISTERED[fmt.name] = fmt
    return fmt


def _from_entry_point(ep: metadata.EntryPoint) -> GraphFormat | None:
    """The format an entry point names (``module:FORMAT`` or a module defining ``FORMAT``); None for a backend of
    the group that is not an export format (a plain loader function)."""
    obj = ep.load()
    if isinstance(obj, types.ModuleType):
        obj = getattr(obj, "FORMAT", None)
    if not isinstance(obj, GraphFormat):
        return None
    if obj.name != ep.name:  # the backend name and the format name are one name
        raise ExportError(f"entry point {ep.name} = {ep.value!r}: its GraphFormat is named '{obj.name}'")
    return obj


def _entry_points() -> tuple[metadata.EntryPoint, ...]:
    global _SCANNED
    key = tuple(sys.path)
    if _SCANNED is None or _SCANNED[0] != key:
        _SCANNED = (key, tuple(metadata.entry_points(group=ENTRY_POINT_GROUP)))
    return _SCANNED[1]


def graph_formats() -> dict[str, GraphFormat]:
    """Every graph format: registered in-process, or declared in the ``ganserve.backends`` entry-point group.

    A plugin that does not load is left out with a RuntimeWarning naming its entry point, so one broken package does
    not take the others (or ``ganserve export --help``) down."""
    found: dict[str, GraphFormat] = {}
    for ep in _entry_points():
        if ep.name in found:
            continue
        try:
            fmt = _from_entry_point(ep)
        except Exception as e:
            msg = f"export format '{ep.name}' (entry point {ep.value!r} in {ENTRY_POINT_GROUP}): {e}"
            if msg not in _WARNED:
                _WARNED.add(msg)
                warnings.warn(f"{msg} (left out)", RuntimeWarning, stacklevel=2)
            continue
        if fmt is not None:
            found[ep.name] = fmt
    found.update(_REGISTERED)  # in-process registrations win (a test may replace a format)
    return dict(sorted(found.items()))


def export_formats() -> list[str]:
    """What ``ganserve export --format`` takes: every graph format, and the TorchServe archive."""
    return [*graph_formats(), ARCHIVE]


def get_format(name: str) -> GraphFormat:
    """The graph format ``name``; ExportError listing the known ones if there is none."""
    formats = graph_formats()
    if name not in formats:
        raise ExportError(f"unknown graph format '{name}' (graph formats: {', '.join(formats)})")
    return formats[name]
