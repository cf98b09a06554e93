"""Triton nearest-code search: running min/argmin over codebook tiles, the N x K distance matrix is never written.

Each program takes a tile of BLOCK_Q queries and a contiguous range of codes. Per code tile it accumulates q.c with
tl.dot (over D in BLOCK_D chunks) and |c|^2 alongside, forms a score whose argmin is the nearest code (l2: |c|^2 -
2 q.c, cosine: -q.c / |c|), sets padded codes to +inf so they can never win, and keeps a running (min, argmin) per
query; ties keep the lower index. When there are few query tiles (small batches) the codebook is split across
programs (grid axis 1) and the per-split winners are merged by a second, tiny pass (argmin over the splits, earliest
split wins ties). |q|^2 is added (l2) or divided out (cosine) afterwards: it does not change the argmin.

Imported lazily: TRITON_INTERPRET must already be set (or not) when this module is first imported.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ganserve.kernels import switch
from ganserve.kernels.modconv_triton import quick_bench
from ganserve.kernels.reference import NORM_EPS

INTERPRETED = switch.interpreting()
INTERPRETER_CONFIG = {"BLOCK_Q": 16, "BLOCK_C": 16, "BLOCK_D": 16}
SPLIT_ALIGN = 128  # code ranges per split are multiples of every BLOCK_C candidate
launches = 0


def _configs() -> list[triton.Config]:
    configs = []
    for bq, bc, bd, warps, stages in [
        (64, 128, 32, 4, 4),
        (64, 128, 64, 4, 3),
        (128, 128, 32, 8, 3),
        (128, 64, 64, 4, 3),
        (64, 64, 64, 4, 4),
        (128, 128, 64, 8, 3),
        (32, 128, 32, 4, 4),
        (64, 64, 32, 4, 4),  # D = 32 (factorised codes)
        (128, 128, 32, 8, 4),
    ]:
        configs.append(triton.Config({"BLOCK_Q": bq, "BLOCK_C": bc, "BLOCK_D": bd}, num_warps=warps, num_stages=stages))
    return configs


@triton.jit
def _vq_kernel(
    z_ptr,
    c_ptr,
    score_ptr,
    index_ptr,
    N,
    K,
    D,
    szn,
    szd,
    sck,
    scd,
    codes_per_split,
    norm_eps_sq,
    COSINE: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_q = tl.program_id(0)
    split = tl.program_id(1)
    offs_q = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_mask = offs_q < N
    offs_d0 = tl.arange(0, BLOCK_D)
    k_start = split * codes_per_split
    k_end = tl.minimum(k_start + codes_per_split, K)
    best = tl.full((BLOCK_Q,), float("inf"), dtype=tl.float32)
    best_idx = tl.zeros((BLOCK_Q,), dtype=tl.int32)
    z_rows = z_ptr + offs_q.to(tl.int64)[:, None] * szn
    for k0 in range(k_start, k_end, BLOCK_C):
        offs_c = k0 + tl.arange(0, BLOCK_C)
        c_mask = offs_c < k_end
        c_rows = c_ptr + offs_c.to(tl.int64)[:, None] * sck
        dots = tl.zeros((BLOCK_Q, BLOCK_C), dtype=tl.float32)
        csq = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + offs_d0
            d_mask = offs_d < D
            q = tl.load(z_rows + offs_d[None, :] * szd, mask=q_mask[:, None] & d_mask[None, :], other=0.0)
            c = tl.load(c_rows + offs_d[None, :] * scd, mask=c_mask[:, None] & d_mask[None, :], other=0.0)
            cf = c.to(tl.float32)
            csq += tl.sum(cf * cf, axis=1)
            dots = tl.dot(q, tl.trans(c), dots, input_precision=PRECISION)
        if COSINE:
            score = -dots * tl.rsqrt(tl.maximum(csq, norm_eps_sq))[None, :]
        else:
            score = csq[None, :] - 2.0 * dots
        score = tl.where(c_mask[None, :], score, float("inf"))  # padding can never win
        tile_min, tile_arg = tl.min(score, axis=1, return_indices=True, return_indices_tie_break_left=True)
        better = tile_min < best
        best = tl.where(better, tile_min, best)
        best_idx = tl.where(better, tile_arg + k0, best_idx)
    out = split * N + offs_q
    tl.store(score_ptr + out, best, mask=q_mask)
    tl.store(index_ptr + out, best_idx, mask=q_mask)


def _prune(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
    """Chunks of D wider than D only waste the autotuner's time."""
    max_d = max(16, triton.next_power_of_2(named_args["D"]))
    return [c for c in configs if c.kwargs["BLOCK_D"] <= max_d] or configs


_tuned_kernel = triton.autotune(
    configs=_configs(),
    key=["N", "K", "D", "COSINE"],
    prune_configs_by={"early_config_prune": _prune},
    do_bench=quick_bench,
)(_vq_kernel)


def _num_splits(n: int, k: int, device: torch.device) -> int:
    """Enough programs to fill the GPU (about two per SM) when the queries alone would not."""
    if INTERPRETED or device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    q_tiles = triton.cdiv(n, 64)
    return max(1, min(triton.cdiv(k, SPLIT_ALIGN), (2 * sms) // q_tiles))


def vq_nearest(
    z: torch.Tensor, codebook: torch.Tensor, metric: str, splits: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices int64 [N], distances fp32 [N]) as the reference; ``splits`` overrides the codebook split count."""
    global launches
    n, d = z.shape
    k = codebook.shape[0]
    codebook = codebook.to(z.dtype)  # tl.dot needs one operand dtype
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=z.device), torch.empty(0, device=z.device)
    splits = splits or _num_splits(n, k, z.device)
    per_split = triton.cdiv(triton.cdiv(k, splits), SPLIT_ALIGN) * SPLIT_ALIGN
    splits = triton.cdiv(k, per_split)
    scores = torch.empty((splits, n), device=z.device, dtype=torch.float32)
    indices = torch.empty((splits, n), device=z.device, dtype=torch.int32)
    cosine = metric == "cosine"
    precision = switch.dot_precision() if z.dtype == torch.float32 else "ieee"
    args = (z, codebook, scores, indices, n, k, d, *z.stride(), *codebook.stride(), per_split, NORM_EPS * NORM_EPS)

    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(n, meta["BLOCK_Q"]), splits)

    if INTERPRETED:
        _vq_kernel[grid](*args, COSINE=cosine, PRECISION=precision, **INTERPRETER_CONFIG)
    else:
        _tuned_kernel[grid](*args, COSINE=cosine, PRECISION=precision)
    launches += 1
    if splits > 1:  # second pass: merge the per-split winners
        pick = scores.argmin(dim=0, keepdim=True)
        scores, indices = scores.gather(0, pick), indices.gather(0, pick)
    best, idx = scores[0], indices[0].long()
    qsq = z.float().square().sum(dim=1)
    if cosine:
        dist = 1.0 + best * torch.rsqrt(qsq.clamp_min(NORM_EPS * NORM_EPS))
    else:
        dist = qsq + best
    return idx, dist.clamp_min(0.0)
