"""ProGAN export: one graph, z (, class ids) -> image.

generator: z [N, z_dim] (, c [N] int64)  ->  img [N, C, R, R]

The graph is traced at the resolution and alpha the model has grown to (a shipped model: the final resolution),
passed to the generator as constants so the graph never reads the ``lod`` buffer; the manifest records them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ganserve.export.registry import ExportedModel, Exporter, GraphSpec, Runner, register_exporter


class _GeneratorGraph(nn.Module):
    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.G, self.conditional = G, bool(G.config.c_dim)
        self.resolution, self.alpha = G.progress

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        z, c = inputs if self.conditional else (inputs[0], None)
        return self.G(z, c, resolution=self.resolution, alpha=self.alpha)


@register_exporter("progan")
class ProGANExporter(Exporter):
    def graphs(self, model: nn.Module) -> list[GraphSpec]:
        cfg = model.config

        def inputs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
            z = torch.randn([n, cfg.z_dim], generator=gen)
            return (z, torch.randint(0, cfg.c_dim, [n], generator=gen)) if cfg.c_dim else (z,)

        names = ["z", "c"] if cfg.c_dim else ["z"]
        return [GraphSpec("generator", _GeneratorGraph(model).eval(), names, "img", inputs,
                          batched=[True] * len(names))]  # fmt: skip

    def manifest(self, model: nn.Module) -> dict[str, Any]:
        resolution, alpha = model.progress
        return {"progress": [int(resolution), float(alpha)]}

    def runtime(
        self, manifest: dict[str, Any], runners: dict[str, Runner], constants: dict[str, torch.Tensor], device: str
    ) -> nn.Module:
        return ExportedProGAN(manifest, runners, device)


class ExportedProGAN(ExportedModel):
    """A ProGAN generator backed by its exported graph (ONNX Runtime or torch.export)."""

    def __init__(self, manifest: dict[str, Any], runners: dict[str, Runner], device: str) -> None:
        super().__init__(manifest)
        resolution, alpha = manifest.get("progress", [self.config.resolution, 1.0])
        self.progress = (int(resolution), float(alpha))
        self.runner = runners["generator"]
        self.finish(device)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.c_dim:
            if c is None:
                raise ValueError("this model is class-conditional: a class is required")
            return self.runner(z, c.long())
        return self.runner(z)
