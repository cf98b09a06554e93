"""ganserve.kernels: Triton kernels for the GPU hot path, each with a PyTorch reference and a torch custom op.

- ``modulated_conv2d``: StyleGAN2's modulated convolution (stride 1, or 2x upsampling) as one implicit GEMM with the
  demodulation, noise, bias, activation and clamp fused into its epilogue.
- ``vq_nearest``: nearest codebook entry (l2 or cosine) without materialising the distance matrix.

On CUDA each call runs the implementation measured fastest for its shape (Triton or a PyTorch path; ``tuning()``,
``load_tuning()``, ganserve.kernels.dispatch), a PyTorch path where nothing was measured.
Switches: $GANSERVE_KERNELS=0 or ``set_enabled(False)`` / ``use_kernels(False)`` run the references everywhere;
$GANSERVE_KERNELS_PRECISION / ``set_precision`` choose ieee or tf32 fp32 dots. See kernels/README.md.
"""

from __future__ import annotations

import torch

from ganserve.kernels import dispatch, ops, reference
from ganserve.kernels.dispatch import tuning
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
    "dispatch",
    "dot_precision",
    "enabled",
    "force_triton",
    "interpreting",
    "load_tuning",
    "modulated_conv2d",
    "reference",
    "set_enabled",
    "set_precision",
    "triton_available",
    "tuning",
    "use_kernels",
    "use_triton",
    "vq_nearest",
    "wants_kernels",
]

decompositions = ops.decompositions
load_tuning = dispatch.load


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
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution with a fused epilogue.

    x [N, I, H, W]; weight [O, I, kh, kw] (a scale on it cancels under demodulation); styles [N, I]; noise
    broadcastable to [N, 1, H', W'] (e.g. [H', W'] or [1, 1, H', W']), added after demodulation; bias [O]. activation
    "lrelu" | "relu" | None, with gain defaulting to sqrt(2) for the rectifiers and 1 otherwise; clamp limits the
    result to [-clamp, clamp]. up=2 with ``resample_filter`` [f, f]: StyleGAN2's upsampling conv (transposed conv,
    then the FIR filter), as ganserve.models.layers.conv2d_resample.
    The output has x's dtype (under CUDA autocast: the autocast dtype) and, on CUDA, the channels-last layout.
    Demodulation is computed from fp32 weights and styles.
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
    if up not in (1, 2) or (up > 1 and (resample_filter is None or resample_filter.ndim != 2)):
        raise ValueError(f"up must be 1, or 2 with a 2-D resample_filter; got up={up}")
    if gain is None:
        gain = reference.SQRT2 if act != "linear" else 1.0
    if x.device.type == "cuda" and torch.is_autocast_enabled("cuda") and x.dtype == torch.float32:
        x = x.to(torch.get_autocast_dtype("cuda"))  # the op is opaque to autocast: cast its activations like a conv
    return ops.modulated_conv2d_op(
        x, weight, styles, noise, bias, resample_filter if up > 1 else None, demodulate, padding, up, act,
        float(gain), clamp,
    )  # fmt: skip


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
