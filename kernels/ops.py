"""The kernels as torch custom ops (namespace ``ganserve``): one call that works eagerly on any device, under
torch.compile (the fake implementations give output shapes) and torch.export (the ops stay as single nodes; the
``decompositions()`` table turns them back into standard ops, e.g. before ONNX export).

Dispatch happens inside the op at run time: CUDA tensors go to Triton when the kernels are enabled, everything else
to the PyTorch reference (see ganserve.kernels.switch). The Triton modules are imported on first use only.
"""

from __future__ import annotations

import torch
import torch._decomp
from torch import Tensor

from ganserve.kernels import reference, switch


@torch.library.custom_op("ganserve::modulated_conv2d", mutates_args=())
def modulated_conv2d_op(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    noise: Tensor | None,
    bias: Tensor | None,
    demodulate: bool,
    padding: int,
    activation: str,
    gain: float,
    clamp: float | None,
) -> Tensor:
    args = (x, weight, styles, noise, bias, demodulate, padding, activation, gain, clamp)
    if switch.use_triton(x):
        from ganserve.kernels import modconv_triton

        return modconv_triton.modulated_conv2d(*args)
    return reference.modulated_conv2d(*args).contiguous()


@modulated_conv2d_op.register_fake
def _(x, weight, styles, noise, bias, demodulate, padding, activation, gain, clamp):
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    return x.new_empty((n, o, h + 2 * padding - kh + 1, w + 2 * padding - kw + 1))


@torch.library.custom_op("ganserve::vq_nearest", mutates_args=())
def vq_nearest_op(z: Tensor, codebook: Tensor, metric: str, splits: int) -> tuple[Tensor, Tensor]:
    if switch.use_triton(z):
        from ganserve.kernels import vq_triton

        return vq_triton.vq_nearest(z, codebook, metric, splits or None)
    return reference.vq_nearest(z, codebook, metric)


@vq_nearest_op.register_fake
def _(z, codebook, metric, splits):
    n = z.shape[0]
    return z.new_empty((n,), dtype=torch.int64), z.new_empty((n,), dtype=torch.float32)


def _modulated_conv2d_decomposition(x, weight, styles, noise, bias, demodulate, padding, activation, gain, clamp):
    return reference.modulated_conv2d(x, weight, styles, noise, bias, demodulate, padding, activation, gain, clamp)


def _vq_nearest_decomposition(z, codebook, metric, splits):
    return reference.vq_nearest(z, codebook, metric)


# Also in torch's global decomposition table, which torch.onnx.export (dynamo) consults: ONNX export of a model that
# calls these ops decomposes them to standard ops without any extra step. Eager, compile and export keep the ops.
torch._decomp.register_decomposition(torch.ops.ganserve.modulated_conv2d.default)(_modulated_conv2d_decomposition)
torch._decomp.register_decomposition(torch.ops.ganserve.vq_nearest.default)(_vq_nearest_decomposition)


def decompositions() -> dict:
    """{op overload: reference} for ``ExportedProgram.run_decompositions`` (ONNX export wants standard ops)."""
    return {
        torch.ops.ganserve.modulated_conv2d.default: _modulated_conv2d_decomposition,
        torch.ops.ganserve.vq_nearest.default: _vq_nearest_decomposition,
    }
