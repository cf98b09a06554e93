"""ganserve bench precision: how far each inference precision moves the pixels from fp32, and how fast it runs.

Over N seeds (default 1,000) every precision renders the same requests as fp32; reported per precision: max and mean
absolute uint8 difference, the share of pixel values that differ at all, PSNR against fp32; then speed: one batch per
call, fp32 and every precision timed alternately call by call (ganserve.benchmarks.timing), the paired speed-up.
"""

from __future__ import annotations

import argparse
import functools
import json
import math

import numpy as np
import torch

import ganserve
from ganserve.benchmarks.timing import cli_command
from ganserve.benchmarks.timing import compare as timed
from ganserve.precision import PRECISIONS
from ganserve.sampling import describe, sample


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("precision", help="uint8 difference to fp32 and speed of bf16 / fp16 / mixed / tf32",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--model", required=True, help="model name or checkpoint path")
    p.add_argument("--n", type=int, default=1000, help="seeds 0..n-1")
    p.add_argument("--precisions", default="bf16,fp16,mixed", help=f"any of {', '.join(PRECISIONS[1:])}")
    p.add_argument("--batch-size", type=int, default=32, help="images per generator call (and per timed call)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds: fp32 and every precision alternated")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads; None: torch's count")
    p.add_argument("--request", default="{}", help="extra request fields as JSON")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def _render(model: torch.nn.Module, n: int, batch_size: int, extra: dict) -> np.ndarray:
    chunks = [sample(model, {"seeds": list(range(s, min(s + batch_size, n))), **extra}, batch_size=batch_size,
                     max_images=batch_size).images for s in range(0, n, batch_size)]  # fmt: skip
    return np.concatenate(chunks)


def compare(reference: np.ndarray, images: np.ndarray) -> dict[str, float]:
    """uint8 difference statistics of ``images`` against ``reference`` (same shape)."""
    diff = np.abs(images.astype(np.int16) - reference.astype(np.int16))
    mse = float((diff.astype(np.float64) ** 2).mean())
    return {
        "max_abs": int(diff.max()),
        "mean_abs": round(float(diff.mean()), 4),
        "pixels_differing_pct": round(100 * float((diff > 0).mean()), 3),
        "psnr_db": round(10 * math.log10(255**2 / mse), 2) if mse > 0 else float("inf"),
    }


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    extra = json.loads(args.request)
    rows = []
    base = ganserve.load(args.model, device=args.device)
    if describe(base)["classes"]:
        extra.setdefault("class", 0)
    reference = _render(base, args.n, args.batch_size, extra)
    models = {"fp32": base}
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        models[precision] = ganserve.load(args.model, device=args.device, precision=precision)
        rows.append({"precision": precision, **compare(reference, _render(models[precision], args.n,
                                                                          args.batch_size, extra))})  # fmt: skip
    # Speed: one batch per call, fp32 and every precision alternated call by call (paired ratios).
    n = args.batch_size
    fns = {k: functools.partial(_render, m, n, n, extra) for k, m in models.items()}
    timing = timed(fns, args.repeats, device=args.device, baseline="fp32")
    for row in rows:
        sp = timing.speedup(row["precision"])
        row["images_per_s"] = round(n / timing.median(row["precision"]), 1)
        row["speed_vs_fp32"] = {"median": round(sp.median, 3), "q1": round(sp.q1, 3), "q3": round(sp.q3, 3)}
    info = {"command": cli_command(args), "model": getattr(base, "name", args.model), "device": args.device,
            "n": args.n, "threads": torch.get_num_threads(), "fp32_images_per_s": round(n / timing.median("fp32"), 1),
            "timing": f"batch {n}, {args.repeats} alternated rounds, median [IQR] of paired ratios",
            "rows": rows}  # fmt: skip
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"$ {info['command']}")
    print(f"model {info['model']}  device {args.device}  seeds 0-{args.n - 1}  threads {info['threads']}  "
          f"fp32 {info['fp32_images_per_s']} images/s ({info['timing']})")  # fmt: skip
    keys = list(rows[0]) if rows else []
    print("  ".join(f"{k:>20}" for k in keys))
    for r in rows:
        print("  ".join(f"{_cell(r[k]):>20}" for k in keys))
    return 0


def _cell(v: object) -> str:
    if isinstance(v, dict):
        return f"{v['median']:.2f}x [{v['q1']:.2f}-{v['q3']:.2f}]"
    return str(v)
