"""Pictures made from generated images: the style-mixing figure."""

from __future__ import annotations

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


