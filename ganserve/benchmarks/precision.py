"""ganserve bench precision: how far each inference precision moves the pixels from fp32, and how fast it runs.

Over N seeds (default 1,000) every precision renders the same requests as fp32; reported per precision: max and mean
absolute uint8 difference, the share of pixel values that differ at all, PSNR against fp32, and images/s beside fp32's
measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

import ganserve
from ganserve.precision import PRECISIONS
from ganserve.sampling import describe, sample


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("precision", help="uint8 difference to fp32 and speed of bf16 / fp16 / mixed / tf32")
    p.add_argument("--model", required=True, help="model name or checkpoint path")
    p.add_argument("--n", type=int, default=1000, help="seeds 0..n-1")
    p.add_argument("--precisions", default="bf16,fp16,mixed", help=f"any of {', '.join(PRECISIONS[1:])}")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--request", default="{}", help="extra request fields as JSON")
    p.add_argument("--json", action="store_true")
    return p


def _render(model: torch.nn.Module, n: int, batch_size: int, extra: dict) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    chunks = [sample(model, {"seeds": list(range(s, min(s + batch_size, n))), **extra}, batch_size=batch_size,
                     max_images=batch_size).images for s in range(0, n, batch_size)]  # fmt: skip
    return np.concatenate(chunks), time.perf_counter() - t0


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
    reference, t_ref = _render(base, args.n, args.batch_size, extra)
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        model = ganserve.load(args.model, device=args.device, precision=precision)
        images, t = _render(model, args.n, args.batch_size, extra)
        rows.append({"precision": precision, **compare(reference, images),
                     "images_per_s": round(args.n / t, 1), "speed_vs_fp32": round(t_ref / t, 3)})  # fmt: skip
    info = {"model": getattr(base, "name", args.model), "device": args.device, "n": args.n,
            "threads": torch.get_num_threads(), "fp32_images_per_s": round(args.n / t_ref, 1),
            "rows": rows}  # fmt: skip
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"model {info['model']}  device {args.device}  seeds 0-{args.n - 1}  threads {info['threads']}  "
          f"fp32 {info['fp32_images_per_s']} images/s")  # fmt: skip
    keys = list(rows[0]) if rows else []
    print("  ".join(f"{k:>20}" for k in keys))
    for r in rows:
        print("  ".join(f"{r[k]!s:>20}" for k in keys))
    return 0
