"""Front-end hints of request fields: how a field is presented (CLI flag and its aliases, help, group, UI widget).

The request model is the declaration: every front end reads its fields through ``request_fields`` and never lists a
family's fields by hand. A field's hint is a ``FrontEnd`` in its ``Annotated`` metadata, on the field itself::

    glow: Annotated[float, FrontEnd(flag="--glow", help="how much it glows")] = 0.0

Fields several families share are declared once, hint included, as types in ``ganserve.fields``
(``truncation_psi: fields.TruncationPsi``), so one name has one spelling in every family. A field with no hint at
all still reaches every front end: its flag is ``--`` + its name with dashes and its value is read from its type
(numbers, names, choices, comma lists; JSON for nested objects).
Nested fields (``style_mix.layers``) get a flag of their own only when they declare a hint; otherwise their parent's
flag sets them. No argparse here: the CLI (``ganserve.cli_fields``) and the UI build their controls from this.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class FrontEnd:
    """How front ends present one request field."""

    flag: str | None = None  # CLI spelling; None: "--" + the field's name with dashes
    aliases: tuple[str, ...] = ()  # other spellings that work too (StyleGAN2-ADA's --trunc, --styles ...)
    metavar: str | None = None
    help: str = ""  # empty: the field's description (the UI's info text under the control)
    label: str = ""  # the UI control's label; empty: the field's name, capitalised ("top_k" -> "Top k")
    group: str = "request"  # CLI argument group / UI section
    widget: str | None = None  # UI control: slider, number, dropdown, text, checkbox, image, file
    parse: Callable[[str], Any] | None = None  # CLI text -> JSON value (ValueError with a message); None: by type
    repeat: bool = False  # a list field whose flag is given once per item
    file: Literal["base64", "base64-or-text"] | None = None  # the flag takes a path; its bytes go in as base64
    via: str | None = None  # no flag of its own: the CLI option that sets it (format: --out's suffix)
    cli_default: str | None = None  # what the CLI sends when the flag is absent (seeds: a 4x4 grid)
    excludes: tuple[str, ...] = ()  # ... unless one of these fields is given (a w replaces the seeds)
    requires: tuple[str, ...] = ()  # fields that must be given with it (keep needs image)
    example: str | None = None  # a valid CLI value: the conformance test parses it into the field


@dataclass(frozen=True)
class RequestField:
    """One field a front end presents: its JSON path ("style_mix.layers"; "class", not "class_"), pydantic info and
    hint. ``in_list`` when the path runs through a list (``edits.method`` sets the method of every edit)."""

    path: str
    info: FieldInfo
    hint: FrontEnd
    in_list: bool = False

    @property
    def flag(self) -> str:
        return self.hint.flag or "--" + self.path.rsplit(".", 1)[-1].replace("_", "-")

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag, *self.hint.aliases)

    @property
    def help(self) -> str:
        return self.hint.help or self.info.description or ""

    @property
    def label(self) -> str:
        return self.hint.label or self.path.rsplit(".", 1)[-1].replace("_", " ").capitalize()


# ---- CLI text syntaxes shared by front ends (each raises ValueError saying what it expects) -------------------------
_INT = re.compile(r"[0-9]+", re.ASCII)
KEEP_HALVES = ("top-half", "bottom-half", "left-half", "right-half")


def class_value(text: str) -> int | str:
    """A class: an id (ASCII digits) or a name."""
    text = text.strip()
    if not text:
        raise ValueError("expected a class id or name")
    return int(text) if _INT.fullmatch(text) else text


def class_list(text: str) -> list[int | str]:
    """'0,3,Sneaker' -> [0, 3, 'Sneaker']."""
    return [class_value(v) for v in text.split(",")]


def style_mix(text: str) -> dict[str, Any]:
    """SEEDS[:LAYERS] -> style_mix (the request model checks the seeds and layers)."""
    seeds, _, layers = text.rpartition(":") if ":" in text else (text, "", "")
    if not seeds.strip():
        raise ValueError("expected SEEDS[:LAYERS], e.g. 7:coarse or 7,8:0-3")
    return {"seeds": seeds, "layers": layers} if layers else {"seeds": seeds}


def edit(text: str) -> dict[str, Any]:
    """K:AMOUNT[:LAYERS] -> one entry of edits."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not _INT.fullmatch(parts[0]):
        raise ValueError("expected K:AMOUNT[:LAYERS], e.g. 0:2.5 or 3:-1:0-3")
    try:
        amount = float(parts[1])
    except ValueError:
        raise ValueError(f"the amount must be a number, got {parts[1]!r}") from None
    out: dict[str, Any] = {"direction": int(parts[0]), "amount": amount}
    if len(parts) == 3:
        out["layers"] = parts[2]
    return out


