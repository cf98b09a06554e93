"""CompVis/taming-transformers checkpoints: a VQGAN first stage (``VQModel``) or a ``Net2NetTransformer`` .ckpt.

Both are PyTorch Lightning checkpoints: ``{"state_dict": ..., "callbacks": ..., "optimizer_states": ...}``. They are
read with ``torch.load(weights_only=True)``; Lightning keys its callback states by the callback's *class* and may
store OmegaConf objects, which weights_only refuses, so globals from Lightning and OmegaConf load as inert stand-ins
(``safe_pickle.InertObject``: data, no code) and anything else is refused by name.

First stage. ganserve's VQ-GAN keeps taming's names (``encoder.down.N.block.M.*``, ``quantize.embedding.weight``,
``quant_conv``, ``post_quant_conv`` ...), so these copy one to one under ``first_stage.``; ``loss.*`` (the PatchGAN
discriminator and LPIPS) is left unused. From the shapes: ch and the input channels (``encoder.conv_in``), ch_mult
(each level's first block), num_res_blocks, the levels with attention, z_channels (``quant_conv``'s input),
embed_dim and n_embed (the codebook). Refused: double_z encoders, Gumbel quantisers, index remapping
(``quantize.used``).

Transformer. ``first_stage_model.*`` is the first stage as above; ``transformer.*`` is taming's minGPT, whose names
ganserve's prior keeps (n_layer from the blocks, n_embd from ``tok_emb``, vocabulary and block size from ``tok_emb``
and ``pos_emb``). Two layout differences are converted: taming feeds the class (``Labelator``) or the start token
(``SOSProvider``, ``sos_token``) through the *same* embedding table as the codes, where ganserve's vocabulary puts the
class tokens after the codes, so our ``tok_emb`` is taming's code rows followed by the rows of the class (start)
token ids; and our head predicts codes only (taming's rows past the codebook, if any, are dropped). taming's
``pos_emb`` has ``block_size`` rows (the 1 + H*W - 1 positions it ever feeds); ours has 1 + H*W, the last row (the
position after the final code, never used to predict one) is zero when taming has none. ``cond_stage_model.*`` with
tensors (depth / segmentation conditioning) and non-identity permuters are refused.

What shapes cannot say — the image resolution (only which levels have attention), the head count, whether the prior is
class-conditional and its sos token — comes from the project's .yaml config when it is beside the file (or in
``../configs/``, taming's log layout); otherwise the resolution follows from the prior's block size, and for a first
stage alone (whose convolutions fit any size) it must be given (``--resolution``): it is never guessed. Without a config
the head count is minGPT's default 8, the prior is unconditional with sos token 0, and each assumption is a note in the
output. A first stage without a transformer gets an untrained prior (torch
seed 0), as ganserve's own first-stage checkpoints have: it serves reconstructions and is the first stage for ``ganserve
train --stage prior --first-stage``.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import torch

from ganserve.importers import Imported, ImportError_, load_torch_file, take_tensors
from ganserve.importers.safe_pickle import INERT_MODULES, InertObject

FIRST_STAGE_MODULES = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
RELEASE_GRID = 16  # taming's f16 releases: 256 px images, 16x16 codes
MINGPT_HEADS = 8
NORM_GROUPS = 32  # taming's Normalize: GroupNorm(32)
PLACEHOLDER_PRIOR = {"prior_layers": 4, "prior_heads": 4, "prior_embd": 128}  # VQGANConfig's defaults


def detect(path: str | os.PathLike, data: bytes) -> bool:
    head = data[: 1 << 22]
    return b"state_dict" in head and b"encoder.down.0.block.0.conv1.weight" in head and b"quant_conv.weight" in head


def _project_config(path: Any) -> tuple[dict[str, Any], str]:
    """model.params of the taming project .yaml beside the file (or in ../configs), and where it was; {} if none."""
    here = Path(path).parent
    candidates = sorted(here.glob("*.yaml")) + sorted((here.parent / "configs").glob("*.yaml"))
    if not candidates:
        return {}, ""
    import yaml  # only needed when a config is there

    for cand in candidates:
        try:
            doc = yaml.safe_load(cand.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ImportError_(f"{cand}: not a readable YAML config ({e})") from None
        params = doc.get("model", {}).get("params") if isinstance(doc, dict) else None
        if isinstance(params, dict):
            return params, str(cand)
    return {}, ""


def _plain_hparams(ckpt: dict[str, Any]) -> dict[str, Any]:
    """hyper_parameters when Lightning stored a plain dict (taming's models do not call save_hyperparameters)."""
    hp = ckpt.get("hyper_parameters")
    return hp if isinstance(hp, dict) and not any(isinstance(v, InertObject) for v in hp.values()) else {}


def _count(src: dict[str, Any], pattern: str) -> int:
    return len({m.group(1) for k in src if (m := re.fullmatch(pattern, k))})


def _first_stage(path: Any, src: dict[str, torch.Tensor], p: str, dd: dict[str, Any]) -> tuple[dict, dict, set]:
    """(first-stage config fields, our first-stage tensors, source names used) from the tensors under prefix p."""
    if p + "quantize.embed.weight" in src:
        raise ImportError_(f"{path}: a Gumbel quantiser (quantize.embed, quantize.proj) is not supported")
    if p + "quantize.used" in src:
        raise ImportError_(f"{path}: quantize.used remaps code indices: not supported")
    take, used = take_tensors(path, src, "the state dict")
    conv_in = take(p + "encoder.conv_in.weight")
    ch, img_channels = conv_in.shape[:2]
    levels = _count(src, re.escape(p) + r"encoder\.down\.(\d+)\.block\.0\.conv1\.weight")
    blocks = _count(src, re.escape(p) + r"encoder\.down\.0\.block\.(\d+)\.conv1\.weight")
    if not levels or not blocks:
        raise ImportError_(f"{path}: lacks {p}encoder.down.0.block.0.conv1.weight")
    ch_mult = [take(f"{p}encoder.down.{i}.block.0.conv1.weight").shape[0] // ch for i in range(levels)]
    attn_levels = [i for i in range(levels) if f"{p}encoder.down.{i}.attn.0.q.weight" in src]
    quant_conv = take(p + "quant_conv.weight")
    embed_dim, z_channels = quant_conv.shape[:2]
    if take(p + "encoder.conv_out.weight").shape[0] != z_channels:
        raise ImportError_(f"{path}: the encoder makes {src[p + 'encoder.conv_out.weight'].shape[0]} channels for "
                           f"{z_channels} z channels (double_z): not a VQGAN first stage")  # fmt: skip
    if take(p + "decoder.conv_out.weight").shape[0] != img_channels:
        raise ImportError_(f"{path}: the decoder makes {src[p + 'decoder.conv_out.weight'].shape[0]} channels from "
                           f"{img_channels}-channel images: not an image autoencoder")  # fmt: skip
    resolution = int(dd.get("resolution", 0))
    config = {
        "resolution": resolution, "img_channels": int(img_channels), "ch": int(ch), "ch_mult": ch_mult,
        "num_res_blocks": blocks, "attn_levels": attn_levels, "z_channels": int(z_channels),
        "embed_dim": int(embed_dim), "n_embed": int(take(p + "quantize.embedding.weight").shape[0]),
        "dropout": 0.0, "norm_groups": NORM_GROUPS, "beta": 0.25, "ema": p + "quantize.embedding.cluster_size" in src,
    }  # fmt: skip
    tensors = {}
    for k in src:
        if k.startswith(p) and k[len(p) :].startswith(FIRST_STAGE_MODULES):
            tensors["first_stage." + k[len(p) :]] = take(k)
    return config, tensors, used


def _class_tokens(path: Any, params: dict[str, Any], notes: list[str]) -> tuple[int, list[int]]:
    """(c_dim, the taming token id of each of our start tokens): Labelator classes, or the sos token."""
    cond = params.get("cond_stage_config")
    target = cond.get("target", "") if isinstance(cond, dict) else str(cond or "")
    if target.endswith("Labelator") and not params.get("unconditional", False):
        n = int(cond.get("params", {}).get("n_classes", 0))
        if n < 1:
            raise ImportError_(f"{path}: the Labelator conditioning stage gives no n_classes")
        return n, list(range(n))  # Labelator: class k is token k
    if target and target not in ("__is_unconditional__",) and not target.endswith("SOSProvider"):
        raise ImportError_(f"{path}: conditioning stage {target} is not supported (class labels or unconditional only)")
    sos = params.get("sos_token", (cond.get("params", {}) if isinstance(cond, dict) else {}).get("sos_token"))
    if not params:
        notes.append("no project config: the prior is taken as unconditional with sos token 0 (taming's default)")
    return 0, [int(sos or 0)]


def _prior(path: Any, src: dict[str, torch.Tensor], params: dict[str, Any], num_codes: int, code_len: int,
           notes: list[str]) -> tuple[dict, dict, set]:  # fmt: skip
    take, used = take_tensors(path, src, "the transformer")
    tok, pos, head = take("transformer.tok_emb.weight"), take("transformer.pos_emb"), take("transformer.head.weight")
    vocab, n_embd = tok.shape
    n_layer = _count(src, r"transformer\.blocks\.(\d+)\.ln1\.weight")
    gpt = params.get("transformer_config", {}).get("params", {})
    n_head = int(gpt.get("n_head", 0))
    if not n_head:
        n_head = MINGPT_HEADS
        notes.append(f"no project config: the transformer's head count is minGPT's default {MINGPT_HEADS}")
    c_dim, token_ids = _class_tokens(path, params, notes)
    if vocab < num_codes or max(token_ids) >= vocab:
        raise ImportError_(f"{path}: the transformer's vocabulary ({vocab}) does not hold the {num_codes} codes and "
                           f"the start tokens {token_ids[:3]}...")  # fmt: skip
    if pos.shape[1] < code_len:
        raise ImportError_(f"{path}: the transformer's block size {pos.shape[1]} is shorter than the {code_len} codes")
    if pos.shape[1] == code_len:  # taming never feeds the last code: our extra row is never used to predict
        pos = torch.cat([pos, pos.new_zeros(1, 1, n_embd)], dim=1)
    tensors = {
        "prior.tok_emb.weight": torch.cat([tok[:num_codes], tok[token_ids]]),
        "prior.pos_emb": pos[:, : code_len + 1].clone(),
        "prior.head.weight": head[:num_codes].clone(),
    }
    if vocab > num_codes:
        notes.append(f"the transformer's {vocab - num_codes} logits past the codebook are dropped")
    for k in src:
        if k.startswith("transformer.") and re.match(r"transformer\.(blocks\.\d+\.(ln1|ln2|attn\.(key|query|value|proj)"
                                                     r"|mlp\.[02])|ln_f)\.", k):  # fmt: skip
            tensors["prior." + k.removeprefix("transformer.")] = take(k)
    config = {"c_dim": c_dim, "prior_layers": n_layer, "prior_heads": n_head, "prior_embd": int(n_embd)}
    return config, tensors, used


def _placeholder_prior(config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """An untrained prior for a first stage alone (what ganserve's own first-stage checkpoints hold)."""
    from ganserve.models.transformer import GPTPrior
    from ganserve.models.vqgan import VQGANConfig

    try:
        full = VQGANConfig(**config)
    except (TypeError, ValueError) as e:
        raise ImportError_(f"the inferred vqgan config is not supported ({e})") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        prior = GPTPrior(full.prior_config())
    return {"prior." + k: v for k, v in prior.state_dict().items()}


def read(path: str | os.PathLike, data: bytes, *, resolution: int | None = None) -> Imported:
    ckpt = load_torch_file(path, data, inert_modules=INERT_MODULES)
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise ImportError_(f"{path}: no state_dict (a taming .ckpt is a Lightning checkpoint holding one)")
    src = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    params, where = _project_config(path)
    params = params or _plain_hparams(ckpt)
    notes = [f"config from {where}"] if where else []
    is_prior = any(k.startswith("transformer.") for k in src)
    if is_prior and any(k.startswith("cond_stage_model.") for k in src):
        raise ImportError_(f"{path}: a conditioning stage with weights (cond_stage_model.*: depth, segmentation ...) "
                           "is not supported; class-conditional and unconditional transformers are")  # fmt: skip
    if any(k.startswith("permuter.") for k in src):
        raise ImportError_(f"{path}: a permuter (permuter.*) reorders the codes: only raster order is supported")
    perm = params.get("permuter_config", {})
    if isinstance(perm, dict) and perm.get("target", "Identity").rsplit(".", 1)[-1] != "Identity":
        raise ImportError_(f"{path}: permuter {perm['target']} reorders the codes: only raster order is supported")
    fs_params = params.get("first_stage_config", {}).get("params", {}) if is_prior else params
    dd = fs_params.get("ddconfig", {}) if isinstance(fs_params, dict) else {}
    config, tensors, used = _first_stage(path, src, "first_stage_model." if is_prior else "", dd)
    levels = len(config["ch_mult"])
    if is_prior and not config["resolution"]:
        block = src["transformer.pos_emb"].shape[1] if "transformer.pos_emb" in src else 0
        sides = (math.isqrt(block), math.isqrt(max(block - 1, 0)))  # block = H*W (taming's) or 1 + H*W
        side = next((s for s in sides if s and s * s in (block, block - 1)), 0)
        if side:
            config["resolution"] = side << (levels - 1)
            notes.append(f"resolution {config['resolution']} from the transformer's block size {block} "
                         f"({side}x{side} codes)")  # fmt: skip
    if not config["resolution"] and resolution is not None:
        config["resolution"] = resolution
        notes.append(f"resolution {resolution} from --resolution")
    if not config["resolution"]:
        # A convolutional first stage works at any size: nothing in its weights says what it was trained at (taming's
        # f16 releases are 256 px, an f4 model may be 32 px), so ask rather than guess.
        raise ImportError_(f"{path}: a first stage alone does not say its image resolution, and no project .yaml "
                           f"was found beside it (or in ../configs): pass --resolution, e.g. --resolution "
                           f"{RELEASE_GRID << (levels - 1)} for a {RELEASE_GRID}x{RELEASE_GRID} code grid")  # fmt: skip
    if config["resolution"] >> (levels - 1) << (levels - 1) != config["resolution"]:
        raise ImportError_(f"{path}: resolution {config['resolution']} is not divisible by the first stage's "
                           f"downsampling factor {1 << (levels - 1)}")  # fmt: skip
    config["attn_resolutions"] = [config["resolution"] >> i for i in config.pop("attn_levels")]
    code_size = config["resolution"] >> (levels - 1)
    if is_prior:
        prior_cfg, prior_tensors, prior_used = _prior(path, src, params, config["n_embed"], code_size**2, notes)
        config.update(prior_cfg)
        used |= prior_used
    else:
        config.update(PLACEHOLDER_PRIOR)
        prior_tensors = _placeholder_prior(config)
        notes.append("no transformer in the file: the prior is untrained (torch seed 0); it serves reconstructions "
                     "and is a first stage for ganserve train --stage prior --first-stage")  # fmt: skip
    tensors.update(prior_tensors)
    unused = sorted(set(sd) - used)
    return Imported("vqgan", config, tensors, unused, notes)
