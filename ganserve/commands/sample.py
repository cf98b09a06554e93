"""ganserve sample --model NAME|PATH [--seeds 0-15] [request flags] [--out samples.png]

The request flags are generated from every registered family's request model (``ganserve.front_end``): one flag per
field, grouped as the fields declare, so a new field is a new flag with nothing written here. StyleGAN2-ADA's
spellings work too (--network, --trunc, --outdir, --styles). A flag a model's family does not take is refused by name.
--out ending in .png/.jpg/.npy writes one file (a grid when there are several images), .gif an animation of the
images in order, a path without a suffix a directory with one PNG per image; any other suffix is refused. Existing
files are kept unless --force.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ganserve import cli_fields
from ganserve.backends import backend_names, load_backend
from ganserve.checkpoint import atomic_write_bytes
from ganserve.commands import CommandError, int_in
from ganserve.precision import PRECISIONS

FILE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".npy": "npy", ".gif": "gif"}
MAX_BATCH_SIZE = 4096
MAX_IMAGES = 100_000


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="write samples from a model to a grid image or a directory")
    p.add_argument(
        "--model",
        "--network",
        dest="model",
        metavar="NAME|PATH",
        help="model name (see --list) or checkpoint path (--network: StyleGAN2-ADA's spelling)",
    )
    p.add_argument("--list", action="store_true", help="list the available models (family, resolution, classes); "
                   "with --model: that model's semantic directions for --edit K, by number and name")  # fmt: skip
    p.add_argument("--out", "--outdir", dest="out", default="samples.png", metavar="PATH",
                   help="file.png|.jpg|.npy (a grid), file.gif (an animation) or a directory (one PNG per image) "
                        "(--outdir: StyleGAN2-ADA's spelling)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument(
        "--batch-size",
        type=int_in(1, MAX_BATCH_SIZE),
        default=16,
        metavar="N",
        help="images per generator call (the pixels do not depend on it)",
    )
    p.add_argument(
        "--max-images",
        type=int_in(1, MAX_IMAGES),
        default=1024,
        metavar="N",
        help="refuse requests for more images than this",
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="fp32 (reference), tf32, bf16, fp16, or mixed (the family's half-precision layers)",
    )
    p.add_argument("--backend", default="eager",
                   help=f"generator backend: {' | '.join(backend_names())} (a graph backend exports the model once "
                        "into the user cache, as `ganserve serve --backend` does)")  # fmt: skip
    p.set_defaults(_request_fields=cli_fields.add_request_arguments(p))
    return p


def output_kind(text: str) -> str:
    """'png' | 'jpeg' | 'npy' | 'gif' for a file, 'dir' for a folder; refuse what would be silently misread."""
    if not text.strip():
        raise CommandError("--out needs a path (got an empty string)")
    out = Path(text)
    if out.exists() and not (out.is_file() or out.is_dir()):
        raise CommandError(f"--out {out}: not a regular file or a folder (a device, pipe or socket)")
    if out.suffix.lower() in FILE_FORMATS:
        return FILE_FORMATS[out.suffix.lower()]
    if out.suffix and not out.is_dir():
        raise CommandError(f"--out {out}: unknown suffix '{out.suffix}' (use .png, .jpg, .npy, .gif or a folder)")
    return "dir"


def output_fields(kind: str) -> dict[str, Any]:
    """The request's output fields that --out sets: png/jpeg files are grids (one image stays one image)."""
    if kind in ("png", "jpeg"):
        return {"format": kind, "grid": True}
    return {"format": "npy"} if kind == "npy" else {}


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The request the flags describe (errors name the flag as typed)."""
    fields = args._request_fields
    req = cli_fields.request_from_args(args, fields)
    paths = {cf.path for cf in fields}
    req.update({k: v for k, v in output_fields(output_kind(args.out)).items() if k in paths})
    return req


def request_error(e: Exception, args: argparse.Namespace) -> CommandError:
    """A RequestError as the flag the user typed: 'invalid --psi (truncation_psi): ...'."""
    field = getattr(e, "field", "")
    flag = cli_fields.flag_for(field, args._request_fields, args) if field else None
    where = f"{flag} ({field})" if flag else (field or "request")
    return CommandError(f"invalid {where}: {getattr(e, 'message', e)}")


# ---- --list ---------------------------------------------------------------------------------------------------------
def model_summary(meta: dict[str, Any]) -> tuple[str, str, str]:
    """(family, resolution, classes) from a checkpoint's metadata, without loading its tensors."""
    configs = [meta["config"]] if "config" in meta else [p["config"] for p in meta.get("parts", {}).values()]
    res = next((str(c["resolution"]) for c in configs if c.get("resolution")), "?")
    names = next((list(c["class_names"]) for c in configs if c.get("class_names")), [])
    c_dim = next((int(c["c_dim"]) for c in configs if c.get("c_dim")), len(names))
    if not c_dim:
        classes = "-"
    elif names:
        shown = ", ".join(names)
        classes = f"{len(names)}: " + (shown if len(shown) <= 100 else ", ".join(names[:5]) + ", ...")
    else:
        classes = f"{c_dim}: ids 0-{c_dim - 1}"
    return str(meta.get("family", "?")), res, classes


