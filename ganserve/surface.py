"""The sampling surface: the calls a family's sampler may make on a model, declared once.

A sampler (``ganserve.families.<family>``) never asks which backend runs the model: the eager module
(``ganserve.load``) and every exported backend (``ganserve.export``: onnx, pt2) implement the same Protocol, and the
conformance suite (tests/test_backend_conformance.py) checks both with ``isinstance`` and by comparing pixels for
every request kind. A sampler names its Protocol in ``surface``; ``surface_of`` reads it.

What a graph cannot compute at run time ships with the export instead: semantic directions need the generator's
weights (SeFa) or many mapping calls (PCA), so exporters compute them at export time and the exported model offers
them as ``shipped_directions``. ``latent_directions`` is the one call a sampler makes for them, on any backend.
What no export can do (projection differentiates through the generator) is refused by ``require_gradients``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ganserve.requests import RequestError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ganserve.directions import Directions


@runtime_checkable
class SamplingModel(Protocol):
    """What the core reads from every model: identity, config (resolution, img_channels, c_dim, class_names) and
    its parameters (the device is the first one's)."""

    family: str
    config: Any
    name: str
    checkpoint_info: dict[str, Any]

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


# ---- StyleGAN, StyleGAN2: mapping -> ws rows (+ noise rows) -> synthesis ---------------------------------------------


@runtime_checkable
class StyleMapping(Protocol):
    w_avg: torch.Tensor

    def __call__(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """z [N, z_dim] (, class ids [N]) -> truncated ws [N, num_ws, w_dim]."""

    def truncate(self, ws: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """Lerp given ws [N, num_ws, w_dim] towards w_avg on the first ``cutoff`` ws (a ``w`` request)."""


@runtime_checkable
class StyleSynthesis(Protocol):
    def __call__(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        noise: list[torch.Tensor] | None = None,
        fused: bool | None = None,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] and one noise tensor [N, 1, H, W] per noise input -> images [N, C, R, R]."""

    def noise_shapes(self) -> list[tuple[int, int]]: ...

    def modules(self) -> Iterator[nn.Module]:
        """Every sub-module; those with a ``noise_const`` buffer are the noise inputs, in input order."""


@runtime_checkable
class StyleModel(SamplingModel, Protocol):
    num_ws: int
    mapping: StyleMapping
    synthesis: StyleSynthesis


# ---- ProGAN, SAGAN, BigGAN: one call from the planned rows -----------------------------------------------------------


@runtime_checkable
class LatentModel(SamplingModel, Protocol):
    """ProGAN: rows z [N, z_dim] (, class ids c [N]) -> images."""

    def __call__(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class ConditionalModel(SamplingModel, Protocol):
    """SAGAN and BigGAN: rows z, class_vector [N, c_dim] and one per-row extra (SAGAN: attention_query [N, 2];
    BigGAN: truncation [N]) -> images."""

    def __call__(self, z: torch.Tensor, c: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor: ...


# ---- VQ-GAN, ViT-VQGAN: a host loop over a prior step, then a decoder ------------------------------------------------


@runtime_checkable
class VQModel(SamplingModel, Protocol):
    code_shape: tuple[int, int]
    num_codes: int

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """images [N, C, R, R] in [-1, 1] -> code grids [N, h, w] int64."""

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """code grids [N, h, w] -> images [N, C, R, R]."""

    def start_tokens(self, classes: torch.Tensor | None, n: int) -> torch.Tensor: ...

    def step(self, tokens: torch.Tensor, pos: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        """One prior position for a batch: [N, num_codes + layers * 2 * n_embd] (logits, then this position's k/v)."""

    def empty_cache(self, n: int) -> torch.Tensor: ...


@runtime_checkable
class ShipsDirections(Protocol):
    """A model that carries its directions (an export: it has no weights to find them in)."""

    shipped_directions: Mapping[str, Directions]


def surface_of(family: str) -> type:
    """The Protocol a family's sampler calls on a model (``SamplingModel`` when the sampler declares none)."""
    from ganserve.families import get_family

    return getattr(get_family(family).sampler, "surface", SamplingModel)


def members(protocol: type) -> dict[str, str]:
    """A Protocol's members (its bases' too) -> their annotation ('' for methods)."""
    out: dict[str, str] = {}
    for klass in reversed(protocol.__mro__):
        if not getattr(klass, "_is_protocol", False) or klass is Protocol:
            continue
        out.update({k: str(v) for k, v in inspect.get_annotations(klass).items()})
        out.update({k: "" for k, v in klass.__dict__.items() if callable(v) and (k == "__call__" or k[0] != "_")})
    return out


def missing(model: Any, protocol: type | None = None, prefix: str = "") -> list[str]:
    """The members of ``protocol`` (default: the model's family's surface) that ``model`` lacks, nested protocols
    (``mapping: StyleMapping``) included, as dotted names; [] when it conforms."""
    protocol = protocol or surface_of(model.family)
    out = []
    for name, annotation in members(protocol).items():
        present = callable(model) if name == "__call__" else hasattr(model, name)
        if not present:
            out.append(f"{prefix}{name}")
        elif getattr(globals().get(annotation), "_is_protocol", False):  # a nested surface: mapping, synthesis
            out += missing(getattr(model, name), globals()[annotation], f"{prefix}{name}.")
    return out


def require_gradients(model: Any, field: str) -> None:
    """Refuse work that differentiates through the generator (projection) on a model without gradients: exported
    graphs (``differentiable = False``) run forward only. A RequestError naming ``field``, not a crash mid-request."""
    if not getattr(model, "differentiable", True):
        backend = getattr(model, "export_format", "this")
        raise RequestError(field, f"the {backend} backend runs exported graphs, which have no gradients to project "
                                  "with: project on the eager backend, then send the w it returns")  # fmt: skip


def latent_directions(model: Any, method: str, field: str = "edits") -> Directions:
    """The model's directions by ``method``: shipped with an export, or found from the eager model's weights (and
    cached by ``ganserve.directions``). An export without them is a RequestError naming ``field``, not a crash."""
    shipped = getattr(model, "shipped_directions", None)
    if shipped is None:
        from ganserve import directions

        return directions.get(model, method)
    if method not in shipped:
        backend = getattr(model, "export_format", "exported")
        have = f"it ships {', '.join(sorted(shipped))}" if shipped else "it ships none"
        raise RequestError(field, f"this {backend} export has no '{method}' directions ({have}): re-export the model "
                                  f"with this ganserve to edit on this backend")  # fmt: skip
    return shipped[method]
