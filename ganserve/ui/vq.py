"""The VQ tab of the explorer: upload an image, pick or paint the region whose codes to keep, and see the
reconstruction, the re-samples and the code map side by side. It appears for any model whose request schema has
``image`` and ``keep`` (VQ-GAN, ViT-VQGAN) and uses the sidebar's class and sampling controls like the other tabs.

The reconstruction request (``image`` alone) returns the image's codes in its parameters, which also gives the code
grid's shape; the region is then sent as ``keep``: a half or a box of the grid, or a mask made from the painted
strokes (a code is kept when any pixel of its cell is painted).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from ganserve.ui.backend import BackendError, Picture

REGIONS = ("top half", "bottom half", "left half", "right half", "box", "painted")


def keep_field(region: str, box_text: str | None, painted: np.ndarray | None, grid: tuple[int, int]) -> dict:
    """The request's ``keep`` for the chosen region; ``painted``: a bool [H, W] of painted pixels (any size)."""
    if region in REGIONS[:4]:
        return {"half": region.split()[0]}
    if region == "box":
        try:
            box = [int(v) for v in str(box_text or "").replace(" ", "").split(",")]
        except ValueError:
            box = []
        if len(box) != 4:
            raise BackendError("expected four whole numbers: top, left, bottom, right (codes, end exclusive)",
                               "keep.box")  # fmt: skip
        return {"box": box}
    if region == "painted":
        if painted is None or not painted.any():
            raise BackendError("paint the region to keep on the image first", "keep.mask")
        return {"mask": cells_touched(painted, grid).tolist()}
    raise BackendError(f"unknown region '{region}'", "keep")


