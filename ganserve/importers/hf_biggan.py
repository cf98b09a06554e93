"""huggingface/pytorch-pretrained-BigGAN checkpoints (``pytorch_model.bin``, with its ``config.json`` beside it).

Read with ``torch.load(weights_only=True)``: the file is a plain state dict. ganserve's BigGAN-deep keeps the release's
parameter names (see ganserve/models/biggan.py), so the mapping is one to one: ``embeddings.weight``,
``generator.gen_z.*``, ``generator.layers.N.{bn_K,conv_K}.*`` (spectral norm as ``weight_orig`` / ``weight_u`` /
``weight_v``), the self-attention at its index in ``generator.layers``, ``generator.bn.*``, ``generator.conv_to_rgb.*``.

Config: from ``config.json`` when it is beside the file, checked against the shapes; otherwise from the shapes alone.
Shapes give the class count, z size (the embedding is as wide as z in the release), channel width, every block's
channels, where the attention sits and the number of standing-statistics truncations; they cannot say which blocks
upsample, so without the config the release's pattern is assumed (two blocks per resolution, the second upsampling)
and recorded as a note, as is the default eps. Pre-1.0 torch state dicts (a stored ``weight`` without ``weight_v``)
are refused by the missing ``weight_v``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from ganserve.importers import Imported, ImportError_, load_torch_file

CONFIG_NAME = "config.json"
RELEASE_EPS = 1e-4
IMG_CHANNELS = 3  # the release slices the first 3 of conv_to_rgb's channel_width outputs


def detect(path: str | os.PathLike, data: bytes) -> bool:
    head = data[: 1 << 22]
    return b"generator.gen_z.weight_orig" in head and b"embeddings.weight" in head and b"bn_3.scale" in head


def _release_config(path: Any) -> dict[str, Any] | None:
    cfg_path = Path(path).with_name(CONFIG_NAME)
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise ImportError_(f"{cfg_path}: not a readable JSON config ({e})") from None
    if not isinstance(cfg, dict):
        raise ImportError_(f"{cfg_path}: not a BigGAN config (a JSON object)")
    return cfg


def _shape_config(path: Any, sd: dict[str, torch.Tensor]) -> tuple[dict[str, Any], list[str]]:
    """The config the tensors imply; notes say what was assumed rather than read."""
    try:
        embed_dim, c_dim = sd["embeddings.weight"].shape
        gen_out, cond = sd["generator.gen_z.weight_orig"].shape
        n_stats = sd["generator.bn.running_means"].shape[0]
    except (KeyError, ValueError):
        raise ImportError_(f"{path}: lacks the BigGAN generator's tensors (embeddings.weight, generator.gen_z, "
                           "generator.bn)") from None  # fmt: skip
    z_dim = cond - embed_dim
    ch = gen_out // 256  # gen_z makes a 4x4 map of 16 * ch channels
    indices = sorted({int(m.group(1)) for k in sd if (m := re.match(r"generator\.layers\.(\d+)\.", k))})
    blocks, attention = [], None
    for i in indices:
        if f"generator.layers.{i}.snconv1x1_theta.weight_orig" in sd:
            attention = len(blocks)
            continue
        try:
            cin = sd[f"generator.layers.{i}.conv_0.weight_orig"].shape[1]
            cout = sd[f"generator.layers.{i}.conv_3.weight_orig"].shape[0]
        except KeyError as e:
            raise ImportError_(f"{path}: generator.layers.{i} lacks {e.args[0]}") from None
        blocks.append([len(blocks) % 2 == 1, cin // ch, cout // ch])
    if not blocks:
        raise ImportError_(f"{path}: no generator blocks (generator.layers.N.conv_0 ...)")
    config = {
        "resolution": 4 * 2 ** sum(b[0] for b in blocks), "img_channels": IMG_CHANNELS, "c_dim": int(c_dim),
        "z_dim": int(z_dim), "embed_dim": int(embed_dim), "channel_width": int(ch), "layers": blocks,
        "attention_layer_position": attention, "deep": True, "n_stats": int(n_stats), "eps": RELEASE_EPS,
    }  # fmt: skip
    notes = ["no config.json beside the file: every second block upsamples (the release's pattern) and eps is "
             f"{RELEASE_EPS}, the release's"]  # fmt: skip
    return config, notes


def _merge(path: Any, shaped: dict[str, Any], release: dict[str, Any]) -> dict[str, Any]:
    """The release config in our names; refused where it contradicts the tensors."""
    cfg = dict(shaped)
    cfg["layers"] = [[bool(up), int(cin), int(cout)] for up, cin, cout in release.get("layers", shaped["layers"])]
    cfg["resolution"] = int(release.get("output_dim", 4 * 2 ** sum(b[0] for b in cfg["layers"])))
    for ours, theirs in (("c_dim", "num_classes"), ("z_dim", "z_dim"), ("channel_width", "channel_width"),
                         ("attention_layer_position", "attention_layer_position"), ("n_stats", "n_stats")):  # fmt: skip
        if theirs in release and release[theirs] != shaped[ours]:
            raise ImportError_(f"{path}: {CONFIG_NAME} says {theirs}={release[theirs]}, the tensors say "
                               f"{shaped[ours]}")  # fmt: skip
    if [b[1:] for b in cfg["layers"]] != [b[1:] for b in shaped["layers"]]:
        raise ImportError_(f"{path}: {CONFIG_NAME}'s layers {cfg['layers']} do not match the tensors' channels")
    cfg["eps"] = float(release.get("eps", RELEASE_EPS))
    return cfg


def read(path: str | os.PathLike, data: bytes) -> Imported:
    sd = load_torch_file(path, data)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ImportError_(f"{path}: not a state dict (found {type(sd).__name__})")
    src = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    config, notes = _shape_config(path, src)
    release = _release_config(path)
    if release is not None:
        config, notes = _merge(path, config, release), [f"config from {CONFIG_NAME} beside the file"]
    # Pre-1.0 torch spectral norm also stored the normalised weight itself; ours recomputes it from weight_u/v.
    tensors = {k: v for k, v in src.items() if not (k.endswith(".weight") and f"{k}_orig" in src)}
    unused = sorted(set(sd) - set(tensors))
    return Imported("biggan", config, tensors, unused, notes)
