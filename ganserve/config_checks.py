"""Family-free checks of what a checkpoint (or an importer) hands the model builders.

A checkpoint's config and tensors may have been edited and re-hashed, so the hash proves nothing about sanity. Each
family's config dataclass checks its own fields; these checks hold for every family and run first, so that an absurd
value is refused with the key's name instead of surfacing as an exception from deep inside a constructor, and a NaN
weight or ``w_avg`` is refused instead of served as blank images.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from ganserve.checkpoint import CheckpointError

MIN_RESOLUTION, MAX_RESOLUTION = 4, 4096
MAX_SIZE = 1 << 16  # channels, widths, latent sizes
MAX_NUMBER = 1 << 24  # any other integer (channel_base is 32768 in the official StyleGAN2 configs)
ZERO_ALLOWED = ("c_dim", "cmap_dim")  # an unconditional model has no classes


def _is_size_key(key: str) -> bool:
    """Keys that count channels or features in any family's config (``img_channels``, ``w_dim``, ``g_channels`` ...)."""
    return key in ("ch", "dim", "n_embd", "channel_max") or key.endswith(("channels", "_dim", "width"))


def _walk(value: Any, where: str):
    """(dotted place, leaf) for every leaf of a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{where}[{i}]")
    else:
        yield where, value


def check_config(path: str | os.PathLike, config: dict[str, Any], part: str = "") -> None:
    """Refuse a config with a non-finite or huge number, a resolution that is not a power of two in
    [4, 4096], or a channel count that is not positive and bounded; the message names the file and the key."""
    of = f" of part '{part}'" if part else ""

    def refuse(key: str, rule: str, got: Any) -> None:
        raise CheckpointError(path, f"config{of}: '{key}' must be {rule}, got {got!r}")

    for key, v in _walk(config, ""):
        if isinstance(v, float) and not math.isfinite(v):
            refuse(key, "a finite number", v)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > MAX_NUMBER:
            refuse(key, f"at most {MAX_NUMBER} in size", v)
    res = config.get("resolution")
    if res is not None and (isinstance(res, bool) or not isinstance(res, int) or res & (res - 1)
                            or not MIN_RESOLUTION <= res <= MAX_RESOLUTION):  # fmt: skip
        refuse("resolution", f"a power of two in [{MIN_RESOLUTION}, {MAX_RESOLUTION}]", res)
    for key, value in config.items():
        if not _is_size_key(key) or value is None:
            continue
        lo = 0 if key in ZERO_ALLOWED else 1
        for place, v in _walk(value, key):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_SIZE:
                refuse(place, f"an integer in [{lo}, {MAX_SIZE}]", v)


def check_finite(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse NaN or infinite values in any floating-point tensor, naming the first such tensor."""
    for name in sorted(tensors):
        t = tensors[name]
        if t.is_floating_point() or t.is_complex():
            # A float64 sum is NaN/inf exactly when some element is (it cannot overflow for float32 and narrower
            # values), and needs no mask tensor; the exact count runs only on the rare file that fails it.
            if t.numel() and torch.isfinite(t.sum(dtype=torch.complex128 if t.is_complex() else torch.float64)):
                continue
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise CheckpointError(path, f"tensor '{name}' holds {bad} NaN or infinite value(s) of {t.numel()}")
