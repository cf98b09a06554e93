"""Examples on the first screen (as Hugging Face Spaces demos have): a row of buttons, each a few settings of the
model shown, that open the Seed tab with those settings when clicked.

Nothing here is written per model: the examples come from the declaration. The first is the model's defaults; each
next one a new seed with one shared setting at its declared example value (``FrontEnd.example``: truncation ψ 0.7,
class 1, temperature 0.9, top-p 0.8 ...) where the model's schema has that field and its bounds take the value. An
example applies like a link holding just those settings (``lifecycle.linked``): everything else is the model's
default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ganserve.ui import fields
from ganserve.ui.backend import BackendError
from ganserve.ui.controls import ControlSpec
from ganserve.ui.model_controls import _check_url_value
from ganserve.ui.page import Page

MAX_EXAMPLES = 4
# The shared settings an example may set: the field whose declared example it takes -> the page's setting key.
SETTINGS = {"truncation_psi": "psi", "class": "class", "temperature": "temp", "top_p": "top_p", "top_k": "top_k"}


@dataclass
class Examples:
    buttons: list[Any]


def examples_for(spec: ControlSpec) -> list[dict[str, Any]]:
    """The model's examples, each settings keyed as ``urlstate.KEYS`` (the seed, and at most one other setting)."""
    out: list[dict[str, Any]] = [{"seed": 0}]
    for path, key in SETTINGS.items():
        if len(out) == MAX_EXAMPLES:
            break
        f = fields.declared(path)
        if not spec.has(path) or f is None or f.hint.example is None:
            continue
        if key == "class" and not spec.class_picker:
            continue
        try:
            value = _check_url_value(key, _parse(f, f.hint.example), spec)
        except (BackendError, ValueError):  # the model's bounds refuse the declared example
            continue
        if key == "class" and not (isinstance(value, int) and 0 <= value < len(spec.classes)):
            continue
        out.append({"seed": len(out), key: value})
    return out


def _parse(f: Any, text: str) -> Any:
    value = f.hint.parse(text) if f.hint.parse else text
    if isinstance(value, str):
        try:
            return int(value) if value.isdigit() else float(value)
        except ValueError:
            return value
    return value


def caption(spec: ControlSpec, example: dict[str, Any]) -> str:
    """A button's text: "seed 2 · Class: Sneaker"."""
    bits = [f"seed {example['seed']}"]
    for path, key in SETTINGS.items():
        if key in example:
            value = spec.classes[example[key]] if key == "class" else example[key]
            bits.append(f"{fields.label_of(path)}: {value}")
    return " · ".join(bits)


def _button_updates(spec: ControlSpec | None) -> list[Any]:
    shown = examples_for(spec) if spec is not None else []
    return [
        gr.update(value=caption(spec, shown[i]), visible=True) if spec is not None and i < len(shown)
        else gr.update(visible=False)
        for i in range(MAX_EXAMPLES)
    ]  # fmt: skip


def build(page: Page) -> Examples:
    """The row of example buttons (call in the sidebar, under the model)."""
    spec0 = page.spec0 if page.info0 else None
    shown = examples_for(spec0) if spec0 is not None else []
    buttons = []
    with gr.Row(elem_id="examples", elem_classes="gs-examples"):
        gr.Markdown("Examples:", elem_id="examples-title")
        for i in range(MAX_EXAMPLES):
            text = caption(spec0, shown[i]) if spec0 is not None and i < len(shown) else f"example {i}"
            buttons.append(gr.Button(text, size="sm", visible=i < len(shown), elem_id=f"example-{i}"))
    return Examples(buttons)


def apply(page: Page, v: dict[str, Any], i: int) -> dict[str, Any]:
    """Example ``i`` of the model shown: the page set up as by a link with its settings, the Seed tab rendered."""
    from ganserve.ui.panels.lifecycle import linked  # the page-wide events import the panels, not the reverse

    model = v.get("model")
    shown = examples_for(page.ex.spec(model))
    if not 0 <= i < len(shown):
        raise ValueError(f"model {model} has no example {i}")
    errors: list[str] = []
    out = linked(page, {"model": model, "tab": "seed", **shown[i]}, errors, v, page.backend.models())
    if errors:  # the examples are checked against the model's bounds: this would be a bug, said plainly
        raise ValueError("; ".join(errors))
    return {**out, **page.shown("seed", v), "status": f"Example: {caption(page.ex.spec(model), shown[i])}."}


def wire(page: Page, ex: Examples) -> None:
    for i, button in enumerate(ex.buttons):
        page.on([button.click], lambda v, _d, i=i: apply(page, v, i))

    def relabel(model: Any) -> list[Any]:
        try:
            return _button_updates(page.ex.spec(model))
        except Exception:  # an unknown model: the model switch reports it
            return [gr.skip()] * MAX_EXAMPLES

    # Another model: its own examples.
    for trigger in (page.C["model"].change, page.loaded.change):
        trigger(relabel, page.C["model"], ex.buttons, queue=False, api_visibility="private")
