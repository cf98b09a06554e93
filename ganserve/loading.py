"""Find, load and save models in the ganserve checkpoint format.

Names resolve through ``$GANSERVE_CHECKPOINTS`` (os.pathsep-separated folders), then the checkpoints bundled with the
package (``ganserve.checkpoints``: the repository's checkpoints/ folder, installed as package data), so a plain
``pip install`` serves the bundled models from any directory. A model is rebuilt from its config on the meta device
first and its tensor names and shapes are compared with the file's before any real memory is allocated, so a config
that does not match its tensors (or asks for absurd sizes) is refused cheaply.
"""

from __future__ import annotations

import os
import types
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganserve.checkpoint import CheckpointError, check_state_shapes, read_metadata, read_tensors, save_tensors
from ganserve.config_checks import check_config, check_finite
from ganserve.families import Part, get_family
from ganserve.precision import set_precision
from ganserve.skeleton import build_on_meta

ENV_VAR = "GANSERVE_CHECKPOINTS"


def bundled_dir() -> Path | None:
    """The folder of checkpoints shipped with the package, if this install has one."""
    try:
        root = resources.files("ganserve.checkpoints")
    except ModuleNotFoundError:
        return None
    path = Path(str(root))
    return path if path.is_dir() else None


def checkpoint_dirs() -> list[Path]:
    """Where model names are looked up, in order: $GANSERVE_CHECKPOINTS, then the bundled checkpoints."""
    dirs = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    bundled = bundled_dir()
    return [*dirs, *([bundled] if bundled else [])]


def available_models() -> dict[str, Path]:
    """Model name (file stem) -> checkpoint path, first directory wins. Non-model files (classifiers) are skipped."""
    found: dict[str, Path] = {}
    for d in checkpoint_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.safetensors")):
                if p.stem not in found and _is_model(p):
                    found[p.stem] = p
    return found


def _is_model(path: Path) -> bool:
    try:
        return read_metadata(path).get("kind", "model") == "model"
    except CheckpointError:
        return True  # listed, so that loading it explains what is wrong


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A model name or a checkpoint path -> the checkpoint file."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.exists() or os.sep in str(name_or_path):
        if not p.is_file():
            raise CheckpointError(p, "file not found")
        return p
    models = available_models()
    if str(name_or_path) not in models:
        where = ", ".join(str(d) for d in checkpoint_dirs()) or "nowhere (no bundled checkpoints in this install)"
        raise KeyError(
            f"unknown model '{name_or_path}'; available models: {', '.join(models) or 'none'} (looked in {where}; "
            f"add a folder of .safetensors files with {ENV_VAR}=/path/to/folder, or pass a checkpoint path)"
        )
    return models[str(name_or_path)]


def _build(path: Path, family: str, spec: Part, config: dict[str, Any], tensors: dict[str, torch.Tensor],
           part: str = "") -> nn.Module:  # fmt: skip
    """Build one module from its config, checking the tensors against a meta-device skeleton first."""
    what = f"{family} config" + (f" of part '{part}'" if part else "")
    try:
        cfg = spec.make_config(config)  # the family's own field checks first: their messages are the most specific
    except (TypeError, ValueError, ArithmeticError) as e:
        raise CheckpointError(path, f"invalid {what} ({e})") from None
    check_config(path, config, part)
    try:
        skeleton = build_on_meta(lambda: spec.build(cfg))
    except (TypeError, ValueError, ArithmeticError, RuntimeError, IndexError, KeyError) as e:
        # e.g. a size the family derives from the config (channel_base // resolution) coming out as zero
        raise CheckpointError(path, f"invalid {what}: building it fails ({type(e).__name__}: {e})") from None
    check_state_shapes(path, skeleton.state_dict(), tensors, part)
    try:
        module = spec.build(cfg)
    except (TypeError, ValueError, ArithmeticError, RuntimeError, IndexError, KeyError) as e:
        raise CheckpointError(path, f"invalid {what}: building it fails ({type(e).__name__}: {e})") from None
    expected = module.state_dict()  # dtypes from the real module: the skeleton is trusted for names and shapes only
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    return module


