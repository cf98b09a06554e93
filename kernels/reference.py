"""PyTorch references for the kernels: the truth the Triton code is tested against, the path for every non-CUDA
device, and the decomposition ONNX export sees. Standard ops only (conv2d, matmul, argmin, gather), no loops, so they
trace under torch.export with dynamic shapes."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)
DEMOD_EPS = 1e-8
NORM_EPS = 1e-12
ACTIVATIONS = ("lrelu", "relu", "linear")


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """rsqrt(s^2 . sum_taps W^2 + eps) for every (sample, out channel): a small [N, I] x [I, O] GEMM, in fp32."""
    wsq = weight.float().square().sum(dim=[2, 3])  # [O, I]
    return (styles.float().square() @ wsq.t() + DEMOD_EPS).rsqrt()  # [N, O]


def epilogue(
    y: torch.Tensor,
    noise: torch.Tensor | None,
    bias: torch.Tensor | None,
    activation: str,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """noise + bias, activation, gain, clamp: what the Triton kernel applies to its accumulator before storing."""
    if noise is not None:
        y = y + noise.to(y.dtype)
    if bias is not None:
        y = y + bias.to(y.dtype).reshape(1, -1, 1, 1)
    if activation == "lrelu":
        y = F.leaky_relu(y, 0.2)
    elif activation == "relu":
        y = F.relu(y)
    if gain != 1.0:
        y = y * gain
    if clamp is not None:
        y = y.clamp(-clamp, clamp)
    return y


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None,
    bias: torch.Tensor | None,
    demodulate: bool,
    padding: int,
    activation: str,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """Activation-scaling form: scale the input by the styles, one shared convolution, scale by the demodulation
    coefficients, then the epilogue."""
    n = x.shape[0]
    y = F.conv2d(x * styles.to(x.dtype).reshape(n, -1, 1, 1), weight.to(x.dtype), padding=padding)
    if demodulate:
        y = y * demodulation_coefficients(weight, styles).to(y.dtype).reshape(n, -1, 1, 1)
    return epilogue(y, noise, bias, activation, gain, clamp)


def vq_nearest(z: torch.Tensor, codebook: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest code per row of z [N, D] in codebook [K, D], in fp32.

    l2: squared euclidean distance |z - c|^2; cosine: 1 - cos(z, c). Ties go to the lowest index (argmin's rule).
    """
    zf, cf = z.float(), codebook.float()
    if metric == "l2":
        d = zf.square().sum(1, keepdim=True) + cf.square().sum(1)[None] - 2.0 * (zf @ cf.t())
    elif metric == "cosine":
        d = 1.0 - F.normalize(zf, dim=1, eps=NORM_EPS) @ F.normalize(cf, dim=1, eps=NORM_EPS).t()
    else:
        raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    indices = d.argmin(dim=1)
    return indices, d.gather(1, indices[:, None]).squeeze(1).clamp_min(0.0)
