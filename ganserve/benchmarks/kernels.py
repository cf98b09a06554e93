"""ganserve bench kernels: the Triton kernels against the PyTorch paths on a CUDA GPU, as one script.

Modulated convolution: StyleGAN2 256px synthesis layer shapes (the stride-1 3x3 convs and the 1x1 toRGBs; the 2x
upsampling convs stay in PyTorch) at batch 8 and 32, timing the fused Triton op (modulation, demodulation, noise,
bias, lrelu, clamp) against StyleGAN2's two PyTorch forms with the same epilogue: activation scaling (scale x, shared
conv, scale by dcoefs) and grouped conv (per-sample weights). VQ: D = 256 (VQGAN, 16x16 tokens) and D = 32
(ViT-VQGAN factorised codes, 32x32 tokens) with K = 1024 / 8192 / 16384 at batch 8 and 32, timing the Triton search
against cdist + argmin and a chunked |c|^2 - 2 z c^T + argmin. Then the whole generator with the kernels on and off.

Times are medians over CUDA-event timings after a warm-up (Triton autotuning happens in the warm-up). FLOPs count
multiply-adds as 2; bytes are the compulsory traffic (inputs read once, output written once). The roofline bound is
max(FLOPs / peak FLOP/s, bytes / peak bandwidth) for the card's datasheet peaks (dense; fp32 "ieee" dots run on the
CUDA cores, tf32 / fp16 / bf16 on tensor cores), or measured peaks on an unknown card; "% roofline" = bound / time.
Prints markdown tables; --out DIR also writes results.json and results.md there as it goes, so a timed-out run
keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

# name fragment -> (dense TFLOP/s for fp16/bf16, tf32, fp32 CUDA cores; memory TB/s), from the NVIDIA datasheets.
DATASHEET = {
    "H200": (989.0, 494.0, 67.0, 4.8),
    "H100 NVL": (835.0, 418.0, 60.0, 3.9),
    "H100 PCIe": (756.0, 378.0, 51.0, 2.0),
    "H100": (989.0, 494.0, 67.0, 3.35),  # SXM
    "A100": (312.0, 156.0, 19.5, 2.0),
    "L4": (121.0, 60.0, 30.0, 0.3),
}
DTYPES = {"float32": torch.float32, "tf32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("kernels", help="Triton kernels vs PyTorch paths on a CUDA GPU (modulated conv, VQ search)")
    p.add_argument("--batch-sizes", default="8,32")
    p.add_argument(
        "--dtypes", default="float16,float32", help="comma list of float32 (ieee dots), tf32, float16, bfloat16"
    )
    p.add_argument("--only", choices=["modconv", "vq", "generator"], default=None, help="run one part")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions per measurement (median reported)")
    p.add_argument("--resolution", type=int, default=256, help="StyleGAN2 resolution for the layer shapes")
    p.add_argument("--out", default=None, help="folder for results.json and results.md (written as it goes)")
    return p


class _Recorder:
    """Collects rows per table, prints them as markdown, and rewrites the files after every row."""

    def __init__(self, out: str | None, header: dict) -> None:
        self.out = Path(out) if out else None
        self.header = header
        self.tables: dict[str, list[dict]] = {}
        if self.out:
            self.out.mkdir(parents=True, exist_ok=True)

    def add(self, table: str, row: dict) -> None:
        rows = self.tables.setdefault(table, [])
        if not rows:
            print(f"\n### {table}\n\n| " + " | ".join(row) + " |\n|" + "---|" * len(row), flush=True)
        rows.append(row)
        print("| " + " | ".join(_fmt(v) for v in row.values()) + " |", flush=True)
        self._save()

    def _save(self) -> None:
        if not self.out:
            return
        (self.out / "results.json").write_text(json.dumps({**self.header, "tables": self.tables}, indent=1))
        lines = [f"{k}: {v}" for k, v in self.header.items()]
        for name, rows in self.tables.items():
            lines += ["", f"### {name}", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            lines += ["| " + " | ".join(_fmt(v) for v in r.values()) + " |" for r in rows]
        (self.out / "results.md").write_text("\n".join(lines) + "\n")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _time_ms(fn: Callable[[], object], reps: int) -> float:
    """Median milliseconds over CUDA events; the first calls (autotuning, caching) are not timed."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _time_or_nan(fn: Callable[[], object], reps: int) -> float:
    """A baseline that this card / dtype does not support (e.g. cdist in half precision) shows as nan."""
    try:
        return _time_ms(fn, reps)
    except (RuntimeError, NotImplementedError) as e:
        print(f"  (baseline failed: {str(e).splitlines()[0][:100]})", file=sys.stderr)
        return float("nan")


