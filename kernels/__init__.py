"""ganserve.kernels: Triton kernels for the GPU hot path, each with a PyTorch reference and a torch custom op.

- ``modulated_conv2d``: StyleGAN2's modulated convolution as one implicit GEMM with the demodulation, noise, bias,
  activation and clamp fused into its epilogue.
- ``vq_nearest``: nearest codebook entry (l2 or cosine) without materialising the distance matrix.

Switches: $GANSERVE_KERNELS=0 or ``set_enabled(False)`` / ``use_kernels(False)`` run the references everywhere;
$GANSERVE_KERNELS_PRECISION / ``set_precision`` choose ieee or tf32 fp32 dots. See kernels/README.md.
"""

from __future__ import annotations

import torch

from ganserve.kernels import ops, reference
from ganserve.kernels.switch import (
    dot_precision,
    enabled,
    force_triton,
    interpreting,
    set_enabled,
    set_precision,
    triton_available,
    use_kernels,
    use_triton,
    wants_kernels,
)

__all__ = [
    "decompositions",
    "dot_precision",
    "enabled",
    "force_triton",
    "interpreting",
    "modulated_conv2d",
    "reference",
    "set_enabled",
    "set_precision",
    "triton_available",
    "use_kernels",
    "use_triton",
    "vq_nearest",
    "wants_kernels",
]

decompositions = ops.decompositions


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    padding: int = 1,
    noise: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    activation: str | None = "lrelu",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution (stride 1) with a fused epilogue.

    x [N, I, H, W]; weight [O, I, kh, kw], already gain-scaled; styles [N, I]; noise broadcastable to [N, 1, H', W']
    (e.g. [H', W'] or [1, 1, H', W']), added after demodulation; bias [O]. activation "lrelu" | "relu" | None, with
    gain defaulting to sqrt(2) for the rectifiers and 1 otherwise; clamp limits the result to [-clamp, clamp].
    The output has x's dtype; demodulation is computed from fp32 weights and styles.
    """
    act = activation or "linear"
    if act not in reference.ACTIVATIONS:
        raise ValueError(f"activation must be 'lrelu', 'relu' or None, got {activation!r}")
    if x.ndim != 4 or weight.ndim != 4 or styles.ndim != 2:
        raise ValueError(f"x, weight, styles must be 4-D, 4-D, 2-D; got {x.ndim}, {weight.ndim}, {styles.ndim}")
    if weight.shape[1] != x.shape[1] or styles.shape != (x.shape[0], x.shape[1]):
        raise ValueError(
            f"shape mismatch: x {tuple(x.shape)}, weight {tuple(weight.shape)}, styles {tuple(styles.shape)}"
        )
    if gain is None:
        gain = reference.SQRT2 if act != "linear" else 1.0
    return ops.modulated_conv2d_op(x, weight, styles, noise, bias, demodulate, padding, act, float(gain), clamp)


def vq_nearest(
    z: torch.Tensor, codebook: torch.Tensor, *, metric: str = "l2", splits: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest code for each row of z [N, D] in codebook [K, D] -> (indices int64 [N], distances fp32 [N]).

    metric "l2": squared euclidean distance; "cosine": 1 - cosine similarity (for l2-normalised codes, ViT-VQGAN).
    splits: how many programs share the codebook on the GPU (default: chosen from the batch size).
    """
    if metric not in ("l2", "cosine"):
        raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    if z.ndim != 2 or codebook.ndim != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"z must be [N, D] and codebook [K, D]; got {tuple(z.shape)} and {tuple(codebook.shape)}")
    if codebook.shape[0] == 0:
        raise ValueError("codebook is empty")
    return ops.vq_nearest_op(z, codebook, metric, int(splits or 0))
