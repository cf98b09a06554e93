"""When the Triton kernels run: an environment variable, an API switch, and the interpreter override for tests.

GANSERVE_KERNELS=0 turns the kernels off for the whole process (read at every call, so it can be flipped at run
time); ``set_enabled`` / ``use_kernels`` do the same from Python and take precedence over the variable. CUDA tensors
go to Triton when enabled; every other device runs the PyTorch reference, except that with TRITON_INTERPRET=1 and
``force_triton`` the Triton code itself runs on CPU tensors (how CI tests the kernels without a GPU).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Iterator

import torch

ENV_VAR = "GANSERVE_KERNELS"
_enabled: bool | None = None  # None: follow the environment variable
_force_triton = False


def enabled() -> bool:
    """Whether the Triton kernels may run (they still only run on CUDA tensors unless forced)."""
    if _enabled is not None:
        return _enabled
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "off", "no")


def set_enabled(value: bool | None) -> None:
    """Turn the kernels on or off for this process; None goes back to following $GANSERVE_KERNELS."""
    global _enabled
    _enabled = value


@contextlib.contextmanager
def use_kernels(value: bool = True) -> Iterator[None]:
    """Run a block with the kernels on (True) or off (False), restoring the previous setting afterwards."""
    global _enabled
    previous, _enabled = _enabled, value
    try:
        yield
    finally:
        _enabled = previous


def interpreting() -> bool:
    """TRITON_INTERPRET=1: Triton kernels defined from now on run in the (slow, CPU) interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@contextlib.contextmanager
def force_triton(value: bool = True) -> Iterator[None]:
    """Send CPU tensors to the Triton kernels too. Only meaningful under TRITON_INTERPRET=1 (the interpreter runs
    kernels on CPU tensors); outside it a CPU launch would fail, so asking for it is an error."""
    global _force_triton
    if value and not interpreting():
        raise RuntimeError("force_triton needs TRITON_INTERPRET=1 set before the kernels are imported")
    previous, _force_triton = _force_triton, value
    try:
        yield
    finally:
        _force_triton = previous


@functools.cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def use_triton(x: torch.Tensor) -> bool:
    """The dispatch rule inside the custom ops: Triton for CUDA tensors (or forced CPU ones), else the reference."""
    if not enabled() or not triton_available():
        return False
    if x.device.type == "cuda":
        return True
    return _force_triton and x.device.type == "cpu"


def wants_kernels(x: torch.Tensor) -> bool:
    """Whether a model layer should route through the custom ops at all (cheap; never imports Triton)."""
    return enabled() and (x.device.type == "cuda" or _force_triton)


PRECISIONS = ("ieee", "tf32")
_precision: str | None = None


def _explicit_precision() -> str | None:
    value = _precision or os.environ.get("GANSERVE_KERNELS_PRECISION", "").strip().lower() or None
    if value is not None and value not in PRECISIONS:
        raise ValueError(f"GANSERVE_KERNELS_PRECISION must be one of {PRECISIONS}, got {value!r}")
    return value


def dot_precision(kind: str = "conv") -> str:
    """Precision of fp32 dots: 'ieee' (agrees with an fp32 reference to ~1e-5) or 'tf32' (tensor cores, ~1e-3
    relative). ``set_precision`` / $GANSERVE_KERNELS_PRECISION decide when set; otherwise the op follows PyTorch's own
    switch for the op it replaces: ``torch.backends.cudnn.allow_tf32`` for the convolution (``kind="conv"``; PyTorch's
    default is True), ``torch.backends.cuda.matmul.allow_tf32`` for the VQ search (``kind="matmul"``; default False).
    Every candidate of an op (Triton and PyTorch paths) runs at this precision. fp16/bf16 operands always use their
    native tensor-core path."""
    explicit = _explicit_precision()
    if explicit is not None:
        return explicit
    flag = torch.backends.cudnn.allow_tf32 if kind == "conv" else torch.backends.cuda.matmul.allow_tf32
    return "tf32" if flag else "ieee"


def set_precision(value: str | None) -> None:
    """Set the fp32 dot precision ('ieee' or 'tf32'); None goes back to $GANSERVE_KERNELS_PRECISION / PyTorch's."""
    global _precision
    if value is not None and value not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {value!r}")
    _precision = value


@contextlib.contextmanager
def torch_precision(precision: str) -> Iterator[None]:
    """Run PyTorch's fp32 convolutions and matmuls at ``precision`` ('ieee' | 'tf32') inside the block (the PyTorch
    candidates of an op must compute at the precision the op was asked for)."""
    tf32 = precision == "tf32"
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if cudnn == tf32 and matmul == tf32:
        yield
        return
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul
