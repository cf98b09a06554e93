"""The self-attention panel, for models whose request schema has ``attention`` (SAGAN today; the panel reads the
schema, never the family): a query pixel [y, x], chosen by a click on the Seed tab's image or in two number boxes,
and the generator's attention map of that pixel for the Seed tab's settings, shown enlarged (nearest) with the query
pixel marked. The map is one ordinary request with ``attention: {"query": [y, x]}`` through the page's backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from ganserve.ui import fields
from ganserve.ui.backend import BackendError
from ganserve.ui.model_controls import url_for
from ganserve.ui.page import Page
from ganserve.ui.widgets import _out_image

FIELDS = ("attention",)
SHOWN_PX = 256  # the enlarged map is about this wide: a 16 px map at 16x, a 128 px map at 2x
MARK = (255, 0, 0)  # the query pixel's outline


@dataclass
class AttentionPanel:
    group: Any
    y: Any
    x: Any
    button: Any
    click_go: Any
    image: Any
    caption: Any


def scale(resolution: int) -> int:
    """The whole-number factor the map is enlarged by (at least 1)."""
    return max(1, SHOWN_PX // max(resolution, 1))


def marked(map_: np.ndarray, y: int, x: int, factor: int) -> np.ndarray:
    """The map [H, W, C] enlarged ``factor`` x (nearest), RGB, with the query pixel's cell outlined in red."""
    rgb = np.repeat(map_, 3, axis=2) if map_.shape[2] == 1 else map_[:, :, :3]
    big = rgb.repeat(factor, axis=0).repeat(factor, axis=1).copy()
    top, left, end_y, end_x = y * factor, x * factor, (y + 1) * factor - 1, (x + 1) * factor - 1
    big[top, left : end_x + 1] = big[end_y, left : end_x + 1] = MARK
    big[top : end_y + 1, left] = big[top : end_y + 1, end_x] = MARK
    return big


def query(page: Page, v: dict[str, Any]) -> tuple[int, int]:
    """The boxes' [y, x], checked against the model's resolution (errors name the field)."""
    info = page.ex.info(v.get("model"))
    if "attention" not in info.schema.get("properties", {}):
        raise BackendError(f"model {info.name} has no self-attention map", "attention")
    top = max(info.resolution - 1, 0)
    out = []
    for key, name in (("attn_y", "y"), ("attn_x", "x")):
        val = v.get(key)
        try:
            num = float(val)
        except (TypeError, ValueError):
            num = -1.0  # refused below, with the same message
        if not num.is_integer() or not 0 <= num <= top:
            raise BackendError(f"{name} must be a whole number from 0 to {top}, got {val!r}", "attention.query")
        out.append(int(num))
    return out[0], out[1]


def attention_map(page: Page, v: dict[str, Any]) -> dict[str, Any]:
    """The map of the boxes' query pixel for the Seed tab's settings: the map as the backend returns it (``map``),
    the enlarged, marked picture (``shown``), its params, caption and status."""
    ex = page.ex
    y, x = query(page, v)
    _, spec, common = ex.common(v)
    (pic,) = ex.generate(v.get("model"), {**ex.source(spec, v), **common, "attention": {"query": [y, x]}})
    (raw,) = ex.save([pic])
    factor = scale(pic.array().shape[0])
    shown = ex.save_array(f"attention-{y}-{x}-x{factor}.png", marked(pic.array(), y, x, factor), pic.params)
    start = f"seed {pic.params['seeds'][0]}" if "seeds" in pic.params else pic.params.get("w", "the latent")
    caption = (
        f"Self-attention of pixel [y {y}, x {x}] (red box) in the image of {start}: white where that pixel attends "
        f"most, black where least (the attention weights over the key positions, scaled to their maximum; shown "
        f"{factor}x, nearest)."
    )
    return {"map": raw, "shown": shown, "params": pic.params, "caption": caption, "status": f"{v.get('model')}: "
            f"attention of [{y}, {x}], {start}"}  # fmt: skip


def build(page: Page) -> AttentionPanel:
    """The panel (call in the main column, under the tabs); shown for models that declare ``attention``."""
    top = max(page.info0.resolution - 1, 1) if page.info0 else 1
    with gr.Accordion(
        fields.label_of("attention"), open=True, visible=page.spec0.has("attention"), elem_id="attention-panel"
    ) as group:
        gr.Markdown("Click a pixel of the Seed tab's image, or type its row and column, to see where it attends.")
        with gr.Row():
            # No bounds on the boxes: a value out of range gets the field-named message of ``query``.
            page.C["attn_y"] = gr.Number(0, precision=None, label="Query row (y)", info=f"0 to {top}", elem_id="attn-y")
            page.C["attn_x"] = gr.Number(
                0, precision=None, label="Query column (x)", info=f"0 to {top}", elem_id="attn-x"
            )
            button = gr.Button("Show attention", elem_id="attn-go")
        image = _out_image("Attention map", "The attention map of the query pixel", "attn-image")
        caption = gr.Markdown("", elem_id="attn-caption")
        # Where the page's script puts a click on the Seed image (CLICK_JS), and the button it presses.
        click = gr.Textbox("", visible="hidden", elem_id="attn-click")
        click_go = gr.Button("attention at the click", visible="hidden", elem_id="attn-click-go")
    page.OUT.update(attn_image=image, attn_caption=caption)
    page.named_inputs["attn_click"] = click
    return AttentionPanel(group, page.C["attn_y"], page.C["attn_x"], button, click_go, image, caption)


