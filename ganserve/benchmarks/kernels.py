"""ganserve bench kernels: every implementation of each kernel op, timed per shape on a CUDA GPU, and the whole
generator with the kernels on and off.

Modulated conv: the layer shapes of StyleGAN2 at --resolution with the paper's channels (channel_base 16384, max
512 at 256 px; --channel-base 32768 for config-f): the 2x upsampling conv0, the stride-1 conv1 and the 1x1 toRGB of
every block, at each batch size and dtype. Each row times every candidate of the dispatcher (ganserve.kernels
.candidates: the PyTorch paths, the cuDNN conv + Triton epilogue hybrid, the fused Triton kernel in each tile
configuration), after checking each against the fp32 reference (a candidate outside tolerance is listed as rejected),
and shows which one the dispatcher chooses. ``--tune`` stores those choices in the dispatch table
(ganserve.kernels.dispatch), which is what a served model then runs; without it nothing is written.
VQ: D = 256 (VQGAN, 16x16 tokens) and D = 32 (ViT-VQGAN factorised codes, 32x32 tokens), K = 1024 / 8192 / 16384.
Generator: synthesis of a random generator of the same config at each precision (fp32 ieee, tf32, fp16 autocast,
mixed = the top resolutions in fp16 as the official num_fp16_res), kernels off / on / on with the upsampling layers
routed to the op too, optionally torch.compile and CUDA-graph replay; images/s and the uint8 difference to fp32.

Times are medians over CUDA events (kernels.dispatch.cuda_event_timer: windows of back-to-back calls after warm-up,
so Triton compilation is never timed). FLOPs count multiply-adds as 2 (the upsampling layer's as the transposed conv
does them); bytes are the compulsory traffic. The roofline bound is max(FLOPs / peak FLOP/s, bytes / peak bandwidth)
with datasheet peaks (dense; fp32 "ieee" dots on CUDA cores), or measured peaks on an unknown card. --out DIR writes
results.json and results.md as it goes, so a run cut short keeps what it measured; --budget stops starting new rows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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
GEN_PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "mixed")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("kernels", help="kernel implementations timed per shape on a CUDA GPU; --tune stores choices",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--batch-sizes", default="8,32", help="comma-separated batch sizes")
    p.add_argument(
        "--dtypes", default="float16,float32", help="comma list of float32 (ieee dots), tf32, float16, bfloat16"
    )
    p.add_argument("--only", choices=["modconv", "vq", "generator"], default=None, help="run one part")
    p.add_argument("--tune", action="store_true", help="store the measured choices in the dispatch table")
    p.add_argument("--resolution", type=int, default=256, help="StyleGAN2 resolution for the layer shapes")
    p.add_argument("--channel-base", type=int, default=16384, help="16384: the paper's 256 px config; 32768: config-f")
    p.add_argument("--channel-max", type=int, default=512, help="StyleGAN2 channel_max for the layer shapes")
    p.add_argument("--precisions", default="fp32,tf32,fp16,mixed", help=f"generator: comma list of {GEN_PRECISIONS}")
    p.add_argument("--compile", default="", help="generator: precisions also timed under torch.compile (slow)")
    p.add_argument("--graphs", action="store_true", help="generator: also time CUDA-graph replay with kernels on")
    p.add_argument("--budget", type=float, default=0.0, help="seconds; rows not started by then are skipped")
    p.add_argument("--vq-codes", default="1024,8192,16384", help="codebook sizes K for the VQ rows")
    p.add_argument("--out", default=None, help="folder for results.json and results.md (written as it goes)")
    p.add_argument("--device", default="cuda", help="cuda, or cpu: a smoke test of the code paths (CI)")
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
        keys = list(rows[0])
        extra = {k: v for k, v in row.items() if k not in keys}
        print("| " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |" + (f" {_fmt(extra)}" if extra else ""),
              flush=True)  # fmt: skip
        self._save()

    def _save(self) -> None:
        if not self.out:
            return
        (self.out / "results.json").write_text(json.dumps({**self.header, "tables": self.tables}, indent=1))
        lines = [f"{k}: {v}" for k, v in self.header.items()]
        for name, rows in self.tables.items():
            keys = list(dict.fromkeys(k for r in rows for k in r))
            lines += ["", f"### {name}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
        (self.out / "results.md").write_text("\n".join(lines) + "\n")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.t0, self.seconds, self.skipped = time.perf_counter(), seconds, 0

    def left(self) -> bool:
        if self.seconds and time.perf_counter() - self.t0 > self.seconds:
            self.skipped += 1
            return False
        return True


DEVICE = "cuda"


def _time_ms(fn: Callable[[], object]) -> float:
    from ganserve.kernels import dispatch

    return dispatch.cuda_event_timer("", fn) * 1e3


def _peaks(dtype_name: str, measured: dict) -> tuple[float, float, str]:
    """(FLOP/s, bytes/s, source) for the roofline of one dtype."""
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE
    for key, (half, tf32, fp32, tbs) in DATASHEET.items():
        if key in name:
            flops = {"float16": half, "bfloat16": half, "tf32": tf32, "float32": fp32}[dtype_name]
            return flops * 1e12, tbs * 1e12, f"datasheet ({key})"
    return measured[dtype_name] * 1e12, measured["bandwidth"] * 1e12, "measured"


def _measure_peaks(dtypes: list[str]) -> dict:
    """Achievable peaks on this card: a large matmul per dtype and a large device copy."""
    out = {}
    n = 8192 if DEVICE == "cuda" else 256
    for name in dtypes:
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        a = torch.randn(n, n, device=DEVICE, dtype=DTYPES[name])
        b = torch.randn(n, n, device=DEVICE, dtype=DTYPES[name])
        out[name] = 2 * n**3 / (_time_ms(lambda a=a, b=b: a @ b) * 1e-3) / 1e12
        del a, b
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.empty(2**28 if DEVICE == "cuda" else 2**20, device=DEVICE, dtype=torch.float32)  # 1 GiB
    out["bandwidth"] = 2 * x.numel() * 4 / (_time_ms(lambda x=x: x.clone()) * 1e-3) / 1e12
    del x
    return out


def _set_precision(dtype_name: str) -> None:
    """fp32 dots everywhere (Triton and PyTorch): ieee for float32, TensorFloat-32 for tf32."""
    from ganserve import kernels

    tf32 = dtype_name == "tf32"
    kernels.set_precision("tf32" if tf32 else "ieee")
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32


def _config(args: argparse.Namespace):
    from ganserve.models.stylegan2 import StyleGAN2Config

    return StyleGAN2Config(
        resolution=args.resolution, channel_base=args.channel_base, channel_max=args.channel_max, z_dim=512, w_dim=512
    )


def _measure_candidates(key, cands, default, check, store: bool) -> dict:
    from ganserve.kernels import dispatch

    dispatch.tune(key, cands, default, DEVICE, check, timer=dispatch.cuda_event_timer, store=store)
    return dispatch.last_entry


MODCONV_COLUMNS = ("torch-scale", "torch-group", "torch-subpixel", "torch-scale+tepi", "torch-subpixel+tepi")
VQ_COLUMNS = ("torch-mm", "torch-mm-half", "torch-cdist")


def _candidate_columns(entry: dict, flops: float, nbytes: float, peaks: tuple, columns: tuple[str, ...]) -> dict:
    """One row's columns: every PyTorch candidate (nan where it does not apply), the best Triton configuration, the
    dispatcher's choice and how it compares with the best PyTorch path."""
    ms = entry["ms"]
    torch_ms = {k: v for k, v in ms.items() if k.startswith("torch-")}
    triton_ms = {k: v for k, v in ms.items() if k.startswith("triton/")}
    best_torch = min(torch_ms.values(), default=float("nan"))
    best_triton_name = min(triton_ms, key=triton_ms.get) if triton_ms else ""
    best_triton = triton_ms.get(best_triton_name, float("nan"))
    fused = {k: v for k, v in ms.items() if k.startswith("triton/") or k.endswith("+tepi")}
    peak_flops, peak_bw, source = peaks
    bound_ms = max(flops / peak_flops, nbytes / peak_bw) * 1e3
    chosen = entry["choice"]
    fixed = {k: ms.get(k, float("nan")) for k in columns}
    return {
        **fixed,
        **{k: v for k, v in torch_ms.items() if k not in fixed},
        **{k: v for k, v in fused.items() if not k.startswith("triton/") and k not in fixed},
        "triton best": best_triton, "triton config": best_triton_name.removeprefix("triton/"),
        "triton vs best torch": best_torch / best_triton if triton_ms else float("nan"),
        "chosen": chosen, "chosen vs best torch": best_torch / ms[chosen] if chosen in ms else float("nan"),
        "triton TFLOP/s": flops / best_triton / 1e9 if triton_ms else float("nan"),
        "triton % roofline": 100 * bound_ms / best_triton if triton_ms else float("nan"),
        "chosen % roofline": 100 * bound_ms / ms[chosen] if chosen in ms else float("nan"),
        "rejected": {k: v[:60] for k, v in entry["rejected"].items()} or "", "peaks": source,
    }  # fmt: skip


