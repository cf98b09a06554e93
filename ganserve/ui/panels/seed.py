"""The Seed tab: one image from the seed (or the sidebar's latent); a random seed; region re-sampling for the VQ
families (the source image and the box of codes to keep)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ganserve.requests import MAX_SEED
from ganserve.ui.page import Page
from ganserve.ui.widgets import _out_image

FIELDS = ("seeds", "image", "keep")


@dataclass
class SeedTab:
    tab: Any
    image: Any
    random: Any
    generate: Any


def build(page: Page) -> SeedTab:
    """The tab (call inside the page's gr.Tabs)."""
    with gr.Tab("Seed", id="seed") as tab:
        with gr.Row():
            page.C["seed"] = gr.Number(
                0, precision=None, label="Seed", info="Enter: render; ↑ / ↓: seed ± 1", elem_id="seed"
            )
            rand_btn = gr.Button("Random seed", elem_id="random")
            gen_btn = gr.Button("Generate", variant="primary", elem_id="generate")
        image = _out_image("Image", "The generated image (Generate to make one)", "image")
        with gr.Accordion("Region re-sampling", open=False, visible=page.spec0.region_resampling) as region:
            region_image = gr.Image(
                type="filepath",
                format="png",
                sources=["upload"],
                label="Source image (its codes outside the box are re-sampled)",
            )
            region_box = gr.Textbox("0,0,4,4", label="Keep box: top, left, bottom, right (in codes)")
    page.tab_items["seed"] = tab
    page.M["region"] = region
    page.OUT["image"] = image
    page.named_inputs.update(region_image=region_image, region_box=region_box)
    page.tab_outputs["seed"] = [image]
    page.progress_on.append(image)
    page.renderers["seed"] = lambda v: render(page, v)
    return SeedTab(tab, image, rand_btn, gen_btn)


def render(page: Page, v: dict[str, Any]) -> dict[str, Any]:
    r = page.ex.seed_image(v)
    return {"image": gr.update(value=r["image"], alt_text=r["alt"]), "params": r["params"], "status": r["status"]}


def wire(page: Page, t: SeedTab) -> None:
    # A hidden button the page's script clicks (the seed box's arrow keys).
    seed_go = gr.Button("render seed", visible="hidden", elem_id="seed-go")
    page.on([t.generate.click, page.C["seed"].submit, seed_go.click], page.render_tab("seed"))

    def random_seed(v: dict[str, Any], _d: Any) -> dict[str, Any]:
        v["seed"] = random.randint(0, MAX_SEED)
        return {"set:seed": v["seed"], **page.shown("seed", v), "tab": "seed"}

    page.on([t.random.click], random_seed)
