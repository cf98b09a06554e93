"""Find, load and save generators in the ganserve checkpoint format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganserve.checkpoint import CheckpointError, load_state_into, read_metadata, read_tensors, save_tensors
from ganserve.families import get_family

REPO_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


def checkpoint_dirs() -> list[Path]:
    """Where model names are looked up: $GANSERVE_CHECKPOINTS (os.pathsep-separated), then the repo's checkpoints/."""
    dirs = [Path(p) for p in os.environ.get("GANSERVE_CHECKPOINTS", "").split(os.pathsep) if p]
    return [*dirs, REPO_CHECKPOINTS]


def available_models() -> dict[str, Path]:
    """Model name (file stem) -> checkpoint path, first directory wins."""
    found: dict[str, Path] = {}
    for d in checkpoint_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.safetensors")):
                found.setdefault(p.stem, p)
    return found


def resolve(name_or_path: str | os.PathLike) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.exists() or os.sep in str(name_or_path):
        if not p.is_file():
            raise CheckpointError(p, "file not found")
        return p
    models = available_models()
    if str(name_or_path) not in models:
        listing = ", ".join(models) or "none"
        raise KeyError(f"unknown model '{name_or_path}'; available models: {listing}")
    return models[str(name_or_path)]


def load(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    family: str | None = None,
) -> nn.Module:
    """Rebuild a generator from a checkpoint, check every tensor's name and shape, and return it in eval mode.

    ``family`` makes a checkpoint of another family an error. The module gets ``name`` and ``checkpoint_info``.
    """
    path = resolve(name_or_path)
    tensors, meta = read_tensors(path)
    if family is not None and meta["family"] != family:
        raise CheckpointError(path, f"wrong family: expected '{family}', the file holds '{meta['family']}'")
    try:
        fam = get_family(meta["family"])
    except KeyError as e:
        raise CheckpointError(path, str(e.args[0])) from None
    try:
        config = fam.make_config(meta["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(path, f"invalid {meta['family']} config ({e})") from None
    model = fam.make_generator(config)
    load_state_into(path, model, tensors)
    model.name = path.stem
    model.checkpoint_info = meta
    return model.eval().requires_grad_(False).to(device)


def save_generator(
    path: str | os.PathLike,
    generator: nn.Module,
    *,
    dataset: str | dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """Write a generator (weights and buffers) and its config as a ganserve checkpoint, atomically."""
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in generator.state_dict().items()}
    meta = {
        "family": generator.family,
        "config": generator.config.to_dict(),
        "dataset": dataset,
        "training": training or {},
        "dtype": str(dtype).removeprefix("torch."),
    }
    return save_tensors(path, tensors, meta)


__all__ = ["available_models", "checkpoint_dirs", "load", "read_metadata", "resolve", "save_generator"]
