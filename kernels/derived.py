"""Values derived from a weight (packed layouts, sums of squares), computed once per weight and reused.

A cached value belongs to the weight tensor (a weak reference: it goes when the weight goes) and to its contents: an
in-place update (training, ``load_state_dict``, ``.data`` swapped) bumps the tensor's version or moves its storage
and the value is rebuilt on next use. Tensors that track no version (made under ``torch.inference_mode``) are never
cached: their values are rebuilt on every call, which is correct, only slower.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable

import torch

from ganserve.kernels.reference import DEMOD_EPS, upsample_phase_weights

_lock = threading.Lock()
_entries: dict[int, _Entry] = {}
builds = 0  # how many values were computed (tests check reuse)


class _Entry:
    __slots__ = ("ref", "stamp", "values")

    def __init__(self, ref: weakref.ref, stamp: tuple) -> None:
        self.ref, self.stamp, self.values = ref, stamp, {}


def _forget(ident: int, ref: weakref.ref) -> None:
    with _lock:
        entry = _entries.get(ident)
        if entry is not None and entry.ref is ref:
            del _entries[ident]


def cached(t: torch.Tensor, tag: Hashable, make: Callable[[], object]) -> object:
    """``make()`` computed once per (tensor, contents, tag)."""
    global builds
    try:
        stamp = (t.data_ptr(), t._version, t.dtype, tuple(t.shape), t.device)
    except RuntimeError:  # inference tensors have no version counter
        builds += 1
        return make()
    ident = id(t)
    with _lock:
        entry = _entries.get(ident)
        if entry is None or entry.ref() is not t or entry.stamp != stamp:
            ref = weakref.ref(t, lambda r, ident=ident: _forget(ident, r))
            entry = _entries[ident] = _Entry(ref, stamp)
        if tag in entry.values:
            return entry.values[tag]
    value = make()
    with _lock:
        builds += 1
        entry.values[tag] = value
    return value


def clear() -> None:
    with _lock:
        _entries.clear()


def _pack(w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[P, O, I, kh, kw] -> [P, kh*kw*I, round_up(O, 16)] in ``dtype``: row tap*I + i, output channels contiguous."""
    p, o, i, kh, kw = w.shape
    n_pack = (o + 15) // 16 * 16
    packed = torch.zeros(p, kh * kw * i, n_pack, device=w.device, dtype=dtype)
    packed[:, :, :o] = w.permute(0, 3, 4, 2, 1).reshape(p, kh * kw * i, o).to(dtype)
    return packed


def packed_weight(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The Triton kernel's B operand for a stride-1 conv: [1, kh*kw*I, N_PACK] in ``dtype``."""
    return cached(weight, ("packed", dtype), lambda: _pack(weight.detach()[None], dtype))


def filter_values(f: torch.Tensor) -> tuple:
    """A filter's values as a hashable tuple (read from the device once per filter tensor)."""
    return cached(f, ("values",), lambda: (tuple(f.shape), tuple(f.detach().flatten().tolist())))


def phase_weights(weight: torch.Tensor, f: torch.Tensor, up: int, padding: int) -> tuple[torch.Tensor, int, int]:
    """``reference.upsample_phase_weights``, cached per weight and filter values: ([up^2, O, I, kp, kp], kp, pad)."""
    tag = ("phases", up, padding, filter_values(f))
    return cached(weight, tag, lambda: upsample_phase_weights(weight.detach(), f, up, padding))


def packed_phase_weight(
    weight: torch.Tensor, f: torch.Tensor, up: int, padding: int, dtype: torch.dtype
) -> tuple[torch.Tensor, tuple[int, int], int]:
    """The B operand of the fused upsampling conv: ([up^2, kp*kp*I, N_PACK], (kp, kp), phase padding)."""
    tag = ("packed-phases", up, padding, filter_values(f), dtype)

    def make() -> tuple[torch.Tensor, tuple[int, int], int]:
        w, kp, pad = phase_weights(weight, f, up, padding)
        return _pack(w, dtype), (kp, kp), pad

    return cached(weight, tag, make)


def weight_sumsq(weight: torch.Tensor) -> torch.Tensor:
    """sum over taps of W^2 as [I, O] fp32: the demodulation GEMM's right operand."""
    return cached(weight, ("sumsq",), lambda: weight.detach().float().square().sum(dim=[2, 3]).t().contiguous())


def demodulation(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """rsqrt(styles^2 @ sum_taps W^2 + eps): [N, O] fp32, one small GEMM."""
    return (styles.float().square() @ weight_sumsq(weight)).add_(DEMOD_EPS).rsqrt_()
