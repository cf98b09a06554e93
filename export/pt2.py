"""torch.export (.pt2, dynamic batch) of a graph, and a runner for the saved ExportedProgram."""

from __future__ import annotations

import os
from typing import Any

import torch

from ganserve.export.formats import GraphFormat
from ganserve.export.registry import GraphSpec
from ganserve.kernels import ops as _kernel_ops  # noqa: F401  (registers ganserve::vq_nearest, held by VQ programs)
from ganserve.models import invariant_ops  # noqa: F401  (registers the ganserve::invariant_* ops programs hold)
from ganserve.models.layers import batch_one_is_invariant
from ganserve.models.layers import invariant_ops as traced_invariant


def export_graph(spec: GraphSpec, path: str | os.PathLike, *, opset: int | None = None, fp16: bool = False) -> None:
    """Export one graph to ``path`` (``opset`` is ignored: it only concerns ONNX)."""
    module = spec.export_module(fp16)
    inputs = spec.export_inputs(spec.make_inputs(2, torch.Generator().manual_seed(0)), fp16)
    # The layers traced as ganserve::invariant_* ops: the program gives a row the same bits at any batch size, as eager
    with torch.no_grad(), traced_invariant():
        program = torch.export.export(module, inputs, dynamic_shapes=spec.dynamic_shapes(), strict=False)
    torch.export.save(program, str(path))


class Pt2Runner:
    """A loaded ExportedProgram; casts float inputs to the dtype it was exported in, returns float32."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", dtype: str = "float32") -> None:
        program = torch.export.load(str(path))
        self.device = torch.device(device)
        if self.device.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, self.device)
        self.module = program.module()
        self.dtype = getattr(torch, dtype)

    @torch.no_grad()
    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        args = [t.to(self.device, self.dtype) if t.is_floating_point() else t.to(self.device) for t in tensors]
        return self.module(*args).to(torch.float32)


def _runner(path: str | os.PathLike, device: str = "cpu", dtype: str = "float32", **_: Any) -> Pt2Runner:
    return Pt2Runner(path, device, dtype)


FORMAT = GraphFormat(
    name="pt2",
    suffix=".pt2",
    export_graph=export_graph,
    make_runner=_runner,
    description="torch.export programs (.pt2, dynamic batch), run by PyTorch",
    pad_batch_one=lambda device, precision: not batch_one_is_invariant(device, precision),
)
