"""Read the data in a pickle without running the code in it.

Python's pickle calls whatever globals a file names; a model file from the internet can name ``os.system``. This
unpickler resolves only an explicit allow-list — containers, numpy arrays and dtypes, torch tensors, parameters and
storages (storages through ``torch.load(weights_only=True)``) — and maps StyleGAN2-ADA's persistence hook, which
would compile and run source code stored in the file, to an inert ``PersistentObject`` that keeps the class name, the
constructor's keyword arguments and the state. Anything else is refused with the name of what the file asked for.
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The file asked for a global outside the allow-list; nothing it named was called."""


def refused(name: str) -> UnsafePickleError:
    msg = f"refused to load {name}: not on the allow-list of data types (nothing from the file was run)"
    return UnsafePickleError(msg)


@dataclass
class PersistentObject:
    """What StyleGAN2-ADA's ``persistence`` would rebuild by executing the stored module source: here, only data."""

    class_name: str
    state: dict[str, Any]
    source_sha256: str = ""
    children: dict[str, PersistentObject] = field(default_factory=dict)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The module's parameters and buffers, recursively, under state-dict names."""
        out: dict[str, torch.Tensor] = {}
        for kind in ("_parameters", "_buffers"):
            for name, t in (self.state.get(kind) or {}).items():
                if t is not None:
                    out[prefix + name] = t.detach() if isinstance(t, torch.Tensor) else t
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentObject):
                out.update(child.tensors(f"{prefix}{name}."))
        return out

    def child(self, name: str) -> PersistentObject:
        found = (self.state.get("_modules") or {}).get(name)
        if not isinstance(found, PersistentObject):
            raise KeyError(name)
        return found


def _persistent(meta: dict[str, Any]) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafePickleError("a persistent object of an unknown kind")
    src = meta.get("module_src") or ""
    return PersistentObject(
        class_name=str(meta.get("class_name")),
        state=dict(meta.get("state") or {}),
        source_sha256=hashlib.sha256(src.encode() if isinstance(src, str) else b"").hexdigest(),
    )


def _storage_from_bytes(data: bytes) -> Any:
    # torch's own _load_from_bytes would unpickle ``data`` with weights_only=False: a second, unchecked pickle.
    return torch.load(io.BytesIO(data), weights_only=True)


class _EasyDict(dict):
    """dnnlib.EasyDict's data without its code."""


def _numpy_attr(name: str) -> Any:
    core = getattr(np, "_core", None) or np.core
    return getattr(core.multiarray, name)


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch", "device"): torch.device,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy_attr("scalar"),
    ("numpy._core.multiarray", "scalar"): _numpy_attr("scalar"),
    ("numpy.core.multiarray", "_reconstruct"): _numpy_attr("_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_attr("_reconstruct"),
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
}


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED.get((module, name))
        if found is None:
            raise refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refused a persistent id {str(pid)[:60]} (not a plain pickle)")


def load(data: bytes) -> Any:
    """Unpickle ``data`` with the allow-list; raises UnsafePickleError for anything else."""
    return SafeUnpickler(io.BytesIO(data)).load()


# ---------------------------------------------------------------------------------------------------------------------
# torch files: torch.load(weights_only=True), with training-framework bookkeeping read as inert data


class InertObject:
    """What a class from a training framework (a Lightning callback used as a dict key, OmegaConf hyper-parameters)
    rebuilds to here: only the constructor arguments and the state the file stores; none of its code exists."""

    qualified_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.qualified_name}>"


# Lightning .ckpt files key their callback states by the callback's class and may store OmegaConf configs: data only.
INERT_MODULES = ("pytorch_lightning", "lightning", "lightning_fabric", "omegaconf")


def _inert_class(full_name: str) -> type:
    return type(full_name.rsplit(".", 1)[-1], (InertObject,), {"qualified_name": full_name})


def torch_load(data: bytes, *, allowed: tuple[Any, ...] = (), inert_modules: tuple[str, ...] = ()) -> Any:
    """``torch.load(weights_only=True)`` of ``data``, also allowing ``allowed`` and mapping every global from
    ``inert_modules`` to an ``InertObject`` subclass. Any other global is refused (UnsafePickleError) by name,
    before anything is unpickled: weights_only never calls what it has not been given."""
    safe: list[Any] = list(allowed)
    try:
        unknown = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except Exception:  # the legacy (pre-zip) format: plain weights_only decides
        unknown = []
    given = {f"{a.__module__}.{a.__qualname__}" for a in allowed}
    for name in unknown:
        if name in given:
            continue
        if not name.startswith(tuple(f"{m}." for m in inert_modules)):
            raise refused(name)
        safe.append((_inert_class(name), name))
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # what weights_only refused: report it, never retry without it
        found = re.search(r"GLOBAL (\S+) ", str(e))
        what = found.group(1) if found else str(e).splitlines()[0][:200]
        raise refused(what) from None
