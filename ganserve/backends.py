"""Generator backends: what runs a model's mapping and synthesis for the sampling core.

A backend is anything with the generator's sampling surface (``family``, ``config``, ``num_ws``, ``name``,
``checkpoint_info``, ``latent_from_seed``, ``mapping(z, c, psi, cutoff)``, ``synthesis(ws, noise_mode, noise, fused)``,
``parameters()``), so ``ganserve.sampling`` works the same over each. No serving-engine imports here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import nn

import ganserve

BACKENDS: dict[str, Callable[..., nn.Module]] = {}


def register_backend(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        BACKENDS[name] = fn
        return fn

    return deco


@register_backend("eager")
def _eager(checkpoint: str | os.PathLike, device: str = "cpu", **_: Any) -> nn.Module:
    return ganserve.load(checkpoint, device=device)


@register_backend("onnx")
def _onnx(checkpoint: str | os.PathLike, device: str = "cpu", **options: Any) -> nn.Module:
    """ONNX Runtime (CUDA execution provider on cuda when onnxruntime-gpu has it, else CPU). ``checkpoint``: an
    export folder from ``ganserve export --format onnx``, or a model name / checkpoint (exported once, then cached)."""
    from ganserve.export.cache import load_or_export

    return load_or_export("onnx", checkpoint, device, **options)


@register_backend("pt2")
def _pt2(checkpoint: str | os.PathLike, device: str = "cpu", **options: Any) -> nn.Module:
    """torch.export programs (.pt2); ``checkpoint`` as for "onnx"."""
    from ganserve.export.cache import load_or_export

    return load_or_export("pt2", checkpoint, device, **options)


def load_backend(name: str, checkpoint: str | os.PathLike, device: str = "cpu", **options: Any) -> nn.Module:
    """Load ``checkpoint`` with backend ``name`` ('eager', or another registered one)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}' (available: {', '.join(sorted(BACKENDS))})")
    return BACKENDS[name](checkpoint, device=device, **options)
