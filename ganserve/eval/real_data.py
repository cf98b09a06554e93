"""The real images a model is measured against: its training data set's test split where one exists.

Images come out in ganserve's layout (uint8 [N, H, W, C]) at the generator's resolution and channel count, prepared
exactly as training saw them (Fashion-MNIST: padded 28 -> 32, then resized), so the only difference a metric sees is
the generator's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganserve.data import ImageDataset, load_fashion_mnist, load_image_folder

SPLITS = ("test", "train")


@dataclass
class RealImages:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray | None  # int64 [N], when the data set has classes
    class_names: list[str] = field(default_factory=list)
    dataset: str = ""
    split: str = ""  # "test", "train", or "all" (a folder has no held-out split)
    selection: str = ""  # which rows: "first N" or "seeded subset (seed S)"

    def describe(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "split": self.split, "n": len(self.images), "selection": self.selection}


def dataset_name(meta_dataset: Any) -> str | None:
    """The data set a checkpoint's metadata names (a string, or a dict with 'name' / 'path'), if any."""
    if isinstance(meta_dataset, str):
        return meta_dataset or None
    if isinstance(meta_dataset, dict):
        return meta_dataset.get("name") or meta_dataset.get("path")
    return None


@functools.lru_cache(maxsize=4)
def _fashion_mnist(resolution: int, split: str) -> ImageDataset:
    return load_fashion_mnist(resolution, split=split)  # fixed files: decode once per process (read-only use)


def _load(dataset: str, split: str, resolution: int, channels: int) -> tuple[ImageDataset, str]:
    if dataset == "fashion-mnist":
        return _fashion_mnist(resolution, split), split
    if not Path(dataset).is_dir():
        raise ValueError(f"reference data '{dataset}': not 'fashion-mnist' nor a folder of images")
    # A folder has no held-out split: the model is measured against the images it was trained on.
    return load_image_folder(dataset, resolution, channels), "all"


def _to_hwc(images, channels: int) -> np.ndarray:
    x = images.permute(0, 2, 3, 1).numpy()
    if x.shape[-1] == channels:
        return x
    if channels == 3:  # grey data, colour generator
        return np.repeat(x, 3, axis=-1)
    # colour data, grey generator: ITU-R 601 luma, as PIL's convert("L")
    return np.round(x.astype(np.float64) @ [0.299, 0.587, 0.114])[..., None].clip(0, 255).astype(np.uint8)


def real_images(
    dataset: str, n: int, resolution: int, channels: int, split: str = "test", seed: int | None = None
) -> RealImages:
    """``n`` real images of ``dataset`` ('fashion-mnist' or a folder): the first ``n`` of the split, or a subset drawn
    without replacement with ``seed``. Fewer if the split is smaller (the result says how many)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
    data, used_split = _load(dataset, split, resolution, channels)
    total = len(data)
    n = min(n, total)
    if seed is None:
        index, selection = np.arange(n), f"first {n} of {total}"
    else:
        index = np.sort(np.random.default_rng(seed).choice(total, n, replace=False))
        selection = f"{n} of {total}, seeded subset (seed {seed})"
    labels = data.labels[index].numpy() if data.labels is not None else None
    return RealImages(_to_hwc(data.images[index], channels), labels, list(data.class_names), dataset, used_split,
                      selection)  # fmt: skip