def _strip(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    family: str | None = None,
    precision: str = "fp32",
) -> nn.Module:
    """Rebuild a model from a checkpoint, check every tensor's name and shape, and return it in eval mode.

    ``family`` makes a checkpoint of another family an error; ``precision`` is how the core runs it (see
    ``ganserve.precision``). The module gets ``name``, ``checkpoint_info``, ``precision`` and a ``sample(...)`` method
    (the sampling core, ``ganserve.sampling.sample``).
    """
    path = resolve(name_or_path)
    tensors, meta = read_tensors(path)
    if meta.get("kind", "model") != "model":
        raise CheckpointError(path, f"holds a {meta['kind']}, not a model")
    if family is not None and meta["family"] != family:
        raise CheckpointError(path, f"wrong family: expected '{family}', the file holds '{meta['family']}'")
    check_finite(path, tensors)
    try:
        fam = get_family(meta["family"])
    except KeyError as e:
        raise CheckpointError(path, str(e.args[0])) from None
    if "parts" in meta:
        names = set(meta["parts"])
        if names != set(fam.parts):
            raise CheckpointError(path, f"{fam.name} models have parts {sorted(fam.parts)}, the file holds "
                                        f"{sorted(names)}")  # fmt: skip
        stray = sorted(k for k in tensors if k.split(".", 1)[0] not in names)
        if stray:
            raise CheckpointError(path, f"tensors outside every part: {stray[:5]}")
        parts = {n: _build(path, fam.name, fam.parts[n], meta["parts"][n]["config"], _strip(n, tensors), n)
                 for n in fam.parts}  # fmt: skip
        model = fam.assemble(parts)
    else:
        if fam.parts:
            raise CheckpointError(path, f"{fam.name} checkpoints hold parts {sorted(fam.parts)}; the file has none")
        model = _build(path, fam.name, fam.generator, meta["config"], tensors)
    model.name = path.stem
    model.checkpoint_info = meta
    model.checkpoint_path = str(path)
    set_precision(model, precision)
    if torch.device(device).type == "cuda":
        _load_kernel_tuning(device)
    return attach_sampling(model.eval().requires_grad_(False).to(device))


def _load_kernel_tuning(device: str | torch.device) -> None:
    """Read the card's kernel tuning table now, so that no served request waits on it (ganserve.kernels.dispatch)."""
    try:
        from ganserve import kernels
    except ImportError:
        return
    kernels.load_tuning(device)


def attach_sampling(model: nn.Module) -> nn.Module:
    """Give a loaded model (or a backend) ``model.sample(...)``: the models themselves never import the core."""
    from ganserve.sampling import sample

    model.sample = types.MethodType(sample, model)
    return model


def save_generator(
    path: str | os.PathLike,
    generator: nn.Module,
    *,
    dataset: str | dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    **extra: Any,
) -> dict[str, Any]:
    """Write a model (weights and buffers) and its config(s) as a ganserve checkpoint, atomically.

    A multi-part model (its family declares ``parts``) is stored part by part: tensors prefixed with the part's
    name, each part's config under ``parts``.
    """
    fam = get_family(generator.family)

    def cast(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}

    meta: dict[str, Any] = {"family": fam.name}
    if fam.parts:
        parts = generator.parts()
        tensors = {f"{n}.{k}": v for n, m in parts.items() for k, v in cast(m.state_dict()).items()}
        meta["parts"] = {n: {"config": m.config.to_dict()} for n, m in parts.items()}
    else:
        tensors = cast(generator.state_dict())
        meta["config"] = generator.config.to_dict()
    meta.update(dataset=dataset, training=training or {}, dtype=str(dtype).removeprefix("torch."), **extra)
    return save_tensors(path, tensors, meta)


__all__ = ["available_models", "checkpoint_dirs", "load", "read_metadata", "resolve", "save_generator"]
