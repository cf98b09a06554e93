"""ganserve.export: ONNX, torch.export (.pt2) and TorchServe (.mar) exports of generators, each parity-checked.

    from ganserve.export import export_graphs, load_exported
    export_graphs(ganserve.load("stylegan2-fashion-32"), "onnx", "out/sg2-onnx")
    G = load_exported("out/sg2-onnx")          # the generator's sampling surface, run by onnxruntime
    G.sample(seeds="0-7")

Families plug in through ganserve.export.registry (one exporter class per family).
"""

from __future__ import annotations

from ganserve.export.bundle import (
    FORMATS,
    GRAPH_FORMATS,
    ExportError,
    ExportResult,
    export_graphs,
    load_exported,
    read_manifest,
)
from ganserve.export.parity import ParityError
from ganserve.export.registry import EXPORTERS, Exporter, GraphSpec, get_exporter, register_exporter

__all__ = [
    "EXPORTERS",
    "FORMATS",
    "GRAPH_FORMATS",
    "ExportError",
    "ExportResult",
    "Exporter",
    "GraphSpec",
    "ParityError",
    "export_graphs",
    "get_exporter",
    "load_exported",
    "read_manifest",
    "register_exporter",
]
