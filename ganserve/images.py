"""Tensors to uint8 pixels (one conversion, one place), grids, and the PNG / JPEG / npy / JSON encoders."""

from __future__ import annotations

import base64
import io
import json
import math
from typing import Any

import numpy as np
import torch
from PIL import Image, PngImagePlugin

PNG_METADATA_KEY = "ganserve"
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "npy": "application/x-npy", "json": "application/json"}


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output [N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C], as StyleGAN2-ADA's scripts round it."""
    x = (images.detach().to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def make_grid(images: np.ndarray, cols: int | None = None, pad: int = 0) -> np.ndarray:
    """uint8 [N, H, W, C] -> one [rows*H, cols*W, C] image, filled row by row."""
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = images[i]
    return grid


def to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image, "L" if image.shape[2] == 1 else "RGB")


def encode_png(image: np.ndarray, params: dict[str, Any] | None = None) -> bytes:
    """PNG bytes; ``params`` is embedded as JSON in a tEXt chunk so the settings travel with the picture."""
    info = None
    if params is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text(PNG_METADATA_KEY, json.dumps(params, sort_keys=True))
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def read_png_params(data: bytes) -> dict[str, Any] | None:
    """The parameters ``encode_png`` embedded, or None."""
    with Image.open(io.BytesIO(data)) as im:
        raw = im.info.get(PNG_METADATA_KEY)
    return json.loads(raw) if raw else None


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    to_pil(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_npy(images: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, images, allow_pickle=False)
    return buf.getvalue()


def encode_image(image: np.ndarray, fmt: str, params: dict[str, Any] | None = None) -> bytes:
    if fmt == "png":
        return encode_png(image, params)
    if fmt == "jpeg":
        return encode_jpeg(image)
    if fmt == "npy":
        return encode_npy(image)
    raise ValueError(f"unknown image format {fmt!r}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_gif(frames: np.ndarray, frame_ms: int = 80, bounce: bool = True) -> bytes:
    """An endlessly looping GIF of uint8 [N, H, W, C] frames; ``bounce`` plays them forward then back."""
    seq = list(frames) + (list(frames[-2:0:-1]) if bounce else [])
    pics = [to_pil(f) for f in seq]
    buf = io.BytesIO()
    pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=frame_ms, loop=0)
    return buf.getvalue()
