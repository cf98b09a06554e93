"""Which controls a model gets, read from its family's request JSON schema, and the request the controls make.

Nothing here names a family: a control appears when the schema has its field (temperature / top-k / top-p and region
re-sampling for the VQ families, style mixing and noise for the StyleGANs, a class picker when the model has classes),
and its range comes from the schema's bounds. A new family with a request model gets its controls for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ganserve.requests import layer_groups
from ganserve.ui.backend import ModelInfo

LAYER_PRESETS = ("coarse", "middle", "fine", "custom")


def default_layer_groups(num_ws: int) -> dict[str, list[int]]:
    """Named groups that hold layers in a model with ``num_ws`` ws, as inclusive [first, last] (for descriptions
    that do not list ``layer_groups``)."""
    return layer_groups(num_ws)


@dataclass(frozen=True)
class Range:
    minimum: float
    maximum: float
    default: float | None
    exclusive_minimum: bool = False  # the minimum itself is refused (BigGAN's psi in (0, 1])


@dataclass(frozen=True)
class ControlSpec:
    """The fields a model's requests accept, with their bounds."""

    fields: frozenset[str]
    ranges: dict[str, Range] = field(default_factory=dict)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    num_ws: int = 0
    interpolate: dict[str, Any] = field(default_factory=dict)  # the interpolate object's properties
    layer_groups: dict[str, list[int]] = field(default_factory=dict)  # the model's named groups, inclusive ranges
    direction_methods: tuple[str, ...] = ()  # semantic-direction methods the model offers ([] : no edits)
    direction_count: int = 0
    direction_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # method -> what each direction changes
    class_from_seed: bool = False  # the picker may offer "from the seed" (no class sent)
    types: dict[str, str] = field(default_factory=dict)  # JSON type of each scalar field (number, integer ...)

    @classmethod
    def from_info(cls, info: ModelInfo) -> ControlSpec:
        props: dict[str, Any] = info.schema.get("properties", {})
        ranges, choices, types = {}, {}, {}
        for name, prop in props.items():
            kind = next((m["type"] for m in _members(prop) if m.get("type") not in (None, "null")), None)
            if isinstance(kind, str):
                types[name] = kind
            r = _range(prop)
            if r is not None:
                ranges[name] = r
            enum = _enum(prop)
            if enum:
                choices[name] = enum
        sub = _object_properties(info.schema, props.get("interpolate", {}))
        groups = dict(info.layer_groups)
        if not groups and "style_mix" in props and info.num_ws:  # a description without groups: the papers' split
            groups = default_layer_groups(info.num_ws)
        methods = tuple(str(m) for m in info.directions.get("methods", ())) if "edits" in props else ()
        count = int(info.directions.get("count", 0) or 0) if methods else 0
        given = info.directions.get("names") if methods else None
        names = {str(m): tuple(str(n) for n in ns) for m, ns in (given or {}).items() if isinstance(ns, list)}
        return cls(frozenset(props), ranges, choices, tuple(info.classes), info.num_ws, sub, groups, methods, count,
                   names, class_from_seed=info.class_from_seed and "class" in props, types=types)  # fmt: skip

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
    def edits(self) -> bool:
        """Semantic-direction sliders: the schema has ``edits`` and the model's description lists directions."""
        return bool(self.direction_methods) and self.direction_count > 0

    def direction_name(self, method: str | None, k: int) -> str:
        """What direction ``k`` by ``method`` changes ("darker"), as the model's description names it; "direction k"
        when it names none (a server from before names)."""
        names = self.direction_names.get(str(method), ())
        return names[k] if 0 <= k < len(names) else f"direction {k}"

    def direction_label(self, method: str | None, k: int) -> str:
        """A direction slider's label: its number and name ("0: darker"; "Direction 3" when it has no name)."""
        name = self.direction_name(method, k)
        return f"Direction {k}" if name == f"direction {k}" else f"{k}: {name}"

    @property
    def latent_source(self) -> bool:
        """Requests can start from a latent (``w``: a projection's id) instead of seeds."""
        return self.has("w")

    @property
    def projection(self) -> bool:
        return self.has("project")

    @property
    def mix_presets(self) -> tuple[str, ...]:
        """The style-mixing choices: the model's non-empty layer groups, then a custom range."""
        return (*self.layer_groups, "custom")

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
            exclusive = "minimum" not in m
            lo = m["exclusiveMinimum"] if exclusive else m["minimum"]
            return Range(float(lo), float(m["maximum"]), prop.get("default"), exclusive)
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


MAX_SLIDERS = 10  # direction sliders shown: the strongest directions first
STRIP_AMOUNTS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)  # a direction's thumbnail strip, in stds
ALL_LAYERS = "all"


def edit_layers_value(choice: str, first: Any, last: Any) -> str | list[int] | None:
    """The edits' ``layers``: None for every layer, a group name, or inclusive [first, last] for 'custom'."""
    if choice in (None, "", ALL_LAYERS):
        return None
    if choice == "custom":
        return [int(first), int(last)]
    return str(choice)


def edits_field(
    spec: ControlSpec, method: str, layers: str | list[int] | None, amounts: dict[int, float]
) -> list[dict[str, Any]]:
    """The request's ``edits`` for the sliders' amounts (directions at 0 are left out: unedited exactly)."""
    if not spec.edits:
        return []
    if method not in spec.direction_methods:
        raise ValueError(f"unknown direction method '{method}'; this model offers {', '.join(spec.direction_methods)}")
    out = []
    for k, amount in sorted(amounts.items()):
        if amount is None or float(amount) == 0.0:
            continue
        if not 0 <= k < spec.direction_count:
            raise ValueError(f"direction {k} is out of range: the model has {spec.direction_count}")
        edit: dict[str, Any] = {"direction": int(k), "amount": float(amount), "method": method}
        if layers is not None:
            edit["layers"] = layers
        out.append(edit)
    return out
