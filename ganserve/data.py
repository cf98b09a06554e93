"""Image data for training and evaluation alike: Fashion-MNIST from Debian's dataset-fashion-mnist package, or any
folder of images.

Everything is decoded once into a uint8 tensor [N, C, R, R] held in memory: the sets used here are small, and it
keeps every step deterministic given the seed.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(ValueError):
    pass


@dataclass
class ImageDataset:
    images: torch.Tensor  # uint8 [N, C, R, R]
    labels: torch.Tensor | None = None  # int64 [N]
    class_names: list[str] = field(default_factory=list)
    name: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def batch(self, indices: torch.Tensor, mirror: bool = False, flips: torch.Tensor | None = None) -> torch.Tensor:
        """Float images in [-1, 1]; optional horizontal flips (a bool per sample)."""
        x = self.images[indices].to(torch.float32) / 127.5 - 1
        if mirror and flips is not None:
            x = torch.where(flips.reshape(-1, 1, 1, 1), x.flip(3), x)
        return x


def check_resolution(resolution: int) -> None:
    if resolution < 4 or resolution & (resolution - 1):
        raise DataError(f"--resolution must be a power of two >= 4, got {resolution}")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path}: not an idx file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fit(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 [N, C, H, W] -> [N, C, R, R]: centre-crop to a square, then resize (area for shrinking)."""
    _n, _c, h, w = images.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    images = images[:, :, top : top + s, left : left + s]
    if s == resolution:
        return images.contiguous()
    x = images.to(torch.float32)
    mode = "area" if s > resolution else "bicubic"
    x = F.interpolate(
        x, size=(resolution, resolution), mode=mode, **({} if mode == "area" else {"align_corners": False})
    )
    return x.round().clamp(0, 255).to(torch.uint8)


def load_fashion_mnist(resolution: int, root: Path = FASHION_MNIST_DIR, split: str = "train") -> ImageDataset:
    """Fashion-MNIST (28x28 grey) padded to 32x32 with its black background, then resized to ``resolution``."""
    check_resolution(resolution)
    prefix = "train" if split == "train" else "t10k"
    img_path, lbl_path = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if not img_path.is_file():
        raise DataError(
            f"Fashion-MNIST not found at {img_path}: install Debian's package (apt-get install dataset-fashion-mnist)"
        )
    images = torch.from_numpy(_read_idx(img_path).copy())[:, None]
    labels = torch.from_numpy(_read_idx(lbl_path).astype(np.int64))
    images = F.pad(images, [2, 2, 2, 2])
    return ImageDataset(_fit(images, resolution), labels, list(FASHION_MNIST_CLASSES), "fashion-mnist")


def load_image_folder(folder: str | Path, resolution: int, channels: int | None = None) -> ImageDataset:
    """Every image under ``folder`` (recursively), centre-cropped and resized; subfolder names become classes.

    channels: 1 or 3; by default 1 when every image is greyscale, else 3.
    """
    check_resolution(resolution)
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    pil = []
    for p in files:
        try:
            with Image.open(p) as im:
                im.load()
                pil.append(im.copy())
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{p}: unreadable image ({e})") from None
    if channels is None:
        channels = 1 if all(im.mode in ("L", "1", "I;16", "I") for im in pil) else 3
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    arrays = []
    for im in pil:
        im = im.convert("L" if channels == 1 else "RGB")
        s = min(im.size)
        left, top = (im.width - s) // 2, (im.height - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((resolution, resolution), Image.Resampling.LANCZOS)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if channels == 1 else a.transpose(2, 0, 1))
    images = torch.from_numpy(np.stack(arrays))
    classes = sorted({p.parent.relative_to(folder).as_posix() for p in files})
    labels, names = None, []
    if len(classes) > 1:
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[p.parent.relative_to(folder).as_posix()] for p in files])
        names = classes
    return ImageDataset(images, labels, names, str(folder))


def load_dataset(spec: str, resolution: int) -> ImageDataset:
    """``fashion-mnist`` or a folder path."""
    if spec == "fashion-mnist":
        return load_fashion_mnist(resolution)
    return load_image_folder(spec, resolution)
