"""The semantic directions panel (SeFa / PCA): sliders that move every tab's images along the model's main
directions, each beside a strip of the current seed at −3 … +3 along it alone (a click on the strip sets the
slider: ``assets.py``, since Gradio's select reports no position on an enlarged image). Each slider is labelled with
what its direction changes ("0: darker"), the name the model's description gives (``ganserve.direction_names``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ganserve.ui import fields
from ganserve.ui.actions import EDIT_RANGE
from ganserve.ui.controls import ALL_LAYERS, MAX_SLIDERS
from ganserve.ui.model_controls import _edit_layer_choices, _method_choices, _method_value
from ganserve.ui.page import Page

FIELDS = ("edits",)
DECLARED = {"edit-method": "edits.method"}  # elem_id -> the field whose declared label and help the control shows


@dataclass
class Directions:
    panel: Any
    reset: Any


def build(page: Page) -> Directions:
    """The panel (call below the page's tabs)."""
    C, spec0, last_w = page.C, page.spec0, page.last_w
    with gr.Accordion(
        "Semantic directions: move every tab's images along the model's main directions",
        open=False,
        visible=spec0.edits,
        elem_id="directions",
    ) as panel:
        with gr.Row():
            C["edit_method"] = gr.Radio(
                _method_choices(spec0),
                value=_method_value(spec0),
                label=fields.label_of("edits.method"),
                info=fields.help_of("edits.method"),
                elem_id="edit-method",
            )
            C["edit_layers"] = gr.Dropdown(
                _edit_layer_choices(spec0), value=ALL_LAYERS, label="Layers edited", elem_id="edit-layers"
            )
            C["edit_first"] = gr.Slider(
                0, last_w, value=0, step=1, label="First layer", visible=False, elem_id="edit-first"
            )
            C["edit_last"] = gr.Slider(
                0, last_w, value=last_w, step=1, label="Last layer (inclusive)", visible=False, elem_id="edit-last"
            )
            reset = gr.Button("All to 0", size="sm", elem_id="edit-reset")
        gr.Markdown(
            "Amounts are in standard deviations of the model's ws along each direction (0: unedited). Each "
            "strip shows the current seed at −3 … +3 along that direction alone; click a strip to set its "
            "slider."
        )
        for k in range(MAX_SLIDERS):
            with gr.Row(visible=k < spec0.direction_count, elem_classes="gs-direction-row") as row:
                label = spec0.direction_label(_method_value(spec0), k)
                C[f"edit_{k}"] = gr.Slider(
                    *EDIT_RANGE, value=0, step=0.1, label=label, elem_id=f"edit-{k}", scale=1, min_width=200
                )
                page.strips.append(
                    gr.Image(
                        format="png",
                        type="filepath",
                        show_label=False,
                        interactive=False,
                        buttons=[],
                        alt_text=f"{label}: the seed at −3 … +3",
                        elem_id=f"strip-{k}",
                        scale=2,
                        elem_classes=["gs-int", "gs-strip", "gs-pixelated"],
                    )
                )
            page.M[f"edit_row_{k}"] = row
    page.M.update(
        directions=panel,
        edit_method=C["edit_method"],
        edit_layers=C["edit_layers"],
        edit_first=C["edit_first"],
        edit_last=C["edit_last"],
    )
    return Directions(panel, reset)


def triggers(page: Page) -> list[Any]:
    """The panel's events that re-render the tab shown."""
    return [page.C["edit_method"].input, *[page.C[f"edit_{k}"].release for k in range(MAX_SLIDERS)]]


def wire(page: Page, p: Directions) -> None:
    C = page.C

    def edit_layers(v: dict[str, Any], _d: Any) -> dict[str, Any]:
        custom = v.get("edit_layers") == "custom"
        out = {"set:edit_first": gr.update(visible=custom), "set:edit_last": gr.update(visible=custom)}
        return {**out, **page.shown(v["tab"], v)}

    page.on([C["edit_layers"].input, C["edit_first"].release, C["edit_last"].release], edit_layers)

    def reset_edits(v: dict[str, Any], _d: Any) -> dict[str, Any]:
        zero = {f"edit_{k}": 0.0 for k in range(MAX_SLIDERS)}
        return {**{f"set:{k}": 0.0 for k in zero}, **page.shown(v["tab"], {**v, **zero})}

    page.on([p.reset.click], reset_edits)
    p.panel.expand(lambda: True, None, page.panel_open, queue=False, api_visibility="private").then(
        lambda d: page.strips_event(d, force=True),
        inputs=page.inputs,
        outputs=[*page.strips, page.strips_key],
        trigger_mode="always_last",
        concurrency_id="strips",
        concurrency_limit=1,
        api_visibility="private",
        show_progress="minimal",
        show_progress_on=page.strips,
    )
    p.panel.collapse(lambda: False, None, page.panel_open, queue=False, api_visibility="private")
    # Each slider is labelled with its direction's name, which depends on the model and the method.
    label_inputs, label_outputs = [C["model"], C["edit_method"]], [C[f"edit_{k}"] for k in range(MAX_SLIDERS)]
    for trigger in (C["model"].change, C["edit_method"].change, page.loaded.change):
        trigger(labels(page), label_inputs, label_outputs, queue=False, api_visibility="private")


def labels(page: Page) -> Any:
    """(model, method) -> each direction slider's label (its name); nothing changes for an unknown model."""

    def update(model: Any, method: Any) -> tuple:
        try:
            spec = page.ex.spec(model)
        except Exception:
            return tuple(gr.skip() for _ in range(MAX_SLIDERS))
        return tuple(gr.update(label=spec.direction_label(method, k)) for k in range(MAX_SLIDERS))

    return update
