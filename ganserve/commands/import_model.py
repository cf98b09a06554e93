"""ganserve import FILE|FOLDER --from sg2-ada|rosinality|hf-biggan|taming|auto [--name NAME] [--out OUT.safetensors]
[--resolution PX]

Converts an official release checkpoint into ganserve's format without running any code from it, prints what it
found, what it mapped and what it left unused, and refuses when a tensor the model needs is missing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ganserve.commands import CommandError

# (config key, label) of the sizes worth a glance, whichever family the file imports into.
SUMMARY = [("z_dim", "z"), ("w_dim", "w"), ("embed_dim", "embed"), ("channel_width", "ch"), ("ch", "ch"),
           ("ch_mult", "ch_mult"), ("n_embed", "codes"), ("prior_layers", "prior layers"),
           ("prior_embd", "prior width")]  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ganserve.importers import IMPORTERS

    p = sub.add_parser("import", help="import an official checkpoint (StyleGAN2-ADA .pkl, rosinality .pt, "
                       "pytorch-pretrained-BigGAN .bin, taming .ckpt) safely")  # fmt: skip
    p.add_argument("file", help="the release checkpoint (or its release folder, e.g. pytorch-pretrained-BigGAN's)")
    p.add_argument("--from", dest="source", default="auto", choices=["auto", *IMPORTERS],
                   help="its format (auto recognises the layout and says what it found)")  # fmt: skip
    p.add_argument("--name", default=None, help="model name (default: the file's stem)")
    p.add_argument("--out", default=None, help="output .safetensors (default: checkpoints/NAME.safetensors)")
    p.add_argument("--resolution", type=int, default=None,
                   help="image size in px, for files that do not say it (a taming first stage without its .yaml); "
                   "checked against the file otherwise")  # fmt: skip
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="dtype of the written tensors")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from ganserve.importers import ImportError_, import_checkpoint

    res = args.resolution
    if res is not None and (res < 4 or res > 4096 or res & (res - 1)):
        raise CommandError(f"--resolution must be a power of two in [4, 4096], got {res}")
    name = args.name or Path(args.file).stem
    out = Path(args.out or Path("checkpoints") / f"{name}.safetensors")
    if out.suffix != ".safetensors":
        raise CommandError(f"--out must end in .safetensors, got {out}")
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists (pass --force to overwrite it)")
    command = shlex.join(["ganserve", "import", *sys.argv[2:]]) if sys.argv[1:2] == ["import"] else ""
    try:
        imported, meta = import_checkpoint(args.file, out, source=args.source, name=name, command=command,
                                           dtype=getattr(torch, args.dtype), resolution=res)  # fmt: skip
    except ImportError_ as e:
        raise CommandError(str(e)) from None
    cfg = imported.config
    sizes = ", ".join(f"{label} {cfg[key]}" for key, label in SUMMARY if key in cfg)
    print(f"found: {imported.source_format} checkpoint -> {imported.family} at {cfg['resolution']} px, {sizes}, "
          f"classes {cfg.get('c_dim', 0)}")  # fmt: skip
    unused = imported.unused
    listing = f": {', '.join(unused[:8])}{' ...' if len(unused) > 8 else ''}" if unused else ""
    print(f"mapped {len(imported.tensors)} tensors; left unused {len(unused)}{listing}")
    for note in imported.notes:
        print(f"note: {note}")
    print(f"wrote {out} ({meta['content_hash'][:19]}); serve it with: ganserve serve --models {out}")
    return 0
