"""ganserve project --model M --image FILE [--steps 500] [--w-plus] [--out DIR]: find the w of a real image.

Writes w.npy (what the ``w`` request field and ``ganserve sample --w`` take), the reconstruction as a PNG carrying its
parameters (the latent's id among them), and prints the PSNR; the w is also kept in the latent store under its id.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ganserve.commands import CommandError, int_in


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("project", help="project a real image into a model's W space (StyleGAN2-ADA's projector)")
    p.add_argument("--model", required=True, help="model name or checkpoint path")
    p.add_argument("--image", required=True, help="PNG or JPEG, square; resized to the model's resolution")
    p.add_argument("--steps", type=int_in(1, 100_000), default=500, metavar="N", help="optimisation steps")
    p.add_argument("--w-plus", action="store_true", help="one w per layer (W+) instead of one w for all")
    p.add_argument("--seed", type=int, default=0, help="seeds the optimiser's jitter: same seed, same w")
    p.add_argument("--out", "--out-dir", dest="out_dir", default="projection", metavar="DIR",
                   help="w.npy and reconstruction.png go here (--out-dir: the old spelling)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="overwrite existing files in --out")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import ganserve
    from ganserve import latents_store
    from ganserve.checkpoint import atomic_write_bytes
    from ganserve.images import ImageDecodeError, decode_image, encode_png
    from ganserve.projection import project

    out = Path(args.out_dir)
    files = [out / "w.npy", out / "reconstruction.png"]
    if not args.force and any(f.exists() for f in files):
        raise CommandError(f"{out} already holds a projection (pass --force to overwrite it)")
    model = ganserve.load(args.model, device=args.device)
    cfg = model.config
    try:
        target = decode_image(Path(args.image).read_bytes(), cfg.resolution, cfg.img_channels)
    except ImageDecodeError as e:
        raise CommandError(f"--image {args.image}: {e}") from None
    with tqdm(total=args.steps, unit="step", dynamic_ncols=True) as bar:

        def progress(step: int, loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update(1)

        result = project(model, target, steps=args.steps, seed=args.seed, w_plus=args.w_plus, progress=progress)
    lid = latents_store.save(result.ws.numpy())
    params = {"model": model.name, "w": lid, "psnr": round(result.psnr, 3), "project_steps": args.steps,
              "truncation_psi": 1.0, "noise_mode": "const"}  # fmt: skip
    atomic_write_bytes(files[0], latents_store.to_npy(result.ws.numpy()))
    atomic_write_bytes(files[1], encode_png(result.image, params))
    print(json.dumps({"w": lid, "psnr_db": round(result.psnr, 2), "steps": args.steps,
                      "files": [str(f) for f in files]}))  # fmt: skip
    return 0
