"""What an exporter is, and the registry of one exporter per family.

A family's exporter says which graphs its generator splits into (StyleGAN2: mapping and synthesis), how to draw
random inputs for each (for the parity check), which constants travel beside the graphs (w_avg, const noise), and how
to wrap loaded graphs back into an object with the generator's sampling surface. The formats (onnx.py, pt2.py) and
the CLI only see this interface, so a new family (BigGAN, VQ-GAN's encoder/decoder/prior) is one new module here.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ganserve.families import get_family, loadable_families

# Family -> exporter class; a family names the module that registers it (``Family.exporter``), imported lazily.
EXPORTERS: dict[str, type[Exporter]] = {}

# A runner calls one exported graph: tensors in (in the graph's input order), one float32 tensor out.
Runner = Callable[..., torch.Tensor]


@dataclass
class GraphSpec:
    """One graph to export: an eager module and how to feed it."""

    name: str  # file stem: mapping.onnx, synthesis.pt2 ...
    module: nn.Module  # forward(*inputs) -> one tensor; the fp32 eager reference for parity
    input_names: list[str]
    output_name: str
    # Fresh random inputs at a batch size, drawn from the given generator.
    make_inputs: Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]
    batched: list[bool] = field(default_factory=list)  # per input: has a dynamic batch axis 0 (else a scalar)
    half: bool = True  # whether --fp16 applies (mapping stays fp32: truncation lerps need the precision)

    def export_module(self, fp16: bool = False) -> nn.Module:
        return copy.deepcopy(self.module).half() if fp16 and self.half else self.module

    def export_inputs(self, inputs: tuple[torch.Tensor, ...], fp16: bool = False) -> tuple[torch.Tensor, ...]:
        if not (fp16 and self.half):
            return inputs
        return tuple(t.half() if t.is_floating_point() else t for t in inputs)

    def dynamic_shapes(self) -> tuple[tuple[dict[int, Any] | None, ...]]:
        """For torch.export: axis 0 of every batched input is one shared dynamic dimension.

        The wrapper modules take ``*inputs``, so the spec is a one-element tuple holding the per-input tuple.
        """
        batch = torch.export.Dim("batch", min=1, max=65536)
        return (tuple({0: batch} if b else None for b in self.batched),)


class Exporter:
    """Base class: subclass per family and decorate with ``@register_exporter("family")``."""

    family: str = ""

    def graphs(self, model: nn.Module) -> list[GraphSpec]:
        raise NotImplementedError

    def constants(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Tensors the runtime needs beside the graphs (saved as constants.safetensors)."""
        return {}

    def manifest(self, model: nn.Module) -> dict[str, Any]:
        """Family-specific facts the runtime needs, stored in the export manifest (JSON)."""
        return {}

    def runtime(
        self, manifest: dict[str, Any], runners: dict[str, Runner], constants: dict[str, torch.Tensor], device: str
    ) -> nn.Module:
        """An object with the generator's sampling surface, running the loaded graphs."""
        raise NotImplementedError


class ExportedModel(nn.Module):
    """The part of the sampling surface every exported runtime shares (``ganserve.surface.SamplingModel``), read from
    the export's manifest. A family's runtime adds the calls its sampler makes (``ganserve.surface``), each running
    graphs, and ends its ``__init__`` with ``self.finish(device)``."""

    differentiable = False  # graphs run forward only: no projection (ganserve.surface.require_gradients)

    def __init__(self, manifest: dict[str, Any]) -> None:
        super().__init__()
        self.family = manifest["family"]
        self.config = get_family(self.family).make_config(manifest["config"])
        self.name = manifest.get("name", "")
        self.checkpoint_info = manifest.get("checkpoint_info", {})
        self.export_format = manifest["format"]
        # A parameter, not a buffer: the sampling core finds the device with next(model.parameters()).
        self.anchor = nn.Parameter(torch.zeros([]), requires_grad=False)

    def finish(self, device: str) -> None:
        self.to(device).eval().requires_grad_(False)


def register_exporter(family: str) -> Callable[[type[Exporter]], type[Exporter]]:
    def deco(cls: type[Exporter]) -> type[Exporter]:
        cls.family = family
        EXPORTERS[family] = cls
        return cls

    return deco


def exportable_families() -> list[str]:
    return [fam.name for fam in loadable_families() if fam.exporter]


def get_exporter(family: str) -> Exporter:
    if family not in EXPORTERS:
        try:
            module = get_family(family).exporter
        except KeyError:
            module = None
        if module:
            importlib.import_module(module)
    if family not in EXPORTERS:
        raise ValueError(f"no exporter for family '{family}' (exportable: {', '.join(exportable_families())})")
    return EXPORTERS[family]()
