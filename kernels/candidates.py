"""The implementations each op chooses between on the GPU, its dispatch keys, defaults and tolerances.

Modulated conv (same linear map, same epilogue, output channels-last on CUDA whichever runs):

| name | what runs |
|---|---|
| ``torch-scale`` (default) | x * styles, one shared cuDNN conv (up: transposed conv + FIR), * dcoefs, epilogue |
| ``torch-scale+tepi`` | the same convolution, then the Triton epilogue (one pass instead of five or six) |
| ``torch-group`` | per-sample weights (modulated, demodulated), one grouped cuDNN conv (up: grouped transposed + FIR) |
| ``torch-subpixel`` (up only) | the four phase weights as one stride-1 conv with 4x the channels, then pixel shuffle |
| ``torch-subpixel+tepi`` (up only) | the same, then the Triton epilogue |
| ``triton/<tiles>`` | the fused implicit GEMM (kernels/modconv_triton.py) with one tile configuration |

VQ search (indices only; the op computes the distances of the chosen codes exactly, the same way for all):

| name | what runs |
|---|---|
| ``torch-mm`` (default) | fp32 |c|^2 - 2 z c^T (cosine: -z_n c_n^T) with addmm, argmin, in query chunks |
| ``torch-mm-half`` (fp16/bf16) | the same GEMM in the input dtype with fp32 output (``torch.mm(..., out_dtype=)``) |
| ``torch-cdist`` (l2) | cdist + argmin in fp32, in query chunks |
| ``triton/<tiles>`` | the tiled search (kernels/vq_triton.py) |

The default is a PyTorch path: a shape nobody measured never runs an unmeasured Triton configuration. The Triton
candidates exist only where Triton is installed and the tensors are on CUDA (or forced under the interpreter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ganserve.kernels import derived, dispatch, reference, switch

MODCONV_DEFAULT = "torch-scale"
VQ_DEFAULT = "torch-mm"
# max |candidate - fp32 reference| / max(1, max |reference|), by compute dtype ("float32-tf32": tf32 dots)
MODCONV_TOLERANCE = {"float32-ieee": 1e-4, "float32-tf32": 1e-2, "float16": 2e-2, "bfloat16": 6e-2}
# max (distance of the chosen code - distance of the fp32 reference's code) / max(1, mean reference distance)
VQ_TOLERANCE = {"float32-ieee": 1e-5, "float32-tf32": 1e-2, "float16": 1e-3, "bfloat16": 1e-3}
CHUNK_BYTES = 256 << 20  # the torch VQ paths score at most this many bytes of queries x codes at once


class ModConvCall(NamedTuple):
    x: torch.Tensor
    weight: torch.Tensor
    styles: torch.Tensor
    noise: torch.Tensor | None
    bias: torch.Tensor | None
    resample_filter: torch.Tensor | None
    demodulate: bool
    padding: int
    up: int
    activation: str
    gain: float
    clamp: float | None


def dtype_tag(dtype: torch.dtype, kind: str) -> str:
    name = str(dtype).removeprefix("torch.")
    return f"{name}-{switch.dot_precision(kind)}" if dtype == torch.float32 else name


def output_format(x: torch.Tensor) -> torch.memory_format:
    """The op's output layout, whichever implementation runs: channels-last on CUDA (the Triton kernel's native
    layout, and cuDNN's for half precision), contiguous elsewhere. The fake implementation says the same."""
    return torch.channels_last if x.device.type == "cuda" else torch.contiguous_format


# ---------------------------------------------------------------------------------------------------------------------
# Modulated convolution


def modconv_key(c: ModConvCall) -> str:
    n, c_in, h, w = c.x.shape
    c_out, _, kh, kw = c.weight.shape
    demod = "demod" if c.demodulate else "nodemod"
    return (f"modconv|{dtype_tag(c.x.dtype, 'conv')}|b{dispatch.batch_bucket(n)}|{c_in}->{c_out}|{h}x{w}|"
            f"k{kh}x{kw}|up{c.up}|pad{c.padding}|{demod}")  # fmt: skip