def render(page: Page, v: dict[str, Any]) -> dict[str, Any]:
    """The map's updates, keyed as OUT; the page address follows (the query is in it)."""
    r = attention_map(page, v)
    return {
        "url": url_for(page.ex, v),
        "attn_image": gr.update(value=r["shown"], alt_text=r["caption"]),
        "attn_caption": r["caption"],
        "params": r["params"],
        "status": r["status"],
    }


def arrived(page: Page, wanted: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
    """A link that names a query pixel (``attn_y`` / ``attn_x``) draws its map on arrival, not only fills the boxes:
    the map's image and caption, keyed as OUT (the tab's render keeps the URL, params and status). A refused query
    leaves the panel empty with its reason in the caption."""
    if not ({"attn_y", "attn_x"} & set(wanted)) or not page.ex.spec(v.get("model")).has("attention"):
        return {}
    try:
        r = render(page, v)
    except (BackendError, ValueError) as e:
        return {"attn_caption": f"Not drawn: {e}"}
    return {k: r[k] for k in ("attn_image", "attn_caption")}


# Gradio's image `select` assumes an image larger than its box is shown shrunk and one smaller at its natural size
# (its scale is capped at 1), so on our enlarged, pixelated images its coordinates are wrong. The page's script
# measures the click against the shown size instead and sends "y,x,height,width" in the file's pixels.
CLICK_JS = """() => {
  if (window.gsAttnClick) return;
  window.gsAttnClick = true;
  const setter = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set;
  document.addEventListener('click', (e) => {
    const img = e.target instanceof HTMLImageElement && e.target.closest('#image') ? e.target : null;
    const panel = document.querySelector('#attention-panel');
    if (!img || !img.naturalWidth || !panel || panel.offsetParent === null) return;
    const r = img.getBoundingClientRect();
    const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);  // object-fit: contain
    const x = Math.floor((e.clientX - r.left - (r.width - img.naturalWidth * s) / 2) / s);
    const y = Math.floor((e.clientY - r.top - (r.height - img.naturalHeight * s) / 2) / s);
    if (x < 0 || y < 0 || x >= img.naturalWidth || y >= img.naturalHeight) return;
    const box = document.querySelector('#attn-click textarea');
    setter.call(box, `${y},${x},${img.naturalHeight},${img.naturalWidth}`);
    box.dispatchEvent(new Event('input', { bubbles: true }));
    setTimeout(() => document.querySelector('#attn-click-go')?.click(), 0);
  }, true);
}"""


def clicked(page: Page, v: dict[str, Any], text: Any) -> tuple[int, int]:
    """A click "y,x,height,width" (in the shown file's pixels) -> [y, x] in the model's pixels."""
    res = page.ex.info(v.get("model")).resolution
    try:
        y, x, height, width = (int(t) for t in str(text).split(","))
    except ValueError:
        raise BackendError(f"expected y,x,height,width, got {text!r}", "attention.query") from None
    return min(y * res // max(height, 1), res - 1), min(x * res // max(width, 1), res - 1)


def wire(page: Page, t: AttentionPanel) -> None:
    def show(v: dict[str, Any], _d: Any) -> dict[str, Any]:
        return render(page, v)

    def click(v: dict[str, Any], _d: Any) -> dict[str, Any]:
        if not page.ex.spec(v.get("model")).has("attention"):
            return {}
        y, x = clicked(page, v, v.get("attn_click"))
        v.update(attn_y=y, attn_x=x)
        return {"set:attn_y": y, "set:attn_x": x, **render(page, v)}

    page.on([t.button.click, t.y.submit, t.x.submit], show)
    page.on([t.click_go.click], click)
    page.loaded.change(None, None, None, js=CLICK_JS, api_visibility="private")  # once the page is set up
    # A model switch shows the panel for models that declare the field, with their pixel range.
    page.C["model"].change(_for_model(page), page.C["model"], [t.group, t.y, t.x], api_visibility="private")


def _for_model(page: Page) -> Any:
    def update(name: Any) -> tuple:
        try:
            info = page.ex.info(name)
        except Exception:
            return gr.skip(), gr.skip(), gr.skip()
        top = max(info.resolution - 1, 1)
        shown = "attention" in info.schema.get("properties", {})
        return gr.update(visible=shown), gr.update(info=f"0 to {top}"), gr.update(info=f"0 to {top}")

    return update
