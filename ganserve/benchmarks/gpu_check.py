"""Checks for the prepared GPU run (kernels/gpu_check.sh): correctness of every kernel candidate on CUDA, the
official StyleGAN2-ADA synthesis timed beside ours (when a copy of it is carried), and a short summary.

    python -m ganserve.benchmarks.gpu_check correctness --out correctness.json
    python -m ganserve.benchmarks.gpu_check official --repo .official/stylegan2-ada-pytorch --out official.json
    python -m ganserve.benchmarks.gpu_check summary OUT_DIR

Correctness (fresh random, oddly sized inputs per check; outputs poisoned with NaN first so an unwritten element
fails): every candidate of the modulated conv (3x3, 3x3 spanning samples, 2x upsampling, toRGB) and of the VQ search
at fp32 ieee, tf32, fp16 and bf16 against the fp32 reference, with the tuning tolerances of kernels/candidates.py;
the dispatched op under tuning; the tiny generator with kernels on and off. Exit status 1 if anything fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

import torch


def _set_dtype(name: str) -> torch.dtype:
    from ganserve import kernels

    tf32 = name == "tf32"
    kernels.set_precision("tf32" if tf32 else "ieee")
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    return {"float32": torch.float32, "tf32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def correctness(out_path: str | None, dev: str = "cuda") -> int:
    """(dev="cpu" under TRITON_INTERPRET=1 with force_triton: a slow smoke test of this code without a GPU.)"""
    from ganserve.kernels import candidates, modconv_triton
    from ganserve.models.layers import setup_filter

    torch.manual_seed(1234)
    rows: list[dict] = []
    f = setup_filter((1, 3, 3, 1)).to(dev)
    # name, batch, in, out, res, kernel, up
    shapes = [
        ("3x3", 3, 67, 45, 13, 3, 1),
        ("3x3 4px b5", 5, 96, 80, 4, 3, 1),
        ("3x3 one-sample", 2, 64, 64, 16, 3, 1),
        ("up2", 2, 40, 33, 7, 3, 2),
        ("up2 one-sample", 2, 64, 32, 8, 3, 2),
        ("toRGB", 3, 70, 3, 11, 1, 1),
    ]
    vq_sizes = ((1, 37, 20), (300, 1000, 33), (4096, 2000, 256))
    if dev != "cuda":  # the interpreter smoke test: the same code on a few tiny shapes
        shapes, vq_sizes = [("3x3", 2, 19, 17, 5, 3, 1), ("up2", 1, 16, 9, 3, 3, 2)], ((5, 40, 20),)
    for dtype_name in ("float32", "tf32", "float16", "bfloat16") if dev == "cuda" else ("float32", "bfloat16"):
        dtype = _set_dtype(dtype_name)
        tol = candidates.MODCONV_TOLERANCE[candidates.dtype_tag(dtype, "conv")]
        for name, n, cin, cout, res, k, up in shapes:
            demod = k == 3
            c = candidates.ModConvCall(
                torch.randn(n, cin, res, res, device=dev).to(dtype),
                torch.randn(cout, cin, k, k, device=dev) / math.sqrt(cin * k * k),
                torch.randn(n, cin, device=dev) * 0.5 + 1.0,
                torch.randn(n, 1, res * up, res * up, device=dev) if demod else None,
                torch.randn(cout, device=dev), f if up > 1 else None, demod, k // 2, up,
                "lrelu" if demod else "linear", math.sqrt(2) if demod else 1.0, 1.5,
            )  # fmt: skip
            ref = candidates.modconv_reference(c)
            scale = max(1.0, ref.abs().max().item())
            for cand, fn in candidates.modconv_candidates(c).items():
                row = {"op": "modconv", "shape": name, "dtype": dtype_name, "candidate": cand}
                try:
                    if cand.startswith("triton/"):  # poison a channels-last output: every element must be written
                        poisoned = torch.full(ref.shape, float("nan"), device=dev, dtype=dtype).contiguous(
                            memory_format=torch.channels_last
                        )
                        y = modconv_triton.modulated_conv2d(
                            *c, config=modconv_triton.Config.parse(cand.removeprefix("triton/")), out=poisoned
                        )
                    else:
                        y = fn()
                    err = (y.float() - ref).abs().max().item()
                    layout = torch.channels_last if dev == "cuda" else torch.contiguous_format
                    poisoned_out = cand.startswith("triton/")
                    layout_ok = y.dtype == dtype and (y.is_contiguous(memory_format=layout) or poisoned_out)
                    ok = math.isfinite(err) and err <= tol * scale and layout_ok
                    row.update(err=err, tol=tol * scale, layout_ok=layout_ok, ok=bool(ok))
                except Exception as e:
                    row.update(ok=False, error=f"{type(e).__name__}: {str(e)[:300]}")
                rows.append(row)
        vtol = candidates.VQ_TOLERANCE[candidates.dtype_tag(dtype, "matmul")]
        for metric in ("l2", "cosine"):
            for n, k, d in vq_sizes:
                z, cb = torch.randn(n, d, device=dev).to(dtype), torch.randn(k, d, device=dev).to(dtype)
                check = candidates.vq_check(z, cb, metric, vtol)
                for cand, fn in candidates.vq_candidates(z, cb, metric).items():
                    row = {"op": "vq", "shape": f"{metric} N{n} K{k} D{d}", "dtype": dtype_name, "candidate": cand}
                    try:
                        reason = check(fn())
                        row.update(ok=reason is None, reason=reason)
                    except Exception as e:
                        row.update(ok=False, error=f"{type(e).__name__}: {str(e)[:300]}")
                    rows.append(row)
    rows.extend(_generator_rows(dev))  # the dispatched ops, tuning into a scratch table
    failed = [r for r in rows if not r["ok"]]
    card = torch.cuda.get_device_name() if dev == "cuda" else dev
    summary = {"checks": len(rows), "failed": len(failed), "failures": failed[:50], "rows": rows, "card": card,
               "torch": torch.__version__}  # fmt: skip
    if out_path:
        Path(out_path).write_text(json.dumps(summary, indent=1))
    print(f"correctness: {len(rows) - len(failed)}/{len(rows)} checks passed")
    for r in failed[:20]:
        print("  FAILED", json.dumps(r)[:300])
    return 1 if failed else 0


def _generator_rows(dev: str) -> list[dict]:
    """The tiny generator with the kernels off, on while tuning into a scratch table, and on from that table."""
    from ganserve import kernels
    from ganserve.benchmarks.kernels import scratch_table
    from ganserve.kernels import dispatch
    from ganserve.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    rows = []
    with scratch_table(keep=False):
        try:
            _set_dtype("float32")
            torch.manual_seed(0)
            res = 32 if dev == "cuda" else 8
            cfg = StyleGAN2Config(
                resolution=res, z_dim=32, w_dim=32, mapping_layers=2, channel_base=512, channel_max=64
            )
            G = StyleGAN2Generator(cfg).eval().requires_grad_(False).to(dev)
            for m in G.modules():
                if hasattr(m, "noise_strength"):
                    m.noise_strength.fill_(0.3)
            for batch in (1, 3) if dev == "cuda" else (2,):
                z = torch.randn(batch, cfg.z_dim, device=dev)
                with torch.no_grad():
                    with kernels.use_kernels(False):
                        ref = G(z, None)
                    with kernels.use_kernels(True), dispatch.tuning():
                        img = G(z, None)
                    with kernels.use_kernels(True):
                        img2 = G(z, None)  # from the table now
                err = max((img - ref).abs().max().item(), (img2 - ref).abs().max().item())
                choices = sorted({e["choice"] for e in dispatch.table(dev).entries.values()})
                rows.append({"op": "generator", "shape": f"tiny {res}px b{batch}", "dtype": "float32",
                             "candidate": "dispatched", "err": err, "ok": err <= 1e-3, "choices": choices})  # fmt: skip
        finally:
            kernels.set_precision(None)
    return rows


def warm(shard: int, shards: int, dtypes: list[str], batches: list[int], vq_dtypes: list[str]) -> int:
    """Compile (by running once) the Triton candidates ``ganserve bench kernels`` will time, for every shard-th
    shape: several of these processes fill Triton's on-disk cache in parallel while the correctness checks run, so
    the timed bench loads compiled kernels instead of compiling ~100 variants one after another."""
    from ganserve.benchmarks import kernels as bench
    from ganserve.kernels import candidates

    args = argparse.Namespace(resolution=256, channel_base=16384, channel_max=512)
    jobs = [(d, b, shape) for d in dtypes for b in batches for shape in bench.modconv_shapes(args)]
    done = failed = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for i, (dtype_name, batch, (_, cin, cout, res, k, up)) in enumerate(jobs):
            if i % shards != shard:
                continue
            bench._set_precision(dtype_name)
            c = bench.modconv_call(bench.DTYPES[dtype_name], batch, cin, cout, res, k, up, "cuda")
            for name, fn in candidates.modconv_candidates(c).items():
                if name.startswith("triton/") or name.endswith("+tepi"):
                    try:
                        fn()
                        done += 1
                    except Exception:
                        failed += 1
        for i, (dtype_name, (d, tokens), batch) in enumerate(
            (x, y, b) for x in vq_dtypes for y in ((256, 256), (32, 1024)) for b in (1, *batches)
        ):
            if i % shards != shard:
                continue
            bench._set_precision(dtype_name)
            z = torch.randn(batch * tokens, d, device="cuda").to(bench.DTYPES[dtype_name])
            cb = torch.randn(1024, d, device="cuda").to(z.dtype)
            for name, fn in candidates.vq_candidates(z, cb, "l2").items():
                if name.startswith("triton/"):
                    try:
                        fn()
                        done += 1
                    except Exception:
                        failed += 1
    torch.cuda.synchronize()
    print(f"warm shard {shard}/{shards}: {done} launches compiled or loaded, {failed} failed, "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# The official StyleGAN2-ADA synthesis, timed the same way


def _patched_official(repo: Path) -> Path:
    """A copy of the official code whose plugin loader uses the module ``cpp_extension.load`` returns (it imports the
    module by name, which fails on current PyTorch)."""
    import shutil

    dst = Path("/tmp/ganserve-official/stylegan2-ada-pytorch")  # fixed: the plugin build cache stays valid
    if dst.exists():
        return dst
    shutil.copytree(repo, dst, ignore=shutil.ignore_patterns(".git"))
    path = dst / "torch_utils" / "custom_ops.py"
    text = path.read_text()
    text = text.replace(
        "            torch.utils.cpp_extension.load(", "            module = torch.utils.cpp_extension.load("
    )
    text = text.replace("        module = importlib.import_module(module_name)\n", "")
    path.write_text(text)
    return dst


def official(repo: str, out_path: str | None, batches: list[int], build_only: bool = False) -> int:
    import os

    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    src = _patched_official(Path(repo))
    sys.path.insert(0, str(src))
    result: dict = {"repo": repo, "rows": []}
    t0 = time.perf_counter()
    try:
        from torch_utils.ops import bias_act, upfirdn2d
        from training.networks import Generator

        result["plugins"] = {"bias_act": bool(bias_act._init()), "upfirdn2d": bool(upfirdn2d._init())}
        result["plugin build s"] = round(time.perf_counter() - t0, 1)
        if build_only:
            print(json.dumps(result))
            return 0
        from ganserve.kernels.dispatch import cuda_event_timer

        torch.manual_seed(0)
        synthesis = dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256)  # the paper's 256 px
        G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
                      mapping_kwargs=dict(num_layers=8), synthesis_kwargs=synthesis)  # fmt: skip
        G = G.eval().requires_grad_(False).cuda()
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        with torch.no_grad():
            for batch in batches:
                ws = G.mapping(torch.randn(batch, 512, device="cuda"), None)
                for label, kw in (("fp32 (plugins)", dict(force_fp32=True)), ("mixed fp16 top 4 (plugins)", {})):

                    def call(ws=ws, kw=kw):
                        return G.synthesis(ws, noise_mode="const", **kw)

                    ms = cuda_event_timer(label, call) * 1e3
                    result["rows"].append({"path": label, "batch": batch, "ms": ms, "images/s": batch / ms * 1e3})
                    print(json.dumps(result["rows"][-1]), flush=True)
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {str(e)[:500]}"
        result["traceback"] = traceback.format_exc()[-2000:]
        print("official:", result["error"])
    if out_path:
        Path(out_path).write_text(json.dumps(result, indent=1))
    return 0


# ---------------------------------------------------------------------------------------------------------------------


def summary(out_dir: str) -> int:
    """The short tables printed last (the device tool returns the output's tail)."""
    out = Path(out_dir)
    corr = out / "correctness.json"
    if corr.exists():
        c = json.loads(corr.read_text())
        print(f"correctness on {c['card']}: {c['checks'] - c['failed']}/{c['checks']} passed")
    for part, table in (
        ("bench", "modulated conv"),
        ("bench", "vq nearest"),
        ("generator", "whole generator (synthesis)"),
    ):
        path = out / part / "results.json"
        if not path.exists():
            continue
        rows = json.loads(path.read_text())["tables"].get(table, [])
        print(f"\n{table}: {len(rows)} rows")
        for r in rows:
            if table == "whole generator (synthesis)":
                print(f"  {r.get('precision')} b{r.get('batch')} {r.get('path')}: "
                      f"{r.get('images/s', float('nan')):.0f} img/s, max uint8 diff {r.get('max uint8 diff vs fp32')}"
                      f"{' ERROR ' + r['error'] if 'error' in r else ''}")  # fmt: skip
            else:
                name = r.get("layer") or f"D{r.get('D')} K{r.get('K')}"
                print(f"  {name} {r.get('dtype')} b{r.get('batch')}: triton {r.get('triton vs best torch', 0):.2f}x "
                      f"best torch ({r.get('triton config')}), chosen {r.get('chosen')}"
                      f"{' ERROR ' + r['error'] if 'error' in r else ''}")  # fmt: skip
    off = out / "official.json"
    if off.exists():
        o = json.loads(off.read_text())
        print(f"\nofficial: plugins {o.get('plugins')} {o.get('error', '')}")
        for r in o.get("rows", []):
            print(f"  {r['path']} b{r['batch']}: {r['images/s']:.0f} img/s")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="checks for kernels/gpu_check.sh")
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("correctness")
    c.add_argument("--out", default=None)
    c.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    o = sub.add_parser("official")
    o.add_argument("--repo", required=True)
    o.add_argument("--out", default=None)
    o.add_argument("--batch-sizes", default="8,32")
    o.add_argument("--build-only", action="store_true", help="only build (and load) the CUDA plugins")
    w = sub.add_parser("warm")
    w.add_argument("--shard", type=int, required=True)
    w.add_argument("--shards", type=int, required=True)
    w.add_argument("--dtypes", default="float16,float32,tf32")
    w.add_argument("--vq-dtypes", default="float16,bfloat16")
    w.add_argument("--batch-sizes", default="8,32")
    s = sub.add_parser("summary")
    s.add_argument("dir")
    args = p.parse_args(argv)
    if args.what == "correctness":
        if args.device == "cuda" and not torch.cuda.is_available():
            print("needs a CUDA GPU", file=sys.stderr)
            return 2
        if args.device != "cuda":
            from ganserve.kernels import force_triton

            with force_triton():
                return correctness(args.out, args.device)
        return correctness(args.out, args.device)
    if args.what == "official":
        return official(args.repo, args.out, [int(b) for b in args.batch_sizes.split(",")], args.build_only)
    if args.what == "warm":
        return warm(args.shard, args.shards, args.dtypes.split(","), [int(b) for b in args.batch_sizes.split(",")],
                    args.vq_dtypes.split(","))  # fmt: skip
    return summary(args.dir)


if __name__ == "__main__":
    sys.exit(main())
