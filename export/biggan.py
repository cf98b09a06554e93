"""BigGAN export: one graph with the class and the truncation as inputs, so no value is baked in.

generator: z [N, z_dim] (already psi * TN(-2, 2)), class_vector [N, c_dim] float (one-hot or a mixture: class
           interpolation), truncation [N] float (which standing statistics each row's batch norms read)
           ->  img [N, C, H, W]
Every input has the dynamic batch axis, so rows with different classes and truncations share one call, exactly as
the eager sampler batches them. The standing statistics of every truncation travel inside the graph.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ganserve.export.registry import Exporter, GraphSpec, Runner, register_exporter
from ganserve.families import get_family


class _GeneratorGraph(nn.Module):
    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.G = G

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:  # (z, class_vector, truncation)
        z, class_vector, truncation = inputs
        return self.G(z, class_vector, truncation)


def random_class_vectors(n: int, c_dim: int, gen: torch.Generator) -> torch.Tensor:
    """One-hots, with every other row a mixture of two classes (what class interpolation sends)."""
    a = torch.nn.functional.one_hot(torch.randint(0, c_dim, [n], generator=gen), c_dim).float()
    b = torch.nn.functional.one_hot(torch.randint(0, c_dim, [n], generator=gen), c_dim).float()
    t = torch.rand([n, 1], generator=gen) * (torch.arange(n) % 2).reshape(n, 1)
    return a.lerp(b, t)


@register_exporter("biggan")
class BigGANExporter(Exporter):
    def graphs(self, model: nn.Module) -> list[GraphSpec]:
        cfg = model.config

        def inputs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
            psi = torch.rand([n], generator=gen) * 0.95 + 0.05  # (0.05, 1]: between and on the statistics' grid
            psi[0] = 1.0
            z = torch.randn([n, cfg.z_dim], generator=gen).clamp(-2, 2) * psi.reshape(n, 1)
            return z, random_class_vectors(n, cfg.c_dim, gen), psi

        return [GraphSpec("generator", _GeneratorGraph(model).eval(), ["z", "class_vector", "truncation"], "img",
                          inputs, batched=[True, True, True])]  # fmt: skip

    def runtime(
        self, manifest: dict[str, Any], runners: dict[str, Runner], constants: dict[str, torch.Tensor], device: str
    ) -> nn.Module:
        return ExportedBigGAN(manifest, runners["generator"], device)


class ExportedBigGAN(nn.Module):
    """A BigGAN generator backed by its exported graph: the eager model's call signature and attributes."""

    family = "biggan"

    def __init__(self, manifest: dict[str, Any], runner: Runner, device: str) -> None:
        super().__init__()
        self.config = get_family(self.family).make_config(manifest["config"])
        self.name = manifest.get("name", "")
        self.checkpoint_info = manifest.get("checkpoint_info", {})
        self.export_format = manifest["format"]
        self.runner = runner
        # A parameter, not a buffer: the sampling core finds the device with next(model.parameters()).
        self.anchor = nn.Parameter(torch.zeros([]), requires_grad=False)
        self.to(device).eval().requires_grad_(False)

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation: float | torch.Tensor | None = None) -> torch.Tensor:
        n = z.shape[0]
        cv = torch.nn.functional.one_hot(c.long(), self.config.c_dim).float() if c.ndim == 1 else c.float()
        t = torch.ones([n]) if truncation is None else torch.as_tensor(truncation, dtype=torch.float32)
        return self.runner(z.float(), cv, t.reshape(-1).expand(n).contiguous())
