"""The explorer's settings in the page URL's query string, so a link reopens the same view.

After each successful render the page writes every setting (the shared sidebar, each tab's fields, the direction
sliders and the tab shown) to ``?model=...&psi=0.7&seed=42&tab=seed...`` with ``history.replaceState``; opening such
a link sets the controls and renders that tab. Values are checked by type here and by range where the controls are
known (``ganserve.ui.app``); a value that fails is reported and left out, never coerced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from ganserve.ui.controls import MAX_SLIDERS

TABS = ("seed", "grid", "mix", "interp", "browse", "project", "vq")

# key -> kind. The keys are also the names the page uses for its settings.
KINDS: dict[str, str] = {
    "tab": "tab",
    "model": "str",
    "psi": "float",
    "cutoff": "int",
    "noise": "str",
    "class": "class",
    "temp": "float",
    "top_k": "int",
    "top_p": "float",
    "w": "str",
    "seed": "int",
    "grid": "str",
    "grid_classes": "ints",
    "rows": "str",
    "cols": "str",
    "layers": "str",
    "first": "int",
    "last": "int",
    "from": "int",
    "to": "int",
    "frames": "int",
    "space": "str",
    "to_class": "int",
    "browse": "int",
    "send_to": "str",
    "steps": "int",
    "attn_y": "int",
    "attn_x": "int",
    "edit_method": "str",
    "edit_layers": "str",
    "edit_first": "int",
    "edit_last": "int",
    **{f"edit_{k}": "float" for k in range(MAX_SLIDERS)},
}
KEYS = tuple(KINDS)
MAX_VALUE_CHARS = 200  # a latent id, a seed list; never an image


def _number(text: str, kind: str) -> float | int:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"'{text}' is not a finite number")
    if kind == "int":
        if not v.is_integer():
            raise ValueError(f"'{text}' is not a whole number")
        return int(v)
    return v


def parse_value(key: str, text: str, kinds: Mapping[str, str] = KINDS) -> Any:
    """One query value -> the control's value (ValueError with a readable reason)."""
    kind = kinds[key]
    text = text.strip()
    if len(text) > MAX_VALUE_CHARS:
        raise ValueError(f"is over {MAX_VALUE_CHARS} characters")
    if kind == "tab":
        if text not in TABS:
            raise ValueError(f"'{text}' is not a tab ({', '.join(TABS)})")
        return text
    if kind in ("int", "float"):
        return _number(text, kind)
    if kind == "ints":
        return [_number(t, "int") for t in text.split(",") if t.strip()]
    if kind == "class":  # an index or a class name
        return int(text) if text.isdigit() else text
    if kind == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"'{text}' is not true or false")
        return text == "true"
    return text


def decode(query: Mapping[str, str], extra: Mapping[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Known keys of a query -> (values, one readable line per refused value). Unknown keys are ignored. ``extra``:
    the page's generic fields, path -> kind (a family's declared field: ``brightness=0.5``)."""
    kinds = {**(extra or {}), **KINDS}
    values, errors = {}, []
    for key, text in query.items():
        if key not in kinds:
            continue
        try:
            values[key] = parse_value(key, str(text), kinds)
        except ValueError as e:
            errors.append(f"{key}: {e}")
    return values, errors


def _text(value: Any) -> str | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def encode(values: Mapping[str, Any], extra_keys: tuple[str, ...] = ()) -> str:
    """Settings -> a query string (keys in a fixed order, then ``extra_keys``; empty values and zero edits left
    out)."""
    pairs = []
    for key in (*KEYS, *(k for k in extra_keys if k not in KINDS)):
        text = _text(values.get(key))
        if text is None:
            continue
        if key.startswith("edit_") and key[5:].isdigit() and float(text) == 0.0:
            continue
        pairs.append((key, text))
    return urlencode(pairs)
