"""The batch-invariant layers (ganserve.models.layers: ``linear``, ``conv2d``, ``conv_transpose2d``) as torch custom
ops, so a traced program keeps them: under ``layers.invariant_ops()`` torch.export records one ``ganserve::invariant_*``
node per layer, and at run time that node runs the layer in batch-invariant mode on the device it is given (the fixed
CPU kernels in fp32, the plain op elsewhere). Importing this module registers the ops; a saved program that uses them
loads only after it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ganserve.models import layers


def _eager():
    """Batch-invariant mode with the ops themselves off (the op's body must run the layer, not record it again)."""
    return layers.invariant_ops(False)


@torch.library.custom_op("ganserve::invariant_linear", mutates_args=())
def invariant_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    with _eager(), layers.batch_invariant():
        return layers.linear(x, weight, bias)


@invariant_linear.register_fake
def _(x, weight, bias):
    return F.linear(x, weight, bias)


@torch.library.custom_op("ganserve::invariant_conv2d", mutates_args=())
def invariant_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int], groups: int
) -> Tensor:
    with _eager(), layers.batch_invariant():
        return layers.conv2d(x, weight, bias, tuple(stride), tuple(padding), groups)


@invariant_conv2d.register_fake
def _(x, weight, bias, stride, padding, groups):
    return F.conv2d(x, weight, bias, stride, padding, groups=groups)


@torch.library.custom_op("ganserve::invariant_conv_transpose2d", mutates_args=())
def invariant_conv_transpose2d(x: Tensor, weight: Tensor, stride: int, groups: int) -> Tensor:
    with _eager(), layers.batch_invariant():
        return layers.conv_transpose2d(x, weight, stride, groups)


@invariant_conv_transpose2d.register_fake
def _(x, weight, stride, groups):
    return F.conv_transpose2d(x, weight, stride=stride, groups=groups)
