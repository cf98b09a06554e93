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


def fir_padding(kernel: int, filter_size: int, up: int, padding: int) -> tuple[int, int]:
    """FIR padding (before, after) of StyleGAN2's upsampling conv (ganserve.models.layers.conv2d_resample)."""
    p0 = padding + (filter_size + up - 1) // 2 - (kernel - 1)
    p1 = padding + (filter_size - up) // 2 - (kernel - up)
    return p0, p1


def upsampled_size(size: int, kernel: int, filter_size: int, up: int, padding: int) -> int:
    """Output size of transposed conv (stride up) + padded FIR: 2x the input for StyleGAN2's 3x3 / 4-tap layers."""
    p0, p1 = fir_padding(kernel, filter_size, up, padding)
    return (size - 1) * up + kernel + p0 + p1 - filter_size + 1


def fir(y: torch.Tensor, f: torch.Tensor, p0: int, p1: int, gain: float) -> torch.Tensor:
    """Pad (negative pads crop) and filter each channel with ``f`` x gain as a true convolution (upfirdn2d, up=1)."""
    y = F.pad(y, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    y = y[:, :, max(-p0, 0) : y.shape[2] - max(-p1, 0), max(-p0, 0) : y.shape[3] - max(-p1, 0)]
    c = y.shape[1]
    g = (f * gain).to(y.dtype).flip([0, 1])
    return F.conv2d(y, g[None, None].repeat(c, 1, 1, 1), groups=c)


def upsample_conv2d(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, up: int, padding: int) -> torch.Tensor:
    """StyleGAN2's 2x upsampling convolution: transposed conv (stride ``up``), then the FIR filter ``f`` [fh, fw]
    with gain up^2, as ganserve.models.layers.conv2d_resample."""
    p0, p1 = fir_padding(weight.shape[-1], f.shape[-1], up, padding)
    y = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=up)
    return fir(y, f, p0, p1, up * up)


def upsample_phase_weights(
    weight: torch.Tensor, f: torch.Tensor, up: int, padding: int
) -> tuple[torch.Tensor, int, int]:
    """The upsampling conv as up^2 stride-1 convolutions over the input, one per output phase.

    Transposed conv + FIR is linear and shift-equivariant with period ``up``: output pixel (up*i + py, up*j + px)
    is a correlation of the input window around (i, j) with a phase weight. Returns (phase weights
    [up*up, O, I, kp, kp] in fp32, phase index py*up + px; kp; padding of the phase convs). For StyleGAN2 (3x3
    weight, 4-tap filter, padding 1): kp = 3, padding 1.
    """
    o, i, kh, kw = weight.shape
    fh, fw = f.shape
    if kh != kw or fh != fw:
        raise ValueError(f"square weights and filters only, got {kh}x{kw} and {fh}x{fw}")
    p0, _ = fir_padding(kw, fw, up, padding)
    # output v = up*m + p reads x[m + d] through weight tap a and (flipped, gained) filter tap t when
    # up*(m + d) + a = v + t - p0, i.e. d = (p + t - p0 - a) / up
    combos = [(p, t, a) for p in range(up) for t in range(fw) for a in range(kw) if (p + t - p0 - a) % up == 0]
    ds = [(p + t - p0 - a) // up for p, t, a in combos]
    dmin, dmax = min(ds), max(ds)
    kp = dmax - dmin + 1
    sel = torch.zeros(up, kp, kw, fw)  # sel[p, j, a, t] = 1 where tap a and filter tap t land on phase p, offset j
    for (p, t, a), d in zip(combos, ds):
        sel[p, d - dmin, a, t] = 1.0
    g = (f.float() * (up * up)).flip([0, 1]).cpu()
    w = torch.einsum("oiyx,tu,pjyt,qkxu->pqoijk", weight.detach().float().cpu(), g, sel, sel)
    return w.reshape(up * up, o, i, kp, kp).to(weight.device), kp, -dmin


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None,
    bias: torch.Tensor | None,
    resample_filter: torch.Tensor | None,
    demodulate: bool,
    padding: int,
    up: int,
    activation: str,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """Activation-scaling form: scale the input by the styles, one shared convolution (up > 1: transposed conv +
    FIR), scale by the demodulation coefficients, then the epilogue."""
    n = x.shape[0]
    x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
    if up > 1:
        y = upsample_conv2d(x, weight, resample_filter, up, padding)
    else:
        y = F.conv2d(x, weight.to(x.dtype), padding=padding)
    if demodulate:
        y = y * demodulation_coefficients(weight, styles).to(y.dtype).reshape(n, -1, 1, 1)
    return epilogue(y, noise, bias, activation, gain, clamp)


def code_distances(z: torch.Tensor, codebook: torch.Tensor, indices: torch.Tensor, metric: str) -> torch.Tensor:
    """fp32 distance of each row of z to its code: |z - c|^2 (l2) or 1 - cos(z, c) (cosine), clamped at 0."""
    zf, cf = z.float(), codebook[indices].float()
    if metric == "l2":
        return (zf - cf).square().sum(1)
    cos = (F.normalize(zf, dim=1, eps=NORM_EPS) * F.normalize(cf, dim=1, eps=NORM_EPS)).sum(1)
    return (1.0 - cos).clamp_min(0.0)


def vq_nearest(z: torch.Tensor, codebook: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest code per row of z [N, D] in codebook [K, D], in fp32.

    l2: squared euclidean distance |z - c|^2; cosine: 1 - cos(z, c). Ties go to the lowest index (argmin's rule).
    The returned distances are those of the chosen codes, computed directly (not read off the score matrix).
    """
    zf, cf = z.float(), codebook.float()
    if metric == "l2":
        d = cf.square().sum(1)[None] - 2.0 * (zf @ cf.t())
        indices = d.argmin(dim=1)
    elif metric == "cosine":
        indices = (F.normalize(zf, dim=1, eps=NORM_EPS) @ F.normalize(cf, dim=1, eps=NORM_EPS).t()).argmax(dim=1)
    else:
        raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    return indices, code_distances(z, codebook, indices, metric)