def list_models() -> None:
    from ganserve import available_models
    from ganserve.checkpoint import CheckpointError, read_metadata

    rows = [("NAME", "FAMILY", "RES", "CLASSES", "PATH")]
    for name, path in available_models().items():
        try:
            rows.append((name, *model_summary(read_metadata(path)), str(path)))
        except CheckpointError as e:
            rows.append((name, "?", "?", f"unreadable: {e}", str(path)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])


def list_directions(name: str) -> None:
    """The model's semantic directions (``--edit K:AMOUNT``), each method's numbers and names (what each changes)."""
    import ganserve
    from ganserve.directions import describe
    from ganserve.families import family_of

    model = ganserve.load(name)
    names = describe(model)["names"] if "edits" in family_of(model).request.model_fields else {}
    if not names:
        print(f"{name}: no semantic directions (its family has no edits)")
        return
    print("METHOD  K   NAME")
    for method, listed in names.items():
        for k, direction in enumerate(listed):
            print(f"{method:<6}  {k:<2}  {direction}")


def _check_backend(args: argparse.Namespace) -> None:
    """--backend names a registered backend; graph backends run as exported (as ``ganserve serve`` refuses)."""
    if args.backend not in backend_names():
        raise CommandError(f"--backend: unknown backend '{args.backend}' (backends: {', '.join(backend_names())})")
    if args.backend != "eager" and args.precision != "fp32":
        raise CommandError(f"--precision {args.precision} applies to --backend eager; the {args.backend} backend runs "
                           "its graphs as exported")  # fmt: skip


# ---- run ------------------------------------------------------------------------------------------------------------
def _write(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise CommandError(f"--out {path}: {e.strerror or e}") from None


def run(args: argparse.Namespace) -> int:
    import ganserve
    from ganserve.images import encode_gif, encode_image
    from ganserve.requests import RequestError
    from ganserve.sampling import encode_result, sample

    if args.list:
        list_directions(args.model) if args.model else list_models()
        return 0
    if not args.model:
        raise CommandError("--model is required (see --list)")
    ganserve.loading.resolve(args.model)  # an unknown model is the error to report, whatever --out holds
    _check_backend(args)
    out = Path(args.out)
    kind = output_kind(args.out)
    if kind != "dir" and out.exists() and not args.force:
        raise CommandError(f"{out} exists (pass --force to overwrite it)")
    request = build_request(args)
    model = load_backend(args.backend, args.model, device=args.device, precision=args.precision)
    for cf in cli_fields.given(args, args._request_fields):
        if model.family not in cf.families:
            raise CommandError(f"{cli_fields.typed_flag(args, cf)} does not apply to a {model.family} model (it sets "
                               f"{cf.path}, which {', '.join(cf.families)} models take)")  # fmt: skip
    try:
        result = sample(model, request, batch_size=args.batch_size, max_images=args.max_images)
    except RequestError as e:
        raise request_error(e, args) from None
    if kind == "dir":
        files = {}
        for img, prm in zip(result.images, result.params):
            stem = f"seed{prm['seeds'][0]:04d}" if "seeds" in prm else "image"
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
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CommandError(f"--out {out}: {e.strerror or e}") from None
        for path, (img, prm) in files.items():
            _write(path, encode_image(img, "png", prm))
    elif kind == "gif":
        _write(out, encode_gif(result.images, bounce=False))
    elif kind == "npy":
        _write(out, encode_image(result.images, "npy"))  # always [N, H, W, C], one image too
    else:
        _write(out, encode_result(result).body)
    print(out)
    print(json.dumps({"model": result.model, "version": result.model_version, "images": len(result.images),
                      "seconds": round(result.seconds, 3)}), file=sys.stderr)  # fmt: skip
    return 0
