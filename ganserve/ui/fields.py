"""Controls for the request fields no panel of the page presents, made from the families' declarations.

A family declares a field with a front-end hint (``FrontEnd(widget="slider", help=...)``, see ``ganserve.front_end``);
the page's panels present the fields they know how to (seeds, truncation, style mixing, classes ...: each panel's
``FIELDS``), and every other field with a scalar widget gets a control here (a nested one too, ``foo.bar``, when its
parent is not a panel's): its range, default and choices from the family's JSON schema, its label and help from the
hint. The control is shown while the model's schema has the field, and its value goes into every request the page
makes (``request_values``). A new field in a family therefore needs no UI code. The panels' own controls take their
labels and info texts from the declaration too (``label_of``, ``help_of``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ganserve.front_end import GROUPS, RequestField, request_fields
from ganserve.ui.controls import ControlSpec, _enum, _object_properties, _range

PREFIX = "field:"  # the page's setting key of a generic field: "field:brightness"
SCALAR_WIDGETS = ("slider", "number", "dropdown", "checkbox", "text")
OWN_GROUP = "seeds and output"  # seeds and encoding: each tab sets them itself


@dataclass(frozen=True)
class FieldControl:
    """One generic control: what it is built from (a field's declaration and JSON schema)."""

    path: str
    widget: str
    kind: str  # number, integer, boolean, string
    label: str
    help: str
    group: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return PREFIX + self.path

    @property
    def api_name(self) -> str:
        """The API endpoints' keyword (``glow.amount`` -> ``glow_amount``: a dot is no Python name)."""
        return self.path.replace(".", "_")

    @property
    def top(self) -> str:
        """The top-level request field holding it (itself, or ``glow`` for ``glow.amount``)."""
        return self.path.split(".", 1)[0]

    @property
    def step(self) -> float:
        if self.kind == "integer":
            return 1
        if self.minimum is None or self.maximum is None:
            return 0.01
        span = self.maximum - self.minimum
        return 10 ** math.floor(math.log10(span / 100)) if span > 0 else 0.01

    def bounds(self) -> dict[str, float]:
        """A slider's minimum, maximum and start (an exclusive minimum starts one step above it)."""
        lo = self.minimum if self.minimum is not None else 0.0
        hi = self.maximum if self.maximum is not None else 1.0
        if self.exclusive_minimum:
            lo = round(lo + self.step, 6)
        start = self.default if isinstance(self.default, (int, float)) else lo
        return {"minimum": lo, "maximum": hi, "value": min(max(start, lo), hi)}


def _kind(prop: dict[str, Any]) -> str | None:
    for m in [prop, *prop.get("anyOf", [])]:
        if m.get("type") in ("number", "integer", "boolean", "string"):
            return m["type"]
    return None


def declared(path: str, request_models: Iterable[type] | None = None) -> RequestField | None:
    """The declaration of the field at ``path`` ("truncation_psi", "edits.method") in the first family that has it
    (one name is one declaration in every family: tests/test_fields.py), or None."""
    for model in registered_request_models() if request_models is None else request_models:
        for f in request_fields(model):
            if f.path == path:
                return f
    return None


def label_of(path: str) -> str:
    """A built-in control's label: its field's declared label (``FrontEnd.label``), never written in UI code."""
    f = declared(path)
    return f.label if f is not None else path.replace("_", " ").capitalize()


def help_of(path: str) -> str | None:
    """A built-in control's info text: its field's declared help (None: none)."""
    f = declared(path)
    return (f.help or None) if f is not None else None


def schema_property(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The JSON schema of the field at ``path``, a nested one (``glow.amount``) through its parent's $ref."""
    top, _, sub = path.partition(".")
    prop = schema.get("properties", {}).get(top)
    if prop is None or not sub:
        return prop
    return _object_properties(schema, prop).get(sub)


def from_schema(field: Any, schema: dict[str, Any]) -> FieldControl | None:
    """The control of one ``RequestField`` (``ganserve.front_end``) of a family whose JSON schema is ``schema``;
    None when it is not a scalar field with a page widget (or one inside a list: ``edits.method`` sets every edit's)."""
    widget = field.hint.widget
    if widget not in SCALAR_WIDGETS or field.in_list or field.hint.group == OWN_GROUP or field.path.count(".") > 1:
        return None
    prop = schema_property(schema, field.path)
    if prop is None:
        return None
    kind = _kind(prop)
    if kind is None:
        return None
    r = _range(prop)
    choices = _enum(prop)
    if widget == "slider" and r is None:  # a slider needs both ends: a number box otherwise
        widget = "number"
    if widget == "dropdown" and not choices:
        widget = "text"
    return FieldControl(
        path=field.path,
        widget=widget,
        kind=kind,
        label=field.label,
        help=field.help,
        group=field.hint.group,
        default=prop.get("default"),
        minimum=r.minimum if r else None,
        maximum=r.maximum if r else None,
        exclusive_minimum=bool(r and r.exclusive_minimum),
        choices=choices,
    )


def collect(request_models: Iterable[type], claimed: Iterable[str]) -> list[FieldControl]:
    """The generic controls of every field the ``request_models`` declare that no panel ``claimed``, one per path
    (the first family's declaration; another model's bounds are set when it is chosen), in the groups' order."""
    claimed = set(claimed)
    out: dict[str, FieldControl] = {}
    for model in request_models:
        schema = model.model_json_schema(by_alias=True)
        for f in request_fields(model):
            # A nested field of a panel's field is that panel's (interpolate.to_class: the Interpolation tab).
            if f.path in claimed or f.path.split(".", 1)[0] in claimed or f.path in out:
                continue
            control = from_schema(f, schema)
            if control is not None:
                out[f.path] = control
    order = {g: i for i, g in enumerate(GROUPS)}
    return sorted(out.values(), key=lambda c: order.get(c.group, len(order)))


def registered_request_models() -> list[type]:
    """The request models of every family this install can load (built in, or from an installed package)."""
    from ganserve.families import loadable_families

    return [fam.request for fam in loadable_families()]


def elem_id(c: FieldControl) -> str:
    """The control's element id: "field-brightness", "field-glow-amount" (no dot: CSS would read it as a class)."""
    return "field-" + c.path.replace(".", "-")


def component(c: FieldControl, visible: bool) -> Any:
    """The Gradio component for ``c``, shown when the first model has the field."""
    import gradio as gr  # here: the request side of this module (request_values) runs without Gradio

    common = {"label": c.label, "info": c.help or None, "visible": visible, "elem_id": elem_id(c)}
    if c.widget == "slider":
        return gr.Slider(**c.bounds(), step=c.step, **common)
    if c.widget == "checkbox":
        return gr.Checkbox(bool(c.default), **common)
    if c.widget == "dropdown":
        return gr.Dropdown(list(c.choices), value=c.default if c.default in c.choices else None, **common)
    if c.widget == "number":
        return gr.Number(c.default, precision=0 if c.kind == "integer" else None, **common)
    return gr.Textbox("" if c.default is None else str(c.default), max_lines=1, **common)


def field_updates(spec: ControlSpec, controls: Iterable[FieldControl], v: dict[str, Any]) -> dict[str, Any]:
    """A model switch: each generic control shown while the model has its field, with this model's bounds (a value
    the new bounds refuse goes to the model's default); keyed as the page's model outputs."""
    import gradio as gr

    out: dict[str, Any] = {}
    for c in controls:
        has = spec.has(c.top)
        upd: dict[str, Any] = {"visible": has}
        r = spec.ranges.get(c.path)
        if has and c.widget == "slider" and r is not None:
            own = FieldControl(
                c.path, c.widget, c.kind, c.label, c.help, c.group, r.default, r.minimum, r.maximum, r.exclusive_minimum
            )
            b = own.bounds()
            upd.update(minimum=b["minimum"], maximum=b["maximum"])
            value = v.get(c.key)
            if c.key in v and not (isinstance(value, (int, float)) and b["minimum"] <= value <= b["maximum"]):
                upd["value"] = b["value"]
        if has and c.widget == "dropdown" and spec.choices.get(c.path):
            upd["choices"] = list(spec.choices[c.path])
        out[c.key] = gr.update(**upd)
    return out


URL_KINDS = {"number": "float", "integer": "int", "boolean": "bool", "string": "str"}


def url_kinds(controls: Iterable[FieldControl]) -> dict[str, str]:
    """The generic fields' keys in the page address (their paths: ``?brightness=0.5``) -> urlstate kinds."""
    return {c.path: URL_KINDS[c.kind] for c in controls}


def url_values(spec: ControlSpec, v: dict[str, Any]) -> dict[str, Any]:
    """The generic fields the model has, keyed as in the page address."""
    return {k[len(PREFIX) :]: val for k, val in v.items() if k.startswith(PREFIX) and _has(spec, k[len(PREFIX) :])}


def _has(spec: ControlSpec, path: str) -> bool:
    return spec.has(path.split(".", 1)[0])


def defaults(spec: ControlSpec, controls: Iterable[FieldControl]) -> dict[str, Any]:
    """Each generic control's value for a model that leaves it unset: the model's schema default."""
    out = {}
    for c in controls:
        r = spec.ranges.get(c.path)
        out[c.key] = r.default if r is not None and r.default is not None else c.default
    return out


def checked(spec: ControlSpec, path: str, value: Any) -> Any:
    """A generic field's value from a link, checked against the model's bounds (ValueError when outside them)."""
    if not _has(spec, path):
        raise ValueError("this model has no such field")
    r = spec.ranges.get(path)
    if r is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        too_low = value <= r.minimum if r.exclusive_minimum else value < r.minimum
        if too_low or value > r.maximum:
            raise ValueError(f"{value:g} is not between {r.minimum:g} and {r.maximum:g}")
    choices = spec.choices.get(path)
    if choices and value not in choices:
        raise ValueError(f"'{value}' is not one of {', '.join(choices)}")
    return value


def request_values(spec: ControlSpec, v: dict[str, Any]) -> dict[str, Any]:
    """The generic fields' values for a request: those the model's schema has and that are set (the server checks
    them and names the field it refuses)."""
    out: dict[str, Any] = {}
    for key, value in v.items():
        if not key.startswith(PREFIX) or value is None or value == "":
            continue
        path = key[len(PREFIX) :]
        if not _has(spec, path):
            continue
        if isinstance(value, float) and value.is_integer() and spec.types.get(path) == "integer":
            value = int(value)
        top, _, sub = path.partition(".")
        if sub:  # a nested field: into its parent object, beside the parent's other set fields
            out.setdefault(top, {})[sub] = value
        else:
            out[path] = value
    return out
