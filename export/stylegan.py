"""StyleGAN (v1) export: StyleGAN2's two graphs and runtime (``ganserve.export.stylegan2``), same inputs and outputs.

mapping:   z [N, z_dim] (, class ids [N] int64), psi [] float, cutoff [] int64  ->  ws [N, num_ws, w_dim]
synthesis: ws [N, num_ws, w_dim], noise0..noiseK [N, 1, H, W]  ->  img [N, C, H, W]

Only the synthesis wrapper differs: it passes the resolution and alpha the model has grown to as constants (the graph
never reads the ``lod`` buffer); the manifest records them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ganserve.export.registry import GraphSpec, Runner, register_exporter
from ganserve.export.stylegan2 import ExportedStyleGAN2, StyleGAN2Exporter


class _SynthesisGraph(nn.Module):
    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.synthesis = G.synthesis
        self.resolution, self.alpha = G.progress

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        ws, *noise = inputs
        return self.synthesis(ws, noise_mode="random", noise=noise, resolution=self.resolution, alpha=self.alpha)


@register_exporter("stylegan")
class StyleGANExporter(StyleGAN2Exporter):
    def graphs(self, model: nn.Module) -> list[GraphSpec]:
        specs = super().graphs(model)
        return [dataclasses.replace(s, module=_SynthesisGraph(model).eval()) if s.name == "synthesis" else s
                for s in specs]  # fmt: skip

    def manifest(self, model: nn.Module) -> dict[str, Any]:
        resolution, alpha = model.progress
        return {**super().manifest(model), "progress": [int(resolution), float(alpha)]}

    def runtime(
        self, manifest: dict[str, Any], runners: dict[str, Runner], constants: dict[str, torch.Tensor], device: str
    ) -> nn.Module:
        return ExportedStyleGAN(manifest, runners, constants, device)


class ExportedStyleGAN(ExportedStyleGAN2):
    """A StyleGAN (v1) generator backed by exported graphs: StyleGAN2's runtime with v1's config."""

    def __init__(
        self, manifest: dict[str, Any], runners: dict[str, Runner], constants: dict[str, torch.Tensor], device: str
    ) -> None:
        super().__init__(manifest, runners, constants, device)
        resolution, alpha = manifest.get("progress", [self.config.resolution, 1.0])
        self.progress = (int(resolution), float(alpha))
