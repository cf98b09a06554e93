"""ONNX export with the dynamo exporter (torch.onnx.export(..., dynamo=True) + onnxscript); an onnxruntime runner."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ganserve.export.formats import GraphFormat
from ganserve.export.registry import GraphSpec


def export_graph(spec: GraphSpec, path: str | os.PathLike, *, opset: int | None = None, fp16: bool = False) -> None:
    """Export one graph to ``path`` (a single self-contained file) and check it with onnx.checker."""
    import onnx

    module = spec.export_module(fp16)
    inputs = spec.export_inputs(spec.make_inputs(2, torch.Generator().manual_seed(0)), fp16)
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            inputs,
            dynamo=True,
            input_names=spec.input_names,
            output_names=[spec.output_name],
            dynamic_shapes=spec.dynamic_shapes(),
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


def providers_for(device: str) -> list[str]:
    """CUDA execution provider on a CUDA device when onnxruntime-gpu provides it, else the CPU one."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


_NP_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


class OnnxRunner:
    """One onnxruntime session; called with torch tensors, returns a float32 torch tensor on ``device``."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:  # torch's count on the other side of a comparison: one inter-op thread, as torch runs
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.device = torch.device(device)
        self.session = ort.InferenceSession(str(path), opts, providers=providers_for(device))
        self.inputs = [(i.name, _NP_DTYPES.get(i.type)) for i in self.session.get_inputs()]
        self.providers = self.session.get_providers()

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        if len(tensors) != len(self.inputs):
            raise ValueError(
                f"graph takes {len(self.inputs)} inputs ({[n for n, _ in self.inputs]}), got {len(tensors)}"
            )
        feed: dict[str, Any] = {}
        for (name, dtype), t in zip(self.inputs, tensors):
            a = t.detach().cpu().numpy()
            feed[name] = a.astype(dtype, copy=False) if dtype is not None else a
        (out,) = self.session.run(None, feed)
        return torch.from_numpy(out).to(self.device, torch.float32)


def _runner(path: str | os.PathLike, device: str = "cpu", dtype: str = "float32", **options: Any) -> OnnxRunner:
    # the graph's dtype is in the file; ``threads`` sets onnxruntime's intra-op threads (benchmarks: torch's count)
    return OnnxRunner(path, device, threads=options.get("threads"))


FORMAT = GraphFormat(
    name="onnx",
    suffix=".onnx",
    export_graph=export_graph,
    make_runner=_runner,
    description="ONNX (dynamo exporter), run by onnxruntime (CUDA provider on cuda when onnxruntime-gpu has it)",
)
