"""ganserve sample --model NAME|PATH --seeds 0-15 [--psi 0.7] [--cutoff N] [--mix SEED[,SEED]:LAYERS] ... --out P

Accepts StyleGAN2-ADA's spellings too (--trunc, --network, --outdir, --styles). --out ending in .png/.jpg/.npy writes
one file (a grid when there are several images), .gif an animation of the images in order, a path without a suffix a
directory with one PNG per image; any other suffix is refused. Existing files are kept unless --force.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from ganserve.checkpoint import atomic_write_bytes
from ganserve.commands import CommandError
from ganserve.precision import PRECISIONS


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="write samples from a model to a grid image or a directory")
    p.add_argument("--model", "--network", dest="model", help="model name (see --list) or checkpoint path")
    p.add_argument("--list", action="store_true", help="list the available models and exit")
    p.add_argument("--seeds", default=None, help="seeds: '0-15' (the default), '1,5,9' or mixes of both")
    p.add_argument("--psi", "--trunc", dest="psi", type=float, default=None, help="truncation psi")
    p.add_argument("--cutoff", type=int, default=None, help="truncate only the first N ws")
    p.add_argument("--noise-mode", choices=["const", "random", "none"], default=None)
    p.add_argument("--mix", default=None,
                   help="style mixing: SEEDS:LAYERS, LAYERS = coarse|middle|fine|A-B (A and B inclusive)")
    p.add_argument("--styles", default=None, help="StyleGAN2-ADA's spelling: the layers A-B of --mix (inclusive)")
    p.add_argument("--interpolate", default=None, help="frames to a seed: TO_SEED[:STEPS[:w|z]]")
    p.add_argument("--w", default=None, metavar="FILE.npy|ID",
                   help="start from a latent (ganserve project's w.npy, or its id) instead of seeds")
    p.add_argument("--edit", action="append", default=[], metavar="K:AMOUNT[:LAYERS]",
                   help="move w along semantic direction K by AMOUNT stds (on LAYERS: A-B or a group); repeatable")
    p.add_argument("--edit-method", choices=["sefa", "pca"], default="sefa", help="how --edit directions were found")
    p.add_argument("--class", dest="class_", default=None, help="class id or name (conditional models)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-images", type=int, default=1024, help="refuse requests for more images than this")
    p.add_argument("--out", "--outdir", dest="out", default="samples.png",
                   help="file.png|.jpg|.npy (a grid), file.gif (an animation) or a directory (one PNG per image)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--cols", type=int, default=None, help="grid columns")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32 (reference), tf32, bf16, fp16, or mixed (the family's half-precision layers)")
    add_vq_arguments(p)
    return p


# ---- VQ families (vqgan, vit_vqgan): the prior's sampling filters, reconstruction and partial re-sampling ----------
KEEP_HALVES = ("top-half", "bottom-half", "left-half", "right-half")


def add_vq_arguments(p: argparse.ArgumentParser) -> None:
    vq = p.add_argument_group("VQ families (vqgan, vit_vqgan)")
    vq.add_argument("--temperature", type=float, default=None, help="prior sampling temperature")
    vq.add_argument("--top-k", type=int, default=None, help="sample among the K most likely codes")
    vq.add_argument("--top-p", type=float, default=None, help="sample within the nucleus of probability P")
    vq.add_argument("--image", default=None,
                    help="PNG/JPEG file: reconstruct it (its codes go in the image parameters), or with --keep the "
                         "image whose codes are kept")
    vq.add_argument("--keep", default=None,
                    help="the codes of --image to keep (the rest are re-sampled): top-half, bottom-half, left-half, "
                         "right-half or box:x0,y0,x1,y1 (code units, x1 and y1 exclusive)")


def parse_keep(text: str) -> dict:
    """--keep -> the request's keep: a half of the code grid, or box:x0,y0,x1,y1 -> [top, left, bottom, right]."""
    if text in KEEP_HALVES:
        return {"half": text.split("-")[0]}
    if text.startswith("box:"):
        parts = text[4:].split(",")
        if len(parts) == 4 and all(v.strip().isascii() and v.strip().isdigit() for v in parts):
            x0, y0, x1, y1 = (int(v) for v in parts)
            return {"box": [y0, x0, y1, x1]}
    raise CommandError(f"--keep expects {', '.join(KEEP_HALVES)} or box:x0,y0,x1,y1, got {text!r}")


def vq_fields(args: argparse.Namespace) -> dict:
    import base64

    req: dict = {}
    for name in ("temperature", "top_k", "top_p"):
        if getattr(args, name, None) is not None:
            req[name] = getattr(args, name)
    if getattr(args, "image", None):
        try:
            req["image"] = base64.b64encode(Path(args.image).read_bytes()).decode()
        except OSError as e:
            raise CommandError(f"--image {args.image}: {e.strerror or e}") from None
    if getattr(args, "keep", None):
        if not args.image:
            raise CommandError("--keep needs --image (the image whose codes are kept)")
        req["keep"] = parse_keep(args.keep)
    return req


FILE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".npy": "npy", ".gif": "gif"}


