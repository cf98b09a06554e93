"""The Style mixing tab: StyleGAN2-ADA's figure (column seeds give the chosen layers to the row seeds), labelled, and
the mixes one by one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ganserve.ui.page import Page
from ganserve.ui.widgets import _gallery, _selected_params

FIELDS = ("style_mix",)


@dataclass
class MixTab:
    tab: Any
    button: Any
    gallery: Any
    params: Any


def build(page: Page) -> MixTab:
    """The tab (call inside the page's gr.Tabs)."""
    C, spec0, last_w = page.C, page.spec0, page.last_w
    with gr.Tab("Style mixing", id="mix", visible=spec0.has("style_mix")) as tab:
        params = gr.State([])  # inside the tab: a Tabs child that is no tab confuses the tab buttons
        with gr.Row():
            C["rows"] = gr.Textbox("0-3", label="Row seeds (take the other layers)", max_lines=1, elem_id="mix-rows")
            C["cols"] = gr.Textbox(
                "10-13", label="Column seeds (give the chosen layers)", max_lines=1, elem_id="mix-cols"
            )
        with gr.Row():
            presets = spec0.mix_presets
            custom = presets[0] == "custom"
            C["layers"] = gr.Radio(
                list(presets), value=presets[0], label="Layers from the column seeds", elem_id="mix-layers"
            )
            C["first"] = gr.Slider(
                0, last_w, value=0, step=1, label="Custom first layer", visible=custom, elem_id="mix-first"
            )
            C["last"] = gr.Slider(
                0,
                last_w,
                value=min(3, last_w),
                step=1,
                label="Custom last layer (inclusive)",
                visible=custom,
                elem_id="mix-last",
            )
        button = gr.Button("Mix styles", variant="primary", elem_id="mix-generate")
        view = gr.HTML("", elem_id="mix-view")
        figure = gr.Image(
            format="png",
            type="filepath",
            label="Style mixing figure",
            interactive=False,
            visible=False,
            elem_id="mix-figure",
        )
        gallery = _gallery("Mixed images", "mix-gallery")
    page.tab_items["mix"] = tab
    page.M.update(mix_tab=tab, first=C["first"], last=C["last"], layers=C["layers"])
    page.OUT.update(mix_figure=figure, mix_view=view, mix_gallery=gallery, mix_params=params)
    page.other_inputs.append(params)
    page.tab_outputs["mix"] = [gallery]
    page.progress_on.append(view)
    page.renderers["mix"] = lambda v: render(page, v)
    return MixTab(tab, button, gallery, params)


def render(page: Page, v: dict[str, Any]) -> dict[str, Any]:
    r = page.ex.style_mix(v)
    return {k: r[k] for k in ("mix_figure", "mix_view", "mix_gallery", "mix_params", "params", "status")}


def wire(page: Page, t: MixTab) -> None:
    C = page.C
    page.on(
        [t.button.click, C["rows"].submit, C["cols"].submit, C["first"].release, C["last"].release],
        page.render_tab("mix"),
    )

    def mix_preset(v: dict[str, Any], _d: Any) -> dict[str, Any]:
        custom = v.get("layers") == "custom"
        return {"set:first": gr.update(visible=custom), "set:last": gr.update(visible=custom), **page.shown("mix", v)}

    page.on([C["layers"].input], mix_preset)
    t.gallery.select(_selected_params, t.params, page.OUT["params"], api_visibility="undocumented")
