"""Sample requests: the request bases families build on, the seed syntax, and validation that names the field.

Each family's request model lives in its family module (``ganserve/families/<name>.py``) and is built from the pieces
here and the field types of ``ganserve.fields`` (each carries its front-end hint), so the same field means the same
thing, and is spelled the same way, in every family. Fields a family does not use are refused, not ignored
(``extra="forbid"``). Type and range checks live in the models; checks that need the loaded generator (class names,
layer counts, the image limit) live in the family's sampler. Every failure becomes a ``RequestError`` naming the field.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ganserve import fields

MAX_SEED = 2**32 - 1  # StyleGAN2-ADA draws z with numpy's RandomState(seed), which takes 32-bit seeds
DEFAULT_MAX_IMAGES = 64
# A seed field never expands to more than this many seeds, whatever the image limit: a short string like
# "0-99999,0-99999,..." must be refused by counting, before anything is expanded.
MAX_SEEDS = 100_000
LAYER_GROUPS = ("coarse", "middle", "fine")
# The StyleGAN papers' groups as [start, stop) of ws: coarse = 4^2-8^2, middle = 16^2-32^2, fine = 64^2 and up.
LAYER_GROUP_RANGES = {"coarse": (0, 4), "middle": (4, 8), "fine": (8, None)}


def layer_groups(num_ws: int) -> dict[str, list[int]]:
    """The named groups a model with ``num_ws`` ws has, as inclusive [first, last] (empty groups left out)."""
    out = {}
    for name in LAYER_GROUPS:
        lo, hi = LAYER_GROUP_RANGES[name]
        hi = num_ws if hi is None else min(hi, num_ws)
        if lo < hi:
            out[name] = [lo, hi - 1]
    return out


FORMATS = ("png", "jpeg", "npy", "json")

_RANGE = re.compile(r"([0-9]+)\s*-\s*([0-9]+)", re.ASCII)
_INT = re.compile(r"[0-9]+", re.ASCII)
_MAX_DIGITS = 10  # MAX_SEED has 10 digits: longer numbers are out of range without converting them


class RequestError(ValueError):
    """An invalid request: ``field`` is a dotted path into the request ("style_mix.layers"), or "" for the body."""

    status = 400  # the HTTP status it answers with: subclasses and callers set others (413, 404 for an unknown id)

    def __init__(self, field: str, message: str, status: int | None = None) -> None:
        self.field, self.message = field, message
        if status is not None:
            self.status = status
        super().__init__(f"{field}: {message}" if field else message)

    def to_dict(self) -> dict[str, str]:
        return {"error": "invalid request", "field": self.field, "message": self.message}


def _seed_int(text: str) -> int:
    if len(text.lstrip("0")) > _MAX_DIGITS:
        raise ValueError(f"seed {text[:12]}... is out of range [0, {MAX_SEED}]")
    return int(text)


def parse_seeds(value: Any, limit: int = MAX_SEEDS) -> list[int]:
    """Seeds as a list of ints, one int, or a string of ASCII ints and inclusive ranges: "0-15", "1,5,9-11".

    The count is checked against ``limit`` before any range is expanded, so no input can allocate more than that.
    """
    if isinstance(value, bool):
        raise ValueError("expected seeds as a list of integers or a string like '0-15'")
    if isinstance(value, int):
        value = [value]
    if isinstance(value, str):
        spans: list[tuple[int, int]] = []
        total = 0
        for part in value.split(","):
            part = part.strip()
            m = _RANGE.fullmatch(part)
            if m:
                lo, hi = _seed_int(m.group(1)), _seed_int(m.group(2))
                if hi < lo:
                    raise ValueError(f"range '{part}' is reversed")
            elif _INT.fullmatch(part):
                lo = hi = _seed_int(part)
            else:
                raise ValueError(f"'{part[:40]}' is not a seed or a range like '0-15' (ASCII digits only)")
            total += hi - lo + 1
            if total > limit:
                raise ValueError(f"more than {limit} seeds")
            spans.append((lo, hi))
        value = [s for lo, hi in spans for s in range(lo, hi + 1)]
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of seeds or a string like '0-15'")
    if len(value) > limit:
        raise ValueError(f"more than {limit} seeds")
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int):
            raise ValueError(f"seed {s!r} is not an integer")
        if not 0 <= s <= MAX_SEED:
            raise ValueError(f"seed {s} is out of range [0, {MAX_SEED}]")
    return value


SeedList = Annotated[list[int], Field(min_length=1)]  # seeds inside an object (style_mix): no flag of their own


def finite_float(lo: float, hi: float, default: float) -> Any:
    """A float field in [lo, hi] (NaN and infinities refused)."""
    return Field(default=default, ge=lo, le=hi, allow_inf_nan=False)


class Strict(BaseModel):
    """Unknown fields refused, no type coercion ("0.5" is not a number), aliases accepted."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


# ---------------------------------------------------------------------------------------------------------------------
# Nested fields


def parse_layers(value: Any) -> Any:
    """Style-mixing layers: a group name, "A-B" or [A, B], both ends inclusive (as the official ``--styles 0-6``)."""
    if isinstance(value, str):
        if value in LAYER_GROUPS:
            return value
        m = _RANGE.fullmatch(value.strip())
        if not m:
            raise ValueError("expected coarse, middle, fine, 'A-B' or [A, B] (inclusive layer indices)")
        value = [int(m.group(1)), int(m.group(2))]
    if isinstance(value, list):
        if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise ValueError("expected [A, B]: two layer indices, both inclusive")
        if value[0] < 0 or value[1] < value[0]:
            raise ValueError(f"expected 0 <= A <= B, got [{value[0]}, {value[1]}]")
        return value
    raise ValueError("expected coarse, middle, fine, 'A-B' or [A, B] (inclusive layer indices)")