def modconv_shapes(args: argparse.Namespace) -> list[tuple[str, int, int, int, int, int]]:
    """(name, in, out, input resolution, kernel, up) of every modulated conv of the generator config."""
    cfg = _config(args)
    shapes = []
    for res in cfg.block_resolutions:
        c = cfg.channels(res)
        if res > 4:
            shapes.append((f"conv0 up {res}px", cfg.channels(res // 2), c, res // 2, 3, 2))
        shapes.append((f"conv1 {res}px", c, c, res, 3, 1))
        shapes.append((f"toRGB {res}px", c, cfg.img_channels, res, 1, 1))
    return shapes


def _bench_modconv(args: argparse.Namespace, rec: _Recorder, measured: dict, budget: _Budget) -> None:
    shapes = modconv_shapes(args)
    for dtype_name in args.dtypes:
        _set_precision(dtype_name)
        peaks = _peaks(dtype_name, measured)
        for batch in args.batch_sizes:
            for name, cin, cout, res, k, up in shapes:
                if not budget.left():
                    continue
                row = {"layer": name, "dtype": dtype_name, "batch": batch, "I->O": f"{cin}->{cout}"}
                try:
                    row.update(_modconv_row(args, DTYPES[dtype_name], batch, cin, cout, res, k, up, peaks))
                except Exception as e:  # a row that fails is reported, the rest still run
                    row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
                rec.add("modulated conv", row)
                _empty_cache()


def modconv_call(dtype: torch.dtype, batch: int, cin: int, cout: int, res: int, k: int, up: int, dev: str):
    """A StyleGAN2 layer call with random data: 3x3 demodulated with noise, bias, lrelu, clamp; 1x1 toRGB linear."""
    from ganserve.kernels import candidates
    from ganserve.models.layers import setup_filter

    g = torch.Generator(device=dev).manual_seed(0)
    demod = k == 3
    out_res = res * up
    return candidates.ModConvCall(
        torch.randn(batch, cin, res, res, device=dev, generator=g).to(dtype).contiguous(
            memory_format=torch.channels_last),
        torch.randn(cout, cin, k, k, device=dev, generator=g),
        torch.randn(batch, cin, device=dev, generator=g) * 0.5 + 1.0,
        torch.randn(out_res, out_res, device=dev, generator=g) * 0.1 if demod else None,
        torch.randn(cout, device=dev, generator=g),
        setup_filter((1, 3, 3, 1)).to(dev) if up > 1 else None,
        demod, k // 2, up, "lrelu" if demod else "linear", math.sqrt(2) if demod else 1.0, 256.0,
    )  # fmt: skip


@torch.no_grad()
def _modconv_row(args, dtype, batch, cin, cout, res, k, up, peaks) -> dict:
    from ganserve.kernels import candidates, dispatch

    c = modconv_call(dtype, batch, cin, cout, res, k, up, DEVICE)
    out_res = res * up
    cands = candidates.modconv_candidates(c)
    tol = candidates.MODCONV_TOLERANCE[candidates.dtype_tag(dtype, "conv")]
    check = dispatch.max_error_check(lambda: candidates.modconv_reference(c), tol)
    entry = _measure_candidates(candidates.modconv_key(c), cands, candidates.MODCONV_DEFAULT, check, args.tune)
    flops = 2 * batch * res * res * cout * cin * k * k  # per input pixel: the transposed conv's work for up layers
    es = c.x.element_size()
    nbytes = (c.x.numel() + batch * cout * out_res * out_res) * es + c.weight.numel() * es
    return _candidate_columns(entry, flops, nbytes, peaks, MODCONV_COLUMNS)


def _bench_vq(args: argparse.Namespace, rec: _Recorder, measured: dict, budget: _Budget) -> None:
    from ganserve.kernels import candidates

    for dtype_name in args.dtypes:
        _set_precision(dtype_name)
        dtype = DTYPES[dtype_name]
        peaks = _peaks(dtype_name, measured)
        for d, tokens in ((256, 16 * 16), (32, 32 * 32)):
            for k in args.vq_codes:
                for batch in [1, *args.batch_sizes]:
                    if not budget.left():
                        continue
                    n = batch * tokens
                    g = torch.Generator(device=DEVICE).manual_seed(0)
                    z = torch.randn(n, d, device=DEVICE, generator=g).to(dtype)
                    cb = torch.randn(k, d, device=DEVICE, generator=g).to(dtype)
                    row = {"D": d, "K": k, "batch": batch, "N": n, "dtype": dtype_name}
                    try:
                        with torch.no_grad():
                            cands = candidates.vq_candidates(z, cb, "l2")
                            tol = candidates.VQ_TOLERANCE[candidates.dtype_tag(dtype, "matmul")]
                            check = candidates.vq_check(z, cb, "l2", tol)
                            entry = _measure_candidates(candidates.vq_key(z, cb, "l2"), cands,
                                                        candidates.VQ_DEFAULT, check, args.tune)  # fmt: skip
                        es = z.element_size()
                        nbytes = (n * d + k * d) * es + n * 8
                        cols = _candidate_columns(entry, 2 * n * k * d, nbytes, peaks, VQ_COLUMNS)
                        cdist = entry["ms"].get("torch-cdist", float("nan"))
                        cols["triton vs cdist"] = cdist / cols["triton best"]
                        row.update(cols)
                    except Exception as e:
                        row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
                    rec.add("vq nearest", row)


# ---------------------------------------------------------------------------------------------------------------------
# Whole generator


@contextlib.contextmanager
def _precision(G, name: str) -> Iterator[None]:
    """fp32: no TF32 anywhere; tf32: TF32 convs and matmuls; fp16/bf16: autocast; mixed: the model's own."""
    from ganserve import kernels

    tf32 = name == "tf32"
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    kernels.set_precision("tf32" if tf32 else "ieee")
    try:
        if name in ("fp16", "bf16"):
            with torch.autocast(DEVICE, dtype=torch.float16 if name == "fp16" else torch.bfloat16):
                yield
        elif name == "mixed":
            with G.mixed_precision(torch.float16 if DEVICE == "cuda" else torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
        kernels.set_precision(None)


@contextlib.contextmanager
def route_upsampling_layers() -> Iterator[None]:
    """Send the 2x upsampling modulated convs to ganserve.kernels too (inference on CUDA), as a proposed change to
    ganserve.models.layers.modulated_conv2d would (it routes up == 1 only): measures what that change gives."""
    from ganserve import kernels
    from ganserve.models import layers, stylegan2

    original = stylegan2.modulated_conv2d

    def routed(x, weight, styles, *, up=1, resample_filter=None, **kw):
        if up > 1 and layers._route_to_kernels(x, weight, styles):
            act, gain = kw.get("activation"), kw.get("act_gain")
            return kernels.modulated_conv2d(
                x, weight, styles, demodulate=kw.get("demodulate", True), padding=kw.get("padding", 0),
                noise=kw.get("noise"), bias=kw.get("bias"), activation=act,
                gain=gain if gain is not None else (math.sqrt(2) if act else 1.0), clamp=kw.get("clamp"), up=up,
                resample_filter=resample_filter,
            )  # fmt: skip
        return original(x, weight, styles, up=up, resample_filter=resample_filter, **kw)

    stylegan2.modulated_conv2d = routed
    try:
        yield
    finally:
        stylegan2.modulated_conv2d = original


def _to_uint8(img: torch.Tensor) -> torch.Tensor:
    return (img.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


@contextlib.contextmanager
def scratch_table(keep: bool) -> Iterator[None]:
    """Without --tune the generator's warm-up tunes into a temporary table (the user's is never touched)."""
    from ganserve.kernels import dispatch

    if keep:
        yield
        return
    saved = os.environ.get(dispatch.CACHE_ENV)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[dispatch.CACHE_ENV] = tmp
        dispatch.forget()
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop(dispatch.CACHE_ENV, None)
            else:
                os.environ[dispatch.CACHE_ENV] = saved
            dispatch.forget()


def _bench_generator(args: argparse.Namespace, rec: _Recorder, budget: _Budget) -> None:
    from ganserve import kernels
    from ganserve.kernels import dispatch
    from ganserve.models.stylegan2 import StyleGAN2Generator

    torch.manual_seed(0)
    G = StyleGAN2Generator(_config(args)).eval().requires_grad_(False).to(DEVICE)
    for m in G.modules():
        if hasattr(m, "noise_strength"):
            m.noise_strength.fill_(0.1)
    precisions = [p for p in args.precisions if p != "mixed" or hasattr(G, "mixed_precision")]
    with scratch_table(args.tune), torch.no_grad():
        for batch in args.batch_sizes:
            ws = G.mapping(torch.randn(batch, G.config.z_dim, device=DEVICE), None)
            with _precision(G, "fp32"), kernels.use_kernels(False):
                ref = _to_uint8(G.synthesis(ws, noise_mode="const"))

            def synth(ws=ws):
                return G.synthesis(ws, noise_mode="const")

            for precision in precisions:

                def on_up():
                    return kernels.use_kernels(True), route_upsampling_layers()

                def on():
                    return (kernels.use_kernels(True),)

                def off():
                    return (kernels.use_kernels(False),)

                variants: list[tuple[str, Callable[[], Callable[[], torch.Tensor]], Callable[[], tuple]]] = [
                    ("kernels off", lambda synth=synth: synth, off),
                    ("kernels on", lambda synth=synth: synth, on),
                    ("kernels on + up", lambda synth=synth: synth, on_up),
                ]
                if args.graphs and DEVICE == "cuda":
                    variants.append(("kernels on + up, CUDA graph", lambda synth=synth: _graph(synth), on_up))
                if precision in args.compile:
                    compiled = torch.compile(G.synthesis)
                    variants.append(("torch.compile, kernels off",
                                     lambda ws=ws, compiled=compiled: lambda: compiled(ws, noise_mode="const"),
                                     off))  # fmt: skip
                for label, make_call, managers in variants:
                    if not budget.left():
                        continue
                    row = {"resolution": args.resolution, "precision": precision, "batch": batch, "path": label}
                    try:
                        with _stack(*managers()), _precision(G, precision):
                            with dispatch.tuning():  # warm-up: measure the layer shapes not in the table yet
                                synth()
                            call = make_call()
                            img = call()
                            ms = _time_ms(call)
                        diff = (_to_uint8(img).int() - ref.int()).abs()
                        row.update({
                            "ms": ms, "images/s": batch / ms * 1e3, "max uint8 diff vs fp32": int(diff.max()),
                            "% pixels differing": 100 * (diff > 0).float().mean().item(),
                        })  # fmt: skip
                    except Exception as e:
                        row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
                    rec.add("whole generator (synthesis)", row)
                    _empty_cache()


@contextlib.contextmanager
def _stack(*managers: contextlib.AbstractContextManager) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for m in managers:
            stack.enter_context(m)
        yield


def _graph(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Capture ``fn`` (already warmed up: tuning done, weights packed) into a CUDA graph; returns its replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def _empty_cache() -> None:
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def run(args: argparse.Namespace) -> int:
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("ganserve bench kernels needs a CUDA GPU: no CUDA device is visible here (the kernels' CPU tests are "
              "tests/test_kernels_*.py).", file=sys.stderr)  # fmt: skip
        return 2
    from ganserve import kernels
    from ganserve.kernels import dispatch

    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
    args.dtypes = [d.strip() for d in str(args.dtypes).split(",") if d.strip()]
    args.precisions = [p.strip() for p in str(args.precisions).split(",") if p.strip()]
    args.compile = [p.strip() for p in str(args.compile).split(",") if p.strip()]
    args.vq_codes = [int(k) for k in str(args.vq_codes).split(",")]
    unknown = [d for d in args.dtypes if d not in DTYPES] + [p for p in args.precisions if p not in GEN_PRECISIONS]
    if unknown:
        print(f"unknown --dtypes / --precisions: {unknown}; choose from {sorted(DTYPES)} / {GEN_PRECISIONS}",
              file=sys.stderr)  # fmt: skip
        return 2
    triton_version = "not installed"
    if kernels.triton_available():
        import triton

        triton_version = triton.__version__
    kernels.set_enabled(True)
    t0 = time.perf_counter()
    budget = _Budget(args.budget)
    table = str(dispatch.cache_file(dispatch.fingerprint(DEVICE))) if args.tune else "not written (no --tune)"
    header = {
        "card": torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE, "torch": torch.__version__,
        "triton": triton_version, "cudnn": torch.backends.cudnn.version(), "tuning table": table,
    }  # fmt: skip
    measured = {}
    if args.only in (None, "modconv", "vq"):
        measured = _measure_peaks(sorted(set(args.dtypes)))
        header["measured peaks (TFLOP/s, TB/s)"] = {k: round(v, 1) for k, v in measured.items()}
    print("\n".join(f"{k}: {v}" for k, v in header.items()), flush=True)
    rec = _Recorder(args.out, header)
    if args.only in (None, "modconv"):
        _bench_modconv(args, rec, measured, budget)
    if args.only in (None, "vq"):
        _bench_vq(args, rec, measured, budget)
    if args.only in (None, "generator"):
        _bench_generator(args, rec, budget)
    kernels.set_precision(None)
    if budget.skipped:
        print(f"\n--budget {args.budget:.0f} s reached: {budget.skipped} rows skipped", flush=True)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s", flush=True)
    return 0
