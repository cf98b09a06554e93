"""The Seed grid tab: a grid of seeds, or a class-by-seed grid (one row per class) for class-conditional models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ganserve.ui.model_controls import _class_choices
from ganserve.ui.page import Page
from ganserve.ui.widgets import _gallery, _selected_params

FIELDS = ("classes",)


@dataclass
class GridTab:
    tab: Any
    button: Any
    gallery: Any
    params: Any


def build(page: Page) -> GridTab:
    """The tab (call inside the page's gr.Tabs)."""
    C = page.C
    with gr.Tab("Seed grid", id="grid") as tab:
        params = gr.State([])  # inside the tab: a Tabs child that is no tab confuses the tab buttons
        with gr.Row():
            C["grid"] = gr.Textbox(
                "0-15", label="Seeds (e.g. 0-15 or 1,5,9; Enter: render)", elem_id="grid-seeds", max_lines=1
            )
            button = gr.Button("Generate grid", variant="primary", elem_id="grid-generate")
        C["grid_classes"] = gr.Dropdown(
            _class_choices(page.spec0),
            value=[],
            multiselect=True,
            label="Classes, one row each (class-by-seed grid; empty: the sidebar's class)",
            visible=page.spec0.class_grid,
            elem_id="grid-classes",
        )
        gallery = _gallery("Grid", "grid-gallery")
        files = gr.File(
            label="Download the whole grid: one PNG, and a zip of its images with their parameters",
            file_count="multiple",
            interactive=False,
            elem_id="grid-download",
        )
    page.tab_items["grid"] = tab
    page.M["grid_classes"] = C["grid_classes"]
    page.OUT.update(grid_gallery=gallery, grid_params=params, grid_files=files)
    page.other_inputs.append(params)
    page.tab_outputs["grid"] = [gallery]
    page.progress_on.append(gallery)
    page.renderers["grid"] = lambda v: render(page, v)
    return GridTab(tab, button, gallery, params)


def render(page: Page, v: dict[str, Any]) -> dict[str, Any]:
    r = page.ex.grid(v)
    return {
        "grid_gallery": gr.update(value=r["grid_gallery"], columns=r["grid_columns"] or 8),
        "grid_params": r["grid_params"],
        "grid_files": r["grid_files"],
        "params": r["params"],
        "status": r["status"],
    }


def wire(page: Page, t: GridTab) -> None:
    page.on([t.button.click, page.C["grid"].submit, page.C["grid_classes"].input], page.render_tab("grid"))
    t.gallery.select(_selected_params, t.params, page.OUT["params"], api_visibility="undocumented")
