"""The Interpolation tab: frames from one seed (or the sidebar's latent) to another, in W or Z, and for
class-conditional models to another class: a labelled strip, the frames and a GIF."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ganserve.ui.actions import MAX_FRAMES
from ganserve.ui.model_controls import _class_choices, _space_choices, _space_value
from ganserve.ui.page import Page
from ganserve.ui.widgets import IMAGE_BUTTONS, _gallery, _selected_params

FIELDS = ("interpolate",)
RESULTS = ("ip_gallery", "ip_file", "ip_strip", "ip_view", "ip_params", "params", "status")


@dataclass
class InterpTab:
    tab: Any
    button: Any
    gallery: Any
    gif: Any
    file: Any
    strip: Any
    params: Any


def build(page: Page) -> InterpTab:
    """The tab (call inside the page's gr.Tabs)."""
    C, spec0 = page.C, page.spec0
    with gr.Tab("Interpolation", id="interp", visible=spec0.has("interpolate")) as tab:
        params = gr.State([])  # inside the tab: a Tabs child that is no tab confuses the tab buttons
        with gr.Row():
            C["from"] = gr.Number(0, precision=None, label="From seed", elem_id="interp-from")
            C["to"] = gr.Number(1, precision=None, label="To seed", elem_id="interp-to")
            C["frames"] = gr.Slider(2, MAX_FRAMES, value=8, step=1, label="Frames", elem_id="interp-frames")
            C["space"] = gr.Radio(
                _space_choices(spec0), value=_space_value(spec0), label="Space", elem_id="interp-space"
            )
            C["to_class"] = gr.Dropdown(
                [("same class", -1), *_class_choices(spec0)],
                value=-1,
                label="To class",
                visible=spec0.class_interpolation,
                elem_id="interp-to-class",
            )
        button = gr.Button("Interpolate", variant="primary", elem_id="interp-generate")
        view = gr.HTML("", elem_id="interp-strip")
        gallery = _gallery("Frames", "interp-gallery")
        with gr.Row():
            gif = gr.Image(
                type="filepath",
                label="Animation",
                interactive=False,
                buttons=IMAGE_BUTTONS,
                alt_text="Animation of the frames",
                elem_id="interp-gif",
                elem_classes=["gs-int", "gs-out", "gs-pixelated"],
            )
            file = gr.File(label="Download GIF")
        strip = gr.Image(format="png", type="filepath", label="Strip", interactive=False, visible=False)
    page.tab_items["interp"] = tab
    page.M.update(interp_tab=tab, to_class=C["to_class"], space=C["space"])
    page.OUT.update(ip_gallery=gallery, ip_gif=gif, ip_file=file, ip_strip=strip, ip_view=view, ip_params=params)
    page.other_inputs.append(params)
    page.tab_outputs["interp"] = [gallery]
    page.progress_on.append(view)
    page.renderers["interp"] = lambda v: render(page, v)
    return InterpTab(tab, button, gallery, gif, file, strip, params)


def render(page: Page, v: dict[str, Any]) -> dict[str, Any]:
    r = page.ex.interpolate(v)
    return {**{k: r[k] for k in RESULTS}, "ip_gif": gr.update(value=r["ip_gif"], alt_text=r["gif_alt"])}


def wire(page: Page, t: InterpTab) -> None:
    C = page.C
    triggers = [
        t.button.click,
        C["from"].submit,
        C["to"].submit,
        C["frames"].release,
        C["space"].input,
        C["to_class"].input,
    ]
    page.on(triggers, page.render_tab("interp"))
    t.gallery.select(_selected_params, t.params, page.OUT["params"], api_visibility="undocumented")
