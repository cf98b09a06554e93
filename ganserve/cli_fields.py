"""Command-line flags generated from the request models: one flag per field of every registered family.

``add_request_arguments`` adds a flag for each field ``ganserve.front_end.request_fields`` yields (the union over the
families; one field name is one flag), ``request_from_args`` turns the flags given back into a request dict, and
``flag_for`` names the flag behind a ``RequestError``'s field. Values are kept as typed until ``request_from_args`` so
that every error names the spelling the user typed (``--trunc`` or ``--psi``).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ganserve.commands import CommandError
from ganserve.front_end import GROUPS, RequestField, request_fields

TYPED = "_typed_flags"  # namespace attribute: dest -> the option string the user typed
_INT = re.compile(r"-?[0-9]+", re.ASCII)
_UNION = (typing.Union, types.UnionType)


@dataclass
class CliField:
    """One request flag: the field as the first family declares it, and every family that takes it."""

    field: RequestField
    families: list[str] = field(default_factory=list)
    defaults: list[Any] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.field.path

    @property
    def dest(self) -> str:
        return "field:" + self.path

    @property
    def flag(self) -> str:
        return self.field.hint.via or self.field.flag


def _literal_choices(annotation: Any) -> list[str]:
    ann = annotation
    if typing.get_origin(ann) in _UNION:
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else ann
    return [str(v) for v in typing.get_args(ann)] if typing.get_origin(ann) is Literal else []


def collect(families: Sequence[str] | None = None) -> list[CliField]:
    """The request flags of ``families`` (default: every registered family that loads), top-level fields first."""
    from ganserve.families import get_family, loadable_families

    by_path: dict[str, CliField] = {}
    for fam in [get_family(n) for n in families] if families else loadable_families():
        for f in request_fields(fam.request):
            cf = by_path.setdefault(f.path, CliField(f))
            cf.families.append(fam.name)
            default = f.info.default
            cf.defaults.append(None if default is PydanticUndefined else default)
            cf.choices += [c for c in _literal_choices(f.info.annotation) if c not in cf.choices]
    seen: dict[str, str] = {}
    for cf in by_path.values():
        spellings = () if cf.field.hint.via else cf.field.flags
        for s in spellings:
            if seen.setdefault(s, cf.path) != cf.path:
                raise ValueError(f"request fields {seen[s]} and {cf.path} both want the flag {s}")
    return sorted(by_path.values(), key=lambda cf: cf.path.count("."))


class FieldAction(argparse.Action):
    """Keeps the raw text (converted by ``request_from_args``) and which spelling was typed."""

    def __init__(self, option_strings: list[str], dest: str, *, cli_field: CliField, **kwargs: Any) -> None:
        self.cli_field = cli_field
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        typed = dict(getattr(ns, TYPED, None) or {})
        typed[self.dest] = option_string
        setattr(ns, TYPED, typed)
        if self.nargs == 0:
            values = "true"
        if self.cli_field.field.hint.repeat:
            values = [*(getattr(ns, self.dest, None) or []), values]
        setattr(ns, self.dest, values)


def _help(cf: CliField, all_families: list[str], flags: dict[str, str]) -> str:
    text = cf.field.help or cf.path.replace("_", " ")
    hint = cf.field.hint
    shown = {repr(d) for d in cf.defaults if d is not None and d is not False}
    if hint.cli_default is not None:
        unless = [flags[p] for p in hint.excludes if p in flags]
        text += f" (default: {hint.cli_default}" + (f"; none with {', '.join(unless)})" if unless else ")")
    elif len(shown) == 1 and "default" not in text and len(set(map(repr, cf.defaults))) == 1:
        text += f" (default: {cf.defaults[0]})"
    if set(cf.families) != set(all_families):
        text += f" [{', '.join(cf.families)}]"
    return text.replace("%", "%%")


def add_request_arguments(parser: argparse.ArgumentParser, families: Sequence[str] | None = None) -> list[CliField]:
    """Add one flag per request field (grouped as the hints say); returns the fields for ``request_from_args``."""
    fields = collect(families)
    all_families = list(families or {name for cf in fields for name in cf.families})
    flags = {cf.path: cf.flag for cf in fields}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for group in [*GROUPS, *(cf.field.hint.group for cf in fields)]:
        if group not in groups and any(cf.field.hint.group == group and not cf.field.hint.via for cf in fields):
            groups[group] = parser.add_argument_group(f"request: {group}")
    for cf in fields:
        hint = cf.field.hint
        if hint.via:
            continue  # set by another option (format and grid: --out's suffix)
        group = groups[hint.group]
        ann = typing.get_args(cf.field.info.annotation) or (cf.field.info.annotation,)
        is_flag = all(a in (bool, type(None)) for a in ann) and not hint.parse
        metavar = hint.metavar or cf.path.split(".")[-1].upper()
        kwargs: dict[str, Any] = {"nargs": 0} if is_flag else {"metavar": metavar}
        if cf.choices and not hint.parse:
            kwargs["choices"] = cf.choices
            kwargs.pop("metavar")
        group.add_argument(*cf.field.flags, dest=cf.dest, action=FieldAction, cli_field=cf, default=None,
                           help=_help(cf, all_families, flags), **kwargs)  # fmt: skip
    return fields


# ---- text -> JSON values ------------------------------------------------------------------------------------------
def from_type(annotation: Any, text: str) -> Any:
    """A flag's text as the field's type: int, float, str, a choice, int-or-name, comma lists, JSON for objects."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in _UNION:
        if int in args and str in args:
            return int(text) if _INT.fullmatch(text.strip()) else text
        if str in args:
            return text  # the model parses its text forms ("0-2" layers)
        return from_type(args[0], text) if len(args) == 1 else json.loads(text)
    if annotation is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError("expected true or false")
        return text.lower() == "true"
    if annotation is int:
        if not _INT.fullmatch(text.strip()):
            raise ValueError("expected an integer (ASCII digits)")
        return int(text)
    if annotation is float:
        return float(text)  # nan/inf pass here: the request model refuses them by name
    if annotation is str or origin is Literal:
        return text
    if origin is list:
        return [from_type(args[0], v) for v in text.split(",")]
    if (isinstance(annotation, type) and issubclass(annotation, BaseModel)) or annotation is dict:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return value
    return json.loads(text)