def _peaks(dtype_name: str, measured: dict) -> tuple[float, float, str]:
    """(FLOP/s, bytes/s, source) for the roofline of one dtype."""
    name = torch.cuda.get_device_name()
    for key, (half, tf32, fp32, tbs) in DATASHEET.items():
        if key in name:
            flops = {"float16": half, "bfloat16": half, "tf32": tf32, "float32": fp32}[dtype_name]
            return flops * 1e12, tbs * 1e12, f"datasheet ({key})"
    return measured[dtype_name] * 1e12, measured["bandwidth"] * 1e12, "measured"


def _measure_peaks(dtypes: list[str]) -> dict:
    """Achievable peaks on this card: a large matmul per dtype and a large device copy."""
    out = {}
    n = 8192
    for name in dtypes:
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        a = torch.randn(n, n, device="cuda", dtype=DTYPES[name])
        b = torch.randn(n, n, device="cuda", dtype=DTYPES[name])
        out[name] = 2 * n**3 / (_time_ms(lambda a=a, b=b: a @ b, 5) * 1e-3) / 1e12
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.empty(2**28, device="cuda", dtype=torch.float32)  # 1 GiB
    out["bandwidth"] = 2 * x.numel() * 4 / (_time_ms(lambda: x.clone(), 5) * 1e-3) / 1e12
    return out


def _set_precision(dtype_name: str) -> None:
    from ganserve import kernels

    kernels.set_precision("tf32" if dtype_name == "tf32" else "ieee")
    torch.backends.cudnn.allow_tf32 = dtype_name == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = dtype_name == "tf32"


def _bench_modconv(args: argparse.Namespace, rec: _Recorder, measured: dict) -> None:
    from ganserve.models.stylegan2 import StyleGAN2Config

    cfg = StyleGAN2Config(resolution=args.resolution, channel_base=32768, channel_max=512)  # config-f channels
    shapes = []
    for res in cfg.block_resolutions:
        c = cfg.channels(res)
        shapes.append((f"conv {res}px", c, c, res, 3))
        shapes.append((f"toRGB {res}px", c, cfg.img_channels, res, 1))
    for dtype_name in args.dtypes:
        _set_precision(dtype_name)
        peaks = _peaks(dtype_name, measured)
        for batch in args.batch_sizes:
            for name, cin, cout, res, k in shapes:
                row = {"layer": name, "dtype": dtype_name, "batch": batch, "I->O": f"{cin}->{cout}"}
                rec.add(
                    "modulated conv", {**row, **_modconv_row(args, DTYPES[dtype_name], batch, cin, cout, res, k, peaks)}
                )


