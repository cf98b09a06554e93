"""ganserve train FAMILY --data fashion-mnist|FOLDER --resolution R ..."""

from __future__ import annotations

import argparse
import json

from ganserve.families import family_names


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a generator (resumable; writes grids, state and a shippable checkpoint)")
    p.add_argument("family", choices=family_names())
    p.add_argument("--data", default="fashion-mnist", help="'fashion-mnist' (Debian dataset-fashion-mnist) or a folder")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--out-dir", required=True, help="run directory: state, sample grids, log")
    p.add_argument("--steps", type=int, default=10_000, help="total optimisation steps (a resumed run stops here too)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.0025)
    p.add_argument("--gamma", type=float, default=None, help="R1 weight (default: 0.0002 * res^2 / batch)")
    p.add_argument("--pl-weight", type=float, default=2.0)
    p.add_argument("--style-mixing", type=float, default=0.9, help="style-mixing regularisation probability")
    p.add_argument("--mirror", action="store_true", help="random horizontal flips")
    p.add_argument("--cond", action="store_true", help="class-conditional (needs labelled data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snap", type=int, default=500, help="steps between grids, state saves and exports")
    p.add_argument("--export", default=None, help="write the EMA generator checkpoint here at every snapshot")
    p.add_argument("--export-dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--model", default="{}", help="config overrides as JSON, e.g. '{\"channel_max\": 256}'")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's saved state")
    p.add_argument("--threads", type=int, default=None)
    return p


def run(args: argparse.Namespace) -> int:
    from ganserve.train.loop import Trainer, TrainOptions

    opts = TrainOptions(
        family=args.family, data=args.data, resolution=args.resolution, out_dir=args.out_dir, steps=args.steps,
        batch_size=args.batch, lr=args.lr, r1_gamma=args.gamma, pl_weight=args.pl_weight,
        style_mixing_prob=args.style_mixing, mirror=args.mirror, conditional=args.cond, seed=args.seed,
        snap=args.snap, export=args.export, export_dtype=args.export_dtype, model=json.loads(args.model),
        threads=args.threads,
    )  # fmt: skip
    trainer = Trainer(opts)
    if args.resume and trainer.resume():
        print(f"resumed {trainer.state_path} at step {trainer.step}")
    elif trainer.state_path.exists():
        raise ValueError(f"{trainer.state_path} exists: pass --resume to continue it, or choose another --out-dir")
    trainer.run()
    print(f"done: step {trainer.step}; state {trainer.state_path}" + (f"; model {opts.export}" if opts.export else ""))
    return 0
