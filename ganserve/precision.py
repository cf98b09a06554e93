"""Inference precision: fp32 (the reference), tf32, bf16, fp16, and mixed (half precision where the family says so).

A loaded model carries its ``precision``; the core renders every chunk inside ``precision_scope`` and records the
precision in each image's parameters, so a PNG says how it was made. Weights stay fp32: bf16 and fp16 run the
generator under ``torch.autocast`` (convolutions and matmuls in half precision, reductions and the latent mapping in
fp32), tf32 lets CUDA matmuls and convolutions use TensorFloat-32, and ``mixed`` asks the model to run its own
half-precision layers (StyleGAN2: the top resolutions in fp16 with activations clamped, as the official
``num_fp16_res``) for families that define them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "mixed")
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(model: nn.Module, precision: str) -> str:
    """Validate ``precision`` for ``model`` (``mixed`` needs a model that defines its half-precision layers)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    if precision == "mixed" and not hasattr(model, "mixed_precision"):
        raise ValueError(f"the {model.family} family defines no mixed precision; use fp16 or bf16")
    return precision


def recorded_precision(model: nn.Module) -> str:
    """What an image and ``describe`` record: the precision the core runs an eager model at, or the dtype a graph
    backend's graphs were exported in (``graph_precision``, set by ganserve.export when it loads them)."""
    graph = getattr(model, "graph_precision", "fp32")
    return graph if graph != "fp32" else getattr(model, "precision", "fp32")


def set_precision(model: nn.Module, precision: str) -> nn.Module:
    model.precision = check_precision(model, precision)
    return model


@contextlib.contextmanager
def precision_scope(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Run the enclosed generator calls at ``model.precision``."""
    precision = getattr(model, "precision", "fp32")
    if precision == "fp32":
        yield
    elif precision == "tf32":
        matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    elif precision == "mixed":
        with model.mixed_precision(torch.float16 if device.type == "cuda" else torch.bfloat16):
            yield
    else:
        with torch.autocast(device.type, dtype=HALF[precision]):
            yield
