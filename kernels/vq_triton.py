"""Triton nearest-code search: running min/argmin over codebook tiles, the N x K score matrix is never written.

Each program takes a tile of BLOCK_Q queries and a contiguous range of codes. Per code tile it computes q.c with
``tl.dot`` (fp32 accumulation; the query tile is loaded once when D fits one BLOCK_D, else D is looped) and turns it
into a score whose argmin is the nearest code, using one precomputed fp32 term per code (cached per codebook by the
caller): l2 |c|^2 - 2 q.c, cosine -q.c / |c|. Padded codes score +inf so they never win; a running (min, argmin) per
query keeps the lowest index on ties. When there are few query tiles (small batches) the codebook is split across
programs (grid axis 1, about two programs per SM in all) and a second, tiny pass takes the argmin over the splits
(the earliest split wins ties). The kernel returns indices; the op computes the chosen codes' distances exactly.

Tile configurations are fixed per launch; the dispatcher measures ``CONFIGS`` at tuning time.
Imported lazily: TRITON_INTERPRET must already be set (or not) when this module is first imported.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ganserve.kernels import modconv_triton, switch

INTERPRETED = switch.interpreting()
SPLIT_ALIGN = 128  # code ranges per split are multiples of this (whole tiles for BLOCK_C <= 128)
launches = 0


class Config(NamedTuple):
    block_q: int
    block_c: int
    block_d: int  # 0: the next power of two >= D up to 256 (one chunk), else 64-wide chunks
    warps: int
    stages: int

    @property
    def name(self) -> str:
        return f"{self.block_q}x{self.block_c}x{self.block_d or 'D'}w{self.warps}s{self.stages}"

    @classmethod
    def parse(cls, name: str) -> Config:
        tiles, rest = name.split("w")
        q, c, d = tiles.split("x")
        warps, stages = rest.split("s")
        return cls(int(q), int(c), 0 if d == "D" else int(d), int(warps), int(stages))


CONFIGS = [
    Config(64, 128, 0, 4, 3),
    Config(128, 128, 0, 8, 3),
    Config(128, 64, 0, 4, 3),
    Config(64, 64, 0, 4, 4),
    Config(32, 128, 0, 4, 3),
    Config(128, 256, 0, 8, 3),
    Config(64, 128, 0, 4, 2),  # wide codes (D = 256): two stages fit shared memory
    Config(128, 128, 0, 8, 2),
]
INTERPRETER_CONFIG = Config(16, 16, 16, 1, 1)
SHARED_LIMIT = 220 * 1024  # Hopper: 227 KB per block; leave room for the compiler's own buffers


def block_d(config: Config, d: int, elem_size: int = 2) -> int:
    """One chunk of next_pow2(D) when its rows are at most 512 bytes (D <= 256 in fp16), else 64-wide chunks."""
    if config.block_d:
        return config.block_d
    p = max(16, triton.next_power_of_2(d))
    return p if p * elem_size <= 512 else 64


def configs_for(n: int, k: int, d: int, elem_size: int = 2) -> list[Config]:
    """Skip query tiles much taller than the batch (they would idle most rows) and pipelines that would not fit
    shared memory (stages x code tile + query tile)."""
    max_q = max(32, triton.next_power_of_2(n))
    kept = []
    for c in CONFIGS:
        bd = block_d(c, d, elem_size)
        smem = (c.stages * c.block_c + c.block_q) * bd * elem_size
        if c.block_q <= max_q and smem <= SHARED_LIMIT:
            kept.append(c)
    return kept or [Config(32, 64, 0, 4, 2)]


@triton.jit
def _vq_kernel(
    z_ptr,
    c_ptr,
    t_ptr,
    score_ptr,
    index_ptr,
    N,
    K,
    D,
    szn,
    sck,
    codes_per_split,
    COSINE: tl.constexpr,
    PRECISION: tl.constexpr,
    SINGLE_D: tl.constexpr,  # D <= BLOCK_D: the query tile is loaded once
    EMULATE_BF16: tl.constexpr,  # interpreter only: it has no bf16 arithmetic
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
    if SINGLE_D:
        q = tl.load(z_rows + offs_d0[None, :], mask=q_mask[:, None] & (offs_d0 < D)[None, :], other=0.0)
        if EMULATE_BF16:
            q = q.to(tl.float32)
    for k0 in range(k_start, k_end, BLOCK_C):
        offs_c = k0 + tl.arange(0, BLOCK_C)
        c_mask = offs_c < k_end
        c_rows = c_ptr + offs_c.to(tl.int64)[:, None] * sck
        dots = tl.zeros((BLOCK_Q, BLOCK_C), dtype=tl.float32)
        if SINGLE_D:
            c = tl.load(c_rows + offs_d0[None, :], mask=c_mask[:, None] & (offs_d0 < D)[None, :], other=0.0)
            if EMULATE_BF16:
                dots = tl.dot(q, tl.trans(c.to(tl.float32)), dots, input_precision="ieee")
            else:
                dots = tl.dot(q, tl.trans(c), dots, input_precision=PRECISION)
        else:
            for d0 in range(0, D, BLOCK_D):
                offs_d = d0 + offs_d0
                d_mask = offs_d < D
                qc = tl.load(z_rows + offs_d[None, :], mask=q_mask[:, None] & d_mask[None, :], other=0.0)
                c = tl.load(c_rows + offs_d[None, :], mask=c_mask[:, None] & d_mask[None, :], other=0.0)
                if EMULATE_BF16:
                    dots = tl.dot(qc.to(tl.float32), tl.trans(c.to(tl.float32)), dots, input_precision="ieee")
                else:
                    dots = tl.dot(qc, tl.trans(c), dots, input_precision=PRECISION)
        term = tl.load(t_ptr + offs_c, mask=c_mask, other=0.0)
        if COSINE:
            score = -dots * term[None, :]
        else:
            score = term[None, :] - 2.0 * dots
        score = tl.where(c_mask[None, :], score, float("inf"))  # padding can never win
        tile_min, tile_arg = tl.min(score, axis=1, return_indices=True, return_indices_tie_break_left=True)
        better = tile_min < best
        best = tl.where(better, tile_min, best)
        best_idx = tl.where(better, tile_arg + k0, best_idx)
    out = split * N + offs_q
    tl.store(score_ptr + out, best, mask=q_mask)
    tl.store(index_ptr + out, best_idx, mask=q_mask)


def _num_splits(n: int, k: int, device: torch.device, block_q: int) -> int:
    """Enough programs to fill the GPU (about two per SM) when the query tiles alone would not."""
    if INTERPRETED or device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    q_tiles = triton.cdiv(n, block_q)
    return max(1, min(triton.cdiv(k, SPLIT_ALIGN), (2 * sms) // q_tiles))


def vq_nearest(
    z: torch.Tensor,
    codebook: torch.Tensor,
    terms: torch.Tensor,
    metric: str,
    config: Config | None = None,
    splits: int | None = None,
) -> torch.Tensor:
    """Indices (int64 [N]) of the nearest codes. ``terms``: fp32 [K], |c|^2 (l2) or 1/|c| (cosine); ``splits``
    overrides the codebook split count."""
    global launches
    n, d = z.shape
    k = codebook.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=z.device)
    z = z.contiguous()
    codebook = codebook.to(z.dtype).contiguous()  # tl.dot needs one operand dtype
    config = config or (INTERPRETER_CONFIG if INTERPRETED else configs_for(n, k, d, z.element_size())[0])
    bd = block_d(config, d, z.element_size())
    splits = splits or _num_splits(n, k, z.device, config.block_q)
    per_split = triton.cdiv(triton.cdiv(k, splits), SPLIT_ALIGN) * SPLIT_ALIGN
    splits = triton.cdiv(k, per_split)
    scores = torch.empty((splits, n), device=z.device, dtype=torch.float32)
    indices = torch.empty((splits, n), device=z.device, dtype=torch.int32)
    precision = switch.dot_precision("matmul") if z.dtype == torch.float32 else "ieee"
    grid = (triton.cdiv(n, config.block_q), splits)
    args = (z, codebook, terms.contiguous(), scores, indices, n, k, d, z.stride(0), codebook.stride(0), per_split)
    modconv_triton.run(_vq_kernel, grid, args, dict(
        COSINE=metric == "cosine", PRECISION=precision, SINGLE_D=d <= bd,
        EMULATE_BF16=INTERPRETED and z.dtype == torch.bfloat16,
        BLOCK_Q=config.block_q, BLOCK_C=config.block_c, BLOCK_D=bd, num_warps=config.warps, num_stages=config.stages,
    ))  # fmt: skip
    launches += 1
    if splits > 1:  # second pass: merge the per-split winners (argmin keeps the earliest split on ties)
        pick = scores.argmin(dim=0, keepdim=True)
        indices = indices.gather(0, pick)
    return indices[0].long()
