"""Triton modulated convolution: an implicit GEMM over channels-last activations and a pre-packed weight.

GEMM view: M = output pixels of all samples (N x OH x OW, so small feature maps still fill a tile), N = output
channels, K = taps x input channels. Per K step a program loads

- A: a [BLOCK_M, BLOCK_K] tile of the *channels-last* input at one tap (contiguous along K: 16-byte vector loads; zero
  padding by masking the rows whose tap falls outside the image), multiplied by the samples' styles: the modulation
  is folded into the activation tile, which Hopper's wgmma can take straight from registers;
- B: a [BLOCK_K, BLOCK_N] tile of the packed weight [taps x C_in, C_out] (contiguous along N, half precision for
  half inputs, padded to a multiple of 16 output channels so the loads need no mask), shared by every sample; it is
  never modified, so it can go global -> shared memory -> tensor cores untouched;

and accumulates with ``tl.dot`` in fp32. Demodulation does not need the weight inside the loop: the coefficients
rsqrt(styles^2 @ sum_taps W^2 + eps) come from one small [N, C_in] x [C_in, C_out] GEMM before the launch. The
epilogue multiplies them in, adds noise and bias, applies leaky ReLU x gain and the clamp, and stores once
(channels-last by default, so the next layer reads it without a transpose).

2x upsampling (StyleGAN2's conv0): the transposed 3x3 conv (stride 2) followed by the 4x4 FIR is one linear map whose
output pixel (2i + py, 2j + px) depends on a 3x3 window of the input only; the four phases (py, px) are four stride-1
3x3 convolutions with their own weights (``reference.upsample_phase_weights``). The kernel runs them as a grid axis
and writes each phase's pixels in place, so the upsampled layer is one launch with the same epilogue. It does 4x the
multiply-adds of the transposed conv (the same as a stride-1 conv at the output resolution) and saves the
intermediate (2H+1)^2 x C_out tensor, the FIR pass and the epilogue passes; whether that wins is measured per shape
by the dispatcher (kernels/README.md).

Tile configurations are fixed per launch (no ``triton.autotune``, which would time candidates inside a served
request): the dispatcher (ganserve.kernels.dispatch) measures the configurations in ``CONFIGS`` at tuning time and
stores the winner per shape.

Imported lazily: TRITON_INTERPRET must already be set (or not) when this module is first imported.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ganserve.kernels import derived, switch

ACT_CODES = {"linear": 0, "lrelu": 1, "relu": 2}
INTERPRETED = switch.interpreting()  # fixed when the kernels below are defined
launches = 0  # counts Triton launches, so tests can prove the Triton code ran


class Config(NamedTuple):
    block_m: int
    block_n: int
    block_k: int
    warps: int
    stages: int

    @property
    def name(self) -> str:
        return f"{self.block_m}x{self.block_n}x{self.block_k}w{self.warps}s{self.stages}"

    @classmethod
    def parse(cls, name: str) -> Config:
        tiles, rest = name.split("w")
        warps, stages = rest.split("s")
        return cls(*(int(t) for t in tiles.split("x")), int(warps), int(stages))


# Candidates measured by the dispatcher. Hopper: 128-row tiles with 8 warps (two warpgroups) and 3-4 stages keep the
# tensor cores fed; 64-row tiles for the mid-size maps; narrow N tiles for toRGB (3 output channels).
CONFIGS = [
    Config(128, 128, 64, 8, 3),
    Config(128, 64, 64, 4, 4),
    Config(64, 128, 64, 4, 4),
    Config(64, 64, 64, 4, 4),
    Config(128, 256, 64, 8, 3),
    Config(128, 16, 64, 4, 4),  # toRGB
    Config(64, 16, 128, 4, 3),  # toRGB, wide input channels
]
INTERPRETER_CONFIG = Config(32, 16, 16, 1, 1)


def run(kernel: triton.JITFunction, grid: tuple, args: tuple, meta: dict) -> None:
    """Launch (kernels/aot.py replaces this to compile for another GPU instead)."""
    kernel[grid](*args, **meta)


def configs_for(m: int, c_out: int, c_in: int, elem_size: int = 2) -> list[Config]:
    """The configurations worth timing for a GEMM of m rows and c_out columns: tiles much larger than the problem
    only waste tuning time (a toRGB's 3 channels want N = 16), and pipelines that overflow Hopper's 227 KB of shared
    memory per block (fp32 operands are twice as wide) would not compile."""
    max_n = max(16, triton.next_power_of_2(c_out))
    max_m = max(64, triton.next_power_of_2(m))
    kept = [
        c
        for c in CONFIGS
        if c.block_n <= max_n
        and c.block_m <= max_m
        and c.block_k <= max(16, 2 * c_in)
        and c.stages * (c.block_m + c.block_n) * c.block_k * elem_size <= 200 * 1024
    ]
    if c_out <= 16:
        kept = [c for c in kept if c.block_n == 16] or kept
    return kept or [CONFIGS[-1]]


@triton.jit
def _modconv_kernel(
    x_ptr,
    w_ptr,
    s_ptr,
    d_ptr,
    noise_ptr,
    bias_ptr,
    out_ptr,
    M,
    C_IN,
    H,
    W,
    C_OUT,
    N_PACK,
    OH,
    OW,
    PAD,
    sxn,
    sxh,
    sxw,
    ssn,
    sdn,
    snn,
    snh,
    snw,
    son,
    soh,
    sow,
    soc,
    w_phase_stride,
    gain,
    clamp,
    KH: tl.constexpr,
    KW: tl.constexpr,
    UP: tl.constexpr,
    DEMODULATE: tl.constexpr,
    HAS_NOISE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACT: tl.constexpr,
    HAS_CLAMP: tl.constexpr,
    PRECISION: tl.constexpr,
    OUT_CL: tl.constexpr,  # the output is channels-last (soc == 1): stores contiguous along N
    ONE_SAMPLE: tl.constexpr,  # every M tile lies within one sample (OH*OW % BLOCK_M == 0): one styles row per tile
    EVEN_K: tl.constexpr,  # C_IN % BLOCK_K == 0: no channel mask
    EVEN_N: tl.constexpr,  # N_PACK % BLOCK_N == 0: no weight-column mask
    EMULATE_BF16: tl.constexpr,  # interpreter only: it has no bf16 arithmetic, so compute in fp32 from bf16 values
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # Output-channel tiles vary fastest, so the programs sharing one activation tile run together (read once from DRAM)
    pid = tl.program_id(0)
    phase = tl.program_id(1)
    num_n = tl.cdiv(C_OUT, BLOCK_N)
    pid_m = pid // num_n
    pid_n = pid % num_n
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_mask = offs_m < M
    n_mask = offs_n < C_OUT
    hw = OH * OW
    sample = offs_m // hw
    pix = offs_m % hw
    oh = pix // OW
    ow = pix % OW
    x_rows = x_ptr + sample.to(tl.int64) * sxn
    if ONE_SAMPLE:
        s_row = s_ptr + ((pid_m * BLOCK_M) // hw).to(tl.int64) * ssn
    else:
        s_rows = s_ptr + sample.to(tl.int64) * ssn
    w_base = w_ptr + phase * w_phase_stride
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    # One flat K loop over (tap, channel block): one copy of the body, which software pipelining prefetches across
    # tap boundaries. Row masks change per tap only; channel masks vanish when C_IN is a multiple of BLOCK_K.
    c_blocks = tl.cdiv(C_IN, BLOCK_K)
    for step in range(0, KH * KW * c_blocks):
        tap = step // c_blocks
        cs = (step - tap * c_blocks) * BLOCK_K + offs_k
        kh = tap // KW
        kw = tap - kh * KW
        ih = oh + (kh - PAD)
        iw = ow + (kw - PAD)
        valid = m_mask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        if EVEN_K:
            a_mask = valid[:, None]
            k_mask = None
        else:
            k_ok = cs < C_IN
            a_mask = valid[:, None] & k_ok[None, :]
            k_mask = k_ok[:, None]
        a = tl.load(x_rows[:, None] + (ih * sxh + iw * sxw)[:, None] + cs[None, :], mask=a_mask, other=0.0)
        if ONE_SAMPLE:
            if EVEN_K:
                s = tl.load(s_row + cs)[None, :]
            else:
                s = tl.load(s_row + cs, mask=cs < C_IN, other=0.0)[None, :]
        else:
            s = tl.load(s_rows[:, None] + cs[None, :], mask=m_mask[:, None] & (cs < C_IN)[None, :], other=0.0)
        w_ptrs = w_base + (tap * C_IN + cs).to(tl.int64)[:, None] * N_PACK + offs_n[None, :]
        if EVEN_N and EVEN_K:
            b = tl.load(w_ptrs)
        elif EVEN_N:
            b = tl.load(w_ptrs, mask=k_mask, other=0.0)
        elif EVEN_K:
            b = tl.load(w_ptrs, mask=(offs_n < N_PACK)[None, :], other=0.0)
        else:
            b = tl.load(w_ptrs, mask=k_mask & (offs_n < N_PACK)[None, :], other=0.0)
        if EMULATE_BF16:
            a = (a.to(tl.float32) * s.to(tl.float32)).to(tl.bfloat16).to(tl.float32)
            acc = tl.dot(a, b.to(tl.float32), acc, input_precision="ieee")
        else:
            a = a * s  # modulation folded into the activation tile, in the input dtype (as the reference does)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
    out = acc
    tile_mask = m_mask[:, None] & n_mask[None, :]
    if DEMODULATE:
        if ONE_SAMPLE:  # one row of coefficients for the whole tile
            d_row = d_ptr + ((pid_m * BLOCK_M) // hw).to(tl.int64) * sdn
            out = out * tl.load(d_row + offs_n, mask=n_mask, other=0.0)[None, :]
        else:
            dco = tl.load(d_ptr + sample.to(tl.int64)[:, None] * sdn + offs_n[None, :], mask=tile_mask, other=0.0)
            out = out * dco
    oy = oh * UP + phase // UP
    ox = ow * UP + phase % UP
    if HAS_NOISE:
        nz = tl.load(noise_ptr + sample.to(tl.int64) * snn + oy * snh + ox * snw, mask=m_mask, other=0.0)
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
    out_rows = out_ptr + sample.to(tl.int64) * son + oy * soh + ox * sow
    if OUT_CL:
        out_ptrs = out_rows[:, None] + offs_n[None, :]
    else:
        out_ptrs = out_rows[:, None] + offs_n[None, :] * soc
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=tile_mask)


def launch(
    x: torch.Tensor,
    packed: torch.Tensor,
    styles: torch.Tensor,
    dcoefs: torch.Tensor | None,
    noise: torch.Tensor | None,
    bias: torch.Tensor | None,
    out: torch.Tensor,
    *,
    c_out: int,
    kernel: tuple[int, int],
    padding: int,
    up: int,
    activation: str,
    gain: float,
    clamp: float | None,
    config: Config,
    precision: str,
) -> torch.Tensor:
    """One launch. x [N, C_in, H, W] channels-last (stride 1 along C_in); packed [up^2, kh*kw*C_in, N_PACK];
    styles [N, C_in] in x's dtype; dcoefs [N, C_out] fp32 or None; noise expandable to [N, 1, OH, OW]; out
    [N, C_out, OH, OW] any strides (written)."""
    global launches
    n, c_in, h, w = x.shape
    kh, kw = kernel
    oh, ow = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1  # per phase
    m = n * oh * ow
    if m == 0 or c_out == 0:
        return out
    noise_t = noise.expand(n, 1, oh * up, ow * up) if noise is not None else out  # dummy pointer when absent
    bm, bn, bk = config.block_m, config.block_n, config.block_k
    n_pack = packed.shape[-1]
    args = (
        x, packed, styles, dcoefs if dcoefs is not None else out, noise_t, bias if bias is not None else out, out,
        m, c_in, h, w, c_out, n_pack, oh, ow, padding,
        x.stride(0), x.stride(2), x.stride(3),
        styles.stride(0), dcoefs.stride(0) if dcoefs is not None else 0,
        noise_t.stride(0), noise_t.stride(2), noise_t.stride(3),
        out.stride(0), out.stride(2), out.stride(3), out.stride(1),
        packed.stride(0), float(gain), float(clamp if clamp is not None else 0.0),
    )  # fmt: skip
    assert x.stride(1) == 1, "x must be channels-last (x.contiguous(memory_format=torch.channels_last))"
    assert styles.stride(1) == 1 and packed.stride(-1) == 1 and (dcoefs is None or dcoefs.stride(1) == 1)
    grid = (triton.cdiv(m, bm) * triton.cdiv(c_out, bn), up * up)
    meta = dict(
        KH=kh,
        KW=kw,
        UP=up,
        DEMODULATE=dcoefs is not None,
        HAS_NOISE=noise is not None,
        HAS_BIAS=bias is not None,
        ACT=ACT_CODES[activation],
        HAS_CLAMP=clamp is not None,
        PRECISION=precision,
        OUT_CL=out.stride(1) == 1,
        ONE_SAMPLE=(oh * ow) % bm == 0,
        EVEN_K=c_in % bk == 0,
        EVEN_N=n_pack % bn == 0,
        EMULATE_BF16=INTERPRETED and x.dtype == torch.bfloat16,
        BLOCK_M=bm,
        BLOCK_N=bn,
        BLOCK_K=bk,
        num_warps=config.warps,
        num_stages=config.stages,
    )
    run(_modconv_kernel, grid, args, meta)
    launches += 1
    return out


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None,
    bias: torch.Tensor | None,
    resample_filter: torch.Tensor | None,
    demodulate: bool,
    padding: int,
    up: int,
    activation: str,
    gain: float,
    clamp: float | None,
    config: Config | None = None,
    channels_last: bool = True,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The op with the reference's arguments (ganserve.kernels.reference.modulated_conv2d): pack (cached per
    weight), demodulation GEMM, one launch. ``channels_last`` chooses the output layout; ``out`` (tests) is written
    instead of a new tensor."""
    dtype = x.dtype
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    if up == 1:
        packed = derived.packed_weight(weight, dtype)
        oh, ow, pad = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1, padding
    else:
        packed, (kh, kw), pad = derived.packed_phase_weight(weight, resample_filter, up, padding, dtype)
        oh, ow = h * up, w * up
    dcoefs = derived.demodulation(weight, styles) if demodulate else None
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if out is None:
        out = torch.empty((n, c_out, oh, ow), device=x.device, dtype=dtype, memory_format=fmt)
    x = x.contiguous(memory_format=torch.channels_last)
    styles = styles.to(dtype).contiguous()
    precision = switch.dot_precision("conv") if dtype == torch.float32 else "ieee"
    if config is None:
        config = INTERPRETER_CONFIG if INTERPRETED else configs_for(n * oh * ow, c_out, x.shape[1], x.element_size())[0]
    return launch(
        x, packed, styles, dcoefs, noise, bias, out, c_out=c_out, kernel=(kh, kw), padding=pad, up=up,
        activation=activation, gain=gain, clamp=clamp, config=config, precision=precision,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# The epilogue alone, for the hybrid path: a cuDNN convolution followed by one fused pass (demodulation, noise, bias,
# activation, gain, clamp) instead of five or six PyTorch element-wise passes.


@triton.jit
def _epilogue_kernel(
    y_ptr,
    d_ptr,
    noise_ptr,
    bias_ptr,
    TOTAL,
    C,
    HW,
    W,
    sdn,
    snn,
    snh,
    snw,
    gain,
    clamp,
    DEMODULATE: tl.constexpr,
    HAS_NOISE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACT: tl.constexpr,
    HAS_CLAMP: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Elementwise in storage order (y is written in place, so it is also the output).
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < TOTAL
    if CHANNELS_LAST:  # storage order (sample, pixel, channel)
        c = offs % C
        p = (offs // C) % HW
        n = offs // (C * HW)
    else:  # contiguous: (sample, channel, pixel)
        p = offs % HW
        c = (offs // HW) % C
        n = offs // (C * HW)
    v = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if DEMODULATE:
        v = v * tl.load(d_ptr + n * sdn + c, mask=mask, other=0.0)
    if HAS_NOISE:
        v += tl.load(noise_ptr + n * snn + (p // W) * snh + (p % W) * snw, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        v += tl.load(bias_ptr + c, mask=mask, other=0.0).to(tl.float32)
    if ACT == 1:
        v = tl.where(v >= 0, v, v * 0.2)
    elif ACT == 2:
        v = tl.maximum(v, 0.0)
    v = v * gain
    if HAS_CLAMP:
        v = tl.minimum(tl.maximum(v, -clamp), clamp)
    tl.store(y_ptr + offs, v.to(y_ptr.dtype.element_ty), mask=mask)


def epilogue(
    y: torch.Tensor,
    dcoefs: torch.Tensor | None,
    noise: torch.Tensor | None,
    bias: torch.Tensor | None,
    activation: str,
    gain: float,
    clamp: float | None,
    block: int = 1024,
) -> torch.Tensor:
    """In place on y ([N, C, H, W], contiguous or channels-last): y * dcoefs + noise + bias, act x gain, clamp."""
    global launches
    n, c, h, w = y.shape
    if not (y.is_contiguous() or y.is_contiguous(memory_format=torch.channels_last)) or y.numel() == 0:
        y = y.contiguous()
    cl = y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    noise_t = noise.expand(n, 1, h, w) if noise is not None else y
    if INTERPRETED:
        block = 256
    run(_epilogue_kernel, (triton.cdiv(y.numel(), block),), (
        y, dcoefs if dcoefs is not None else y, noise_t, bias if bias is not None else y,
        y.numel(), c, h * w, w,
        dcoefs.stride(0) if dcoefs is not None else 0, noise_t.stride(0), noise_t.stride(2), noise_t.stride(3),
        float(gain), float(clamp if clamp is not None else 0.0)), dict(
        DEMODULATE=dcoefs is not None, HAS_NOISE=noise is not None, HAS_BIAS=bias is not None,
        ACT=ACT_CODES[activation], HAS_CLAMP=clamp is not None, CHANNELS_LAST=cl, BLOCK=block,
    ))  # fmt: skip
    launches += 1
    return y