@torch.no_grad()
def _modconv_row(
    args: argparse.Namespace, dtype: torch.dtype, batch: int, cin: int, cout: int, res: int, k: int, peaks: tuple
) -> dict:
    """One layer shape: a 3x3 conv (demodulated, noise, bias, lrelu, clamp) or a 1x1 toRGB (bias, clamp)."""
    from ganserve import kernels
    from ganserve.kernels import reference
    from ganserve.models import layers

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(batch, cin, res, res, device="cuda", generator=g).to(dtype)
    weight = torch.randn(cout, cin, k, k, device="cuda", generator=g) / math.sqrt(cin * k * k)
    styles = torch.randn(batch, cin, device="cuda", generator=g) * 0.5 + 1.0
    bias = torch.randn(cout, device="cuda", generator=g)
    demod = k == 3
    noise = torch.randn(res, res, device="cuda", generator=g) * 0.1 if demod else None
    pad, act, clamp = (1, "lrelu", 256.0) if demod else (0, None, 256.0)
    gain = math.sqrt(2) if act else 1.0

    def triton_fn() -> torch.Tensor:
        return kernels.modulated_conv2d(
            x, weight, styles, demodulate=demod, padding=pad, noise=noise, bias=bias, activation=act, clamp=clamp
        )

    def torch_fn(fused: bool) -> torch.Tensor:
        y = layers.modulated_conv2d(x, weight, styles, noise=noise, padding=pad, demodulate=demod, fused=fused)
        return layers.bias_act(y, bias.to(y.dtype), act, gain=gain, clamp=clamp)

    ref = reference.modulated_conv2d(x.float(), weight, styles, noise, bias, demod, pad, act or "linear", gain, clamp)
    err = (triton_fn().float() - ref).abs().max().item()
    t_triton = _time_ms(triton_fn, args.reps)
    with kernels.use_kernels(False):
        t_scale = _time_or_nan(lambda: torch_fn(False), args.reps)
        t_group = _time_or_nan(lambda: torch_fn(True), args.reps)
    best_torch = min([t for t in (t_scale, t_group) if not math.isnan(t)], default=float("nan"))
    flops = 2 * batch * res * res * cout * cin * k * k
    nbytes = (x.numel() + batch * cout * res * res) * x.element_size() + weight.numel() * 4
    peak_flops, peak_bw, source = peaks
    bound_ms = max(flops / peak_flops, nbytes / peak_bw) * 1e3
    return {
        "triton ms": t_triton, "act-scaling ms": t_scale, "grouped ms": t_group,
        "speedup vs best torch": best_torch / t_triton, "GFLOP": flops / 1e9, "MB": nbytes / 1e6,
        "TFLOP/s": flops / t_triton / 1e9, "% roofline": 100 * bound_ms / t_triton, "max err vs fp32 ref": err,
        "peaks": source,
    }  # fmt: skip


