"""The Seed tab: one image from the seed (or the sidebar's latent); a random seed; region re-sampling for the VQ
families (the source image and the box of codes to keep)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ganserve.requests import MAX_SEED
from ganserve.ui.controls import MAX_SLIDERS
from ganserve.ui.model_controls import url_for
from ganserve.ui.page import Page
from ganserve.ui.panels import history
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


def render(page: Page, v: dict[str, Any], record: bool = True) -> dict[str, Any]:
    """The Seed tab's image for ``v``; ``record``: add it to the history (when the page has one)."""
    r = page.ex.seed_image(v)
    out = {"image": gr.update(value=r["image"], alt_text=r["alt"]), "params": r["params"], "status": r["status"]}
    if record and "history" in page.OUT:
        out.update(history.recorded(v.get("history"), r["image"], r["params"]))
    return out


def live_sliders(page: Page) -> list[Any]:
    """The sliders whose drag re-renders the Seed tab as they move: ψ, cutoff, the direction amounts and the
    declared fields shown as sliders."""
    C = page.C
    keys = ["psi", "cutoff", *(f"edit_{k}" for k in range(MAX_SLIDERS))]
    keys += [c.key for c in page.extras if c.widget == "slider"]
    return [C[k] for k in keys if k in C]


def live(page: Page, v: dict[str, Any]) -> dict[str, Any]:
    """A preview while a slider moves: the Seed tab only (a grid or a figure per pixel of drag would be too slow;
    their tabs render on release). Not recorded as a render of its own: the release that ends the drag is."""
    if v.get("tab") != "seed":
        return {}
    return {**render(page, v, record=False), "url": url_for(page.ex, {**v, "tab": "seed"})}


def wire(page: Page, t: SeedTab) -> None:
    # A hidden button the page's script clicks (the seed box's arrow keys).
    seed_go = gr.Button("render seed", visible="hidden", elem_id="seed-go")
    page.on([t.generate.click, page.C["seed"].submit, seed_go.click], page.render_tab("seed"))

    def random_seed(v: dict[str, Any], _d: Any) -> dict[str, Any]:
        v["seed"] = random.randint(0, MAX_SEED)
        return {"set:seed": v["seed"], **page.shown("seed", v), "tab": "seed"}

    page.on([t.random.click], random_seed)

    # Live preview: every movement of a slider is an ``input`` event; with one render in flight per page
    # (concurrency_limit=1) and ``always_last``, the moves made while one renders collapse to the latest value. No
    # direction strips per move: the release that ends the drag makes them (and renders the tab shown once more).
    def live_preview(v: dict[str, Any], _d: Any) -> dict[str, Any]:
        return live(page, v)

    gr.on([s.input for s in live_sliders(page)], page.page(live_preview), **page.event)
