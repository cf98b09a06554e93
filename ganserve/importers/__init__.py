"""Importers for official checkpoint releases: their tensors into ganserve's format, without running their code.

Each importer reads one release format (``detect`` says whether a file looks like it, ``read`` returns the family,
the config and our state dict plus what it left unused) and never executes anything from the file: StyleGAN2-ADA
pickles go through ``safe_pickle``'s allow-list, torch files through ``torch.load(weights_only=True)``.
``import_checkpoint`` writes the result with the source's sha256 and the import command in the metadata, after
checking every tensor against the model the config builds.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# --from name -> module with detect(path, data) and read(path, data); one line per release format.
IMPORTERS = {
    "sg2-ada": "ganserve.importers.stylegan2_ada",
    "rosinality": "ganserve.importers.rosinality",
    "hf-biggan": "ganserve.importers.hf_biggan",
    "taming": "ganserve.importers.taming",
}
MAX_SOURCE_BYTES = 4 << 30
# A release folder given instead of its weights file: where the file sits in each release's layout.
FOLDER_LAYOUTS = ("pytorch_model.bin", "checkpoints/last.ckpt", "last.ckpt")


class ImportError_(ValueError):
    """A file that cannot be imported; the message names the file and the problem."""


@dataclass
class Imported:
    family: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    unused: list[str] = field(default_factory=list)  # source tensors not mapped (discriminator, optimiser ...)
    notes: list[str] = field(default_factory=list)  # anything derived rather than read (e.g. a computed w_avg)
    source_format: str = ""


def _module(name: str) -> Any:
    if name not in IMPORTERS:
        raise ImportError_(f"unknown source format '{name}' (formats: {', '.join(IMPORTERS)}, auto)")
    return importlib.import_module(IMPORTERS[name])


def source_file(path: str | os.PathLike) -> Path:
    """The weights file itself, also when given the release's folder (pytorch-pretrained-BigGAN's folder of
    pytorch_model.bin + config.json, a taming log folder)."""
    path = Path(path)
    if path.is_dir():
        found = next((path / f for f in FOLDER_LAYOUTS if (path / f).is_file()), None)
        if found is None:
            raise ImportError_(f"{path}: a folder without a release checkpoint in it (looked for "
                               f"{', '.join(FOLDER_LAYOUTS)}); pass the checkpoint file")  # fmt: skip
        return found
    if not path.exists():
        raise ImportError_(f"{path}: file not found")
    if not path.is_file():
        raise ImportError_(f"{path}: not a regular file")
    return path


def read_source(path: str | os.PathLike) -> bytes:
    path = source_file(path)
    size = path.stat().st_size
    if size == 0:
        raise ImportError_(f"{path}: the file is empty (0 bytes)")
    if size > MAX_SOURCE_BYTES:
        raise ImportError_(f"{path}: over {MAX_SOURCE_BYTES} bytes")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ImportError_(f"{path}: unreadable ({e.strerror or e})") from None


def load_torch_file(path: str | os.PathLike, data: bytes, *, allowed: tuple[Any, ...] = (),
                    inert_modules: tuple[str, ...] = ()) -> Any:  # fmt: skip
    """A torch.save file read weights-only (``safe_pickle.torch_load``); a refusal names the file and the global."""
    from ganserve.importers.safe_pickle import torch_load

    try:
        return torch_load(data, allowed=allowed, inert_modules=inert_modules)
    except Exception as e:  # weights_only refuses code; report what it said, never run it
        said = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ImportError_(f"{path}: not a loadable weights-only torch file ({said})") from None


def take_tensors(path: str | os.PathLike, src: dict[str, torch.Tensor], what: str):
    """``take(name)``: the named source tensor, recorded as used, or ImportError_ naming it; and the used set."""
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in src:
            raise ImportError_(f"{path}: {what} lacks {name}")
        used.add(name)
        return src[name]

    return take, used


def detect(path: str | os.PathLike, data: bytes) -> str:
    """The release format a file is in (tried in IMPORTERS order), or ImportError_."""
    for name in IMPORTERS:
        if _module(name).detect(path, data):
            return name
    raise ImportError_(f"{path}: not a file of any known release format ({', '.join(IMPORTERS)})")


def read(path: str | os.PathLike, source: str = "auto", *, resolution: int | None = None) -> tuple[Imported, str]:
    """Read ``path`` (a file, or a release folder) as ``source`` (or detect it): the imported model and the file's
    sha256. ``resolution``: the image size, for formats whose files do not say it (else checked against the file)."""
    path = source_file(path)
    data = read_source(path)
    if source == "auto":
        source = detect(path, data)
    module = _module(source)
    takes_resolution = "resolution" in inspect.signature(module.read).parameters
    try:
        imported = module.read(path, data, resolution=resolution) if takes_resolution else module.read(path, data)
    except ImportError_:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:  # a layout no check anticipated
        raise ImportError_(f"{path}: not a usable {source} checkpoint ({type(e).__name__}: {e})") from None
    found = imported.config.get("resolution")
    if resolution is not None and found != resolution:
        raise ImportError_(f"{path}: --resolution {resolution} contradicts the file, which is {found} px")
    imported.source_format = source
    return imported, hashlib.sha256(data).hexdigest()


def import_checkpoint(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    source: str = "auto",
    name: str | None = None,
    command: str = "",
    dtype: torch.dtype = torch.float32,
    resolution: int | None = None,
) -> tuple[Imported, dict[str, Any]]:
    """Import ``path`` and write ``out`` (a ganserve checkpoint); returns what was imported and the metadata.
    The config and tensors pass the checks ``ganserve.load`` makes, so a written file always loads."""
    from ganserve.checkpoint import CheckpointError, check_state_shapes
    from ganserve.config_checks import check_config, check_finite
    from ganserve.families import get_family
    from ganserve.loading import save_generator
    from ganserve.skeleton import build_on_meta

    path = source_file(path)
    imported, sha = read(path, source, resolution=resolution)
    fam = get_family(imported.family)
    try:
        config = fam.make_config(imported.config)
    except (TypeError, ValueError, ArithmeticError) as e:
        raise ImportError_(f"{path}: the inferred {imported.family} config is not supported ({e})") from None
    try:
        check_config(path, imported.config)
        check_finite(path, imported.tensors)
        skeleton = build_on_meta(lambda: fam.make_generator(config))  # shapes first, memory after
        check_state_shapes(path, skeleton.state_dict(), imported.tensors)
    except CheckpointError as e:
        raise ImportError_(f"{path}: {e.problem}") from None
    except (TypeError, ValueError, ArithmeticError, RuntimeError, IndexError, KeyError) as e:
        raise ImportError_(f"{path}: the inferred {imported.family} config cannot be built ({e})") from None
    model = fam.make_generator(config)
    model.load_state_dict(imported.tensors)
    model.name = name or Path(out).stem
    meta = save_generator(
        out, model, dataset=None, dtype=dtype,
        training={"imported_from": {"format": imported.source_format, "file": Path(path).name, "sha256": sha,
                                    "command": command, "notes": imported.notes}},
    )  # fmt: skip
    return imported, meta