def cells_touched(painted: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """bool [H, W] -> bool [h, w]: a code cell is kept when any painted pixel falls inside it."""
    h, w = grid
    ys, xs = np.nonzero(painted)
    out = np.zeros((h, w), dtype=bool)
    out[(ys * h) // painted.shape[0], (xs * w) // painted.shape[1]] = True
    return out


def painted_pixels(editor_value: Any) -> np.ndarray | None:
    """The strokes of a gr.ImageEditor value (its layers' alpha), or None."""
    if not isinstance(editor_value, dict):
        return None
    masks = []
    for layer in editor_value.get("layers") or []:
        a = np.asarray(layer)
        if a.ndim == 3 and a.shape[2] == 4:
            masks.append(a[:, :, 3] > 0)
    return np.logical_or.reduce(masks) if masks else None


def editor_background(editor_value: Any) -> np.ndarray | None:
    if isinstance(editor_value, dict) and editor_value.get("background") is not None:
        return np.asarray(editor_value["background"])
    if isinstance(editor_value, np.ndarray):
        return editor_value
    return None


def png_b64(image: np.ndarray) -> str:
    a = image[:, :, :3] if image.ndim == 3 and image.shape[2] == 4 else image
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def code_map(codes: list[list[int]], num_codes: int | None = None, keep: list[list[bool]] | None = None,
             cell: int = 24) -> np.ndarray:  # fmt: skip
    """The code grid as a picture: one colour per code index (a fixed hash), kept cells framed in white."""
    c = np.asarray(codes, dtype=np.int64)
    rng = np.random.default_rng(0)
    palette = rng.integers(40, 256, size=(max(int(num_codes or 0), int(c.max()) + 1), 3), dtype=np.uint8)
    img = np.repeat(np.repeat(palette[c], cell, axis=0), cell, axis=1)
    img[::cell, :] = 0
    img[:, ::cell] = 0
    if keep is not None:
        k = np.asarray(keep, dtype=bool)
        for y, x in zip(*np.nonzero(k)):
            y0, x0 = y * cell, x * cell
            img[y0 : y0 + 2, x0 : x0 + cell] = img[y0 + cell - 2 : y0 + cell, x0 : x0 + cell] = 255
            img[y0 : y0 + cell, x0 : x0 + 2] = img[y0 : y0 + cell, x0 + cell - 2 : x0 + cell] = 255
    return img


@dataclass
class VQTab:
    """The tab's components; ``wire`` connects them once the page's shared controls exist."""

    tab: Any
    editor: Any
    region: Any
    box: Any
    seeds: Any
    button: Any
    gallery: Any
    codes_image: Any

    def wire(
        self,
        backend: Any,
        model: Any,
        common: list[Any],
        request: Callable[..., tuple[Any, dict[str, Any]]],
        save: Callable[[list[Picture]], list[str]],
        save_array: Callable[[str, np.ndarray, dict[str, Any]], str],
        seeds_text: Callable[[str, str], list[int]],
        readable: Callable[[Callable[..., Any]], Callable[..., Any]],
        params_box: Any,
        status: Any,
    ) -> None:
        @readable
        def run(name, editor_value, region, box_text, seeds, *common_values):
            image = editor_background(editor_value)
            if image is None:
                raise BackendError("upload an image to reconstruct", "image")
            b64 = png_b64(image)
            # The reconstruction is the image's codes alone: no seeds, class or sampling settings (refused if sent).
            (recon,) = backend.generate(name, {"image": b64})
            codes = recon.params.get("codes")
            if not codes:
                raise BackendError("the model returned no codes for the image", "image")
            grid = (len(codes), len(codes[0]))
            keep = keep_field(region, box_text, painted_pixels(editor_value), grid)
            _, req = request(name, tuple(common_values), seeds=seeds_text(seeds, "seeds"), image=b64, keep=keep)
            samples = backend.generate(name, req)
            paths = save([recon, *samples])
            gallery = [(paths[0], "reconstruction")]
            gallery += [(p, f"seed {s.params['seeds'][0]}") for p, s in zip(paths[1:], samples)]
            kept = _keep_grid(keep, grid)
            cmap = save_array(f"{name}-codes.png", code_map(codes, keep=kept), {"codes": codes})
            params = [recon.params, *[s.params for s in samples]]
            return gallery, cmap, params, f"{name}: reconstruction + {len(samples)} re-samples, keeping {region}"

        inputs = [model, self.editor, self.region, self.box, self.seeds, *common]
        outputs = [self.gallery, self.codes_image, params_box, status]

        def page_run(*args: Any) -> Any:
            """The page's button: a refusal is a warning and the status line; the last pictures stay, no badges."""
            try:
                return run(*args)
            except gr.Error as e:
                gr.Warning(str(e.message), title="Not rendered")
                return {status: f"⚠ {e.message}"}

        self.button.click(page_run, inputs, outputs, api_visibility="private")
        # The API endpoint answers errors as errors (AppError for gradio_client).
        gr.Button(visible=False).click(run, inputs, outputs, api_name="vq_resample")
        # The tab's visibility follows the model with the page's other controls (ganserve.ui.app).


def _keep_grid(keep: dict, grid: tuple[int, int]) -> list[list[bool]]:
    h, w = grid
    if "mask" in keep:
        return keep["mask"]
    m = np.zeros((h, w), dtype=bool)
    if "box" in keep:
        t, left, b, r = keep["box"]
        m[t:b, left:r] = True
    else:
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        sl = {"top": np.s_[:h2, :], "bottom": np.s_[h2:, :], "left": np.s_[:, :w2], "right": np.s_[:, w2:]}
        m[sl[keep["half"]]] = True
    return m.tolist()


def vq_tab(visible: bool) -> VQTab:
    """Build the tab's components (call inside the page's gr.Tabs)."""
    with gr.Tab("VQ: reconstruct & re-sample", id="vq", visible=visible) as tab:
        with gr.Row():
            editor = gr.ImageEditor(
                type="numpy",
                image_mode="RGBA",
                sources=["upload"],
                label="Image (paint the region to keep when 'painted' is chosen)",
                brush=gr.Brush(colors=["#ff3030"], default_size=3),
                height=320,
                elem_id="vq-image",
            )
            with gr.Column():
                region = gr.Radio(list(REGIONS), value="top half", label="Codes to keep", elem_id="vq-region")
                box = gr.Textbox("0,0,4,4", label="Box: top, left, bottom, right (codes, end exclusive)")
                seeds = gr.Textbox("0-7", label="Seeds of the re-samples", elem_id="vq-seeds")
                button = gr.Button("Reconstruct and re-sample", variant="primary", elem_id="vq-run")
        with gr.Row():
            gallery = gr.Gallery(label="Reconstruction, then the re-samples", columns=9, format="png", height="auto",
                                 elem_classes="gs-pixelated", elem_id="vq-gallery")  # fmt: skip
            codes_image = gr.Image(format="png", type="filepath", label="Code map (kept codes framed)",
                                   interactive=False, height=256, elem_id="vq-codes")  # fmt: skip
    return VQTab(tab, editor, region, box, seeds, button, gallery, codes_image)
