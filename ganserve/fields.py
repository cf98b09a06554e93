"""The request fields families share, each declared once with its front-end hint.

A field type is ``Annotated[value type, Field(bounds every family shares), FrontEnd(...)]``: a family's request model
declares ``temperature: Temperature = 1.0`` and every front end (``ganserve sample``'s flags, the UI, the OpenAPI
document, the conformance tests) reads the same spelling, group, widget and help from it. One name is one type here,
so it keeps one spelling in every family (tests/test_fields.py checks that two families never disagree).

- Bounds that differ per family stay with the family: ``TruncationPsi`` carries no range, StyleGAN declares
  ``= finite_float(-1.0, 2.0, 1.0)`` and BigGAN ``= Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)``.
  To change a bound a type already sets, use ``narrow(Type, le=...)`` (an assigned ``Field`` cannot replace it:
  pydantic would keep both).
- Fields holding a nested object take its model as a parameter (``Interpolation[ClassInterpolate]``), so the family's
  own variant keeps the shared hint.
- A new family-specific option is one field declared the same way in its family module, plus its sampler code.

Hints for nested fields (``style_mix.layers`` -> ``--styles``) sit on the nested model's field (``MixLayers``).
"""

from __future__ import annotations

import copy
import typing
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field
from pydantic.fields import FieldInfo

from ganserve import front_end as fe
from ganserve.front_end import FrontEnd

T = TypeVar("T")

_OUT = "seeds and output"

# ---- seeds and output -----------------------------------------------------------------------------------------------
Seeds = Annotated[
    list[int],
    Field(min_length=1),
    FrontEnd(metavar="SEEDS", label="Seeds",
             help="one image per seed: '0-15', '1,5,9' or mixes of both", group=_OUT, widget="text",
             cli_default="0-15", excludes=("w", "project", "image"), parse=str, example="3,5-6"),
]  # fmt: skip
Format = Annotated[
    Literal["png", "jpeg", "npy", "json"], FrontEnd(via="--out", label="Format", example="x.jpg", group=_OUT)
]
Grid = Annotated[bool, FrontEnd(via="--out", label="Grid", example="x.png", group=_OUT)]
GridCols = Annotated[
    int | None,
    Field(ge=1, le=64),
    FrontEnd(label="Grid columns",
             flag="--cols", metavar="N", help="grid columns (default: the family's figure shape, else a square)",
             group=_OUT, widget="number", example="4"),
]  # fmt: skip

# ---- classes --------------------------------------------------------------------------------------------------------
ClassId = Annotated[
    int | str | None,
    Field(description="class id or name; omitted: each image's class is its seed % the number of classes (BigGAN, "
                      "SAGAN, VQ-GAN, ViT-VQGAN), recorded in its params"),
    FrontEnd(label="Class", metavar="CLASS", group="classes", widget="dropdown", parse=fe.class_value, example="1"),
]  # fmt: skip
Classes = Annotated[
    list[int | str] | None,
    Field(min_length=1, max_length=1024),
    FrontEnd(label="Classes",
             metavar="CLASS,CLASS", help="one row of images per class (ids or names), seeds along each row",
             group="classes", widget="text", parse=fe.class_list, example="0,2"),
]  # fmt: skip
ToClass = Annotated[  # interpolate.to_class
    int | str | None,
    FrontEnd(label="To class",
             metavar="CLASS", help="class interpolation: frames from the class to CLASS (with --interpolate for the "
             "steps and a target seed)", group="classes", widget="dropdown", parse=fe.class_value, example="2"),
]  # fmt: skip

# ---- latents --------------------------------------------------------------------------------------------------------
Interpolation = Annotated[  # Interpolation[Interpolate], Interpolation[ClassInterpolate] ...
    T | None,
    FrontEnd(label="Interpolate to seed",
             metavar="TO_SEED[:STEPS[:w|z]]", help="frames from each seed to TO_SEED (STEPS frames, default 8; lerp "
             "in w or slerp in z)", group="latents", widget="number", parse=fe.interpolate, example="9:4"),
]  # fmt: skip
TruncationPsi = Annotated[  # the range is the family's: StyleGAN [-1, 2], BigGAN (0, 1]
    float,
    FrontEnd(label="Truncation ψ",
             flag="--psi", aliases=("--trunc",), metavar="PSI", help="truncation psi (--trunc: StyleGAN2-ADA's "
             "spelling)", group="latents", widget="slider", example="0.7"),
]  # fmt: skip
TruncationCutoff = Annotated[
    int | None,
    Field(ge=0),
    FrontEnd(label="Truncation cutoff",
             flag="--cutoff", metavar="N", help="truncate only the first N ws", group="latents", widget="number",
             example="2"),
]  # fmt: skip
NoiseMode = Annotated[
    Literal["const", "random", "none"],
    FrontEnd(label="Noise mode", help="per-layer noise inputs", group="latents", widget="dropdown", example="random"),
]
LatentW = Annotated[  # its size bound is the family's (the latents store's limit)
    str | None,
    FrontEnd(label="Start from a latent",
             metavar="FILE.npy|ID", help="start from a latent (ganserve project's w.npy, or its id) instead of seeds",
             group="latents", widget="file", file="base64-or-text"),
]  # fmt: skip
ProjectImage = Annotated[
    str | None,
    FrontEnd(label="Project an image",
             metavar="IMAGE", help="project this PNG/JPEG into W and render its w (instead of seeds)",
             group="latents", widget="image", file="base64"),
]  # fmt: skip
ProjectSteps = Annotated[
    int,
    Field(ge=1, le=1000),
    FrontEnd(label="Projection steps",
             metavar="N", help="optimisation steps of --project", group="latents", widget="number",
             requires=("project",), example="3"),
]  # fmt: skip

