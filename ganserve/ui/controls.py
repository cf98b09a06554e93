"""Which controls a model gets, read from its family's request JSON schema, and the request the controls make.

Nothing here names a family: a control appears when the schema has its field (temperature / top-k / top-p and region
re-sampling for the VQ families, style mixing and noise for the StyleGANs, a class picker when the model has classes),
and its range comes from the schema's bounds. A new family with a request model gets its controls for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ganserve.ui.backend import ModelInfo

LAYER_PRESETS = ("coarse", "middle", "fine", "custom")


@dataclass(frozen=True)
class Range:
    minimum: float
    maximum: float
    default: float | None


@dataclass(frozen=True)
class ControlSpec:
    """The fields a model's requests accept, with their bounds."""

    fields: frozenset[str]
    ranges: dict[str, Range] = field(default_factory=dict)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    num_ws: int = 0
    interpolate: dict[str, Any] = field(default_factory=dict)  # the interpolate object's properties

    @classmethod
    def from_info(cls, info: ModelInfo) -> ControlSpec:
        props: dict[str, Any] = info.schema.get("properties", {})
        ranges, choices = {}, {}
        for name, prop in props.items():
            r = _range(prop)
            if r is not None:
                ranges[name] = r
            enum = _enum(prop)
            if enum:
                choices[name] = enum
        sub = _object_properties(info.schema, props.get("interpolate", {}))
        return cls(frozenset(props), ranges, choices, tuple(info.classes), info.num_ws, sub)

    def has(self, name: str) -> bool:
        return name in self.fields

    @property
    def class_picker(self) -> bool:
        return self.has("class") and bool(self.classes)

    @property
    def class_grid(self) -> bool:
        """A list of classes: one row of the grid per class (class-by-seed)."""
        return self.has("classes") and bool(self.classes)

    @property
    def class_interpolation(self) -> bool:
        return "to_class" in self.interpolate and bool(self.classes)

    @property
    def interpolate_spaces(self) -> tuple[str, ...]:
        """The latent spaces interpolation offers (StyleGAN: w, z; BigGAN, SAGAN: z)."""
        return _enum(self.interpolate.get("space", {})) or ("w", "z")

    @property
    def vq_sampling(self) -> bool:
        return any(self.has(f) for f in ("temperature", "top_k", "top_p"))

    @property
    def region_resampling(self) -> bool:
        return self.has("keep") and self.has("image")


def _members(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return [prop, *prop.get("anyOf", [])]


def _range(prop: dict[str, Any]) -> Range | None:
    for m in _members(prop):
        if m.get("type") in ("number", "integer") and ("minimum" in m or "exclusiveMinimum" in m) and "maximum" in m:
            lo = m.get("minimum", m.get("exclusiveMinimum"))
            return Range(float(lo), float(m["maximum"]), prop.get("default"))
    return None


def _enum(prop: dict[str, Any]) -> tuple[str, ...]:
    for m in _members(prop):
        if m.get("type") == "string" and m.get("enum"):
            return tuple(m["enum"])
        if m.get("type") == "string" and "const" in m:
            return (m["const"],)
    return ()


def _object_properties(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """The properties of an object-valued field, following its $ref into the schema's $defs."""
    for m in _members(prop):
        ref = m.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return schema.get("$defs", {}).get(ref.rsplit("/", 1)[1], {}).get("properties", {})
        if m.get("properties"):
            return m["properties"]
    return {}


@dataclass
class Settings:
    """The shared controls' values (the sidebar), whatever tab asks for images."""

    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None  # None: every w is truncated
    noise_mode: str = "const"
    class_: int | str | None = None  # an index, or a class name (the server resolves names)
    temperature: float = 1.0
    top_k: int | None = None  # None / 0: no top-k filtering
    top_p: float | None = None  # None / 1.0: no nucleus filtering


def common_fields(spec: ControlSpec, s: Settings) -> dict[str, Any]:
    """The request fields the shared controls set, only those the model's schema has."""
    req: dict[str, Any] = {}
    if spec.has("truncation_psi"):
        req["truncation_psi"] = float(s.truncation_psi)
    if spec.has("truncation_cutoff") and s.truncation_cutoff is not None:
        cutoff = int(s.truncation_cutoff)
        if not (spec.num_ws and cutoff >= spec.num_ws):  # cutoff at num_ws truncates every w: the default
            req["truncation_cutoff"] = cutoff
    if spec.has("noise_mode"):
        req["noise_mode"] = s.noise_mode
    if spec.class_picker and s.class_ is not None:
        c = s.class_
        req["class"] = int(c) if isinstance(c, int) or str(c).strip().isdigit() else str(c).strip()
    if spec.has("temperature"):
        req["temperature"] = float(s.temperature)
    if spec.has("top_k") and s.top_k:
        req["top_k"] = int(s.top_k)
    if spec.has("top_p") and s.top_p is not None and s.top_p < 1.0:
        req["top_p"] = float(s.top_p)
    return req


def layers_value(preset: str, start: int, stop: int) -> str | list[int]:
    """The style_mix.layers value for a preset, or [first, last] (both inclusive) for 'custom'."""
    if preset == "custom":
        return [int(start), int(stop)]
    if preset not in LAYER_PRESETS:
        raise ValueError(f"unknown layer preset '{preset}'")
    return preset


def region_fields(spec: ControlSpec, image_b64: str | None, box: list[int] | None) -> dict[str, Any]:
    """Partial re-sampling (VQ families): keep ``box`` [top, left, bottom, right] of ``image``'s codes."""
    if not spec.region_resampling or not image_b64:
        return {}
    out: dict[str, Any] = {"image": image_b64}
    if box is not None:
        out["keep"] = {"box": [int(v) for v in box]}
    return out
