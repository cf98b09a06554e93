"""The sidebar: the model, its examples (``examples``), the latent source, the settings every tab's requests share
(truncation, noise, class, prior sampling, and a control for each generic field), Restore, the status line and the
image's parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ganserve.ui import fields
from ganserve.ui.model_controls import PSI_STEP, TEMP_STEP, _model_text, _picker_choices, _slider, model_defaults
from ganserve.ui.page import Page
from ganserve.ui.panels import examples

FIELDS = ("w", "truncation_psi", "truncation_cutoff", "noise_mode", "class", "temperature", "top_k", "top_p")
# Each control's elem_id -> the field it sets: its label and info text are that field's declared ones.
DECLARED = {"w-source": "w", "psi": "truncation_psi", "cutoff": "truncation_cutoff", "noise": "noise_mode",
            "class": "class", "temp": "temperature", "top-k": "top_k", "top-p": "top_p"}  # fmt: skip


def _declared(elem_id: str, note: str = "") -> dict[str, Any]:
    """label= and info= of the control ``elem_id`` from its field's declaration (``note``: what the page adds)."""
    path = DECLARED[elem_id]
    info = "; ".join(t for t in (fields.help_of(path), note) if t)
    return {"label": fields.label_of(path), "info": info or None, "elem_id": elem_id}


@dataclass
class Sidebar:
    use_seeds: Any
    restore_file: Any
    copy_link: Any
    examples: examples.Examples


def build(page: Page) -> Sidebar:
    """The sidebar's components (call inside the page's main row)."""
    spec0, C = page.spec0, page.C
    with gr.Column(scale=1, min_width=280, elem_id="gs-sidebar"):
        C["model"] = gr.Dropdown(page.models, value=page.first, label="Model", elem_id="model")
        page.M["model_md"] = gr.Markdown(_model_text(page.info0))
        copy_link = gr.Button("Copy link", size="sm", elem_id="copy-link")
        shown_examples = examples.build(page)  # on the first screen, under the model
        with gr.Group(visible=spec0.latent_source) as source_group:
            C["w"] = gr.Textbox(
                "",
                **_declared("w-source", "a projection's w; empty: the seeds"),
                placeholder="w:0123456789abcdef",
                max_lines=1,
            )
            use_seeds = gr.Button("Use seeds", size="sm", elem_id="use-seeds")
        _latents(page)
        with gr.Group(visible=spec0.vq_sampling) as vq_group:
            C["temp"] = gr.Slider(
                **_slider(spec0, "temperature", 0.01, 10, 1.0, TEMP_STEP),
                step=TEMP_STEP,
                **_declared("temp"),
            )
            C["top_k"] = gr.Number(0, precision=0, minimum=0, **_declared("top-k", "0: off"))
            C["top_p"] = gr.Slider(0.01, 1.0, value=1.0, step=0.01, **_declared("top-p", "1: off"))
        for c in page.extras:  # the declared fields no panel presents, in their groups' order
            C[c.key] = page.M[c.key] = fields.component(c, spec0.has(c.top))
        restore_file = gr.File(
            label="Restore settings from a ganserve PNG (drop it here)",
            file_types=[".png"],
            type="binary",
            interactive=True,
            elem_id="restore",
        )
        page.OUT["status"] = gr.Markdown("", elem_id="status")
        page.OUT["params"] = gr.JSON(label="Image parameters", elem_id="params")
    page.M.update(source_group=source_group, vq_group=vq_group, temp=C["temp"])
    page.OUT["restore"] = restore_file
    page.named_inputs["restore_file"] = restore_file
    return Sidebar(use_seeds, restore_file, copy_link, shown_examples)


def _latents(page: Page) -> None:
    spec0, C = page.spec0, page.C
    top = max(spec0.num_ws, 1)
    C["psi"] = gr.Slider(
        **_slider(spec0, "truncation_psi", -1, 2, 1.0, PSI_STEP),
        step=PSI_STEP,
        **_declared("psi"),
        visible=spec0.has("truncation_psi"),
    )
    C["cutoff"] = gr.Slider(
        0,
        top,
        value=top,
        step=1,
        **_declared("cutoff", "max: all"),
        visible=spec0.has("truncation_cutoff"),
    )
    C["noise"] = gr.Radio(
        list(spec0.choices.get("noise_mode", ("const",))),
        value="const",
        **_declared("noise"),
        visible=spec0.has("noise_mode"),
    )
    # API callers may pick a class of any served model, not only of the one the page shows first.
    C["class"] = gr.Dropdown(
        _picker_choices(spec0),
        value=model_defaults(spec0)["class"],
        **_declared("class"),
        visible=spec0.class_picker,
        allow_custom_value=True,
    )
    page.M.update(psi=C["psi"], cutoff=C["cutoff"], noise=C["noise"], **{"class": C["class"]})


def triggers(page: Page) -> list[Any]:
    """The shared settings' events that re-render the tab shown (released sliders, Enter, changed choices)."""
    C = page.C
    out = [
        C["psi"].release,
        C["cutoff"].release,
        C["noise"].input,
        C["class"].input,
        C["temp"].release,
        C["top_k"].submit,
        C["top_k"].blur,  # Tab out of the box renders too
        C["top_p"].release,
        C["w"].submit,
    ]
    for c in page.extras:
        comp = C[c.key]
        if c.widget == "slider":
            out.append(comp.release)
        elif c.widget in ("checkbox", "dropdown"):
            out.append(comp.input)
        else:  # number and text boxes: Enter, or leaving the box
            out += [comp.submit, comp.blur]
    return out


def wire(page: Page, side: Sidebar) -> None:
    def use_seeds_action(v: dict[str, Any], _d: Any) -> dict[str, Any]:
        v["w"] = ""
        return {"set:w": "", **page.shown(v["tab"], v)}

    page.on([side.use_seeds.click], use_seeds_action)
    examples.wire(page, side.examples)
    # In the page only: the address holds every setting (written after each render).
    side.copy_link.click(None, None, None, js="() => gsCopyLink()", api_visibility="private")
