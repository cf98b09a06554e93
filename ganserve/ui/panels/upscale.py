"""Upscaled downloads: the Seed tab's image as a PNG enlarged 2x / 4x / 8x by nearest neighbour (sharp pixels, for
slides and print), its parameters embedded as in the original. Beside the image; no request is made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from ganserve.images import read_png_params
from ganserve.ui.page import Page

FIELDS: tuple[str, ...] = ()  # no request field: a view of the image shown
FACTORS = (2, 4, 8)


@dataclass
class UpscalePanel:
    factor: Any
    file: Any


def upscaled(page: Page, path: str | None, factor: Any) -> str | None:
    """The PNG at ``path`` enlarged ``factor`` x (nearest), with its embedded parameters; None without an image."""
    if not path:
        return None
    if int(factor) not in FACTORS:
        raise ValueError(f"Invalid upscale factor: expected one of {', '.join(map(str, FACTORS))}, got {factor!r}")
    f = int(factor)
    data = Path(path).read_bytes()
    params = read_png_params(data) or {}
    with Image.open(path) as im:
        a = np.asarray(im)
    a = a[:, :, None] if a.ndim == 2 else a
    big = a.repeat(f, axis=0).repeat(f, axis=1)
    return page.ex.save_array(f"{Path(path).stem}-x{f}.png", big, params)


def build(page: Page, seed_tab: Any) -> UpscalePanel:
    """A factor dropdown and the file, appended to the Seed tab (under its image)."""
    with seed_tab, gr.Row(elem_id="upscale-row"):
        factor = gr.Dropdown(
            [(f"{f}x", f) for f in FACTORS], value=4, label="Download enlarged (nearest)", elem_id="upscale-factor"
        )
        file = gr.File(label="Enlarged PNG (its settings embedded)", interactive=False, elem_id="upscale-file")
    return UpscalePanel(factor, file)


def wire(page: Page, t: UpscalePanel) -> None:
    image = page.OUT["image"]

    def make(path: str | None, factor: Any) -> str | None:
        try:
            return upscaled(page, path, factor)
        except (OSError, ValueError) as e:  # a one-line message, never a trace
            gr.Warning(str(e), title="Not enlarged")
            return gr.skip()

    gr.on([image.change, t.factor.change], make, [image, t.factor], t.file, api_visibility="private")
