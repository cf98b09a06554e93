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
    odd pixel. Inside this context linear layers run one fixed-shape matrix product per row (``linear``), and
    convolutions on the CPU pick one implementation per kernel shape whatever the batch size (``conv2d``,
    ``conv_transpose2d``): PyTorch's dispatch sends a batch of one (and, single-threaded, 1x1 convolutions below 16
    rows) to another implementation than larger batches.
    """
    previous = batch_invariant_enabled()
    _state.batch_invariant = enabled
    try:
        yield
    finally:
        _state.batch_invariant = previous


def batch_invariant_enabled() -> bool:
    """Whether this thread is inside ``batch_invariant()``."""
    return getattr(_state, "batch_invariant", False)


@contextlib.contextmanager
def invariant_ops(enabled: bool = True) -> Iterator[None]:
    """Batch-invariant mode for tracing a program (torch.export): ``linear``, ``conv2d`` and ``conv_transpose2d`` are
    recorded as single ``ganserve::invariant_*`` ops (ganserve.models.invariant_ops, imported to trace or load such a
    program) that run the fixed kernels above at run time. Traced without them, they become aten ops whose kernels
    PyTorch picks by the batch size at run time (StyleGAN's affine layers and 1x1 toRGB moved a pixel at 7-64 rows)."""
    previous = getattr(_state, "invariant_ops", False)
    _state.invariant_ops = enabled
    try:
        with batch_invariant(enabled or batch_invariant_enabled()):
            yield
    finally:
        _state.invariant_ops = previous


def _as_op() -> bool:
    return getattr(_state, "invariant_ops", False)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, except in batch-invariant mode: a batched product with one [T, in] x [in, out] product per row
    (T = 1 for 2-D x), whose kernel does not depend on how many rows there are. The weight is expanded, not copied;
    a broadcast multiply and sum would materialise [N, in, out] (measured 55% of BigGAN's forward)."""
    if not batch_invariant_enabled():
        return F.linear(x, weight, bias)
    if _as_op():
        return torch.ops.ganserve.invariant_linear(x, weight, bias)
    if x.dtype != torch.float32 or x.device.type != "cpu":
        # half precision (and other devices): a per-row bmm was seen to depend on the batch (bf16/fp16/mixed on the
        # CPU): the broadcast multiply and fixed-axis sum is invariant everywhere, at the cost of [N, in, out]
        y = (x.unsqueeze(-1) * weight.t()).sum(-2)
        return y if bias is None else y + bias
    shape = x.shape
    x3 = x[:, None, :] if x.ndim == 2 else x.reshape(shape[0], -1, shape[-1])
    w = weight.t().expand(x3.shape[0], *weight.t().shape)
    y = torch.bmm(x3, w) if bias is None else torch.baddbmm(bias, x3, w)
    return y.reshape(*shape[:-1], weight.shape[0])


def _fixed_conv(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether to pick the convolution's implementation here instead of PyTorch's dispatch: batch-invariant inference
    on the CPU in fp32 (autocast, autograd and tracing keep the ordinary ops). PyTorch sends a 3x3 convolution of one
    row, and single-threaded a 1x1 convolution of fewer than 16 rows, to its im2col + GEMM path and everything else
    to oneDNN; each of the two gives a row the same bits at any batch size (measured 1-64 rows), the two differ."""
    return (
        batch_invariant_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not _tracing()
    )


def _channels_last(t: torch.Tensor) -> bool:
    return t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _onednn_format(x: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """The memory format PyTorch's dispatch gives oneDNN: channels-last if either operand is (BigGAN's gen_z output
    is), so this path runs the kernels F.conv2d runs for two or more rows."""
    return torch.channels_last if _channels_last(x) or _channels_last(weight) else torch.contiguous_format


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    groups: int = 1,
) -> torch.Tensor:
    """F.conv2d (no dilation); in batch-invariant mode on the CPU (``_fixed_conv``) 1x1 kernels always take the
    im2col + GEMM path (one GEMM per row, the faster one single-threaded at these sizes) or, on a channels-last map,
    a per-row product over channels; the others always oneDNN."""
    if not _fixed_conv(x, weight) and not _as_op():
        return F.conv2d(x, weight, bias, stride, padding, groups=groups)
    stride = [stride] * 2 if isinstance(stride, int) else list(stride)
    padding = [padding] * 2 if isinstance(padding, int) else list(padding)
    if _as_op():
        return torch.ops.ganserve.invariant_conv2d(x, weight, bias, stride, padding, groups)
    if groups == 1 and weight.shape[-2:] == (1, 1):
        if stride == [1, 1] and padding == [0, 0] and _channels_last(x):
            # A 1x1 convolution of a channels-last map is a linear layer over its channels: one per-row product
            # (``linear``) without converting the map to NCHW and back (BigGAN's blocks run channels-last).
            return linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)
        return torch._C._nn.thnn_conv2d(x.contiguous(), weight.contiguous(), [1, 1], bias, stride, padding)
    fmt = _onednn_format(x, weight)
    x, weight = x.contiguous(memory_format=fmt), weight.contiguous(memory_format=fmt)
    return torch.mkldnn_convolution(x, weight, bias, padding, stride, [1, 1], groups)


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, groups: int = 1) -> torch.Tensor:
    """F.conv_transpose2d (no padding), always oneDNN in batch-invariant mode on the CPU (``_fixed_conv``)."""
    if _as_op():
        return torch.ops.ganserve.invariant_conv_transpose2d(x, weight, stride, groups)
    if not _fixed_conv(x, weight):
        return F.conv_transpose2d(x, weight, stride=stride, groups=groups)
    fmt = _onednn_format(x, weight)
    x, weight = x.contiguous(memory_format=fmt), weight.contiguous(memory_format=fmt)
    return torch.ops.mkldnn._convolution_transpose_pointwise(
        x, weight, None, [0, 0], [0, 0], [stride, stride], [1, 1], groups, "none", [], ""
    )


def batch_one_is_invariant(device: torch.device | str, precision: str = "fp32") -> bool:
    """Whether a batch of one row gives the bits it gets in a larger batch (else the sampling core pads it to two)."""
    return torch.device(device).type == "cpu" and precision == "fp32" and torch.backends.mkldnn.is_available()


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameter names), batch-invariant in batch-invariant mode (``conv2d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros" or self.dilation != (1, 1) or isinstance(self.padding, str):
            return super().forward(x)
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups)


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
    x = conv2d(x, weight, groups=c)
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
        x = conv_transpose2d(x, wt, stride=up, groups=groups)
        return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=up * up)
    if down > 1:
        assert f is not None
        fw = f.shape[-1]
        p0 = padding + (fw - down + 1) // 2
        p1 = padding + (fw - down) // 2
        if kw == 1:
            x = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
            return conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        return conv2d(x, w, stride=down, groups=groups)
    return conv2d(x, w, padding=padding, groups=groups)


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
    On CUDA (inference) the whole layer is one ganserve.kernels op with that epilogue fused; the op's dispatch picks
    the fastest measured implementation per shape (up=2 included).
    """
    if _route_to_kernels(x, weight, styles):
        return _kernel_modulated_conv2d(
            x, weight, styles, noise, padding, demodulate, bias, activation, act_gain, clamp, up, resample_filter
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
        # Demodulation: each output channel gets unit expected variance for unit-variance input. sum((w s)^2) over
        # (I, k, k) is styles^2 [N, I] times sum_k w^2 [I, O]: one small product instead of an [N, O, I, k, k] weight.
        dcoefs = (linear(styles.square(), weight.square().sum(dim=[2, 3])) + 1e-8).rsqrt()  # [N, O]
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
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
) -> torch.Tensor:
    from ganserve import kernels

    gain = act_gain if act_gain is not None else (SQRT2 if activation else 1.0)  # bias_act's default gains
    return kernels.modulated_conv2d(
        x, weight, styles, demodulate=demodulate, padding=padding, noise=noise, bias=bias, activation=activation,
        gain=gain, clamp=clamp, up=up, resample_filter=resample_filter,
    )  # fmt: skip


class VQOutput(NamedTuple):
    quantized: torch.Tensor  # z's shape; gradients pass straight through to z
    indices: torch.Tensor  # int64, z's shape without the channel axis
    loss: torch.Tensor  # codebook + beta * commitment (EMA codebooks: beta * commitment; the codes move by EMA)


class CodebookEmbedding(nn.Embedding):
    """The codebook: an embedding table, plus with ``ema=True`` the running statistics of the EMA update, under
    taming-transformers' ``EmbeddingEMA`` names (``weight``, ``cluster_size``, ``embed_avg``)."""

    def __init__(self, num_codes: int, dim: int, ema: bool = False) -> None:
        super().__init__(num_codes, dim)
        nn.init.uniform_(self.weight, -1.0 / num_codes, 1.0 / num_codes)
        if ema:
            self.weight.requires_grad_(False)  # moved by the EMA update, never by an optimiser
            self.register_buffer("cluster_size", torch.zeros(num_codes))
            self.register_buffer("embed_avg", self.weight.detach().clone())


def codebook_usage(indices: torch.Tensor, num_codes: int) -> tuple[float, float]:
    """(perplexity, fraction of codes used) of a set of code indices: exp(entropy of the code histogram)."""
    counts = torch.bincount(indices.reshape(-1).cpu(), minlength=num_codes).double()
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float(entropy.exp()), float((counts > 0).double().mean())


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation with the straight-through estimator (VQ-VAE / VQGAN).

    z is [N, D, H, W] (channels first) or [N, L, D] (tokens). loss = |sg(z) - e|^2 + beta |z - sg(e)|^2 (means).
    normalize=True: l2-normalised codes and inputs, nearest by cosine (ViT-VQGAN). lookup_dim: factorised codes, the
    search runs in a low-dimensional projection of z and the chosen code is projected back to D (ViT-VQGAN).
    The search is ganserve.kernels.vq_nearest (Triton on CUDA, the PyTorch reference elsewhere).

    ema=True: the codebook is not learned by gradient but moved towards the mean of the inputs assigned to each code
    (exponential moving averages of counts and sums, ``decay``, Laplace smoothing ``eps``; VQ-VAE-2 / taming's
    EMAVectorQuantizer); the loss is then beta * commitment only. In training mode every forward also keeps ``usage``
    (an EMA of how often each code was picked per step) and the inputs it saw, so ``restart_dead_codes`` can move codes
    nobody uses onto recent inputs (dead-code restarts, as in Jukebox / improved VQGAN recipes).

    State dict names follow taming-transformers: ``embedding.weight`` (+ ``embedding.cluster_size`` and
    ``embedding.embed_avg`` with ema). ``usage`` is training bookkeeping and is not saved with the model.
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        beta: float = 0.25,
        normalize: bool = False,
        lookup_dim: int | None = None,
        ema: bool = False,
        decay: float = 0.99,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_codes < 1 or dim < 1 or (lookup_dim is not None and lookup_dim < 1):
            raise ValueError(f"num_codes, dim and lookup_dim must be positive; got {num_codes}, {dim}, {lookup_dim}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.num_codes, self.dim, self.beta, self.normalize = num_codes, dim, beta, normalize
        self.lookup_dim, self.ema, self.decay, self.eps = lookup_dim, ema, decay, eps
        code_dim = lookup_dim or dim
        self.embedding = CodebookEmbedding(num_codes, code_dim, ema)
        self.proj_in = nn.Linear(dim, lookup_dim) if lookup_dim else None
        self.proj_out = nn.Linear(lookup_dim, dim) if lookup_dim else None
        self.register_buffer("usage", torch.zeros(num_codes), persistent=False)
        self._last_inputs: torch.Tensor | None = None

    @property
    def codebook(self) -> nn.Embedding:
        """The code table (``embedding``; the name this class had before it followed taming's layout)."""
        return self.embedding

    def codes(self) -> torch.Tensor:
        """The codebook as searched: [K, lookup_dim or D], l2-normalised when normalize=True."""
        w = self.embedding.weight
        return F.normalize(w, dim=1) if self.normalize else w

    def project_in(self, z: torch.Tensor) -> torch.Tensor:
        """Rows of z [M, D] -> the vectors searched: projected to lookup_dim and l2-normalised as configured."""
        if self.proj_in is not None:
            z = linear(z, self.proj_in.weight, self.proj_in.bias)
        return F.normalize(z, dim=1) if self.normalize else z

    def _rows(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z as [..., D] (channels last) and its searched rows [M, lookup_dim or D]."""
        if z.ndim not in (3, 4):
            raise ValueError(f"z must be [N, D, H, W] or [N, L, D], got shape {tuple(z.shape)}")
        zl = z.permute(0, 2, 3, 1) if z.ndim == 4 else z
        if zl.shape[-1] != self.dim:
            raise ValueError(f"z has {zl.shape[-1]} channels, the quantizer expects {self.dim}")
        return zl, self.project_in(zl.reshape(-1, self.dim))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """forward's ``indices`` alone (int64, z's shape without the channel axis): what encoding to codes needs,
        without the quantised tensor, the loss and the chosen codes' distances (at batch 1 they cost as much as the
        search). Off the kernels' devices, l2 codes are searched as the reference does, with the codebook's squared
        norms kept between calls: |c|^2 - 2 z.c in the same fp32 operations, so the same indices."""
        from ganserve import kernels

        zl, flat = self._rows(z)
        if self.normalize or kernels.wants_kernels(flat) or torch.is_grad_enabled():
            codes = self.codes().detach()
            indices, _ = kernels.vq_nearest(
                flat.detach(), codes.to(flat.dtype), metric="cosine" if self.normalize else "l2"
            )
        else:
            cf = self.embedding.weight.to(flat.dtype).float()  # the codebook as the op sees it (fp16 models too)
            scores = torch.mm(flat.float(), cf.t()).mul_(-2.0)  # -2 z.c: exact doubling, then |c|^2 + that
            indices = scores.add_(self._squared_norms(cf)).argmin(dim=1)
        return indices.reshape(zl.shape[:-1])

    def _squared_norms(self, cf: torch.Tensor) -> torch.Tensor:
        w = self.embedding.weight
        if _tracing():
            return cf.square().sum(1)
        cached = self.__dict__.get("_norms")  # rebuilt when the codebook changes (new tensor or in-place update)
        if cached is None or cached[0] is not w or cached[1] != w._version or cached[2].dtype != cf.dtype:
            cached = self.__dict__["_norms"] = (w, w._version, cf.square().sum(1))
        return cached[2]

    def forward(self, z: torch.Tensor) -> VQOutput:
        from ganserve.kernels import vq_nearest

        channels_first = z.ndim == 4
        zl, flat = self._rows(z)
        codes = self.codes()
        indices, _ = vq_nearest(
            flat.detach(), codes.detach().to(flat.dtype), metric="cosine" if self.normalize else "l2"
        )
        if self.training:
            self._track(flat.detach(), indices)
        if self.ema:
            e = F.embedding(indices, codes.detach()).to(flat.dtype)
            loss = self.beta * F.mse_loss(flat, e)
        else:
            e = F.embedding(indices, codes).to(flat.dtype)
            loss = F.mse_loss(e, flat.detach()) + self.beta * F.mse_loss(flat, e.detach())
        q = flat + (e - flat).detach()  # straight-through: forward is e, backward is identity to z
        if self.proj_out is not None:
            q = linear(q, self.proj_out.weight, self.proj_out.bias)
        q = q.reshape(*zl.shape[:-1], self.dim)
        return VQOutput(q.permute(0, 3, 1, 2) if channels_first else q, indices.reshape(zl.shape[:-1]), loss)

    @torch.no_grad()
    def _track(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        """Training bookkeeping: usage counts, the inputs for restarts, and the EMA codebook update."""
        counts = torch.bincount(indices, minlength=self.num_codes).to(self.usage.dtype)
        self.usage.mul_(0.99).add_(counts, alpha=0.01)
        self._last_inputs = flat
        if not self.ema:
            return
        emb = self.embedding
        sums = torch.zeros_like(emb.embed_avg).index_add_(0, indices, flat.to(emb.embed_avg.dtype))
        emb.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        emb.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = emb.cluster_size.sum()
        smoothed = (emb.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n  # Laplace smoothing
        emb.weight.copy_(emb.embed_avg / smoothed[:, None])

    @torch.no_grad()
    def restart_dead_codes(self, threshold: float = 0.01, generator: torch.Generator | None = None) -> int:
        """Move every code whose usage is below ``threshold`` x the mean usage onto a random input of the last
        training batch (in the searched space); returns how many moved. Call it from the training step, every few
        hundred steps after the usage statistics have warmed up."""
        inputs = self._last_inputs
        if inputs is None or inputs.shape[0] == 0:
            return 0
        dead = (self.usage < threshold * self.usage.mean()).nonzero().squeeze(1)
        if dead.numel() == 0:
            return 0
        pick = torch.randint(0, inputs.shape[0], [dead.numel()], generator=generator).to(inputs.device)
        new = inputs[pick].to(self.embedding.weight.dtype)
        self.embedding.weight[dead] = new
        self.usage[dead] = self.usage.mean()  # a grace period before it can be judged dead again
        if self.ema:
            self.embedding.cluster_size[dead] = 1.0
            self.embedding.embed_avg[dead] = new
        return int(dead.numel())

    def lookup(self, indices: torch.Tensor, channels_first: bool = True) -> torch.Tensor:
        """Code vectors for indices [N, H, W] ([N, D, H, W] if channels_first) or [N, L] ([N, L, D]), e.g. to decode
        a prior's samples."""
        e = F.embedding(indices, self.codes())
        if self.proj_out is not None:
            e = linear(e, self.proj_out.weight, self.proj_out.bias)
        return e.permute(0, 3, 1, 2) if channels_first and indices.ndim == 3 else e

    def extra_repr(self) -> str:
        return (
            f"num_codes={self.num_codes}, dim={self.dim}, beta={self.beta}, normalize={self.normalize}, "
            f"lookup_dim={self.lookup_dim}, ema={self.ema}"
        )


# ---------------------------------------------------------------------------------------------------------------------
# Spectral normalisation (SAGAN, BigGAN)
#
# The parameter and buffer names are those of ``torch.nn.utils.spectral_norm`` (``weight_orig`` parameter,
# ``weight_u`` / ``weight_v`` buffers), which is what huggingface/pytorch-pretrained-BigGAN's checkpoints hold, so such
# state dicts load one to one. The layers are written out here rather than wrapped with the hook so the linear layers
# go through ``linear`` (batch-invariant sampling) and the export sees plain tensor code.


def spectral_normalize(
    weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, power_iterations: int, eps: float
) -> torch.Tensor:
    """weight / sigma, sigma = u^T W v estimated by power iteration on W = weight.reshape(out, -1).

    With ``power_iterations`` > 0, u and v are updated in place first (training), exactly as
    ``torch.nn.utils.spectral_norm`` does; with 0 the stored vectors are used as they are (inference).
    """
    mat = weight.reshape(weight.shape[0], -1)
    if power_iterations > 0:
        with torch.no_grad():
            for _ in range(power_iterations):
                v.copy_(F.normalize(torch.mv(mat.t(), u), dim=0, eps=eps))
                u.copy_(F.normalize(torch.mv(mat, v), dim=0, eps=eps))
        u, v = u.clone(), v.clone()
    sigma = torch.dot(u, torch.mv(mat, v))
    return weight / sigma


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def _orthogonal_init(w: torch.Tensor) -> None:
    """BigGAN's default initialisation (skipped on the meta device, where loading builds a skeleton first)."""
    if w.device.type != "meta":
        nn.init.orthogonal_(w)


class _SpectralNormed(nn.Module):
    """Holds ``weight_orig`` [out, ...] and the power-iteration vectors; ``sn_weight()`` is the normalised weight.

    u and v start from a few power iterations on the initial weight, so even an untrained module has an accurate
    sigma in eval mode; after that one iteration per forward in training mode (``torch.nn.utils.spectral_norm``'s
    default), none in eval mode.
    """

    def _init_sn(self, weight: torch.Tensor, eps: float, power_iterations: int = 1, warmup: int = 10) -> None:
        self.eps, self.power_iterations = eps, power_iterations
        self.weight_orig = nn.Parameter(weight)
        h = weight.shape[0]
        w = weight.numel() // h
        self.register_buffer("weight_u", F.normalize(torch.randn(h), dim=0, eps=eps))
        self.register_buffer("weight_v", F.normalize(torch.randn(w), dim=0, eps=eps))
        if weight.device.type != "meta":
            spectral_normalize(self.weight_orig.detach(), self.weight_u, self.weight_v, power_iterations=warmup,
                               eps=eps)  # fmt: skip

    def sn_weight(self) -> torch.Tensor:
        if self.training:
            return spectral_normalize(self.weight_orig, self.weight_u, self.weight_v,
                                      power_iterations=self.power_iterations, eps=self.eps)  # fmt: skip
        if torch.is_grad_enabled() or _tracing():
            return spectral_normalize(self.weight_orig, self.weight_u, self.weight_v, power_iterations=0, eps=self.eps)
        # Inference: the normalised weight only changes when the weight or u, v do; reuse it until then.
        key = tuple((t.data_ptr(), t._version) for t in (self.weight_orig, self.weight_u, self.weight_v))
        cache = self.__dict__.get("_sn_cache")
        if cache is None or cache[0] != key:
            w = spectral_normalize(self.weight_orig, self.weight_u, self.weight_v, power_iterations=0, eps=self.eps)
            cache = self.__dict__["_sn_cache"] = (key, w)
        return cache[1]


class SNLinear(_SpectralNormed):
    """Spectrally normalised fully connected layer (batch-invariant under ``batch_invariant()``)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, eps: float = 1e-4) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        w = torch.empty(out_features, in_features)
        _orthogonal_init(w)
        self._init_sn(w, eps)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.sn_weight().to(x.dtype), self.bias.to(x.dtype) if self.bias is not None else None)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}"


class SNConv2d(_SpectralNormed):
    """Spectrally normalised convolution (stride 1, 'same' padding for odd kernels)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, bias: bool = True,
                 eps: float = 1e-4) -> None:  # fmt: skip
        super().__init__()
        self.padding = kernel_size // 2
        w = torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        _orthogonal_init(w)
        self._init_sn(w, eps)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias.to(x.dtype) if self.bias is not None else None
        w = self.sn_weight().to(x.dtype)
        if w.shape[-1] > 1 and _channels_last(x) and not torch.is_grad_enabled() and not _tracing():
            # oneDNN takes a channels-last map with a channels-last filter: convert the (cached) weight once, not in
            # every call (8 ms per 512x512x3x3 filter, 6% of BigGAN-deep 128 px at batch 1)
            cached = self.__dict__.get("_cl_weight")
            if cached is None or cached[0] is not w:
                cached = self.__dict__["_cl_weight"] = (w, w.contiguous(memory_format=torch.channels_last))
            w = cached[1]
        return conv2d(x, w, b, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight_orig.shape
        return f"{i}, {o}, kernel_size={k}, bias={self.bias is not None}"


class SNEmbedding(_SpectralNormed):
    """Spectrally normalised class embedding (the projection discriminator's)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, *, eps: float = 1e-4) -> None:
        super().__init__()
        w = torch.empty(num_embeddings, embedding_dim)
        _orthogonal_init(w)
        self._init_sn(w, eps)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return F.embedding(c.long(), self.sn_weight())


def orthogonal_regularization(weights: list[torch.Tensor], beta: float) -> torch.Tensor:
    """BigGAN's off-diagonal orthogonal regularisation: beta * sum_W ||W W^T * (1 - I)||_F^2, W = w.reshape(out, -1).

    Only the correlations between different filters are penalised, not their norms (Brock et al. 2019, eq. 3).
    """
    total = torch.zeros([])
    for w in weights:
        mat = w.reshape(w.shape[0], -1)
        gram = mat @ mat.t()
        off = gram * (1 - torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype))
        total = total + off.square().sum()
    return beta * total


# ---------------------------------------------------------------------------------------------------------------------
# Conditional batch normalisation with standing statistics (SAGAN, BigGAN)


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose per-channel gain and bias come from a linear of a conditioning vector (class embedding,
    latent chunk): gain = 1 + scale(c), bias = offset(c), ``scale``/``offset`` spectrally normalised, no bias. Without a
    conditioning vector it is an ordinary affine batch norm (``weight``, ``bias``).

    Statistics: training uses the batch's. Inference uses *standing statistics* (Brock et al. 2019, appendix C):
    ``running_means`` / ``running_vars`` [n_stats, C] hold the statistics measured at n_stats evenly spaced truncation
    values 0 .. 1 (``collect_statistics``); each row picks its own by linear interpolation at its truncation
    (a tensor [N], so rows with different truncations share a batch). pytorch-pretrained-BigGAN's BigGANBatchNorm has
    the same names and shapes (there n_stats = 51).
    """

    def __init__(self, num_features: int, condition_dim: int | None = None, *, n_stats: int = 51, eps: float = 1e-4,
                 sn_eps: float = 1e-4) -> None:  # fmt: skip
        super().__init__()
        self.num_features, self.n_stats, self.eps = num_features, n_stats, eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.conditional = bool(condition_dim)
        if self.conditional:
            self.scale = SNLinear(condition_dim, num_features, bias=False, eps=sn_eps)
            self.offset = SNLinear(condition_dim, num_features, bias=False, eps=sn_eps)
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        self._collect: list[torch.Tensor] | None = None  # [sum of means, sum of unbiased vars, batches]

    def statistics(self, truncation: torch.Tensor | float | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Standing mean and variance [n, C] at each row's truncation (None: 1.0)."""
        if self.n_stats == 1:
            return self.running_means[0].expand(n, -1), self.running_vars[0].expand(n, -1)
        # One gather of both neighbours from one [n_stats, 2C] table: an exported graph gets a single Gather where
        # four advanced-indexing lookups became GatherND + negative-index Where per table (763 vs 345 nodes).
        table = torch.cat([self.running_means, self.running_vars], dim=1)
        stats = standing_statistics(table, truncation, n)
        return stats[:, : self.num_features], stats[:, self.num_features :]

    def affine(self, truncation: torch.Tensor | float | None, n: int, gain_offset: torch.Tensor | None = None,
               stats: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Inference as a per-row affine map: (scale, shift) [n, C] with this norm's output = x * scale + shift.

        ``gain_offset`` [n, 2C] is cat(scale(c), offset(c)) of the condition and ``stats`` [n, 2C] cat(mean, var) at
        each row's truncation, when the caller computed them for many norms at once (one product, one gather)."""
        c = self.num_features
        if stats is None:
            mean, var = self.statistics(truncation, n)
        else:
            mean, var = stats[:, :c], stats[:, c:]
        scale = torch.rsqrt(var + self.eps)
        if self.conditional:
            if gain_offset is None:
                raise ValueError("this batch norm is conditional: a condition vector is required")
            scale = scale * (1 + gain_offset[:, :c])
            return scale, gain_offset[:, c:] - mean * scale
        scale = scale * self.weight
        return scale, self.bias - mean * scale

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None,
                truncation: torch.Tensor | float | None = None) -> torch.Tensor:  # fmt: skip
        n, c = x.shape[:2]
        if self.training or self._collect is not None:
            mean = x.mean(dim=[0, 2, 3])
            var = x.var(dim=[0, 2, 3], unbiased=False)
            if self._collect is not None:
                count = x.numel() // c
                with torch.no_grad():
                    self._collect[0] += mean.detach().float()
                    self._collect[1] += var.detach().float() * count / max(count - 1, 1)
                    self._collect[2] += 1
            mean, var = mean.reshape(1, c, 1, 1), var.reshape(1, c, 1, 1)
        else:
            mean, var = self.statistics(truncation, n)
            mean, var = mean.reshape(n, c, 1, 1).to(x.dtype), var.reshape(n, c, 1, 1).to(x.dtype)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        if self.conditional:
            if condition is None:
                raise ValueError("this batch norm is conditional: a condition vector is required")
            gain = 1 + self.scale(condition).to(x.dtype)
            return x * gain.reshape(n, c, 1, 1) + self.offset(condition).to(x.dtype).reshape(n, c, 1, 1)
        return x * self.weight.to(x.dtype).reshape(1, c, 1, 1) + self.bias.to(x.dtype).reshape(1, c, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, conditional={self.conditional}, n_stats={self.n_stats}, eps={self.eps}"


def standing_statistics(table: torch.Tensor, truncation: torch.Tensor | float | None, n: int) -> torch.Tensor:
    """Rows of ``table`` [n_stats, K] (statistics measured at truncations 0, 1/(n_stats-1) .. 1) interpolated
    linearly at each of n rows' truncation (a tensor [n] or one value; None: 1.0) -> [n, K]."""
    n_stats = table.shape[0]
    if n_stats == 1:
        return table[0].expand(n, -1)
    t = torch.ones([n]) if truncation is None else torch.as_tensor(truncation, dtype=torch.float32)
    t = t.to(table.device).reshape(-1).expand(n).clamp(0, 1)
    pos = t * (n_stats - 1)
    lo = pos.floor().clamp(max=n_stats - 2)
    frac = (pos - lo).unsqueeze(1)
    lo = lo.long()
    pair = table.index_select(0, torch.cat([lo, lo + 1]))
    return pair[:n].lerp(pair[n:], frac.to(table.dtype))


@contextlib.contextmanager
def collect_statistics(module: nn.Module, index: int) -> Iterator[None]:
    """Within this context every ConditionalBatchNorm in ``module`` normalises with batch statistics and sums them;
    on exit slot ``index`` of its running_means / running_vars becomes their average over the batches run (the
    cumulative average BigGAN's standing statistics use: mean of batch means, mean of unbiased batch variances)."""
    norms = [m for m in module.modules() if isinstance(m, ConditionalBatchNorm)]
    for m in norms:
        dev = m.running_means.device
        m._collect = [torch.zeros(m.num_features, device=dev), torch.zeros(m.num_features, device=dev),
                      torch.zeros([], device=dev)]  # fmt: skip
    try:
        yield
        for m in norms:
            total, var_total, batches = m._collect
            if float(batches) > 0:
                m.running_means[index].copy_(total / batches)
                m.running_vars[index].copy_(var_total / batches)
    finally:
        for m in norms:
            m._collect = None


# ---------------------------------------------------------------------------------------------------------------------
# Self-attention (SAGAN, BigGAN)


class SelfAttention(nn.Module):
    """Non-local self-attention block (Zhang et al. 2019, as in BigGAN): 1x1 spectrally normalised convolutions give
    queries and keys with C/8 channels and values with C/2; keys and values are max-pooled 2x (a quarter of the
    positions); softmax over the keys; a 1x1 convolution back to C channels, scaled by ``gamma`` (a learned scalar
    that starts at 0, so the block starts as the identity) and added to the input.

    Names follow pytorch-pretrained-BigGAN's SelfAttn: snconv1x1_theta (queries), snconv1x1_phi (keys),
    snconv1x1_g (values), snconv1x1_o_conv (output), gamma. None of the convolutions has a bias.
    """

    def __init__(self, channels: int, *, eps: float = 1e-4) -> None:
        super().__init__()
        if channels < 8 or channels % 8:
            raise ValueError(f"self-attention needs a multiple of 8 channels, got {channels}")
        self.channels = channels
        self.snconv1x1_theta = SNConv2d(channels, channels // 8, 1, bias=False, eps=eps)
        self.snconv1x1_phi = SNConv2d(channels, channels // 8, 1, bias=False, eps=eps)
        self.snconv1x1_g = SNConv2d(channels, channels // 2, 1, bias=False, eps=eps)
        self.snconv1x1_o_conv = SNConv2d(channels // 2, channels, 1, bias=False, eps=eps)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights [N, H*W, H*W/4]: for each query position (row-major), a softmax over the
        max-pooled key positions ((H/2) x (W/2), row-major)."""
        n, c, h, w = x.shape
        theta = self.snconv1x1_theta(x).reshape(n, c // 8, h * w)
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).reshape(n, c // 8, h * w // 4)
        return torch.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """x + gamma * o_conv(attention-weighted values); with ``return_attention`` also the weights."""
        n, c, h, w = x.shape
        attn = self.attention(x)
        g = F.max_pool2d(self.snconv1x1_g(x), 2)
        if _channels_last(x):  # the product laid out [N, H*W, C/2] is the channels-last map: no layout change
            g = g.permute(0, 2, 3, 1).reshape(n, h * w // 4, c // 2)
            out = torch.bmm(attn, g).reshape(n, h, w, c // 2).permute(0, 3, 1, 2)
        else:
            out = torch.bmm(g.reshape(n, c // 2, h * w // 4), attn.transpose(1, 2)).reshape(n, c // 2, h, w)
        out = x + self.gamma.to(x.dtype) * self.snconv1x1_o_conv(out)
        return (out, attn) if return_attention else out


# ---------------------------------------------------------------------------------------------------------------------
# Progressive growing and adaptive instance normalisation (ProGAN, StyleGAN)


def upscale2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer factor (ProGAN's ``upscale2d``: each pixel becomes a block)."""
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


def downscale2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Box-filter downsampling by an integer factor (ProGAN's ``downscale2d``: the mean of each block)."""
    return x if factor == 1 else F.avg_pool2d(x, factor)


def blur2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Same-size low-pass filtering with a normalised odd-sized FIR filter (StyleGAN's blur, [1, 2, 1] taps)."""
    p = (f.shape[-1] - 1) // 2
    return upfirdn2d(x, f, padding=p)


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean and unit variance per sample and channel over the spatial axes (StyleGAN's ``instance_norm``)."""
    x = x - x.mean(dim=[2, 3], keepdim=True)
    return x * (x.square().mean(dim=[2, 3], keepdim=True) + eps).rsqrt()


def adaptive_instance_norm(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """AdaIN: instance-normalise x [N, C, H, W], then give each channel the style's std ``scale`` and mean ``bias``
    (both [N, C])."""
    return instance_norm(x, eps) * scale[:, :, None, None] + bias[:, :, None, None]


class AdaIN(nn.Module):
    """Adaptive instance normalisation with its style from w (StyleGAN v1's ``style_mod``): an equalized-lr affine
    map of w gives a per-channel scale (as 1 + y_s, so an untrained layer starts near the identity) and bias y_b."""

    def __init__(self, w_dim: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.affine = EqualizedLinear(w_dim, 2 * channels)

    def styles(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, bias), each [N, C]."""
        y = self.affine(w)
        return y[:, : self.channels] + 1, y[:, self.channels :]

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale, bias = self.styles(w)
        return adaptive_instance_norm(x, scale.to(x.dtype), bias.to(x.dtype))