# ---- style ----------------------------------------------------------------------------------------------------------
StyleMixing = Annotated[  # StyleMixing[StyleMix]
    T | None,
    FrontEnd(label="Style mixing",
             flag="--mix", metavar="SEEDS[:LAYERS]", help="copy the styles of the mixing SEEDS over LAYERS: "
             "coarse|middle|fine|A-B (A and B inclusive; default fine)", group="style", widget="text",
             parse=fe.style_mix, example="7:coarse"),
]  # fmt: skip
MixLayers = Annotated[  # style_mix.layers
    list[int] | Literal["coarse", "middle", "fine"] | str,
    FrontEnd(label="Mixed layers",
             flag="--styles", metavar="A-B", help="StyleGAN2-ADA's spelling: the layers A-B of --mix (inclusive)",
             group="style", requires=("style_mix",), example="0-2"),
]  # fmt: skip
Edits = Annotated[  # Edits[Edit]
    list[T] | None,
    Field(max_length=16),
    FrontEnd(label="Semantic directions",
             flag="--edit", metavar="K:AMOUNT[:LAYERS]", help="move w along semantic direction K by AMOUNT stds (on "
             "LAYERS: A-B or a group); repeatable; the directions' names: --list with --model", group="style",
             widget="slider", parse=fe.edit, repeat=True, example="0:1.5"),
]  # fmt: skip
EditMethod = Annotated[  # edits.method
    Literal["sefa", "pca"],
    FrontEnd(label="Method",
             flag="--edit-method", help="how the --edit directions were found: sefa or pca", group="style",
             requires=("edits",), example="pca"),
]  # fmt: skip

# ---- prior (VQ families) --------------------------------------------------------------------------------------------
Temperature = Annotated[
    float,
    Field(ge=0.01, le=10.0, allow_inf_nan=False),
    FrontEnd(
        label="Temperature",
        metavar="T",
        help="prior sampling temperature",
        group="prior",
        widget="slider",
        example="0.9",
    ),
]
TopK = Annotated[
    int | None,
    Field(ge=1),
    FrontEnd(
        label="Top-k",
        metavar="K",
        help="sample among the K most likely codes",
        group="prior",
        widget="number",
        example="5",
    ),
]
TopP = Annotated[
    float | None,
    Field(gt=0.0, le=1.0, allow_inf_nan=False),
    FrontEnd(label="Top-p",
             metavar="P", help="sample within the nucleus of probability P", group="prior", widget="slider",
             example="0.8"),
]  # fmt: skip
SourceImage = Annotated[  # base64 PNG/JPEG, decoded by the sampler
    str | None,
    FrontEnd(label="Source image",
             metavar="IMAGE", help="PNG/JPEG: reconstruct it, or with --keep the image whose codes are kept",
             group="prior", widget="image", file="base64"),
]  # fmt: skip
KeepRegion = Annotated[  # KeepRegion[Keep]
    T | None,
    FrontEnd(label="Region kept",
             metavar="REGION", help="the codes of --image to keep (the rest are re-sampled): top-half, bottom-half, "
             "left-half, right-half or box:x0,y0,x1,y1 (code units, x1 and y1 exclusive)", group="prior",
             widget="text", parse=fe.keep, requires=("image",), example="top-half"),
]  # fmt: skip


# ---- narrowing a shared type -----------------------------------------------------------------------------------------
def narrow(field_type: Any, **bounds: Any) -> Any:
    """``field_type`` with some of its bounds replaced (``narrow(Temperature, le=2.0)``), its hint kept.

    An assigned ``Field(le=2.0)`` cannot do this: pydantic keeps both ``le``s and reports the type's in the schema."""
    if typing.get_origin(field_type) is not Annotated:
        raise TypeError(f"narrow() takes an Annotated field type, got {field_type!r}")
    base, *meta = typing.get_args(field_type)
    new = Field(**bounds)
    kinds = {type(c) for c in new.metadata}
    kept = []
    for m in meta:
        if isinstance(m, FieldInfo):  # a Field(...) inside Annotated: its bounds in .metadata, the rest kept
            m = copy.copy(m)
            m.metadata = [c for c in m.metadata if type(c) not in kinds]
        elif type(m) in kinds:
            continue
        kept.append(m)
    return Annotated[(base, *kept, new)]


__all__ = [
    "ClassId",
    "Classes",
    "EditMethod",
    "Edits",
    "Format",
    "Grid",
    "GridCols",
    "Interpolation",
    "KeepRegion",
    "LatentW",
    "MixLayers",
    "NoiseMode",
    "ProjectImage",
    "ProjectSteps",
    "Seeds",
    "SourceImage",
    "StyleMixing",
    "Temperature",
    "ToClass",
    "TopK",
    "TopP",
    "TruncationCutoff",
    "TruncationPsi",
    "narrow",
]
