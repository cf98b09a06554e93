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


def _config(G: PersistentObject, path: Any) -> dict[str, Any]:
    kw = G.init_kwargs
    mapping, synthesis = dict(kw.get("mapping_kwargs") or {}), dict(kw.get("synthesis_kwargs") or {})
    if synthesis.get("architecture", "skip") != "skip":
        raise ImportError_(f"{path}: the '{synthesis['architecture']}' generator architecture is not supported "
                           "(ganserve's StyleGAN2 is the skip generator, the official default)")  # fmt: skip
    w_dim = int(kw["w_dim"])
    for key in ("layer_features", "embed_features"):
        if mapping.get(key) not in (None, w_dim):
            raise ImportError_(f"{path}: mapping {key}={mapping[key]} differs from w_dim={w_dim}: not supported")
    if mapping.get("activation", "lrelu") != "lrelu" or synthesis.get("activation", "lrelu") != "lrelu":
        raise ImportError_(f"{path}: only the lrelu activation is supported")
    return {
        "resolution": int(kw["img_resolution"]),
        "img_channels": int(kw["img_channels"]),
        "z_dim": int(kw["z_dim"]),
        "w_dim": w_dim,
        "c_dim": int(kw.get("c_dim", 0)),
        "mapping_layers": int(mapping.get("num_layers", 8)),
        "mapping_lr_multiplier": float(mapping.get("lr_multiplier", 0.01)),
        "w_avg_beta": float(mapping.get("w_avg_beta", 0.995)),
        "channel_base": int(synthesis.get("channel_base", 32768)),
        "channel_max": int(synthesis.get("channel_max", 512)),
        "conv_clamp": synthesis.get("conv_clamp"),
        "num_fp16_res": int(synthesis.get("num_fp16_res", 0)),
        "resample_filter": list(synthesis.get("resample_filter", [1, 3, 3, 1])),
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
