"""Projection of a real image into a style-based generator's W space (StyleGAN2-ADA's projector, Karras et al. 2020).

Optimise one w (or one per layer with ``w_plus``) and, optionally, the per-layer noise maps so that the generator
reproduces the target: Adam from w_avg with a learning-rate ramp, Gaussian jitter on w that decays over the first
three quarters of the run (so the search leaves the mean), and the noise-map regulariser that keeps noise from
explaining the image at every scale. The loss is the pixel MSE plus, when a feature network is given (a trained-here
classifier: no pretrained VGG/LPIPS can be downloaded), the squared distance of its features. Deterministic for a seed.

The projected w can be sampled, mixed, interpolated and edited like a seed's, through the ``w`` request field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganserve.families import family_of
from ganserve.images import from_uint8, to_uint8
from ganserve.sampling import model_device

FeatureNet = Callable[[torch.Tensor], torch.Tensor]  # images [N, C, H, W] in [-1, 1] -> features [N, D]


@dataclass
class Projection:
    ws: torch.Tensor  # [num_ws, w_dim], what the ``w`` request field takes
    image: np.ndarray  # uint8 [H, W, C]: the reconstruction
    psnr: float  # of the reconstruction against the target, in dB
    steps: int
    losses: list[float] = field(default_factory=list)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * math.log10(255**2 / mse) if mse > 0 else float("inf")


def _noise_regularizer(noises: list[torch.Tensor]) -> torch.Tensor:
    """Auto-correlation of each noise map at shifts 1, 2, 4 ... pixels: zero for white noise (StyleGAN2-ADA)."""
    loss = torch.zeros([])
    for v in noises:
        noise = v[None, None] if v.ndim == 2 else v
        while True:
            loss = loss + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            loss = loss + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return loss


def project(
    model: nn.Module,
    target: np.ndarray,
    *,
    steps: int = 500,
    seed: int = 0,
    w_plus: bool = False,
    optimize_noise: bool = False,
    features: FeatureNet | None = None,
    feature_weight: float = 1.0,
    lr: float = 0.1,
    progress: Callable[[int, float], None] | None = None,
) -> Projection:
    """Find ws whose image is closest to ``target`` (uint8 [H, W, C] at the model's resolution and channels)."""
    sampler = family_of(model).sampler
    if not hasattr(sampler, "sample_ws"):
        raise ValueError(f"the {model.family} family has no W space to project into")
    cfg = model.config
    if target.shape != (cfg.resolution, cfg.resolution, cfg.img_channels):
        raise ValueError(f"target must be {cfg.resolution}x{cfg.resolution}x{cfg.img_channels}, got {target.shape}")
    device = model_device(model)
    gen = torch.Generator().manual_seed(seed)
    stats = sampler.sample_ws(model, 10_000)
    w_avg, w_std = stats.mean(0), float((stats - stats.mean(0)).square().sum(1).mean().sqrt())
    num_ws = model.num_ws
    start = w_avg.expand(num_ws if w_plus else 1, -1).clone()
    w_opt = start.to(device).requires_grad_(True)
    if optimize_noise:
        shapes = model.synthesis.noise_shapes()
        noises = [torch.randn([1, 1, h, w], generator=gen).to(device).requires_grad_(True) for h, w in shapes]
    else:  # the model's const noise: the projected w alone then reproduces the image in a ``w`` request
        noises = [layer.noise_const.detach().reshape(1, 1, *layer.noise_const.shape).to(device)
                  for layer in sampler.noise_layers(model)]  # fmt: skip
    params = [w_opt, *(noises if optimize_noise else [])]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    target_t = from_uint8(target).to(device)
    target_feat = features(target_t).detach() if features is not None else None
    losses = []

    def render(ws: torch.Tensor) -> torch.Tensor:
        rows = {"ws": ws.expand(num_ws, -1)[None] if not w_plus else ws[None]}
        rows.update({f"noise{k}": n for k, n in enumerate(noises)})
        return sampler.render(model, rows)

    with torch.enable_grad():
        for step in range(steps):
            t = step / max(steps, 1)
            # Jitter on w decays to zero at 3/4 of the run; the learning rate ramps up, then down (cosine).
            w_noise_scale = w_std * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
            lr_t = lr * (0.5 - 0.5 * math.cos(min(1.0, (1.0 - t) / 0.25) * math.pi)) * min(1.0, t / 0.05)
            for g in opt.param_groups:
                g["lr"] = lr_t
            ws = w_opt + torch.randn(w_opt.shape, generator=gen).to(device) * w_noise_scale
            img = render(ws)
            loss = F.mse_loss(img, target_t)
            if features is not None:
                loss = loss + feature_weight * (features(img) - target_feat).square().sum(1).mean()
            if optimize_noise:
                loss = loss + 1e3 * _noise_regularizer(noises)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if optimize_noise:
                with torch.no_grad():  # keep each noise map at zero mean, unit variance
                    for n in noises:
                        n -= n.mean()
                        n *= n.square().mean().rsqrt()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(step + 1, losses[-1])
    with torch.no_grad():
        final_ws = (w_opt.expand(num_ws, -1) if not w_plus else w_opt).detach()
        image = to_uint8(render(final_ws))[0]
    # With optimize_noise the reconstruction uses the optimised noise maps, which a ``w`` request does not carry.
    return Projection(final_ws.cpu(), image, psnr(image, target), steps, losses)
