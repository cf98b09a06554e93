"""Triton modulated convolution: an implicit GEMM that never writes per-sample weights to memory.

GEMM view per sample n: M = output pixels (OH x OW), N = output channels, K = input channels x taps. Each program
owns a BLOCK_M x BLOCK_N output tile of one sample. For every tap (kh, kw) and block of input channels it gathers the
shifted activations straight from x (zero padding by masking) and the shared weight slice, scales the weight slice by
the sample's styles in registers (identical to scaling the activations, and BLOCK_K x BLOCK_N multiplies instead of
BLOCK_M x BLOCK_K), and accumulates with tl.dot in fp32. The same modulated slice, squared and summed, gives the
demodulation sums s^2 . sum W^2 for free. The epilogue applies rsqrt(sum + eps), noise, bias, leaky ReLU x gain and
the clamp before the single store.

Imported lazily: TRITON_INTERPRET must already be set (or not) when this module is first imported.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton
import triton.language as tl

from ganserve.kernels import switch
from ganserve.kernels.reference import DEMOD_EPS

ACT_CODES = {"linear": 0, "lrelu": 1, "relu": 2}
INTERPRETED = switch.interpreting()  # fixed when the kernels below are defined
launches = 0  # counts Triton launches, so tests can prove the Triton code ran


def _configs() -> list[triton.Config]:
    configs = []
    for bm, bn, bk, warps, stages in [
        (128, 128, 32, 8, 3),
        (128, 64, 32, 4, 4),
        (64, 128, 32, 4, 4),
        (64, 64, 32, 4, 4),
        (128, 128, 64, 8, 3),
        (64, 64, 64, 4, 3),
        (32, 64, 32, 4, 4),  # small feature maps (4x4, 8x8): fewer wasted rows
        (16, 64, 64, 4, 3),
        (128, 16, 64, 4, 3),  # toRGB: 3 output channels
        (64, 16, 64, 4, 3),
    ]:
        configs.append(triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=warps, num_stages=stages))
    return configs


INTERPRETER_CONFIG = {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16}


@triton.jit
def _modconv_kernel(
    x_ptr,
    w_ptr,
    s_ptr,
    noise_ptr,
    bias_ptr,
    out_ptr,
    C_IN,
    H,
    W,
    C_OUT,
    OH,
    OW,
    PAD,
    sxn,
    sxc,
    sxh,
    sxw,
    swo,
    swi,
    swh,
    sww,
    ssn,
    ssc,
    snn,
    snh,
    snw,
    son,
    soc,
    soh,
    sow,
    gain,
    clamp,
    eps,
    KH: tl.constexpr,
    KW: tl.constexpr,
    DEMODULATE: tl.constexpr,
    HAS_NOISE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACT: tl.constexpr,
    HAS_CLAMP: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # Output channels vary fastest across programs, so neighbouring programs reuse the same activations from L2.
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_mask = offs_m < OH * OW
    n_mask = offs_n < C_OUT
    oh = offs_m // OW
    ow = offs_m % OW
    x_base = x_ptr + n * sxn
    s_base = s_ptr + n * ssn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    sumsq = tl.zeros((BLOCK_N,), dtype=tl.float32)
    # One flat K loop over (tap, channel block): a single copy of the body (fast to compile) that Triton's software
    # pipelining can prefetch across tap boundaries.
    c_blocks = tl.cdiv(C_IN, BLOCK_K)
    for step in range(0, KH * KW * c_blocks):
        tap = step // c_blocks
        kh = tap // KW
        kw = tap % KW
        cs = (step % c_blocks) * BLOCK_K + offs_k
        c_mask = cs < C_IN
        ih = oh + kh - PAD
        iw = ow + kw - PAD
        valid = m_mask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)  # zero padding by masking
        a = tl.load(
            x_base + ih[:, None] * sxh + iw[:, None] * sxw + cs[None, :] * sxc,
            mask=valid[:, None] & c_mask[None, :],
            other=0.0,
        )
        s = tl.load(s_base + cs * ssc, mask=c_mask, other=0.0).to(tl.float32)
        b = tl.load(
            w_ptr + kh * swh + kw * sww + cs[:, None] * swi + offs_n[None, :] * swo,
            mask=c_mask[:, None] & n_mask[None, :],
            other=0.0,
        )
        b = b.to(tl.float32) * s[:, None]  # modulate the shared weight slice in registers
        if DEMODULATE:
            sumsq += tl.sum(b * b, axis=0)
        acc = tl.dot(a, b.to(a.dtype), acc, input_precision=PRECISION)
    out = acc
    if DEMODULATE:
        out = out * tl.rsqrt(sumsq + eps)[None, :]
    if HAS_NOISE:
        nz = tl.load(noise_ptr + n * snn + oh * snh + ow * snw, mask=m_mask, other=0.0)
        out += nz.to(tl.float32)[:, None]
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_n, mask=n_mask, other=0.0)
        out += bias.to(tl.float32)[None, :]
    if ACT == 1:
        out = tl.where(out >= 0, out, out * 0.2)
    elif ACT == 2:
        out = tl.maximum(out, 0.0)
    out = out * gain
    if HAS_CLAMP:
        out = tl.minimum(tl.maximum(out, -clamp), clamp)
    out_ptrs = out_ptr + n * son + offs_n[None, :] * soc + (oh * soh + ow * sow)[:, None]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])


def _prune(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
    """Skip tiles much larger than the layer (4x4 maps, 3 output channels): they only waste the autotuner's time."""
    max_m = max(16, triton.next_power_of_2(named_args["OH"] * named_args["OW"]))
    max_n = max(16, triton.next_power_of_2(named_args["C_OUT"]))
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= max_m and c.kwargs["BLOCK_N"] <= max_n]
    return kept or [min(configs, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])]


