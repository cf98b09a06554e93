"""ganserve.export: ONNX, torch.export (.pt2) and TorchServe (.mar) exports of generators, each parity-checked.

    from ganserve.export import export_graphs, load_exported
    export_graphs(ganserve.load("stylegan2-fashion-32"), "onnx", "out/sg2-onnx")
    G = load_exported("out/sg2-onnx")          # the generator's sampling surface, run by onnxruntime
    G.sample(seeds="0-7")

Families plug in through ganserve.export.registry (one exporter class per family); formats through
ganserve.export.formats (one ``GraphFormat`` per format, found by its ``ganserve.backends`` entry point).
"""

from __future__ import annotations

from ganserve.export.bundle import ExportResult, export_graphs, load_exported, make_runner, read_manifest
from ganserve.export.formats import (
    ExportError,
    GraphFormat,
    export_formats,
    get_format,
    graph_formats,
    register_format,
)
from ganserve.export.parity import ParityError
from ganserve.export.registry import EXPORTERS, Exporter, GraphSpec, get_exporter, register_exporter

__all__ = [
    "EXPORTERS",
    "ExportError",
    "ExportResult",
    "Exporter",
    "GraphFormat",
    "GraphSpec",
    "ParityError",
    "export_formats",
    "export_graphs",
    "get_exporter",
    "get_format",
    "graph_formats",
    "load_exported",
    "make_runner",
    "read_manifest",
    "register_exporter",
    "register_format",
]