def _file_value(text: str, kind: str) -> str:
    path = Path(text)
    if kind == "base64-or-text" and path.suffix != ".npy" and not path.exists():
        return text  # an id (of a stored latent)
    return base64.b64encode(path.read_bytes()).decode()


def convert(cf: CliField, text: str, flag: str) -> Any:
    """One flag value -> its JSON value; every failure is a CommandError naming the flag as typed."""
    hint = cf.field.hint
    if not text.strip():
        raise CommandError(f"{flag} needs a value (got an empty string)")
    try:
        if hint.file:
            return _file_value(text, hint.file)
        if hint.parse:
            return hint.parse(text)
        return from_type(cf.field.info.annotation, text)
    except OSError as e:
        raise CommandError(f"{flag} {text}: {e.strerror or e}") from None
    except ValueError as e:  # json.JSONDecodeError is one
        raise CommandError(f"{flag} {text[:60]!r}: {e}") from None


def typed_flag(args: argparse.Namespace, cf: CliField) -> str:
    return (getattr(args, TYPED, None) or {}).get(cf.dest) or cf.flag


def given(args: argparse.Namespace, fields: list[CliField]) -> list[CliField]:
    return [cf for cf in fields if getattr(args, cf.dest, None) is not None]


def request_from_args(args: argparse.Namespace, fields: list[CliField]) -> dict[str, Any]:
    """The request the flags given describe (fields not given are left to the model's defaults)."""
    req: dict[str, Any] = {}
    present = given(args, fields)
    paths = {cf.path for cf in present}
    by_path = {cf.path: cf for cf in fields}
    for cf in present:
        for need in cf.field.hint.requires:
            if need not in paths:
                other = by_path[need].flag if need in by_path else need
                raise CommandError(f"{typed_flag(args, cf)} needs {other}")
    for cf in present:  # top-level fields first (collect's order), so nested ones find their parent
        raw = getattr(args, cf.dest)
        flag = typed_flag(args, cf)
        value = [convert(cf, r, flag) for r in raw] if cf.field.hint.repeat else convert(cf, raw, flag)
        parent, _, key = cf.path.rpartition(".")
        if not parent:
            req[cf.path] = value
            continue
        holder = req.setdefault(parent, {})
        for item in holder if isinstance(holder, list) else [holder]:
            item[key] = value
    for cf in fields:
        hint = cf.field.hint
        if hint.cli_default is not None and cf.path not in req and not any(p in paths for p in hint.excludes):
            req[cf.path] = hint.cli_default
    return req


def flag_for(field_path: str, fields: list[CliField], args: argparse.Namespace) -> str | None:
    """The flag behind a request field ("style_mix.layers" -> --mix, or --styles if that was typed)."""
    path = re.sub(r"\[\d+\]", "", field_path)
    matches = [cf for cf in fields if path == cf.path or path.startswith(cf.path + ".")]
    if not matches:
        return None
    typed = [cf for cf in matches if getattr(args, cf.dest, None) is not None] or matches
    best = max(typed, key=lambda cf: len(cf.path))
    return typed_flag(args, best)


__all__ = [
    "CliField",
    "add_request_arguments",
    "collect",
    "convert",
    "flag_for",
    "given",
    "request_from_args",
    "typed_flag",
]
