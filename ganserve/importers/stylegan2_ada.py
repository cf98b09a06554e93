"""NVlabs stylegan2-ada-pytorch network pickles (``network-snapshot-*.pkl``, the released ``ffhq.pkl`` ...).

The pickle holds persistence objects (G, D, G_ema) whose module source the official loader compiles and runs; here
``safe_pickle`` turns them into inert data: the constructor's keyword arguments (the config) and the tensors. ganserve's
StyleGAN2 follows the official parameter names, so the mapping is one to one; only the FIR filters, which ganserve
derives from the config instead of storing, are left out. Supported: the skip generator ('orig' and 'resnet'
generators are refused), mapping layers as wide as w.
"""

from __future__ import annotations

import os
from typing import Any

from ganserve.importers import Imported, ImportError_
from ganserve.importers.safe_pickle import PersistentObject, UnsafePickleError, load

PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def detect(path: str | os.PathLike, data: bytes) -> bool:
    return (data[:2] in PICKLE_MAGIC and b"torch_utils.persistence" in data[:4096]) or (
        data[:2] in PICKLE_MAGIC and b"_reconstruct_persistent_obj" in data[: 1 << 20]
    )


_REQUIRED = object()


def _kwargs(value: Any, where: str, path: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImportError_(f"{path}: G_ema's {where} is a {type(value).__name__}, not the constructor's keyword "
                           "arguments (a dict)")  # fmt: skip
    return value


def _number(kw: dict[str, Any], key: str, where: str, path: Any, kind: type = int, default: Any = _REQUIRED) -> Any:
    """``kw[key]`` as ``kind``, or ImportError_ naming the key (missing, or not a number)."""
    if key not in kw:
        if default is _REQUIRED:
            raise ImportError_(f"{path}: G_ema's {where} lacks '{key}'")
        return default
    value = kw[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or value == int(value))
    if not ok:
        raise ImportError_(f"{path}: G_ema's {where}['{key}'] must be {'an integer' if kind is int else 'a number'}, "
                           f"got {value!r}")  # fmt: skip
    return kind(value)


def _config(G: PersistentObject, path: Any) -> dict[str, Any]:
    kw = _kwargs(G.state.get("_init_kwargs"), "_init_kwargs", path)
    mapping = _kwargs(kw.get("mapping_kwargs"), "mapping_kwargs", path)
    synthesis = _kwargs(kw.get("synthesis_kwargs"), "synthesis_kwargs", path)
    if synthesis.get("architecture", "skip") != "skip":
        raise ImportError_(f"{path}: the '{synthesis['architecture']}' generator architecture is not supported "
                           "(ganserve's StyleGAN2 is the skip generator, the official default)")  # fmt: skip
    top, m, s = "_init_kwargs", "mapping_kwargs", "synthesis_kwargs"
    w_dim = _number(kw, "w_dim", top, path)
    for key in ("layer_features", "embed_features"):
        if mapping.get(key) not in (None, w_dim):
            raise ImportError_(f"{path}: mapping {key}={mapping[key]} differs from w_dim={w_dim}: not supported")
    if mapping.get("activation", "lrelu") != "lrelu" or synthesis.get("activation", "lrelu") != "lrelu":
        raise ImportError_(f"{path}: only the lrelu activation is supported")
    conv_clamp = synthesis.get("conv_clamp")
    if conv_clamp is not None:
        conv_clamp = _number(synthesis, "conv_clamp", s, path, float)
    resample_filter = synthesis.get("resample_filter", [1, 3, 3, 1])
    if not isinstance(resample_filter, (list, tuple)) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in resample_filter
    ):
        raise ImportError_(f"{path}: G_ema's {s}['resample_filter'] must be a list of numbers, got {resample_filter!r}")
    return {
        "resolution": _number(kw, "img_resolution", top, path),
        "img_channels": _number(kw, "img_channels", top, path),
        "z_dim": _number(kw, "z_dim", top, path),
        "w_dim": w_dim,
        "c_dim": _number(kw, "c_dim", top, path, default=0),
        "mapping_layers": _number(mapping, "num_layers", m, path, default=8),
        "mapping_lr_multiplier": _number(mapping, "lr_multiplier", m, path, float, default=0.01),
        "w_avg_beta": _number(mapping, "w_avg_beta", m, path, float, default=0.995),
        "channel_base": _number(synthesis, "channel_base", s, path, default=32768),
        "channel_max": _number(synthesis, "channel_max", s, path, default=512),
        "conv_clamp": conv_clamp,
        "num_fp16_res": _number(synthesis, "num_fp16_res", s, path, default=0),
        "resample_filter": list(resample_filter),
    }


def read(path: str | os.PathLike, data: bytes) -> Imported:
    try:
        obj = load(data)
    except UnsafePickleError as e:
        raise ImportError_(f"{path}: {e}") from None
    except Exception as e:  # a damaged pickle: report it, never a traceback from deep inside pickle
        raise ImportError_(f"{path}: not a readable pickle ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("G_ema"), PersistentObject):
        found = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
        raise ImportError_(f"{path}: no G_ema network in the pickle (found {found})")
    G = obj["G_ema"]
    if G.class_name != "Generator":
        raise ImportError_(f"{path}: G_ema is a {G.class_name}, not a StyleGAN2-ADA Generator")
    source = G.tensors()
    tensors = {k: v for k, v in source.items() if not k.endswith("resample_filter")}
    unused = sorted(set(source) - set(tensors))
    for other in ("G", "D", "augment_pipe"):
        if isinstance(obj.get(other), PersistentObject):
            unused += [f"{other}.{k}" for k in obj[other].tensors()]
    return Imported("stylegan2", _config(G, path), tensors, unused,
                    notes=["FIR resample_filter buffers are derived from the config"])  # fmt: skip
