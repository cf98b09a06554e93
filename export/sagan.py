"""SAGAN export: one graph, the class vector and the attention query as inputs.

generator: z [N, z_dim], class_vector [N, c_dim] float, attention_query [N, 2] int64 (image pixel [y, x], or -1 for
           the sample itself)  ->  img [N, C, H, W]
The graph computes the sample and the query's attention map and picks per row, so image and attention requests
batch together as they do in eager mode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ganserve.export.biggan import random_class_vectors
from ganserve.export.registry import ExportedModel, Exporter, GraphSpec, Runner, register_exporter


class _GeneratorGraph(nn.Module):
    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.G = G

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:  # (z, class_vector, attention_query)
        z, class_vector, query = inputs
        return self.G(z, class_vector, query)


@register_exporter("sagan")
class SAGANExporter(Exporter):
    def graphs(self, model: nn.Module) -> list[GraphSpec]:
        cfg = model.config

        def inputs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
            z = torch.randn([n, cfg.z_dim], generator=gen)
            query = torch.randint(0, cfg.resolution, [n, 2], generator=gen)
            query[::2] = -1  # every other row the image itself
            return z, random_class_vectors(n, cfg.c_dim, gen), query

        return [GraphSpec("generator", _GeneratorGraph(model).eval(), ["z", "class_vector", "attention_query"], "img",
                          inputs, batched=[True, True, True])]  # fmt: skip

    def runtime(
        self, manifest: dict[str, Any], runners: dict[str, Runner], constants: dict[str, torch.Tensor], device: str
    ) -> nn.Module:
        return ExportedSAGAN(manifest, runners["generator"], device)


class ExportedSAGAN(ExportedModel):
    """A SAGAN generator backed by its exported graph: the eager model's call signature and attributes."""

    def __init__(self, manifest: dict[str, Any], runner: Runner, device: str) -> None:
        super().__init__(manifest)
        self.runner = runner
        self.finish(device)

    def forward(self, z: torch.Tensor, c: torch.Tensor, attention_query: torch.Tensor | None = None) -> torch.Tensor:
        n = z.shape[0]
        cv = torch.nn.functional.one_hot(c.long(), self.config.c_dim).float() if c.ndim == 1 else c.float()
        query = torch.full([n, 2], -1, dtype=torch.long) if attention_query is None else attention_query.long()
        return self.runner(z.float(), cv, query)
