"""The sample-request schema for all seven families, validated once with the same rules for every front end.

One pydantic model per family; fields a family does not use are rejected, not ignored. Type and range checks live
in the models; checks that need the loaded generator (class names, layer counts, the image limit) live in
``ganserve.sampling``. Every failure becomes a ``RequestError`` that names the field.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_SEED = 2**32 - 1  # StyleGAN2-ADA draws z with numpy's RandomState(seed), which takes 32-bit seeds
DEFAULT_MAX_IMAGES = 64
LAYER_GROUPS = ("coarse", "middle", "fine")
FORMATS = ("png", "jpeg", "npy", "json")


class RequestError(ValueError):
    """An invalid request: ``field`` is a dotted path into the request ("style_mix.layers"), or "" for the body."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}" if field else message)

    def to_dict(self) -> dict[str, str]:
        return {"error": "invalid request", "field": self.field, "message": self.message}


def parse_seeds(value: Any) -> list[int]:
    """Seeds as a list of ints, one int, or a string of ints and ranges: "0-15", "1,5,9-11"."""
    if isinstance(value, bool):
        raise ValueError("expected seeds as a list of integers or a string like '0-15'")
    if isinstance(value, int):
        value = [value]
    if isinstance(value, str):
        seeds: list[int] = []
        for part in value.split(","):
            part = part.strip()
            m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if hi < lo:
                    raise ValueError(f"range '{part}' is reversed")
                if hi - lo >= 100_000:
                    raise ValueError(f"range '{part}' is too long")
                seeds.extend(range(lo, hi + 1))
            elif re.fullmatch(r"\d+", part):
                seeds.append(int(part))
            else:
                raise ValueError(f"'{part}' is not a seed or a range like '0-15'")
        value = seeds
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of seeds or a string like '0-15'")
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int):
            raise ValueError(f"seed {s!r} is not an integer")
        if not 0 <= s <= MAX_SEED:
            raise ValueError(f"seed {s} is out of range [0, {MAX_SEED}]")
    return value


Seeds = Annotated[list[int], Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class StyleMix(_Strict):
    """Copy the ws of each mixing seed over ``layers``: [start, stop) indices, or coarse / middle / fine."""

    seeds: Seeds
    layers: list[int] | Literal["coarse", "middle", "fine"] = "fine"

    _seeds = field_validator("seeds", mode="before")(classmethod(lambda cls, v: parse_seeds(v)))

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: Any) -> Any:
        if isinstance(v, list) and (len(v) != 2 or v[0] < 0 or v[1] < v[0]):
            raise ValueError("expected [start, stop) with 0 <= start <= stop, or coarse / middle / fine")
        return v


class Interpolate(_Strict):
    """Frames from each seed to ``to_seed``: lerp in W or slerp in Z."""

    to_seed: int = Field(ge=0, le=MAX_SEED)
    steps: int = Field(default=8, ge=2, le=256)
    space: Literal["w", "z"] = "w"


class _Base(_Strict):
    seeds: Seeds = Field(default_factory=lambda: [0])
    format: Literal["png", "jpeg", "npy", "json"] = "png"
    grid: bool = False
    grid_cols: int | None = Field(default=None, ge=1, le=64)

    _seeds = field_validator("seeds", mode="before")(classmethod(lambda cls, v: parse_seeds(v)))

    @field_validator("*", mode="after")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    def image_count(self) -> int:
        return len(self.seeds)


def _finite_float(lo: float, hi: float, default: float) -> Any:
    return Field(default=default, ge=lo, le=hi, allow_inf_nan=False)


class _Latent(_Base):
    interpolate: Interpolate | None = None

    def image_count(self) -> int:
        return len(self.seeds) * (self.interpolate.steps if self.interpolate else 1)


class _Styled(_Latent):
    truncation_psi: float = _finite_float(-1.0, 2.0, 1.0)
    truncation_cutoff: int | None = Field(default=None, ge=0)
    noise_mode: Literal["const", "random", "none"] = "const"
    style_mix: StyleMix | None = None
    class_: int | str | None = Field(default=None, alias="class")

    @model_validator(mode="after")
    def _one_of(self) -> _Styled:
        if self.style_mix is not None and self.interpolate is not None:
            raise ValueError("style_mix and interpolate cannot be combined in one request")
        return self

    def image_count(self) -> int:
        return super().image_count() * (len(self.style_mix.seeds) if self.style_mix else 1)


class StyleGAN2Request(_Styled):
    pass


class StyleGANRequest(_Styled):
    pass


class ProGANRequest(_Latent):
    pass


class SAGANRequest(_Latent):
    class_: int | str | None = Field(default=None, alias="class")


class BigGANRequest(_Latent):
    # BigGAN's truncation trick: z from a normal truncated at +-psi (psi in (0, 1]; 1 = almost no truncation).
    truncation_psi: float = _finite_float(0.02, 1.0, 1.0)
    class_: int | str | None = Field(default=None, alias="class")


class Keep(_Strict):
    """Keep these code positions (row-major mask over the code grid, or a box [top, left, bottom, right] in codes)
    from ``image``'s encoding and re-sample the rest."""

    mask: list[list[bool]] | None = None
    box: list[int] | None = Field(default=None, min_length=4, max_length=4)

    @model_validator(mode="after")
    def _exactly_one(self) -> Keep:
        if (self.mask is None) == (self.box is None):
            raise ValueError("give exactly one of mask or box")
        return self


class VQGANRequest(_Base):
    temperature: float = _finite_float(0.01, 10.0, 1.0)
    top_k: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    class_: int | str | None = Field(default=None, alias="class")
    image: str | None = None  # base64 PNG/JPEG: reconstruction, or the source for ``keep``
    keep: Keep | None = None

    @model_validator(mode="after")
    def _keep_needs_image(self) -> VQGANRequest:
        if self.keep is not None and self.image is None:
            raise ValueError("keep needs an image to take the kept codes from")
        return self


class ViTVQGANRequest(VQGANRequest):
    pass


REQUEST_MODELS: dict[str, type[_Base]] = {
    "progan": ProGANRequest,
    "stylegan": StyleGANRequest,
    "stylegan2": StyleGAN2Request,
    "sagan": SAGANRequest,
    "biggan": BigGANRequest,
    "vqgan": VQGANRequest,
    "vit_vqgan": ViTVQGANRequest,
}

SampleRequest = _Base


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            p = "class" if p == "class_" else str(p)
            if "[" in p or p in ("int", "str", "float", "bool"):
                continue  # union-member labels pydantic adds to the location ("list[int]", "literal[...]")
            parts.append(("." if parts else "") + p)
    return "".join(parts)


def parse_request(family: str, data: Any) -> _Base:
    """Validate a JSON-like dict (or an existing request) for ``family``; raise RequestError naming the field."""
    cls = REQUEST_MODELS[family]
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise RequestError("", f"the request body must be a JSON object, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        field = _field_path(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown field for a {family} model"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        raise RequestError(field, msg) from None


def request_json_schema(family: str) -> dict[str, Any]:
    return REQUEST_MODELS[family].model_json_schema(by_alias=True)
