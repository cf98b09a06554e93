"""The kernels as torch custom ops (namespace ``ganserve``): one call that works eagerly on any device, under
torch.compile (the fake implementations give output shapes and layouts) and torch.export (the ops stay as single
nodes; the ``decompositions()`` table turns them back into standard ops, e.g. before ONNX export).

Inside the op, at run time: CUDA tensors (kernels enabled) go to the dispatcher (ganserve.kernels.candidates and
.dispatch: the measured fastest of the Triton kernel and the PyTorch paths for this shape, or the PyTorch default);
under the interpreter with ``force_triton`` CPU tensors run the Triton kernel itself (tests); everything else runs the
PyTorch reference. The Triton modules are imported on first use only.
"""

from __future__ import annotations

import torch
import torch._decomp
from torch import Tensor

from ganserve.kernels import candidates, reference, switch


def _route(x: Tensor) -> str:
    """'triton' (forced, interpreter tests), 'dispatch' (CUDA) or 'reference'."""
    if not switch.enabled():
        return "reference"
    if x.device.type == "cuda":
        return "dispatch"
    return "triton" if switch.use_triton(x) else "reference"


@torch.library.custom_op("ganserve::modulated_conv2d", mutates_args=())
def modulated_conv2d_op(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    noise: Tensor | None,
    bias: Tensor | None,
    resample_filter: Tensor | None,
    demodulate: bool,
    padding: int,
    up: int,
    activation: str,
    gain: float,
    clamp: float | None,
) -> Tensor:
    call = candidates.ModConvCall(
        x, weight, styles, noise, bias, resample_filter, demodulate, padding, up, activation, gain, clamp
    )
    route = _route(x)
    if route == "dispatch":
        return candidates.run_modconv(call)
    if route == "triton" and candidates._fir_ok(call):
        return candidates.triton_modconv(call)
    return reference.modulated_conv2d(*call).contiguous(memory_format=candidates.output_format(x))


def output_shape(x: Tensor, weight: Tensor, resample_filter: Tensor | None, padding: int, up: int) -> tuple:
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    if up > 1:
        fw = resample_filter.shape[-1]
        return n, o, reference.upsampled_size(h, kh, fw, up, padding), reference.upsampled_size(w, kw, fw, up, padding)
    return n, o, h + 2 * padding - kh + 1, w + 2 * padding - kw + 1


@modulated_conv2d_op.register_fake
def _(x, weight, styles, noise, bias, resample_filter, demodulate, padding, up, activation, gain, clamp):
    shape = output_shape(x, weight, resample_filter, padding, up)
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=candidates.output_format(x))


@torch.library.custom_op("ganserve::vq_nearest", mutates_args=())
def vq_nearest_op(z: Tensor, codebook: Tensor, metric: str, splits: int) -> tuple[Tensor, Tensor]:
    route = _route(z)
    if route == "reference":
        return reference.vq_nearest(z, codebook, metric)
    if codebook.dtype != z.dtype:
        codebook = codebook.to(z.dtype)
    if splits or route == "triton":  # an explicit split count (tests) asks for the Triton search itself
        indices = candidates.triton_vq(z, codebook, metric, splits=splits or None)
    else:
        indices = candidates.run_vq(z, codebook, metric)
    return indices, candidates.distances(z, codebook, indices, metric)


@vq_nearest_op.register_fake
def _(z, codebook, metric, splits):
    n = z.shape[0]
    return z.new_empty((n,), dtype=torch.int64), z.new_empty((n,), dtype=torch.float32)


def _modulated_conv2d_decomposition(
    x, weight, styles, noise, bias, resample_filter, demodulate, padding, up, activation, gain, clamp
):
    return reference.modulated_conv2d(
        x, weight, styles, noise, bias, resample_filter, demodulate, padding, up, activation, gain, clamp
    )


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
