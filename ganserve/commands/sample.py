"""ganserve sample --model NAME|PATH --seeds 0-15 [--psi 0.7] [--cutoff N] [--mix SEED[,SEED]:LAYERS] ... --out P

Accepts StyleGAN2-ADA's spellings too (--trunc, --network, --outdir). --out ending in .png/.jpg/.npy writes one file
(a grid when there are several images); any other path is a directory with one file per image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ganserve.checkpoint import atomic_write


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="write samples from a model to a grid image or a directory")
    p.add_argument("--model", "--network", dest="model", help="model name (see --list) or checkpoint path")
    p.add_argument("--list", action="store_true", help="list the available models and exit")
    p.add_argument("--seeds", default="0-15", help="seeds: '0-15', '1,5,9' or mixes of both")
    p.add_argument("--psi", "--trunc", dest="psi", type=float, default=None, help="truncation psi")
    p.add_argument("--cutoff", type=int, default=None, help="truncate only the first N ws")
    p.add_argument("--noise-mode", choices=["const", "random", "none"], default=None)
    p.add_argument("--mix", default=None, help="style mixing: SEEDS:LAYERS, LAYERS = coarse|middle|fine|A-B")
    p.add_argument("--interpolate", default=None, help="frames to a seed: TO_SEED[:STEPS[:w|z]]")
    p.add_argument("--class", dest="class_", default=None, help="class id or name (conditional models)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-images", type=int, default=1024, help="refuse requests for more images than this")
    p.add_argument("--out", "--outdir", dest="out", default="samples.png", help="file.png|.jpg|.npy or a directory")
    p.add_argument("--cols", type=int, default=None, help="grid columns")
    p.add_argument("--device", default="cpu")
    return p


def parse_mix(text: str) -> dict:
    if ":" not in text:
        raise ValueError(f"--mix expects SEEDS:LAYERS (e.g. 7:coarse or 7,8:0-4), got {text!r}")
    seeds, layers = text.rsplit(":", 1)
    if layers in ("coarse", "middle", "fine"):
        return {"seeds": seeds, "layers": layers}
    lo, sep, hi = layers.partition("-")
    if not sep or not lo.isdigit() or not hi.isdigit():
        raise ValueError(f"--mix layers must be coarse, middle, fine or START-STOP, got {layers!r}")
    return {"seeds": seeds, "layers": [int(lo), int(hi)]}


def parse_interpolate(text: str) -> dict:
    parts = text.split(":")
    out: dict = {"to_seed": int(parts[0])}
    if len(parts) > 1:
        out["steps"] = int(parts[1])
    if len(parts) > 2:
        out["space"] = parts[2]
    return out


def build_request(args: argparse.Namespace) -> dict:
    req: dict = {"seeds": args.seeds}
    if args.psi is not None:
        req["truncation_psi"] = args.psi
    if args.cutoff is not None:
        req["truncation_cutoff"] = args.cutoff
    if args.noise_mode is not None:
        req["noise_mode"] = args.noise_mode
    if args.mix:
        req["style_mix"] = parse_mix(args.mix)
    if args.interpolate:
        req["interpolate"] = parse_interpolate(args.interpolate)
    if args.class_ is not None:
        req["class"] = int(args.class_) if args.class_.isdigit() else args.class_
    return req


def run(args: argparse.Namespace) -> int:
    import ganserve
    from ganserve.images import encode_image, make_grid
    from ganserve.sampling import _default_cols, sample

    if args.list:
        for name, path in ganserve.available_models().items():
            print(f"{name}\t{path}")
        return 0
    if not args.model:
        raise ValueError("--model is required (see --list)")
    model = ganserve.load(args.model, device=args.device)
    result = sample(model, build_request(args), batch_size=args.batch_size, max_images=args.max_images)
    out = Path(args.out)
    fmt = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".npy": "npy"}.get(out.suffix.lower())
    if fmt is not None:
        if fmt == "npy":
            data = encode_image(result.images, "npy")
        elif len(result.images) == 1:
            data = encode_image(result.images[0], fmt, result.params[0])
        else:
            grid = make_grid(result.images, args.cols or _default_cols(result))
            data = encode_image(grid, fmt, {"grid": result.params} if fmt == "png" else None)
        atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
        print(out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for img, prm in zip(result.images, result.params):
            stem = f"seed{prm['seeds'][0]:04d}"
            if "style_mix" in prm:
                stem += f"-mix{prm['style_mix']['seeds'][0]:04d}"
            if "frame" in prm:
                stem += f"-frame{prm['frame']:03d}"
            path = out / f"{stem}.png"
            data = encode_image(img, "png", prm)
            atomic_write(path, lambda tmp, d=data: Path(tmp).write_bytes(d))
        print(out)
    print(json.dumps({"model": result.model, "version": result.model_version, "images": len(result.images),
                      "seconds": round(result.seconds, 3)}), file=sys.stderr)  # fmt: skip
    return 0