def interpolate(text: str) -> dict[str, Any]:
    """TO_SEED[:STEPS[:SPACE]] -> interpolate (an empty TO_SEED with --to-class: class interpolation only)."""
    parts = text.split(":")
    bad_seed = parts[0] and not _INT.fullmatch(parts[0])
    if len(parts) > 3 or bad_seed or (len(parts) > 1 and not _INT.fullmatch(parts[1])):
        raise ValueError("expected TO_SEED[:STEPS[:w|z]], e.g. 9 or 9:8:z (ASCII digits)")
    out: dict[str, Any] = {"to_seed": int(parts[0])} if parts[0] else {}
    if len(parts) > 1:
        out["steps"] = int(parts[1])
    if len(parts) > 2:
        out["space"] = parts[2]
    return out


def keep(text: str) -> dict[str, Any]:
    """A half of the code grid, or box:x0,y0,x1,y1 (code units) -> keep {"half": ...} or {"box": [t, l, b, r]}."""
    if text in KEEP_HALVES:
        return {"half": text.split("-")[0]}
    if text.startswith("box:"):
        parts = [v.strip() for v in text[4:].split(",")]
        if len(parts) == 4 and all(_INT.fullmatch(v) for v in parts):
            x0, y0, x1, y1 = (int(v) for v in parts)
            return {"box": [y0, x0, y1, x1]}
    raise ValueError(f"expected {', '.join(KEEP_HALVES)} or box:x0,y0,x1,y1 (code units, x1 and y1 exclusive)")


def pixel(text: str) -> dict[str, Any]:
    """Y,X -> attention {"query": [y, x]}."""
    parts = [v.strip() for v in text.split(",")]
    if len(parts) != 2 or not all(_INT.fullmatch(v) for v in parts):
        raise ValueError("expected Y,X: a pixel's row and column, e.g. 16,8")
    return {"query": [int(parts[0]), int(parts[1])]}


# The order of the CLI's argument groups (and the UI's sections); a group not listed here comes after these.
GROUPS = ("seeds and output", "latents", "style", "classes", "attention", "prior", "request")


# ---- reading the declaration ----------------------------------------------------------------------------------------
def hint_of(info: FieldInfo) -> FrontEnd | None:
    """The field's hint (its Annotated metadata), or None."""
    for m in info.metadata:
        if isinstance(m, FrontEnd):
            return m
    return None


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The request model a field holds (``StyleMix | None`` -> StyleMix; ``list[Edit]`` -> Edit, in a list)."""
    ann = _strip_optional(annotation)
    in_list = typing.get_origin(ann) is list
    if in_list:
        ann = _strip_optional(typing.get_args(ann)[0])
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, in_list
    return None, False


def json_name(name: str, info: FieldInfo) -> str:
    return info.alias or name


def request_fields(model: type[BaseModel]) -> list[RequestField]:
    """Every top-level field of a request model, then each nested field that declares a hint (one level down)."""
    top: list[RequestField] = []
    nested: list[RequestField] = []
    for name, info in model.model_fields.items():
        path = json_name(name, info)
        top.append(RequestField(path, info, hint_of(info) or FrontEnd()))
        sub, in_list = nested_model(info.annotation)
        if sub is None:
            continue
        for sub_name, sub_info in sub.model_fields.items():
            sub_path = f"{path}.{json_name(sub_name, sub_info)}"
            hint = hint_of(sub_info)
            if hint is not None:
                nested.append(RequestField(sub_path, sub_info, hint, in_list))
    return top + nested


__all__ = ["FrontEnd", "RequestField", "hint_of", "nested_model", "request_fields"]