def _cast_weight(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return derived.cached(weight, ("cast", dtype), lambda: weight.detach().to(dtype).contiguous())


def _conv(c: ModConvCall, x: torch.Tensor, subpixel: bool = False) -> torch.Tensor:
    """The shared convolution of the activation-scaling form (x already scaled by the styles)."""
    dtype = x.dtype
    if c.up == 1:
        return F.conv2d(x, _cast_weight(c.weight, dtype), padding=c.padding)
    if not subpixel:
        return reference.upsample_conv2d(x, _cast_weight(c.weight, dtype), c.resample_filter, c.up, c.padding)
    w, _, pad = _subpixel_weight(c.weight, c.resample_filter, c.up, c.padding, dtype)
    return F.pixel_shuffle(F.conv2d(x, w, padding=pad), c.up)


def _subpixel_weight(weight, f, up, padding, dtype) -> tuple[torch.Tensor, int, int]:
    """Phase weights as one conv's [O * up^2, I, kp, kp], channel o * up^2 + phase (pixel_shuffle's order)."""

    def make():
        w, kp, pad = derived.phase_weights(weight, f, up, padding)
        p, o, i = w.shape[:3]
        return w.transpose(0, 1).reshape(o * p, i, kp, kp).to(dtype).contiguous(), kp, pad

    return derived.cached(weight, ("subpixel", up, padding, derived.filter_values(f), dtype), make)


def _torch_epilogue(c: ModConvCall, y: torch.Tensor, dcoefs: torch.Tensor | None) -> torch.Tensor:
    """In place where possible: * dcoefs, + noise, + bias, activation, gain, clamp."""
    n = y.shape[0]
    if dcoefs is not None:
        y = y * dcoefs.to(y.dtype).reshape(n, -1, 1, 1)
    return reference.epilogue(y, c.noise, c.bias, c.activation, c.gain, c.clamp)


def _check_up(c: ModConvCall) -> None:
    if c.up > 1 and c.resample_filter is None:
        raise ValueError("up > 1 needs resample_filter")


def torch_scale(c: ModConvCall, tepi: bool = False, subpixel: bool = False) -> torch.Tensor:
    _check_up(c)
    x = c.x.contiguous(memory_format=output_format(c.x))
    x = x * c.styles.to(x.dtype).reshape(x.shape[0], -1, 1, 1)
    y = _conv(c, x, subpixel)
    dcoefs = derived.demodulation(c.weight, c.styles) if c.demodulate else None
    if tepi:
        from ganserve.kernels import modconv_triton

        y = y.contiguous(memory_format=output_format(c.x))
        return modconv_triton.epilogue(y, dcoefs, c.noise, c.bias, c.activation, c.gain, c.clamp)
    return _torch_epilogue(c, y, dcoefs).contiguous(memory_format=output_format(c.x))


def torch_group(c: ModConvCall) -> torch.Tensor:
    """Per-sample weights and one grouped convolution (StyleGAN2's fused_modconv form)."""
    _check_up(c)
    x = c.x
    n, i, h, w_ = x.shape
    o, _, kh, kw = c.weight.shape
    wmod = c.weight.float()[None] * c.styles.float().reshape(n, 1, i, 1, 1)
    if c.demodulate:
        wmod = wmod * derived.demodulation(c.weight, c.styles).reshape(n, o, 1, 1, 1)
    wmod = wmod.to(x.dtype)
    xg = x.reshape(1, n * i, h, w_)
    if c.up == 1:
        y = F.conv2d(xg, wmod.reshape(n * o, i, kh, kw), padding=c.padding, groups=n)
    else:
        p0, p1 = reference.fir_padding(kw, c.resample_filter.shape[-1], c.up, c.padding)
        wt = wmod.transpose(1, 2).reshape(n * i, o, kh, kw)
        y = F.conv_transpose2d(xg, wt, stride=c.up, groups=n)
        y = reference.fir(y, c.resample_filter, p0, p1, c.up * c.up)
    y = y.reshape(n, o, *y.shape[2:])
    return _torch_epilogue(c, y, None).contiguous(memory_format=output_format(x))


def triton_modconv(c: ModConvCall, config_name: str | None = None) -> torch.Tensor:
    from ganserve.kernels import modconv_triton

    _check_up(c)
    config = modconv_triton.Config.parse(config_name) if config_name else None
    return modconv_triton.modulated_conv2d(*c, config=config, channels_last=output_format(c.x) == torch.channels_last)


def _fir_ok(c: ModConvCall) -> bool:
    """The fused and sub-pixel forms need square weights/filters and an output of exactly up x the input."""
    if c.up == 1:
        return True
    f, (kh, kw) = c.resample_filter, c.weight.shape[2:]
    if f is None or f.ndim != 2 or f.shape[0] != f.shape[1] or kh != kw:
        return False
    h = c.x.shape[2]
    return reference.upsampled_size(h, kw, f.shape[-1], c.up, c.padding) == h * c.up


def modconv_candidates(c: ModConvCall, include_triton: bool | None = None) -> dict[str, Callable[[], torch.Tensor]]:
    """name -> zero-argument callable for this call. ``include_triton`` defaults to: Triton is installed and the
    tensors are on CUDA (or forced under the interpreter)."""
    precision = switch.dot_precision("conv") if c.x.dtype == torch.float32 else "ieee"

    def torch_path(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with switch.torch_precision(precision):
                return fn()

        return run

    if include_triton is None:
        include_triton = switch.use_triton(c.x)
    out: dict[str, Callable[[], torch.Tensor]] = {
        "torch-scale": torch_path(lambda: torch_scale(c)),
        "torch-group": torch_path(lambda: torch_group(c)),
    }
    fused_ok = _fir_ok(c)
    if c.up > 1 and fused_ok:
        out["torch-subpixel"] = torch_path(lambda: torch_scale(c, subpixel=True))
    if include_triton:
        if c.up == 1:
            out["torch-scale+tepi"] = torch_path(lambda: torch_scale(c, tepi=True))
        elif fused_ok:
            out["torch-subpixel+tepi"] = torch_path(lambda: torch_scale(c, tepi=True, subpixel=True))
        if fused_ok:
            from ganserve.kernels import modconv_triton

            n, c_in, h, w = c.x.shape
            c_out = c.weight.shape[0]
            for cfg in modconv_triton.configs_for(n * h * w * c.up * c.up, c_out, c_in, c.x.element_size()):
                out[f"triton/{cfg.name}"] = lambda name=cfg.name: triton_modconv(c, name)
    return out


def modconv_reference(c: ModConvCall) -> torch.Tensor:
    """The fp32 reference (ieee dots) of a call, for tuning checks."""
    with switch.torch_precision("ieee"):
        return reference.modulated_conv2d(
            c.x.float(), c.weight.float(), c.styles.float(), c.noise, c.bias, c.resample_filter, c.demodulate,
            c.padding, c.up, c.activation, c.gain, c.clamp,
        )  # fmt: skip


def run_modconv(c: ModConvCall) -> torch.Tensor:
    """The dispatched op: the measured choice for this key, or the default (tuning: measure now)."""
    with torch.autocast(c.x.device.type, enabled=False):
        cands = modconv_candidates(c)
        key = modconv_key(c)
        tol = MODCONV_TOLERANCE[dtype_tag(c.x.dtype, "conv")]
        check = dispatch.max_error_check(lambda: modconv_reference(c), tol)
        name = dispatch.select(key, cands, MODCONV_DEFAULT, c.x.device, check)
        return cands[name]()


# ---------------------------------------------------------------------------------------------------------------------
# VQ search


def vq_key(z: torch.Tensor, codebook: torch.Tensor, metric: str) -> str:
    n, d = z.shape
    return f"vq|{dtype_tag(z.dtype, 'matmul')}|{metric}|n{dispatch.batch_bucket(n)}|K{codebook.shape[0]}|D{d}"


def _code_terms(codebook: torch.Tensor, metric: str) -> torch.Tensor:
    """Per code, fp32: |c|^2 (l2) or 1 / max(|c|, eps) (cosine); cached per codebook tensor."""

    def make() -> torch.Tensor:
        csq = codebook.detach().float().square().sum(1)
        return csq if metric == "l2" else csq.clamp_min(reference.NORM_EPS**2).rsqrt()

    return derived.cached(codebook, ("vq-terms", metric), make)


def _chunk_rows(k: int) -> int:
    return max(1, CHUNK_BYTES // max(1, 4 * k))


def torch_mm(z: torch.Tensor, codebook: torch.Tensor, metric: str, half: bool = False) -> torch.Tensor:
    """argmin of |c|^2 - 2 z.c (l2) or argmax of z.c/|c| (cosine) with one GEMM per query chunk."""
    dtype = z.dtype if half else torch.float32
    terms = _code_terms(codebook, metric)
    if metric == "l2":
        cb = derived.cached(codebook, ("vq-cast", dtype), lambda: codebook.detach().to(dtype))
    else:  # codes scaled to unit length once; the query norm does not change the argmax
        unit = lambda: (codebook.detach().float() * terms[:, None]).to(dtype)  # noqa: E731
        cb = derived.cached(codebook, ("vq-unit", dtype), unit)
    out = []
    for part in z.split(_chunk_rows(codebook.shape[0])):
        q = part.to(dtype)
        if half:
            dots = torch.mm(q, cb.t(), out_dtype=torch.float32)
            score = torch.add(terms[None], dots, alpha=-2.0) if metric == "l2" else dots
        else:
            score = torch.addmm(terms[None], q, cb.t(), alpha=-2.0) if metric == "l2" else q @ cb.t()
        out.append(score.argmin(1) if metric == "l2" else score.argmax(1))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64, device=z.device)


def torch_cdist(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    cb = codebook.float()
    out = [torch.cdist(part.float(), cb).argmin(1) for part in z.split(_chunk_rows(codebook.shape[0]))]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64, device=z.device)


def triton_vq(z: torch.Tensor, codebook: torch.Tensor, metric: str, config_name: str | None = None,
              splits: int | None = None) -> torch.Tensor:  # fmt: skip
    from ganserve.kernels import vq_triton

    config = vq_triton.Config.parse(config_name) if config_name else None
    return vq_triton.vq_nearest(z, codebook, _code_terms(codebook, metric), metric, config=config, splits=splits)


def vq_candidates(z: torch.Tensor, codebook: torch.Tensor, metric: str, include_triton: bool | None = None
                  ) -> dict[str, Callable[[], torch.Tensor]]:  # fmt: skip
    precision = switch.dot_precision("matmul") if z.dtype == torch.float32 else "ieee"

    def torch_path(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with switch.torch_precision(precision):
                return fn()

        return run

    if include_triton is None:
        include_triton = switch.use_triton(z)
    out = {"torch-mm": torch_path(lambda: torch_mm(z, codebook, metric))}
    if z.dtype in (torch.float16, torch.bfloat16) and z.device.type == "cuda":
        out["torch-mm-half"] = lambda: torch_mm(z, codebook, metric, half=True)
    if metric == "l2":
        out["torch-cdist"] = torch_path(lambda: torch_cdist(z, codebook))
    if include_triton:
        from ganserve.kernels import vq_triton

        for cfg in vq_triton.configs_for(z.shape[0], codebook.shape[0], z.shape[1], z.element_size()):
            out[f"triton/{cfg.name}"] = lambda name=cfg.name: triton_vq(z, codebook, metric, name)
    return out


def distances(z: torch.Tensor, codebook: torch.Tensor, indices: torch.Tensor, metric: str) -> torch.Tensor:
    """The exact fp32 distance of each query to its chosen code (what the op returns, whichever path chose)."""
    return reference.code_distances(z, codebook, indices, metric)


def vq_check(z: torch.Tensor, codebook: torch.Tensor, metric: str, tolerance: float) -> dispatch.Check:
    """A candidate's codes must be as near as the fp32 reference's (ties and near-ties may differ)."""
    cache: list[torch.Tensor] = []

    def check(idx: object) -> str | None:
        if not cache:
            with switch.torch_precision("ieee"):
                ref_idx = torch_mm(z, codebook, metric)
            cache.append(distances(z, codebook, ref_idx, metric))
        ref = cache[0]
        if not isinstance(idx, torch.Tensor) or idx.shape != ref.shape or idx.dtype != torch.int64:
            return f"indices {getattr(idx, 'shape', None)} {getattr(idx, 'dtype', None)}"
        if ref.numel() == 0:
            return None
        if bool(((idx < 0) | (idx >= codebook.shape[0])).any()):
            return "index out of range"
        gap = (distances(z, codebook, idx, metric) - ref).max().item()
        scale = max(1.0, ref.mean().item())
        if not gap <= tolerance * scale:
            return f"chosen codes {gap:.3g} farther than the reference's (tolerance {tolerance:g} x {scale:.3g})"
        return None

    return check


def run_vq(z: torch.Tensor, codebook: torch.Tensor, metric: str) -> torch.Tensor:
    with torch.autocast(z.device.type, enabled=False):
        cands = vq_candidates(z, codebook, metric)
        tol = VQ_TOLERANCE[dtype_tag(z.dtype, "matmul")]
        name = dispatch.select(vq_key(z, codebook, metric), cands, VQ_DEFAULT, z.device,
                               vq_check(z, codebook, metric, tol))  # fmt: skip
        return cands[name]()
