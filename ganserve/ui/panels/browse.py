"""The Seed browser tab: 64 seeds a page; a click sends a seed to the Seed tab, the style-mixing rows or columns, or
an end of the interpolation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ganserve.requests import MAX_SEED
from ganserve.ui.actions import BROWSE_PAGE, number, seeds_text
from ganserve.ui.backend import BackendError
from ganserve.ui.model_controls import _send_choices, url_for
from ganserve.ui.page import Page
from ganserve.ui.restore import format_seeds
from ganserve.ui.widgets import _gallery

FIELDS = ()


@dataclass
class BrowseTab:
    tab: Any
    previous: Any
    next: Any
    gallery: Any
    params: Any


def build(page: Page) -> BrowseTab:
    """The tab (call inside the page's gr.Tabs)."""
    C = page.C
    with gr.Tab("Seed browser", id="browse") as tab:
        params = gr.State([])  # inside the tab: a Tabs child that is no tab confuses the tab buttons
        with gr.Row():
            prev_btn = gr.Button(f"◀ Previous {BROWSE_PAGE}", elem_id="browse-prev")
            C["browse"] = gr.Number(
                0, precision=None, label="First seed of the page (Enter: show)", elem_id="browse-start"
            )
            next_btn = gr.Button(f"Next {BROWSE_PAGE} ▶", elem_id="browse-next")
        C["send_to"] = gr.Radio(
            _send_choices(page.spec0), value="seed", label="A click on a seed sends it to", elem_id="send-to"
        )
        gallery = _gallery("Seeds", "browse-gallery", allow_preview=False)
    page.tab_items["browse"] = tab
    page.M["send_to"] = C["send_to"]
    page.OUT.update(browse_gallery=gallery, browse_params=params)
    page.other_inputs.append(params)
    page.tab_outputs["browse"] = [gallery]
    page.progress_on.append(gallery)
    page.renderers["browse"] = lambda v: render(page, v)
    return BrowseTab(tab, prev_btn, next_btn, gallery, params)


def render(page: Page, v: dict[str, Any]) -> dict[str, Any]:
    r = page.ex.browse(v)
    return {k: r[k] for k in ("browse_gallery", "browse_params", "params", "status")}


def _page_step(page: Page, delta: int) -> Callable[..., dict[str, Any]]:
    def action(v: dict[str, Any], _d: Any) -> dict[str, Any]:
        start = int(number(v.get("browse", 0), "first seed", 0, MAX_SEED, whole=True))
        v["browse"] = min(max(start + delta, 0), MAX_SEED - BROWSE_PAGE + 1)
        return {"set:browse": v["browse"], **page.shown("browse", v), "tab": "browse"}

    action.__name__ = "browse_previous" if delta < 0 else "browse_next"
    return action


def _send(page: Page, t: BrowseTab) -> Callable[..., dict[str, Any]]:
    def send(v: dict[str, Any], d: dict[Any, Any], evt: gr.SelectData) -> dict[str, Any]:
        page_params = d.get(t.params) or []
        if not 0 <= evt.index < len(page_params):
            raise BackendError("that seed is no longer on the page: show the page again", "seed")
        s = int(page_params[evt.index]["seeds"][0])
        target = v.get("send_to") or "seed"
        if target == "seed":
            v.update(seed=s, w="")
            return {
                "set:seed": s,
                "set:w": "",
                **page.shown("seed", v),
                "tabs": gr.Tabs(selected="seed"),
                "tab": "seed",
            }
        if target in ("rows", "cols"):
            current = [] if not str(v.get(target) or "").strip() else seeds_text(v[target], target)
            new = format_seeds(current if s in current else [*current, s])
            v[target] = new
            where = "row" if target == "rows" else "column"
            note = " (the sidebar's latent is the row while it is set)" if target == "rows" and v.get("w") else ""
            return {
                f"set:{target}": new,
                "status": f"Seed {s} added to the style-mixing {where} seeds: {new}{note}.",
                "url": url_for(page.ex, v),
            }
        v[target] = s
        end = "start" if target == "from" else "end"
        note = " (the sidebar's latent is the start while it is set)" if target == "from" and v.get("w") else ""
        return {f"set:{target}": s, "status": f"Seed {s} is the interpolation {end}{note}.", "url": url_for(page.ex, v)}

    return send


def wire(page: Page, t: BrowseTab) -> None:
    page.on([t.previous.click], _page_step(page, -BROWSE_PAGE))
    page.on([t.next.click], _page_step(page, BROWSE_PAGE))
    page.on([page.C["browse"].submit], page.render_tab("browse"))
    page.then_strips(gr.on([t.gallery.select], page.page_select(_send(page, t)), **page.event))
