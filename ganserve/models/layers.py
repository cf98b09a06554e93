"""Layers shared by the GAN families, each defined once.

Equalized learning rate (Karras et al., ProGAN): weights are stored with unit variance and scaled by
1/sqrt(fan_in) at run time, so Adam sees every layer at the same scale. The FIR resampling follows
StyleGAN2's upfirdn2d semantics (zero-insert, pad, filter, decimate) in plain PyTorch.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
_state = threading.local()  # per thread, so concurrent samplers in one process never switch each other's mode


@contextlib.contextmanager
def batch_invariant(enabled: bool = True) -> Iterator[None]:
    """Compute fully-connected layers so each row's result is bitwise independent of the batch around it.

    BLAS picks kernels by the number of rows, which moves results by an ulp and, after rounding to uint8, flips the
    odd pixel. Inside this context linear layers use a broadcast multiply and a reduction over a fixed axis instead
    (cheap at generator sizes); convolutions are already row-independent for batches of two or more.
    """
    previous = getattr(_state, "batch_invariant", False)
    _state.batch_invariant = enabled
    try:
        yield
    finally:
        _state.batch_invariant = previous


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    if not getattr(_state, "batch_invariant", False):
        return F.linear(x, weight, bias)
    y = (x.unsqueeze(-1) * weight.t()).sum(-2)
    return y if bias is None else y + bias


# ---------------------------------------------------------------------------------------------------------------------
# Activations and normalisation


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Pixel norm: scale each vector to unit mean square along ``dim``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = "lrelu",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a per-channel bias, apply the activation scaled by its gain, then clamp (as StyleGAN2's bias_act)."""
    if bias is not None:
        x = x + bias.reshape([1, -1] + [1] * (x.ndim - 2))
    if activation == "lrelu":
        x = F.leaky_relu(x, 0.2)
        gain = SQRT2 if gain is None else gain
    elif activation == "relu":
        x = F.relu(x)
        gain = SQRT2 if gain is None else gain
    elif activation is not None:
        raise ValueError(f"unknown activation {activation!r}")
    if gain is not None and gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


# ---------------------------------------------------------------------------------------------------------------------
# FIR resampling (upfirdn2d)


def setup_filter(taps: list[float] | tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """A separable 2-D low-pass filter from 1-D taps, normalised to unit sum."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] | int = 0,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative pads crop), convolve with ``f``, then keep every ``down``-th pixel.

    ``padding`` is (x0, x1, y0, y1). The filter is applied as a true convolution (flipped), which for the symmetric
    filters used here is the same as correlation.
    """
    if isinstance(padding, int):
        padding = (padding, padding, padding, padding)
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = (f * gain).to(x.dtype).flip([0, 1])
    weight = f[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    fw = f.shape[-1]
    p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """Convolution with optional 2x FIR up/downsampling, as in StyleGAN2.

    up: transposed stride-2 convolution followed by the FIR filter (gain up^2);
    down: FIR filter followed by a stride-2 convolution.
    """
    kh, kw = w.shape[-2:]
    if up > 1:
        assert f is not None
        fw = f.shape[-1]
        p0 = padding + (fw + up - 1) // 2 - (kw - 1)
        p1 = padding + (fw - up) // 2 - (kw - up)
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            o, i = w.shape[0] // groups, w.shape[1]
            wt = w.reshape(groups, o, i, kh, kw).transpose(1, 2).reshape(groups * i, o, kh, kw)
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
        return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=up * up)
    if down > 1:
        assert f is not None
        fw = f.shape[-1]
        p0 = padding + (fw - down + 1) // 2
        p1 = padding + (fw - down) // 2
        if kw == 1:
            x = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
            return F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        return F.conv2d(x, w, stride=down, groups=groups)
    return F.conv2d(x, w, padding=padding, groups=groups)


# ---------------------------------------------------------------------------------------------------------------------
# Equalized-learning-rate layers


class EqualizedLinear(nn.Module):
    """Fully connected layer with run-time weight scaling and a learning-rate multiplier (mapping net: 0.01)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain if self.bias is not None else None
        if self.activation is None:
            return linear(x, w, b)
        return bias_act(linear(x, w), b, self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, activation={self.activation}"


class EqualizedConv2d(nn.Module):
    """Convolution with run-time weight scaling, optional FIR up/downsampling, bias, activation and clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: str | None = "lrelu",
        up: int = 1,
        down: int = 1,
        resample_filter: tuple[float, ...] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        gain: float | None = None,
    ) -> None:
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp, self.gain = activation, up, down, conv_clamp, gain
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        x = conv2d_resample(x, w, self.resample_filter, self.up, self.down, self.padding)
        act_gain = (SQRT2 if self.activation else 1.0) if self.gain is None else self.gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return bias_act(x, b, self.activation, gain=act_gain * gain, clamp=clamp)