def quick_bench(fn: Callable[[], object], quantiles: list[float] | tuple[float, ...]) -> object:
    """Autotuning with short timing windows: many layer shapes are tuned once each at start-up."""
    return triton.testing.do_bench(fn, warmup=5, rep=20, quantiles=quantiles)


_tuned_kernel = triton.autotune(
    configs=_configs(),
    key=["C_IN", "C_OUT", "OH", "OW", "KH", "KW", "DEMODULATE"],
    prune_configs_by={"early_config_prune": _prune},
    do_bench=quick_bench,
)(_modconv_kernel)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None,
    bias: torch.Tensor | None,
    demodulate: bool,
    padding: int,
    activation: str,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """Launch the kernel; the arguments are those of the reference (ganserve.kernels.reference.modulated_conv2d)."""
    global launches
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    oh, ow = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    out = torch.empty((n, c_out, oh, ow), device=x.device, dtype=x.dtype)
    if out.numel() == 0:
        return out
    noise_t = noise.expand(n, 1, oh, ow) if noise is not None else out  # dummy pointer when absent
    bias_t = bias if bias is not None else out
    precision = switch.dot_precision() if x.dtype == torch.float32 else "ieee"
    args = (
        x, weight, styles, noise_t, bias_t, out,
        c_in, h, w, c_out, oh, ow, padding,
        *x.stride(), *weight.stride(), *styles.stride(),
        noise_t.stride(0), noise_t.stride(2), noise_t.stride(3),
        *out.stride(),
        float(gain), float(clamp if clamp is not None else 0.0), DEMOD_EPS,
    )  # fmt: skip
    flags = dict(
        KH=kh,
        KW=kw,
        DEMODULATE=bool(demodulate),
        HAS_NOISE=noise is not None,
        HAS_BIAS=bias is not None,
        ACT=ACT_CODES[activation],
        HAS_CLAMP=clamp is not None,
        PRECISION=precision,
    )

    def grid(meta: dict) -> tuple[int, int, int]:
        return (triton.cdiv(c_out, meta["BLOCK_N"]), triton.cdiv(oh * ow, meta["BLOCK_M"]), n)

    if INTERPRETED:  # one configuration: the interpreter is slow and cannot time candidates
        _modconv_kernel[grid](*args, **flags, **INTERPRETER_CONFIG)
    else:
        _tuned_kernel[grid](*args, **flags)
    launches += 1
    return out
