"""Semantic directions in a generator's latent space, found without labels, cached once per model.

Two methods, as their papers define them:

* **SeFa** (Shen & Zhou, "Closed-Form Factorization of Latent Semantics in GANs", 2021): the directions n that move
  the styles most are the top eigenvectors of A^T A, A the style-affine weights of the chosen layers stacked row-wise.
  Computed from the weights alone, in milliseconds.
* **PCA in W** (Härkönen et al., "GANSpace", 2020): principal components of w = mapping(z) over many random z.

Every direction is a unit vector in W with the standard deviation of sampled ws along it, so an edit's ``amount`` is
in units of that std for both methods. A family supports edits by giving its sampler ``style_weights(model, layers)``
(SeFa) and ``sample_ws(model, n)`` (PCA). Results are cached in memory on the model and on disk in the user's cache
folder (``cache_dir``), keyed by the checkpoint's name and content hash. Each direction also has a name saying what
it changes, measured once when the directions are found and cached with them (``ganserve.direction_names``).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganserve import direction_names
from ganserve.checkpoint import CheckpointError, read_tensors, save_tensors
from ganserve.requests import RequestError

log = logging.getLogger("ganserve.directions")
METHODS = ("sefa", "pca")
PCA_SAMPLES = 10_000
DEFAULT_COUNT = 32


@dataclass
class Directions:
    method: str
    vectors: torch.Tensor  # [K, w_dim] unit vectors, most important first
    stds: torch.Tensor  # [K] std of sampled ws along each vector
    strengths: torch.Tensor  # [K] eigenvalues (SeFa: of A^T A; PCA: variances)
    names: list[str] = field(default_factory=list)  # what each changes ("darker"); empty: not named yet

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def name(self, k: int) -> str:
        from ganserve.direction_names import fallback

        return self.names[k] if k < len(self.names) else fallback(k)


def sefa(weights: list[torch.Tensor], count: int = DEFAULT_COUNT) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``count`` eigenvectors (rows) and eigenvalues of A^T A for A = the stacked [out, w_dim] weights."""
    a = torch.cat([w.detach().to(torch.float64).reshape(-1, w.shape[-1]) for w in weights])
    # Each layer's rows normalised, as the SeFa code does, so wide layers do not outvote narrow ones.
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    values, vectors = torch.linalg.eigh(a.T @ a)  # ascending
    order = values.argsort(descending=True)[:count]
    return vectors[:, order].T.to(torch.float32), values[order].to(torch.float32)