class StyleMix(Strict):
    """Copy the ws of each mixing seed over ``layers``: [A, B] / "A-B" (inclusive), or coarse / middle / fine."""

    seeds: SeedList
    layers: fields.MixLayers = "fine"

    _seeds = field_validator("seeds", mode="before")(classmethod(lambda cls, v: parse_seeds(v)))
    _layers = field_validator("layers", mode="before")(classmethod(lambda cls, v: parse_layers(v)))


class Edit(Strict):
    """Move w along a semantic direction (``ganserve.directions``): ``amount`` in units of the direction's std, on
    ``layers`` (as style_mix's; all layers when omitted). amount 0 leaves the image exactly as it was."""

    direction: int = Field(ge=0, le=1023)
    amount: float = finite_float(-20.0, 20.0, 0.0)
    layers: list[int] | Literal["coarse", "middle", "fine"] | str | None = None
    method: fields.EditMethod = "sefa"

    _layers = field_validator("layers", mode="before")(
        classmethod(lambda cls, v: None if v is None else parse_layers(v))
    )


class Interpolate(Strict):
    """Frames from each seed to ``to_seed``: lerp in W or slerp in Z."""

    to_seed: int = Field(ge=0, le=MAX_SEED)
    steps: int = Field(default=8, ge=2, le=256)
    space: Literal["w", "z"] = "w"


class Keep(Strict):
    """Keep these code positions from ``image``'s encoding and re-sample the rest: a row-major mask over the code
    grid, a box [top, left, bottom, right] in codes (bottom and right exclusive), or a half of the grid."""

    mask: list[Annotated[list[bool], Field(max_length=256)]] | None = Field(default=None, max_length=256)
    box: list[Annotated[int, Field(ge=0, le=4096)]] | None = Field(default=None, min_length=4, max_length=4)
    half: Literal["top", "bottom", "left", "right"] | None = None  # that half of the code grid

    @model_validator(mode="after")
    def _exactly_one(self) -> Keep:
        if sum(v is not None for v in (self.mask, self.box, self.half)) != 1:
            raise ValueError("give exactly one of mask, box or half")
        return self


# ---------------------------------------------------------------------------------------------------------------------
# Request bases: a family's request model combines these


class BaseRequest(Strict):
    """Fields every family takes: seeds and the output encoding."""

    seeds: fields.Seeds = Field(default_factory=lambda: [0])
    format: fields.Format = "png"
    grid: fields.Grid = False
    grid_cols: fields.GridCols = None

    _seeds = field_validator("seeds", mode="before")(classmethod(lambda cls, v: parse_seeds(v)))

    @field_validator("*", mode="after")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    def image_count(self) -> int:
        return len(self.seeds)

    def job_steps(self) -> int:
        """Steps of long work this request needs (a projection's), 0 for none: a server runs such a request as a
        job (ganserve.jobs), never in a batch."""
        return 0

    def default_cols(self) -> int:
        """Grid columns when the request gives none: the family's figure shape, else a square."""
        return math.ceil(math.sqrt(self.image_count()))


class ClassField(Strict):
    """``class``: an id or a name, for class-conditional models (an unconditional model refuses it). Families that
    sample per seed (BigGAN, SAGAN, the VQ priors) take an omitted class from each seed: seed % number of classes."""

    class_: fields.ClassId = Field(default=None, alias="class")


class LatentRequest(BaseRequest):
    """Families with a latent space: interpolation between seeds."""

    interpolate: fields.Interpolation[Interpolate] = None

    def image_count(self) -> int:
        return len(self.seeds) * (self.interpolate.steps if self.interpolate else 1)

    def default_cols(self) -> int:
        return self.interpolate.steps if self.interpolate else super().default_cols()


class VQSamplingFields(ClassField):
    """Autoregressive sampling of a prior over codes (VQ-GAN, ViT-VQGAN), reconstruction and region re-sampling."""

    temperature: fields.Temperature = 1.0
    top_k: fields.TopK = None
    top_p: fields.TopP = None
    image: fields.SourceImage = None  # reconstruction, or the source for ``keep``
    keep: fields.KeepRegion[Keep] = None

    @field_validator("keep", mode="after")
    @classmethod
    def _keep_needs_image(cls, v: Keep | None, info: ValidationInfo) -> Keep | None:
        # A field validator (image is declared first, so it is in info.data) so that the error names ``keep``.
        if v is not None and info.data.get("image") is None:
            raise ValueError("keep needs an image to take the kept codes from")
        return v


# ---------------------------------------------------------------------------------------------------------------------
# Validation


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


def validate_request(cls: type[BaseRequest], data: Any, family: str = "") -> BaseRequest:
    """Validate a JSON-like dict (or an existing request) against ``cls``; raise RequestError naming the field."""
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
            msg = f"unknown field for a {family} model" if family else "unknown field"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        status = getattr((err.get("ctx") or {}).get("error"), "status", 400)  # e.g. 404 for an unknown latent id
        raise RequestError(field, msg, status) from None
    except RecursionError:
        raise RequestError("", "the request is nested too deeply") from None


def parse_request(family: str, data: Any) -> BaseRequest:
    """Validate ``data`` as a request for ``family``'s models."""
    from ganserve.families import get_family

    return validate_request(get_family(family).request, data, family)


def request_json_schema(family: str) -> dict[str, Any]:
    from ganserve.families import get_family

    return get_family(family).request.model_json_schema(by_alias=True)
