"""Generator backends: what runs a model for the sampling core.

A backend returns an object with its family's sampling surface: the Protocol the family's sampler names
(``ganserve.surface``: ``StyleModel`` for StyleGAN/StyleGAN2, ``LatentModel``, ``ConditionalModel``, ``VQModel``),
whose base ``SamplingModel`` is ``family``, ``config``, ``name``, ``checkpoint_info`` and ``parameters()``. So
``ganserve.sampling`` works the same over each, and ``load_backend`` refuses a backend whose model lacks part of it.
"eager" is ``ganserve.load``; others (onnx, pt2) register themselves as ``ganserve.backends`` entry points, so the
core never imports the packages that provide them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import metadata
from typing import Any

from torch import nn

from ganserve.loading import attach_sampling, load
from ganserve.precision import set_precision
from ganserve.surface import missing, surface_of

BACKENDS: dict[str, Callable[..., nn.Module]] = {}
ENTRY_POINT_GROUP = "ganserve.backends"


def register_backend(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        BACKENDS[name] = fn
        return fn

    return deco


@register_backend("eager")
def _eager(checkpoint: str | os.PathLike, device: str = "cpu", **_: Any) -> nn.Module:
    return load(checkpoint, device=device)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def backend_names() -> list[str]:
    return sorted({*BACKENDS, *_entry_points()})


def load_backend(
    name: str, checkpoint: str | os.PathLike, device: str = "cpu", precision: str = "fp32", **options: Any
) -> nn.Module:
    """Load ``checkpoint`` with backend ``name`` ('eager', or a registered one such as 'onnx' / 'pt2') to run at
    ``precision`` (graph backends: fp32 or the precision they were exported in)."""
    if name not in BACKENDS:
        ep = _entry_points().get(name)
        if ep is None:
            raise ValueError(f"unknown backend '{name}' (available: {', '.join(backend_names())})")
        BACKENDS[name] = ep.load()
    if name != "eager" and precision != "fp32":
        raise ValueError(f"the {name} backend runs its graphs as exported: export them with --fp16 instead of "
                         f"--precision {precision}")  # fmt: skip
    model = BACKENDS[name](checkpoint, device=device, **options)
    lacks = missing(model)
    if lacks:  # a backend bug: say so at load, not as an AttributeError in the middle of a request
        raise TypeError(f"the {name} backend's {model.family} model lacks {', '.join(lacks)} of the sampling surface "
                        f"{surface_of(model.family).__name__}")  # fmt: skip
    return attach_sampling(set_precision(model, precision))