# ---------------------------------------------------------------------------------------------------------------------
# Modulated convolution (StyleGAN2)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = False,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    act_gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """StyleGAN2 weight modulation and demodulation, with an optional bias_act epilogue.

    x [N, I, H, W], weight [O, I, k, k] (already gain-scaled), styles [N, I].
    fused=True builds per-sample weights and runs one grouped convolution; fused=False scales the activations by the
    styles before a shared convolution and by the demodulation coefficients after it. The two are the same linear map.
    Noise [N or 1, 1, H', W'] is added after demodulation; then ``bias_act(x, bias, activation, act_gain, clamp)``.
    On CUDA (stride 1, inference) the whole layer is one ganserve.kernels op with that epilogue fused.
    """
    if up == 1 and _route_to_kernels(x, weight, styles):
        return _kernel_modulated_conv2d(
            x, weight, styles, noise, padding, demodulate, bias, activation, act_gain, clamp
        )
    x = _modulated_conv2d_torch(x, weight, styles, noise, up, padding, resample_filter, demodulate, fused)
    if bias is None and activation is None and clamp is None:
        return x
    return bias_act(x, bias, activation, gain=act_gain, clamp=clamp)


def _modulated_conv2d_torch(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None,
    up: int,
    padding: int,
    resample_filter: torch.Tensor | None,
    demodulate: bool,
    fused: bool,
) -> torch.Tensor:
    """The PyTorch reference of ``modulated_conv2d`` without the epilogue."""
    n = x.shape[0]
    o, i, kh, kw = weight.shape
    dcoefs = None
    if demodulate:
        # Demodulation: each output channel gets unit expected variance for unit-variance input.
        wmod = weight[None] * styles.reshape(n, 1, i, 1, 1)
        dcoefs = (wmod.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
    if not fused:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x
    w = weight[None] * styles.reshape(n, 1, i, 1, 1)
    if dcoefs is not None:
        w = w * dcoefs.reshape(n, o, 1, 1, 1)
    x = x.reshape(1, n * i, *x.shape[2:])
    x = conv2d_resample(x, w.reshape(n * o, i, kh, kw).to(x.dtype), resample_filter, up=up, padding=padding, groups=n)
    x = x.reshape(n, o, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


# ---------------------------------------------------------------------------------------------------------------------
# Discriminator helpers


class MinibatchStd(nn.Module):
    """Append the standard deviation across groups of samples as extra feature maps (ProGAN)."""

    def __init__(self, group_size: int = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:  # the group must divide the batch
            g -= 1
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)
        y = y.repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


# ---------------------------------------------------------------------------------------------------------------------
# Kernel hooks (ganserve.kernels) and the vector quantizer


def _route_to_kernels(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> bool:
    """Inference on CUDA (or Triton forced under the interpreter) with the kernels enabled goes to the fused op.

    Training keeps the reference path (the op has no backward), and so does ONNX export (standard ops only).
    """
    from ganserve import kernels

    if not kernels.wants_kernels(x) or torch.onnx.is_in_onnx_export():
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or styles.requires_grad))


def _kernel_modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None,
    padding: int,
    demodulate: bool,
    bias: torch.Tensor | None,
    activation: str | None,
    act_gain: float | None,
    clamp: float | None,
) -> torch.Tensor:
    from ganserve import kernels

    gain = act_gain if act_gain is not None else (SQRT2 if activation else 1.0)  # bias_act's default gains
    return kernels.modulated_conv2d(
        x, weight, styles, demodulate=demodulate, padding=padding, noise=noise, bias=bias, activation=activation,
        gain=gain, clamp=clamp,
    )  # fmt: skip


class VQOutput(NamedTuple):
    quantized: torch.Tensor  # z's shape; gradients pass straight through to z
    indices: torch.Tensor  # int64, z's shape without the channel axis
    loss: torch.Tensor  # codebook + beta * commitment


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation with the straight-through estimator (VQ-VAE / VQGAN).

    z is [N, D, H, W] (channels first) or [N, L, D] (tokens). loss = |sg(z) - e|^2 + beta |z - sg(e)|^2 (means).
    normalize=True: l2-normalised codes and inputs, nearest by cosine (ViT-VQGAN). lookup_dim: factorised codes, the
    search runs in a low-dimensional projection of z and the chosen code is projected back to D (ViT-VQGAN).
    The search is ganserve.kernels.vq_nearest (Triton on CUDA, the PyTorch reference elsewhere).
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        beta: float = 0.25,
        normalize: bool = False,
        lookup_dim: int | None = None,
    ) -> None:
        super().__init__()
        if num_codes < 1 or dim < 1 or (lookup_dim is not None and lookup_dim < 1):
            raise ValueError(f"num_codes, dim and lookup_dim must be positive; got {num_codes}, {dim}, {lookup_dim}")
        self.num_codes, self.dim, self.beta, self.normalize = num_codes, dim, beta, normalize
        self.lookup_dim = lookup_dim
        code_dim = lookup_dim or dim
        self.codebook = nn.Embedding(num_codes, code_dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / num_codes, 1.0 / num_codes)
        self.proj_in = nn.Linear(dim, lookup_dim) if lookup_dim else None
        self.proj_out = nn.Linear(lookup_dim, dim) if lookup_dim else None

    def codes(self) -> torch.Tensor:
        """The codebook as searched: [K, lookup_dim or D], l2-normalised when normalize=True."""
        w = self.codebook.weight
        return F.normalize(w, dim=1) if self.normalize else w

    def forward(self, z: torch.Tensor) -> VQOutput:
        from ganserve.kernels import vq_nearest

        if z.ndim not in (3, 4):
            raise ValueError(f"z must be [N, D, H, W] or [N, L, D], got shape {tuple(z.shape)}")
        channels_first = z.ndim == 4
        zl = z.permute(0, 2, 3, 1) if channels_first else z
        if zl.shape[-1] != self.dim:
            raise ValueError(f"z has {zl.shape[-1]} channels, the quantizer expects {self.dim}")
        flat = zl.reshape(-1, self.dim)
        if self.proj_in is not None:
            flat = self.proj_in(flat)
        if self.normalize:
            flat = F.normalize(flat, dim=1)
        codes = self.codes()
        indices, _ = vq_nearest(
            flat.detach(), codes.detach().to(flat.dtype), metric="cosine" if self.normalize else "l2"
        )
        e = F.embedding(indices, codes).to(flat.dtype)
        loss = F.mse_loss(e, flat.detach()) + self.beta * F.mse_loss(flat, e.detach())
        q = flat + (e - flat).detach()  # straight-through: forward is e, backward is identity to z
        if self.proj_out is not None:
            q = self.proj_out(q)
        q = q.reshape(*zl.shape[:-1], self.dim)
        return VQOutput(q.permute(0, 3, 1, 2) if channels_first else q, indices.reshape(zl.shape[:-1]), loss)

    def lookup(self, indices: torch.Tensor, channels_first: bool = True) -> torch.Tensor:
        """Code vectors for indices [N, H, W] ([N, D, H, W] if channels_first) or [N, L] ([N, L, D]), e.g. to decode
        a prior's samples."""
        e = F.embedding(indices, self.codes())
        if self.proj_out is not None:
            e = self.proj_out(e)
        return e.permute(0, 3, 1, 2) if channels_first and indices.ndim == 3 else e

    def extra_repr(self) -> str:
        return (
            f"num_codes={self.num_codes}, dim={self.dim}, beta={self.beta}, normalize={self.normalize}, "
            f"lookup_dim={self.lookup_dim}"
        )