def parse_mix(text: str, styles: str | None = None) -> dict:
    """SEEDS:LAYERS -> the request's style_mix; the request model checks the layers (one rule everywhere)."""
    if ":" not in text:
        if styles is None:
            raise CommandError(f"--mix expects SEEDS:LAYERS (e.g. 7:coarse or 7,8:0-3), got {text!r}")
        return {"seeds": text, "layers": styles}
    seeds, layers = text.rsplit(":", 1)
    return {"seeds": seeds, "layers": layers}


def parse_edit(text: str, method: str) -> dict:
    """K:AMOUNT[:LAYERS] -> one entry of the request's edits (the request model checks the values)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0].isascii() or not parts[0].isdigit():
        raise CommandError(f"--edit expects K:AMOUNT[:LAYERS] (e.g. 0:2.5 or 3:-1:0-3), got {text!r}")
    try:
        amount = float(parts[1])
    except ValueError:
        raise CommandError(f"--edit amount must be a number, got {parts[1]!r}") from None
    edit = {"direction": int(parts[0]), "amount": amount, "method": method}
    if len(parts) == 3:
        edit["layers"] = parts[2]
    return edit


def parse_interpolate(text: str) -> dict:
    parts = text.split(":")
    out: dict = {"to_seed": int(parts[0])}
    if len(parts) > 1:
        out["steps"] = int(parts[1])
    if len(parts) > 2:
        out["space"] = parts[2]
    return out


def build_request(args: argparse.Namespace) -> dict:
    if args.w and args.seeds:
        raise CommandError("give --seeds or --w, not both")
    req: dict = {} if args.w else {"seeds": args.seeds or "0-15"}
    if args.w:
        path = Path(args.w)
        if path.suffix == ".npy" or path.exists():
            req["w"] = base64.b64encode(path.read_bytes()).decode()
        else:
            req["w"] = args.w
    if args.psi is not None:
        req["truncation_psi"] = args.psi
    if args.cutoff is not None:
        req["truncation_cutoff"] = args.cutoff
    if args.noise_mode is not None:
        req["noise_mode"] = args.noise_mode
    if args.styles and not args.mix:
        raise CommandError("--styles needs --mix SEEDS (the seeds whose styles are copied)")
    if args.mix:
        req["style_mix"] = parse_mix(args.mix, args.styles)
    if args.interpolate:
        req["interpolate"] = parse_interpolate(args.interpolate)
    if args.edit:
        req["edits"] = [parse_edit(text, args.edit_method) for text in args.edit]
    if args.class_ is not None:
        req["class"] = int(args.class_) if args.class_.isascii() and args.class_.isdigit() else args.class_
    req.update(vq_fields(args))
    return req


def output_kind(out: Path) -> str:
    """'png' | 'jpeg' | 'npy' | 'gif' for a file, 'dir' for a folder; refuse what would be silently misread."""
    if out.suffix.lower() in FILE_FORMATS:
        return FILE_FORMATS[out.suffix.lower()]
    if out.suffix and not out.is_dir():
        raise CommandError(f"--out {out}: unknown suffix '{out.suffix}' (use .png, .jpg, .npy, .gif or a folder)")
    return "dir"


def run(args: argparse.Namespace) -> int:
    import ganserve
    from ganserve.images import encode_gif, encode_image, make_grid
    from ganserve.sampling import sample

    if args.list:
        for name, path in ganserve.available_models().items():
            print(f"{name}\t{path}")
        return 0
    if not args.model:
        raise CommandError("--model is required (see --list)")
    out = Path(args.out)
    kind = output_kind(out)
    if kind != "dir" and out.exists() and not args.force:
        raise CommandError(f"{out} exists (pass --force to overwrite it)")
    request = build_request(args)
    model = ganserve.load(args.model, device=args.device, precision=args.precision)
    result = sample(model, request, batch_size=args.batch_size, max_images=args.max_images)
    if kind == "dir":
        files = {}
        for img, prm in zip(result.images, result.params):
            stem = f"seed{prm['seeds'][0]:04d}"
            if "style_mix" in prm:
                stem += f"-mix{prm['style_mix']['seeds'][0]:04d}"
            if "class" in prm:
                stem += f"-class{prm['class']}"
            if "frame" in prm:
                stem += f"-frame{prm['frame']:03d}"
            files[out / f"{stem}.png"] = (img, prm)
        clash = [p for p in files if p.exists()]
        if clash and not args.force:
            raise CommandError(f"{clash[0]} exists ({len(clash)} files would be overwritten; pass --force)")
        out.mkdir(parents=True, exist_ok=True)
        for path, (img, prm) in files.items():
            atomic_write_bytes(path, encode_image(img, "png", prm))
    else:
        if kind == "gif":
            data = encode_gif(result.images, bounce=False)
        elif kind == "npy":
            data = encode_image(result.images, "npy")
        elif len(result.images) == 1:
            data = encode_image(result.images[0], kind, result.params[0])
        else:
            grid = make_grid(result.images, args.cols or result.request.default_cols())
            data = encode_image(grid, kind, {"grid": result.params} if kind == "png" else None)
        atomic_write_bytes(out, data)
    print(out)
    print(json.dumps({"model": result.model, "version": result.model_version, "images": len(result.images),
                      "seconds": round(result.seconds, 3)}), file=sys.stderr)  # fmt: skip
    return 0
