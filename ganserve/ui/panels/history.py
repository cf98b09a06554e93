"""A history of the Seed tab's renders: the last ``HISTORY_SIZE`` images as a strip under the Seed image. A click on
one restores its settings (the restore path a dropped PNG takes) or shows it as A or B in a side-by-side slider.

The history lives in the browser session (a ``gr.State``), never in the server: each entry is the image's path and
its parameters, at most ``HISTORY_SIZE`` of them, oldest out. Live previews while a slider is dragged are not
recorded; the render when it is released is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ganserve.ui.page import Page
from ganserve.ui.panels.lifecycle import restored
from ganserve.ui.restore import restore_from_params

FIELDS: tuple[str, ...] = ()  # no request field: a view of past renders
HISTORY_SIZE = 12
MODES = (("Restore its settings", "restore"), ("Show as A", "A"), ("Show as B", "B"))
# Small thumbnails in a row. Gradio's grid gives a lone render the full width (a square as tall as the page is wide),
# which pushed the directions panel so far down that its strips, lazy-loaded images, were never loaded.
CSS = """
#history-strip .grid-container { grid-template-columns: repeat(auto-fill, 96px) !important;
  grid-template-rows: none !important; grid-auto-rows: auto !important; }
#history-strip .grid-wrap { min-height: 0 !important; }
#history-strip .caption-label { white-space: normal !important; }
"""

Entry = dict[str, Any]  # {"image": path, "params": the image's parameters}


@dataclass
class HistoryPanel:
    strip: Any
    mode: Any
    compare: Any


def pushed(history: list[Entry] | None, image: str, params: dict[str, Any], size: int = HISTORY_SIZE) -> list[Entry]:
    """``history`` (newest first) with this render in front, at most ``size`` long. A render of the same parameters
    as the newest (the release after a drag, Generate again) is not added twice."""
    old = list(history or [])
    if old and old[0]["params"] == params:
        return old
    return [{"image": image, "params": params}, *old][:size]


def caption(params: dict[str, Any]) -> str:
    """A short label: the seed (or latent), ψ and the number of edits."""
    bits = [f"seed {params['seeds'][0]}" if params.get("seeds") else str(params.get("w", "?"))]
    if params.get("truncation_psi") is not None:
        bits.append(f"ψ {params['truncation_psi']:g}")
    if params.get("class") is not None:
        bits.append(f"class {params['class']}")
    if params.get("edits"):
        n = len(params["edits"])
        bits.append(f"{n} edit{'s' if n != 1 else ''}")
    return " · ".join(bits)


def strip_value(history: list[Entry] | None) -> list[tuple[str, str]]:
    return [(e["image"], caption(e["params"])) for e in history or []]


def recorded(history: list[Entry] | None, image: str, params: dict[str, Any]) -> dict[str, Any]:
    """The updates (keyed as the page's OUT) that add a Seed-tab render to the history."""
    new = pushed(history, image, params)
    return {"history": new, "history_strip": strip_value(new)}


def compared(ab: list[Entry | None], which: str, entry: Entry) -> dict[str, Any]:
    """Updates that put ``entry`` on side ``which`` (A or B) of the comparison; the slider shows once both are set."""
    pair = list(ab or [None, None])
    pair["AB".index(which)] = entry
    out: dict[str, Any] = {"ab": pair}
    a, b = pair
    if a and b:
        out["compare"] = gr.update(
            value=(a["image"], b["image"]), label=f"A: {caption(a['params'])} | B: {caption(b['params'])}", visible=True
        )
    return out


def build(page: Page, seed_tab: Any) -> HistoryPanel:
    """The strip, what a click does and the A/B slider, appended to the Seed tab."""
    with seed_tab, gr.Accordion(f"History (the last {HISTORY_SIZE} renders)", open=True, elem_id="history"):
        mode = gr.Radio(
            [label for label, _ in MODES], value=MODES[0][0], label="A click on a render", elem_id="history-mode"
        )
        strip = gr.Gallery(
            label="Newest first",
            columns=HISTORY_SIZE,
            rows=1,
            format="png",
            height="auto",
            allow_preview=False,
            interactive=False,
            elem_id="history-strip",
            elem_classes=["gs-gallery", "gs-pixelated"],
        )
        compare = gr.ImageSlider(
            type="filepath",
            format="png",
            image_mode=None,
            label="A | B",
            interactive=False,
            visible=False,
            elem_id="history-compare",
            elem_classes=["gs-pixelated"],
        )
        # Made inside the tab: a State directly under gr.Tabs would shift the tab buttons' names in the browser.
        history, ab = gr.State([]), gr.State([None, None])
    page.OUT.update(history=history, history_strip=strip, ab=ab, compare=compare)
    page.named_inputs.update(history=history, ab=ab, history_mode=mode)
    return HistoryPanel(strip, mode, compare)


def picked(page: Page, v: dict[str, Any], index: int) -> dict[str, Any]:
    """A click on history entry ``index``: restore and render it, or show it as A or B."""
    history = v.get("history") or []
    if not 0 <= index < len(history):
        raise ValueError(f"Invalid history entry: {index} (the history holds {len(history)})")
    entry = history[index]
    mode = dict(MODES).get(v.get("history_mode"), "restore")
    if mode != "restore":
        return compared(v.get("ab"), mode, entry)
    r = restore_from_params(entry["params"])
    upd, v2 = restored(page, r, v)
    return {**upd, **page.shown("seed", v2), "status": f"Restored from the history: {r.summary()}."}


def wire(page: Page, t: HistoryPanel) -> None:
    def pick(v: dict[str, Any], _d: Any, evt: gr.SelectData) -> dict[str, Any]:
        return picked(page, v, int(evt.index))

    page.then_strips(gr.on([t.strip.select], page.page_select(pick), **page.event))
