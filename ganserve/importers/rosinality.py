"""rosinality/stylegan2-pytorch checkpoints (``train.py``'s ``{"g", "d", "g_ema", ..., "args"}`` .pt files).

Read with ``torch.load(weights_only=True)`` (argparse.Namespace allowed for the stored training args). The layout maps
onto StyleGAN2-ADA's (ganserve's) one to one: ``style.{i+1}`` -> ``mapping.fc{i}``; ``input.input`` -> ``b4.const``;
``conv1`` / ``convs.{2k}`` / ``convs.{2k+1}`` -> ``b4.conv1`` / ``b{R}.conv0`` / ``b{R}.conv1`` with
``conv.weight`` [1, O, I, k, k] -> ``weight``, ``conv.modulation`` -> ``affine``, ``noise.weight`` ->
``noise_strength``, ``activate.bias`` -> ``bias``; ``to_rgb1`` / ``to_rgbs.{k}`` -> ``b{R}.torgb``;
``noises.noise_{i}`` -> the i-th layer's ``noise_const``. rosinality scales every modulated weight by 1/sqrt(fan_in)
where the official code scales only toRGB's styles: with demodulation the factor cancels, so the weights copy as they
are. rosinality stores no w_avg (``mean_latent`` is computed at run time): it is computed on import from 10,000 z of a
fixed seed and recorded as derived.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import zipfile
from typing import Any

import torch

from ganserve.importers import Imported, ImportError_, load_torch_file, take_tensors

W_AVG_SAMPLES = 10_000


def detect(path: str | os.PathLike, data: bytes) -> bool:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return False
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
    return any(n.endswith("/data.pkl") for n in names) and b"g_ema" in data[: 1 << 16] and b"style.1.weight" in data


def _load(path: Any, data: bytes) -> dict[str, Any]:
    ckpt = load_torch_file(path, data, allowed=(argparse.Namespace,))
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("g_ema"), dict):
        raise ImportError_(f"{path}: no g_ema state dict (a rosinality checkpoint holds g, d, g_ema)")
    return ckpt


def _layer_names(log_size: int) -> list[tuple[str, str]]:
    """(rosinality prefix, ganserve prefix) of every styled conv, in noise order."""
    out = [("conv1", "synthesis.b4.conv1")]
    for k, i in enumerate(range(3, log_size + 1)):
        out += [(f"convs.{2 * k}", f"synthesis.b{2**i}.conv0"), (f"convs.{2 * k + 1}", f"synthesis.b{2**i}.conv1")]
    return out


def read(path: str | os.PathLike, data: bytes) -> Imported:
    ckpt = _load(path, data)
    src: dict[str, torch.Tensor] = {k: v for k, v in ckpt["g_ema"].items() if isinstance(v, torch.Tensor)}
    try:
        n_mlp = max(int(k.split(".")[1]) for k in src if k.startswith("style.") and k.endswith(".weight"))
        w_dim = src["style.1.weight"].shape[0]
        c4 = src["input.input"].shape[1]
        n_convs = sum(1 for k in src if k.startswith("convs.") and k.endswith(".conv.weight"))
    except (KeyError, ValueError, IndexError):
        raise ImportError_(f"{path}: g_ema lacks the rosinality generator's tensors (style.N, input.input)") from None
    log_size = 2 + n_convs // 2
    resolution = 2**log_size
    # channels at 64 px and up are 256 * channel_multiplier / (res / 64): recover the multiplier from a top layer.
    top = src[f"convs.{n_convs - 1}.conv.weight"].shape[1] if n_convs else c4
    channel_base = top * resolution if resolution > 32 else 32768
    config = {
        "resolution": resolution, "img_channels": 3, "z_dim": w_dim, "w_dim": w_dim, "c_dim": 0,
        "mapping_layers": n_mlp, "mapping_lr_multiplier": 0.01, "channel_base": int(channel_base),
        "channel_max": int(c4), "conv_clamp": None, "num_fp16_res": 0,
    }  # fmt: skip
    args = ckpt.get("args")
    if isinstance(args, argparse.Namespace) and getattr(args, "mlp_lr", None) is not None:
        config["mapping_lr_multiplier"] = float(args.mlp_lr)
    out: dict[str, torch.Tensor] = {}
    take, used = take_tensors(path, src, "g_ema")

    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias")
    out["synthesis.b4.const"] = take("input.input")[0]
    for idx, (theirs, ours) in enumerate(_layer_names(log_size)):
        out[f"{ours}.weight"] = take(f"{theirs}.conv.weight")[0]
        out[f"{ours}.affine.weight"] = take(f"{theirs}.conv.modulation.weight")
        out[f"{ours}.affine.bias"] = take(f"{theirs}.conv.modulation.bias")
        out[f"{ours}.noise_strength"] = take(f"{theirs}.noise.weight").reshape([])
        out[f"{ours}.bias"] = take(f"{theirs}.activate.bias")
        out[f"{ours}.noise_const"] = take(f"noises.noise_{idx}")[0, 0]
    for k, res in enumerate([4, *[2**i for i in range(3, log_size + 1)]]):
        theirs = "to_rgb1" if res == 4 else f"to_rgbs.{k - 1}"
        out[f"synthesis.b{res}.torgb.weight"] = take(f"{theirs}.conv.weight")[0]
        out[f"synthesis.b{res}.torgb.affine.weight"] = take(f"{theirs}.conv.modulation.weight")
        out[f"synthesis.b{res}.torgb.affine.bias"] = take(f"{theirs}.conv.modulation.bias")
        out[f"synthesis.b{res}.torgb.bias"] = take(f"{theirs}.bias").reshape(-1)
    out["mapping.w_avg"] = _w_avg(out, n_mlp, w_dim, config["mapping_lr_multiplier"])
    unused = sorted(set(src) - used) + [f"{k}.*" for k in ckpt if k not in ("g_ema",) and isinstance(ckpt[k], dict)]
    notes = [f"mapping.w_avg computed from {W_AVG_SAMPLES} z (torch seed 0): rosinality stores no w average"]
    if not math.log2(resolution).is_integer():
        raise ImportError_(f"{path}: resolution {resolution} is not a power of two")
    return Imported("stylegan2", config, out, unused, notes)


@torch.no_grad()
def _w_avg(tensors: dict[str, torch.Tensor], n_mlp: int, w_dim: int, lr: float) -> torch.Tensor:
    """mean of mapping(z) over a fixed sample, with the mapping's own arithmetic (pixel norm, scaled lrelu FCs)."""
    from ganserve.models.layers import bias_act, normalize_2nd_moment

    z = torch.randn(W_AVG_SAMPLES, w_dim, generator=torch.Generator().manual_seed(0))
    x = normalize_2nd_moment(z)
    for i in range(n_mlp):
        w = tensors[f"mapping.fc{i}.weight"].float() * (lr / math.sqrt(x.shape[1]))
        x = bias_act(x @ w.T, tensors[f"mapping.fc{i}.bias"].float() * lr, "lrelu")
    return x.mean(0)
