"""Tiny random class-conditional generators (BigGAN, SAGAN) saved as real checkpoints, for tests that must not wait
on the trained models. Standing statistics are measured so eval-mode images are what a trained model's would be."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

import ganserve

CLASSES = ["circle", "square", "triangle"]
TINY_BIGGAN = dict(
    resolution=16, img_channels=3, c_dim=3, class_names=CLASSES, z_dim=24, embed_dim=16, channel_width=8,
    layers=[[True, 4, 2], [True, 2, 1]], attention_layer_position=1, n_stats=5, d_channel_width=8,
    d_layers=[[True, 1], [True, 2]], d_attention_layer_position=1,
)  # fmt: skip
TINY_SAGAN = dict(
    resolution=16, img_channels=3, c_dim=3, class_names=CLASSES, z_dim=16, g_channels=[32, 16, 16],
    attention_resolution=8, d_channel_width=8, d_layers=[[True, 1], [True, 2]], d_attention_layer_position=1,
)  # fmt: skip


def make_tiny_biggan(seed: int = 0, **overrides) -> torch.nn.Module:
    from ganserve.models.biggan import BigGANConfig, BigGANGenerator
    from ganserve.train.biggan import standing_statistics

    torch.manual_seed(seed)
    G = BigGANGenerator(BigGANConfig(**{**TINY_BIGGAN, **overrides}))
    with torch.no_grad():
        for m in G.modules():
            if hasattr(m, "gamma"):
                m.gamma.fill_(0.5)  # attention switched on, as after training
    standing_statistics(G, batches=2, batch_size=16, seed=seed)
    return G.eval().requires_grad_(False)


def make_tiny_sagan(seed: int = 0, **overrides) -> torch.nn.Module:
    from ganserve.models.sagan import SAGANConfig, SAGANGenerator
    from ganserve.train.biggan import standing_statistics

    torch.manual_seed(seed)
    G = SAGANGenerator(SAGANConfig(**{**TINY_SAGAN, **overrides}))
    with torch.no_grad():
        for m in G.modules():
            if hasattr(m, "gamma"):
                m.gamma.fill_(0.5)
    standing_statistics(G, batches=2, batch_size=16, seed=seed, truncated=False)
    return G.eval().requires_grad_(False)


def save_tiny(folder: Path, name: str, G: torch.nn.Module) -> Path:
    path = folder / f"{name}.safetensors"
    ganserve.save_generator(path, G, dataset="random", training={"step": 0})
    return path


@contextlib.contextmanager
def family_registered(name: str) -> Iterator[None]:
    """A family joins BUILTIN with its bundled checkpoint; until then a test registers it for its own duration only
    (so the conformance suite's "every registered family ships a checkpoint" holds in the same session)."""
    from ganserve.families import _LOADED, BUILTIN, register_family

    added = name not in BUILTIN and name not in _LOADED
    if added:
        register_family(f"ganserve.families.{name}")
    try:
        yield
    finally:
        if added:
            _LOADED.pop(name, None)


def with_class(model, body: dict) -> dict:
    """The body, with a class where the model asks for one (a conditional StyleGAN or ProGAN refuses a request
    without it)."""
    from ganserve.requests import RequestError
    from ganserve.sampling import plan

    if "class" in body or "classes" in body:
        return body
    try:
        plan(model, body)
    except RequestError as e:
        if e.field != "class":
            raise
        return {**body, "class": 1}
    return body
