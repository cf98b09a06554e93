"""Pictures made from generated images: the style-mixing figure, and how the page shows a figure (whole-number
scale, seed labels)."""

from __future__ import annotations

from html import escape
from xml.sax.saxutils import quoteattr

import numpy as np

from ganserve.images import make_grid


def style_mix_figure(rows: np.ndarray, cols: np.ndarray, mixes: np.ndarray, background: int = 255) -> np.ndarray:
    """StyleGAN2-ADA's style-mixing figure: column seeds across the top, row seeds down the left, and mix [i, j]
    (row seed i with column seed j's ws over the chosen layers) at row i+1, column j+1. uint8 [N, H, W, C] inputs."""
    n_rows, n_cols = len(rows), len(cols)
    if len(mixes) != n_rows * n_cols:
        raise ValueError(f"expected {n_rows}x{n_cols} mixed images, got {len(mixes)}")
    blank = np.full_like(rows[0], background)
    cells = [blank, *cols]
    for i in range(n_rows):
        cells.append(rows[i])
        cells.extend(mixes[i * n_cols : (i + 1) * n_cols])
    return make_grid(np.stack(cells), n_cols + 1)


def integer_scale(width: int, height: int, max_width: int, max_height: int) -> int:
    """The largest whole factor that fits ``width`` x ``height`` into the box (at least 1: bigger ones scroll)."""
    return max(1, min(max_width // max(width, 1), max_height // max(height, 1)))


def figure_html(
    src: str,
    size: tuple[int, int],
    cells: tuple[int, int],
    *,
    col_labels: list[str] | None = None,
    row_labels: list[str] | None = None,
    alt: str,
    download: str,
    max_size: tuple[int, int] = (768, 640),
    elem_id: str = "",
) -> str:
    """A picture made of equal cells shown at a whole-number scale, with labels over its columns and left of its rows.

    ``size``: the image's (width, height) in pixels; ``cells``: its (columns, rows). Pixels stay square and sharp
    (``image-rendering: pixelated``); a figure wider than the page scrolls instead of shrinking.
    """
    w, h = size
    n_cols, n_rows = cells
    k = integer_scale(w, h, *max_size)
    cw, ch = w * k // max(n_cols, 1), h * k // max(n_rows, 1)
    cols = "".join(f'<span style="width:{cw}px">{escape(t)}</span>' for t in col_labels or [])
    rows = "".join(f'<span style="height:{ch}px">{escape(t)}</span>' for t in row_labels or [])
    return (
        f'<div class="gs-figure"{f" id={quoteattr(elem_id)}" if elem_id else ""} data-scale="{k}">'
        f'<div class="gs-figure-grid" style="grid-template-columns: {"auto " if rows else ""}{w * k}px">'
        + (("<span></span>" if rows else "") + f'<div class="gs-figure-cols">{cols}</div>' if cols else "")
        + (f'<div class="gs-figure-rows">{rows}</div>' if rows else "")
        + f'<img src={quoteattr(src)} width="{w * k}" height="{h * k}" alt={quoteattr(alt)}>'
        + f'</div><a class="gs-download" href={quoteattr(src)} download={quoteattr(download)}>Download PNG'
        f" ({w}×{h} px, settings embedded)</a></div>"
    )
