"""ganserve train FAMILY --data fashion-mnist|FOLDER --resolution R --out DIR [common options] [the family's options]

One subcommand per trainable family: the common options (data, steps, batch, EMA, snapshots, export, resume) come
from the loop, the rest from the family's training-step ``Options`` dataclass (``ganserve train biggan --help``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any

from ganserve.families import loadable_families


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="fashion-mnist", help="'fashion-mnist' (Debian dataset-fashion-mnist) or a folder")
    p.add_argument("--resolution", type=int, default=32, help="image size in pixels (a power of two)")
    p.add_argument("--out", "--out-dir", dest="out_dir", required=True, metavar="DIR",
                   help="run directory: state, sample grids, log (--out-dir: the old spelling)")  # fmt: skip
    p.add_argument("--steps", type=int, default=10_000, help="total optimisation steps (a resumed run stops here too)")
    p.add_argument("--batch-size", "--batch", dest="batch", type=int, default=32, metavar="N",
                   help="images per optimisation step, over all processes (--batch: the old spelling)")  # fmt: skip
    p.add_argument("--ema-kimg", type=float, default=None, help="G EMA half-life in kimg (default: the family's)")
    p.add_argument("--ema-rampup", type=float, default=0.05, help="EMA ramp-up ratio (negative: none)")
    p.add_argument("--mirror", action="store_true", help="random horizontal flips")
    p.add_argument("--cond", action="store_true", help="class-conditional (needs labelled data)")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights, the data order and the augmentations")
    p.add_argument("--snap", type=int, default=500, help="steps between grids, state saves and exports")
    p.add_argument("--export", default=None, help="write the EMA generator checkpoint here at every snapshot")
    p.add_argument("--export-dtype", choices=["float16", "float32"], default="float16",
                   help="dtype of the tensors --export writes")  # fmt: skip
    p.add_argument("--config", "--model", dest="model", default="{}", metavar="JSON",
                   help="model config overrides as JSON, e.g. '{\"channel_max\": 256}' "
                        "(--model: the old spelling)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from the run directory's saved state")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda; under torchrun each rank takes its own GPU")
    p.add_argument("--amp", choices=["bf16"], default=None, help="mixed-precision training step (bf16 autocast)")


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _scalar_type(annotation: Any) -> Any:
    """The argparse type of an option's annotation (``float | None`` -> float, tuples -> comma lists)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _scalar_type(args[0])
    if origin is tuple or annotation is tuple:
        return _numbers
    return annotation


def _family_options(p: argparse.ArgumentParser, options_cls: type) -> None:
    from ganserve.train.step import option_flags

    group = p.add_argument_group("family options")
    hints = typing.get_type_hints(options_cls)
    for flag, f in option_flags(options_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = _scalar_type(hints[f.name])
        shown = ",".join(str(v) for v in default) if isinstance(default, tuple) else default
        text = f.metadata.get("help", "")
        text += "" if "default" in text else f" (default: {shown})"
        if kind is bool:
            group.add_argument(
                flag, dest=f"opt_{f.name}", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text
            )
        else:
            group.add_argument(
                flag, dest=f"opt_{f.name}", type=kind, default=argparse.SUPPRESS, help=text, metavar=f.name.upper()
            )


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a generator (resumable; writes grids, state and a shippable checkpoint)")
    families = p.add_subparsers(dest="family", required=True, metavar="FAMILY")
    for fam in loadable_families():  # a plugin family that does not load is left out with a warning
        if fam.training is None:
            continue
        fp = families.add_parser(fam.name, help=fam.description.split(":")[0] or fam.name)
        _common(fp)
        _family_options(fp, fam.training_class().Options)
    return p


def run(args: argparse.Namespace) -> int:
    from ganserve.train.loop import Trainer, TrainOptions

    family_options = {k[len("opt_") :]: v for k, v in vars(args).items() if k.startswith("opt_")}
    opts = TrainOptions(
        family=args.family, data=args.data, resolution=args.resolution, out_dir=args.out_dir, steps=args.steps,
        batch_size=args.batch, ema_kimg=args.ema_kimg, ema_rampup=args.ema_rampup if args.ema_rampup >= 0 else None,
        mirror=args.mirror, conditional=args.cond, seed=args.seed, snap=args.snap, export=args.export,
        export_dtype=args.export_dtype, model=json.loads(args.model), family_options=family_options,
        threads=args.threads, device=args.device, amp=args.amp,
    )  # fmt: skip
    trainer = Trainer(opts)
    if args.resume and trainer.resume():
        print(f"resumed {trainer.state_path} at step {trainer.step}")
    elif trainer.state_path.exists():
        raise ValueError(f"{trainer.state_path} exists: pass --resume to continue it, or choose another --out")
    from ganserve.train import distributed

    trainer.run()
    main = distributed.is_main()
    distributed.finish()
    if not main:
        return 0
    print(f"done: step {trainer.step}; state {trainer.state_path}" + (f"; model {opts.export}" if opts.export else ""))
    return 0
