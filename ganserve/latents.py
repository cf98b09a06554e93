"""Latents from seeds, and interpolation between them: shared by every family's sampler.

A seed alone decides its latent (never the batch, the order or the neighbours), drawn the way the official scripts
draw it so that the same seed means the same image as upstream.
"""

from __future__ import annotations

import numpy as np
import torch


def normal_from_seed(seed: int, dim: int) -> torch.Tensor:
    """z ~ N(0, I): ``numpy.random.RandomState(seed).randn(dim)``, as StyleGAN2-ADA's generate.py draws it."""
    return torch.from_numpy(np.random.RandomState(seed).randn(dim)).to(torch.float32)


def truncated_normal_from_seed(seed: int, dim: int, threshold: float) -> torch.Tensor:
    """z ~ N(0, I) truncated to [-threshold, threshold] by resampling every component outside it (BigGAN).

    Each rejected component is redrawn from the same per-seed stream until it lands inside, so the result is a
    deterministic function of (seed, dim, threshold).
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    rng = np.random.RandomState(seed)
    z = rng.randn(dim)
    outside = np.abs(z) > threshold
    while outside.any():
        z[outside] = rng.randn(int(outside.sum()))
        outside = np.abs(z) > threshold
    return torch.from_numpy(z).to(torch.float32)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two latent vectors (angle taken between their directions)."""
    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1, 1))
    if float(omega) < 1e-6:
        return a.lerp(b, t)
    so = torch.sin(omega)
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def steps(n: int) -> list[float]:
    """Interpolation positions 0 .. 1 for ``n`` frames including both ends."""
    return [k / (n - 1) for k in range(n)]
