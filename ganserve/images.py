"""Tensors to uint8 pixels (one conversion, one place), grids, and the PNG / JPEG / npy / JSON encoders."""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import warnings
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


MAX_IMAGE_BYTES = 4 << 20  # an uploaded image, encoded
MAX_IMAGE_PIXELS = 4096 * 4096  # decoded: a PNG that inflates past this is a decompression bomb


class ImageDecodeError(ValueError):
    """An uploaded image that cannot be used; the message says why (the caller names the field)."""


def decode_image(data: str | bytes, size: int | None = None, channels: int | None = None) -> np.ndarray:
    """A base64 string or raw bytes of a PNG / JPEG -> uint8 [H, W, C], refusing anything unsafe or unusable.

    ``size``: the model's resolution: a square image of another size is resized (Lanczos), a non-square one refused.
    ``channels``: 1 converts to grey, 3 to RGB. Empty, oversized, undecodable and decompression-bomb images raise
    ``ImageDecodeError`` before more than ``MAX_IMAGE_PIXELS`` pixels are decoded.
    """
    from PIL import Image

    if isinstance(data, str):
        if len(data) > MAX_IMAGE_BYTES * 4 // 3 + 4:
            raise ImageDecodeError(f"is over {MAX_IMAGE_BYTES} bytes")
        try:
            data = base64.b64decode(data.split(",", 1)[1] if data.startswith("data:") else data, validate=True)
        except (binascii.Error, ValueError):
            raise ImageDecodeError("is not valid base64") from None
    if not data:
        raise ImageDecodeError("is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageDecodeError(f"is over {MAX_IMAGE_BYTES} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.format not in ("PNG", "JPEG"):
                    raise ImageDecodeError(f"must be a PNG or JPEG, got {im.format}")
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ImageDecodeError(f"is {w}x{h} pixels, over the limit of {MAX_IMAGE_PIXELS}")
                if size is not None and w != h:
                    raise ImageDecodeError(f"must be square ({size}x{size}), got {w}x{h}")
                im.load()
                mode = {1: "L", 3: "RGB"}.get(channels or 0, "RGB" if im.mode not in ("L", "LA", "I;16") else "L")
                im = im.convert(mode)
                if size is not None and im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.LANCZOS)
                arr = np.asarray(im)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageDecodeError(f"is a decompression bomb ({e})") from None
    except (OSError, ValueError, SyntaxError, MemoryError) as e:
        raise ImageDecodeError(f"cannot be decoded as an image ({str(e)[:120]})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def from_uint8(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, C] -> float [1, C, H, W] in [-1, 1], the inverse of ``to_uint8``'s scaling."""
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
    return (x - 128) / 127.5
