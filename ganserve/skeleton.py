"""Build a module on the meta device (shapes, no memory) without importing torch._dynamo.

``ganserve.load`` builds each model once on the meta device to compare its state dict's names and shapes with the
file's before allocating anything. In torch 2.x most out-of-place pointwise ops (``randn(...) / x``, ``x * 2``,
``sqrt``) and some in-place ones (``normal_``) reach their meta result through Python reference implementations
(``torch._refs``) wrapped in ``torch._dynamo.disable``, whose first call imports torch._dynamo, sympy and triton: about
150 MiB and several seconds of every cold load (every CLI call, every TorchServe worker). ``shape_only`` answers those
ops itself: an in-place op returns its (meta) input unchanged, a pointwise op returns an empty meta tensor of the
broadcast shape, with the dtype found by running the op on one-element CPU stand-ins (the real C++ kernel, so type
promotion is torch's own). Every other op runs as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

T = TypeVar("T")


def _writes_first_argument(func: torch._ops.OpOverload) -> bool:
    """An in-place op that keeps its input's shape (in-place views, unsqueeze_ or resize_, change it: they run)."""
    schema = func._schema
    if not schema.arguments or torch.Tag.inplace_view in func.tags:
        return False
    alias = schema.arguments[0].alias_info
    return alias is not None and alias.is_write and not schema.arguments[0].kwarg_only


def _stand_in(x: Any) -> Any:
    # One element per dimension keeps the number of dimensions, which type promotion looks at (0-dim vs not).
    # Ones, not zeros: integer division by a stand-in must not fail.
    return torch.ones([1] * x.dim(), dtype=x.dtype) if isinstance(x, torch.Tensor) else x


def _broadcast(shapes: list[tuple[int, ...]]) -> list[int]:
    # torch.broadcast_shapes goes through torch._refs and imports sympy; the rule is short enough to restate.
    out = [1] * max(map(len, shapes))
    for shape in shapes:
        for i, n in enumerate(reversed(shape), 1):
            if n != 1:
                if out[-i] not in (1, n):
                    raise RuntimeError(f"shapes {shapes} do not broadcast")
                out[-i] = n
    return out


def _reduced_shape(func: Any, args: tuple, kwargs: dict, x: torch.Tensor) -> list[int]:
    """The shape a reduction of ``x`` over its ``dim`` argument (none or empty: every dim) gives, ``keepdim`` or not."""
    bound = {a.name: v for a, v in zip(func._schema.arguments, args)} | kwargs
    dim, keepdim = bound.get("dim"), bool(bound.get("keepdim", False))
    dims = range(x.dim()) if dim is None or dim == [] else [dim] if isinstance(dim, int) else dim
    dims = {d % max(x.dim(), 1) for d in dims}
    return [1 if i in dims else n for i, n in enumerate(x.shape) if keepdim or i not in dims]


def _factory(func: Any, args: tuple, kwargs: dict) -> Any:
    """A factory op with a ``size`` (randn, rand, randint ...) on meta: its dtype from a one-element CPU call."""
    names = [a.name for a in func._schema.arguments]
    if "size" not in names or str(kwargs.get("device")) != "meta":
        return func(*args, **kwargs)
    i = names.index("size")
    args, kwargs = list(args), dict(kwargs)
    size = args[i] if i < len(args) else kwargs["size"]
    small = [1] * len(size)
    if i < len(args):
        args[i] = small
    else:
        kwargs["size"] = small
    dtype = func(*args, **{**kwargs, "device": "cpu"}).dtype
    return torch.empty(size, dtype=dtype, device="meta")


class shape_only(TorchDispatchMode):
    """Inside ``with torch.device("meta"), shape_only():`` pointwise and in-place ops on meta tensors skip torch's
    Python meta kernels (see the module docstring)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # The default wraps __torch_dispatch__ in torch._dynamo.disable, which imports dynamo on the first op; this
        # mode never runs under torch.compile.
        return False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if not tensors:
            return _factory(func, args, kwargs)
        if not all(t.is_meta for t in tensors):
            return func(*args, **kwargs)
        if _writes_first_argument(func):
            return args[0]
        if torch.Tag.pointwise in func.tags and "out" not in kwargs:
            result = func(*tree_map(_stand_in, args), **tree_map(_stand_in, kwargs))
            if isinstance(result, torch.Tensor):
                shape = _broadcast([tuple(t.shape) for t in tensors])
                return torch.empty(shape, dtype=result.dtype, device="meta")
        if torch.Tag.reduction in func.tags and len(tensors) == 1:
            result = func(*tree_map(_stand_in, args), **tree_map(_stand_in, kwargs))
            if isinstance(result, torch.Tensor):
                return torch.empty(_reduced_shape(func, args, kwargs, tensors[0]), dtype=result.dtype, device="meta")
        return func(*args, **kwargs)


def build_on_meta(build: Callable[[], T]) -> T:
    """``build()`` with every tensor it makes on the meta device, without importing torch._dynamo."""
    with torch.device("meta"), shape_only():
        return build()