def _chunked_nearest(z: torch.Tensor, cb: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    csq = cb.float().square().sum(1)
    out = []
    for part in z.split(chunk):
        out.append(torch.addmm(csq[None], part.float(), cb.float().t(), alpha=-2.0).argmin(1))
    return torch.cat(out)


def _bench_vq(args: argparse.Namespace, rec: _Recorder, measured: dict) -> None:
    from ganserve import kernels

    for dtype_name in args.dtypes:
        _set_precision(dtype_name)
        dtype = DTYPES[dtype_name]
        peak_flops, peak_bw, source = _peaks(dtype_name, measured)
        for d, tokens in ((256, 16 * 16), (32, 32 * 32)):
            for k in (1024, 8192, 16384):
                for batch in args.batch_sizes:
                    n = batch * tokens
                    g = torch.Generator(device="cuda").manual_seed(0)
                    z = torch.randn(n, d, device="cuda", generator=g).to(dtype)
                    cb = torch.randn(k, d, device="cuda", generator=g).to(dtype)
                    with torch.no_grad():
                        idx, dist = kernels.vq_nearest(z, cb)
                        full = torch.cdist(z.float(), cb.float()).square()
                        true_min = full.min(1).values
                        gap = (full.gather(1, idx[:, None]).squeeze(1) - true_min).abs().max().item()
                        reported = (dist - true_min).abs().max().item()
                        agree = (idx == full.argmin(1)).float().mean().item()
                        del full
                        t_triton = _time_ms(lambda z=z, cb=cb: kernels.vq_nearest(z, cb), args.reps)
                        t_cdist = _time_or_nan(lambda z=z, cb=cb: torch.cdist(z, cb).argmin(1), args.reps)
                        t_chunk = _time_or_nan(lambda z=z, cb=cb: _chunked_nearest(z, cb), args.reps)
                    es = z.element_size()
                    flops = 2 * n * k * d
                    nbytes = (n * d + k * d) * es + n * 12
                    bound_ms = max(flops / peak_flops, nbytes / peak_bw) * 1e3
                    rec.add(
                        "vq nearest",
                        {
                            "D": d, "K": k, "batch": batch, "N": n, "dtype": dtype_name,
                            "triton ms": t_triton, "cdist+argmin ms": t_cdist, "chunked mm ms": t_chunk,
                            "speedup vs cdist": t_cdist / t_triton, "speedup vs chunked": t_chunk / t_triton,
                            "GFLOP": flops / 1e9, "TFLOP/s": flops / t_triton / 1e9,
                            "% roofline": 100 * bound_ms / t_triton, "chosen-min gap": gap,
                            "reported-min gap": reported, "argmin agree": agree, "peaks": source,
                        },
                    )  # fmt: skip


def _bench_generator(args: argparse.Namespace, rec: _Recorder) -> None:
    """A random config-f generator: images with the kernels on vs off (fp32 ieee, tf32) and images/s."""
    from ganserve import kernels
    from ganserve.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    torch.manual_seed(0)
    cfg = StyleGAN2Config(resolution=args.resolution, channel_base=32768, channel_max=512, w_dim=512, z_dim=512)
    G = StyleGAN2Generator(cfg).eval().requires_grad_(False).cuda()
    for m in G.modules():
        if hasattr(m, "noise_strength"):
            m.noise_strength.fill_(0.1)
    for dtype_name in ("float32", "tf32"):
        _set_precision(dtype_name)
        for batch in args.batch_sizes:
            z = torch.randn(batch, cfg.z_dim, device="cuda")
            with torch.no_grad():
                ws = G.mapping(z, None)
                _set_precision("float32")
                with kernels.use_kernels(False):
                    ref = G.synthesis(ws, noise_mode="const")  # the fp32 reference: no tf32 anywhere
                _set_precision(dtype_name)
                reps = max(3, args.reps // 4)
                with kernels.use_kernels(True):
                    img = G.synthesis(ws, noise_mode="const")
                    t_on = _time_ms(lambda ws=ws: G.synthesis(ws, noise_mode="const"), reps)
                with kernels.use_kernels(False):
                    t_off = _time_ms(lambda ws=ws: G.synthesis(ws, noise_mode="const"), reps)
            rec.add(
                "whole generator",
                {
                    "resolution": args.resolution, "dots": dtype_name, "batch": batch,
                    "max abs diff kernels on/off": (img - ref).abs().max().item(),
                    "kernels on ms": t_on, "kernels off ms": t_off, "speedup": t_off / t_on,
                    "images/s on": batch / t_on * 1e3,
                },
            )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if not torch.cuda.is_available():
        print("ganserve bench kernels needs a CUDA GPU: no CUDA device is visible here (the kernels' CPU tests are "
              "tests/test_kernels_interpreter.py).", file=sys.stderr)  # fmt: skip
        return 2
    from ganserve import kernels

    if not kernels.triton_available():
        print("ganserve bench kernels needs triton: pip install 'ganserve[kernels]'", file=sys.stderr)
        return 2
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
    args.dtypes = [d.strip() for d in str(args.dtypes).split(",")]
    unknown = [d for d in args.dtypes if d not in DTYPES]
    if unknown:
        print(f"--dtypes: unknown {unknown}; choose from {sorted(DTYPES)}", file=sys.stderr)
        return 2
    import triton

    kernels.set_enabled(True)
    t0 = time.perf_counter()
    measured = _measure_peaks(sorted(set(args.dtypes)))
    header = {
        "card": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
        "measured peaks (TFLOP/s, TB/s)": {k: round(v, 1) for k, v in measured.items()},
    }  # fmt: skip
    print("\n".join(f"{k}: {v}" for k, v in header.items()), flush=True)
    rec = _Recorder(args.out, header)
    if args.only in (None, "modconv"):
        _bench_modconv(args, rec, measured)
    if args.only in (None, "vq"):
        _bench_vq(args, rec, measured)
    if args.only in (None, "generator"):
        _bench_generator(args, rec)
    kernels.set_precision(None)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s", flush=True)
    return 0
