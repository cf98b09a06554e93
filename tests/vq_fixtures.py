"""Tiny random VQ-GAN and ViT-VQGAN models (first stage + prior) for the VQ tests: built in a second, saved as real
checkpoints so every test goes through ``ganserve.load``."""

from __future__ import annotations

from pathlib import Path

import torch

import ganserve

CLASSES = ["circle", "square", "triangle"]
TINY_VQGAN = dict(resolution=16, img_channels=1, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, z_channels=8, embed_dim=4,
                  n_embed=16, norm_groups=4, prior_layers=1, prior_heads=2, prior_embd=16)  # fmt: skip
TINY_VIT = dict(resolution=16, img_channels=1, patch_size=4, dim=16, enc_layers=1, dec_layers=1, heads=2, n_embed=16,
                lookup_dim=4, prior_layers=1, prior_heads=2, prior_embd=16)  # fmt: skip


def make_tiny(family: str = "vqgan", seed: int = 0, conditional: bool = True, **overrides) -> torch.nn.Module:
    """A random model whose codebook is spread out and whose prior is far from uniform (as trained ones are)."""
    from ganserve.families import get_family

    fam = get_family(family)
    base = TINY_VQGAN if family == "vqgan" else TINY_VIT
    cond = dict(c_dim=len(CLASSES), class_names=list(CLASSES)) if conditional else {}
    torch.manual_seed(seed)
    model = fam.make_generator(fam.make_config({**base, **cond, **overrides}))
    with torch.no_grad():
        model.first_stage.quantize.embedding.weight.normal_()
        for p in model.prior.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.5)
    return model.eval().requires_grad_(False)


def save_tiny(folder: Path, family: str = "vqgan", name: str | None = None, **kw) -> Path:
    path = Path(folder) / f"{name or 'tiny-' + family}.safetensors"
    ganserve.save_generator(path, make_tiny(family, **kw), dataset="random", training={"step": 0})
    return path