def pca(ws: torch.Tensor, count: int = DEFAULT_COUNT) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``count`` principal directions (rows) and variances of the rows of ``ws`` [N, w_dim]."""
    x = ws.detach().to(torch.float64)
    x = x - x.mean(0)
    cov = x.T @ x / max(x.shape[0] - 1, 1)
    values, vectors = torch.linalg.eigh(cov)
    order = values.argsort(descending=True)[:count]
    return vectors[:, order].T.to(torch.float32), values[order].to(torch.float32)


def _stds(vectors: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    return (ws.to(torch.float32) @ vectors.T).std(0)


def compute(model: nn.Module, method: str, count: int = DEFAULT_COUNT) -> Directions:
    """Directions of ``model`` by ``method`` (no cache)."""
    from ganserve.families import family_of

    sampler = family_of(model).sampler
    if not hasattr(sampler, "sample_ws"):
        raise ValueError(f"the {model.family} family has no latent directions to edit")
    ws = sampler.sample_ws(model, PCA_SAMPLES)
    if method == "sefa":
        vectors, strengths = sefa(sampler.style_weights(model), count)
    elif method == "pca":
        vectors, strengths = pca(ws, count)
    else:
        raise ValueError(f"unknown direction method '{method}' (methods: {', '.join(METHODS)})")
    # Eigenvectors have no sign: fix one (largest component positive) so "+amount" means the same every time.
    signs = vectors.gather(1, vectors.abs().argmax(1, keepdim=True)).sign()
    vectors = vectors * signs
    return Directions(method, vectors, _stds(vectors, ws), strengths)


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/ganserve/directions (~/.cache/... by default). Never beside the checkpoint: that folder may be
    the source tree or site-packages, and a wheel built from a used clone would ship the cache."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ganserve" / "directions"


def cache_path(model: nn.Module, method: str) -> Path:
    """The cache file of ``model``'s directions by ``method``, keyed by the checkpoint's name and content hash."""
    info = getattr(model, "checkpoint_info", None) or {}
    digest = info.get("content_hash", "sha256:unsaved").split(":", 1)[1][:16]
    name = f"{getattr(model, 'name', '') or model.family}.{method}-{digest}.directions.safetensors"
    return cache_dir() / name


def get(model: nn.Module, method: str = "sefa") -> Directions:
    """The model's directions by ``method``: from memory, the disk cache, or computed once and cached."""
    if method not in METHODS:
        raise ValueError(f"unknown direction method '{method}' (methods: {', '.join(METHODS)})")
    memo: dict[str, Directions] = model.__dict__.setdefault("_directions", {})
    if method in memo:
        return memo[method]
    path = cache_path(model, method)
    found = _read(path, method)
    fresh = found is None
    if found is None:
        found = compute(model, method)
    memo[method] = found  # first: naming renders edits along these very directions
    if not found.names:
        try:
            found.names = direction_names.measured(model, method, len(found))
        except RequestError as e:  # a model the fixed probe cannot render: unnamed, its edits still work
            log.warning("directions of %s not named: %s", getattr(model, "name", model.family), e)
            found.names = [direction_names.fallback(k) for k in range(len(found))]
        except BaseException:
            memo.pop(method, None)
            raise
        _save(model, path, found, method, fresh)
    memo[method] = replace(found, names=direction_names.overridden(found.names, _info(model), method))
    return memo[method]


def _info(model: nn.Module) -> dict[str, Any]:
    return getattr(model, "checkpoint_info", None) or {}


def _save(model: nn.Module, path: Path, found: Directions, method: str, fresh: bool) -> None:
    config = {"method": method, "names": found.names, "naming": direction_names.VERSION}
    with contextlib.suppress(OSError):  # a read-only cache only costs recomputation
        save_tensors(path, {"vectors": found.vectors, "stds": found.stds, "strengths": found.strengths},
                     {"family": model.family, "kind": "directions", "config": config})  # fmt: skip
        if not fresh:
            return
        prefix = path.name.rsplit("-", 1)[0]  # "<model>.<method>": the digest has no dash
        for stale in path.parent.glob(f"{glob.escape(prefix)}-*.directions.safetensors"):
            if stale != path:  # directions of an earlier version of this checkpoint
                stale.unlink()


def _read(path: Path, method: str) -> Directions | None:
    if not path.is_file():
        return None
    try:
        tensors, meta = read_tensors(path)
    except CheckpointError:
        return None  # a damaged cache file is recomputed and replaced
    if meta.get("kind") != "directions" or meta["config"].get("method") != method:
        return None
    names = meta["config"].get("names")
    if meta["config"].get("naming") != direction_names.VERSION or not isinstance(names, list):
        names = []  # named by other rules, or before names: named again, the vectors kept
    return Directions(method, tensors["vectors"], tensors["stds"], tensors["strengths"], [str(n) for n in names])


def describe(model: nn.Module) -> dict[str, Any]:
    """What the UI and the API's model description show: the methods, how many directions each offers, and their
    names by method (those the model has: an export made without directions has none)."""
    from ganserve.surface import latent_directions

    names = {}
    for method in METHODS:
        with contextlib.suppress(RequestError):
            found = latent_directions(model, method, "edits.method")
            names[method] = [found.name(k) for k in range(len(found))]
    return {"methods": list(METHODS), "count": DEFAULT_COUNT, "names": names}
