"""Shared fixtures: tiny random generators saved as real checkpoints, so tests never wait on the trained model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

import ganserve
from ganserve.models.stylegan import StyleGANConfig, StyleGANGenerator
from ganserve.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

TINY = dict(resolution=16, img_channels=3, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32)
CLASSES = ["circle", "square", "triangle"]


def make_tiny_generator(seed: int = 0, family: str = "stylegan2", **overrides) -> torch.nn.Module:
    """A small random StyleGAN2 (or StyleGAN v1: ``family="stylegan"``) whose noise inputs and w_avg are non-trivial
    (as a trained one's would be)."""
    torch.manual_seed(seed)
    if family == "stylegan":
        G = StyleGANGenerator(StyleGANConfig(**{**TINY, **overrides})).eval()
    else:
        G = StyleGAN2Generator(StyleGAN2Config(**{**TINY, **overrides})).eval()
    with torch.no_grad():
        for m in G.modules():
            if hasattr(m, "noise_strength"):
                m.noise_strength.fill_(0.3)
        G.mapping.w_avg.copy_(G.mapping(torch.randn(256, G.config.z_dim), _cond(G)).mean(0)[0])
    return G.requires_grad_(False)


def _cond(G):
    return torch.randint(0, G.config.c_dim, [256]) if G.config.c_dim else None


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """A checkpoints folder with 'tiny' (unconditional) and 'tiny-cond' (3 named classes)."""
    d = tmp_path_factory.mktemp("checkpoints")
    ganserve.save_generator(d / "tiny.safetensors", make_tiny_generator(), dataset="random", training={"step": 0})
    cond = make_tiny_generator(1, c_dim=3, class_names=CLASSES)
    ganserve.save_generator(d / "tiny-cond.safetensors", cond, dataset="random", training={"step": 0})
    return d


@pytest.fixture(scope="session")
def tiny_path(tiny_models_dir) -> Path:
    return tiny_models_dir / "tiny.safetensors"


@pytest.fixture(scope="session")
def tiny_cond_path(tiny_models_dir) -> Path:
    return tiny_models_dir / "tiny-cond.safetensors"


@pytest.fixture()
def tiny(tiny_path):
    return ganserve.load(tiny_path)


@pytest.fixture()
def tiny_cond(tiny_cond_path):
    return ganserve.load(tiny_cond_path)


def ganserve_cmd(*args: str) -> list[str]:
    """The CLI as a subprocess command line, run with this interpreter."""
    return [sys.executable, "-m", "ganserve.cli", *args]


@pytest.fixture(scope="module")
def latents_dir(tmp_path_factory):
    """GANSERVE_LATENTS for one test module: projected ws go here, not to the user's cache."""
    mp = pytest.MonkeyPatch()
    d = tmp_path_factory.mktemp("latents")
    mp.setenv("GANSERVE_LATENTS", str(d))
    yield d
    mp.undo()


def warm_export_cache(pairs: list[tuple[str, Path]], workers: int = 2) -> None:
    """Put each (format, checkpoint)'s export in the export cache, ``workers`` processes side by side. An export is
    mostly single-threaded Python (tracing, graph passes), so on a 2-core CI machine a second process halves the wait;
    the tests then load the cached folders exactly as they would have exported them (ganserve.export.cache). The
    processes inherit the environment (the session's GANSERVE_EXPORT_CACHE); an export that fails raises here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ganserve.export.cache import cached_export

    workers = min(workers, len(pairs), os.cpu_count() or 1)
    if workers < 2:
        return  # nothing to overlap: each test exports on first use, as without this
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in [pool.submit(cached_export, fmt, str(ckpt)) for fmt, ckpt in pairs]:
            done.result()


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory):
    """One export cache for the whole run: exporting a bundled model takes tens of seconds, so every test that needs
    its onnx or pt2 graphs (conformance, batch invariance, serving) shares one export of it."""
    mp = pytest.MonkeyPatch()
    if not os.environ.get("GANSERVE_EXPORT_CACHE"):
        mp.setenv("GANSERVE_EXPORT_CACHE", str(tmp_path_factory.getbasetemp() / "exports"))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_server(tiny_models_dir, tmp_path_factory):
    """One real TorchServe serving 'tiny' alone (batch 1, at most 4 images a request, default key expiry), shared by
    the modules that only need such a server running (test_serve_keys, test_serve_management): each start of TorchServe
    costs 20-40 s. A module that needs another configuration starts its own."""
    from ganserve.serving.launcher import Server
    from ganserve.serving.store import ArchiveOptions

    options = ArchiveOptions(batch_size=1, max_batch_delay_ms=1, max_images=4)
    with Server({"tiny": tiny_models_dir / "tiny.safetensors"}, tmp_path_factory.mktemp("ts"), archive=options) as s:
        yield s
