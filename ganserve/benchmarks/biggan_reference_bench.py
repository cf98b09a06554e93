"""BigGAN-deep side by side in one process, CPU: ganserve eager, ganserve's ONNX graph (onnxruntime), and
huggingface/pytorch-pretrained-BigGAN's BigGAN built at the same config with the same weights.

    python3 -m ganserve.benchmarks.biggan_reference_bench --reference /path/to/pytorch-pretrained-BigGAN
        [--config small]

The official code is only imported from the given checkout (its ``pytorch_pretrained_biggan/model.py`` and
``config.py``; the download helpers it imports are stubbed), never vendored. The weights are ganserve's: a
``deep=True`` BigGANGenerator at the official config (``--config 128`` / ``256``: biggan-deep-128's / -256's;
``small``: a 32 px, 3 channel, channel_width 16 version of it), randomly initialised with random standing statistics,
loaded into the official module through the name mapping (the identity: ganserve's deep names are the release's) with
strict=True. Before timing, both must agree on the same inputs at truncation 1.0 and 0.5 (points of the statistics
grid). Like with like, all timed alternately call by call at the same thread count (ganserve.benchmarks.timing):
the full path (seeds -> latents -> generator -> uint8: the release's truncated_noise_sample and one-hot against
ganserve's plan and render) and the forward (each module's, ganserve's outside the sampling core's batch-invariant
mode, as the official one runs; truncation a float for the official module, a per-row tensor for ganserve's), with
ganserve's ONNX graph beside the eager forwards.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import torch

from ganserve.benchmarks.timing import command_line, compare, set_threads
from ganserve.images import to_uint8

HF_128_LAYERS = [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8], [True, 8, 4],
                 [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]]  # fmt: skip
# biggan-deep-256: one more (up, 8 -> 8) pair before the 8 -> 4 stage (the release's conversion script's list).
HF_256_LAYERS = [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8], [True, 8, 8],
                 [False, 8, 8], [True, 8, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]]  # fmt: skip
CONFIGS = {
    "256": dict(resolution=256, img_channels=3, c_dim=1000, z_dim=128, embed_dim=128, channel_width=128,
                layers=HF_256_LAYERS, attention_layer_position=8, deep=True, n_stats=51, eps=1e-4),
    "128": dict(resolution=128, img_channels=3, c_dim=1000, z_dim=128, embed_dim=128, channel_width=128,
                layers=HF_128_LAYERS, attention_layer_position=8, deep=True, n_stats=51, eps=1e-4),
    "small": dict(resolution=32, img_channels=3, c_dim=10, z_dim=128, embed_dim=128, channel_width=16,
                  layers=[[False, 16, 16], [True, 16, 8], [False, 8, 8], [True, 8, 4], [False, 4, 2], [True, 2, 1]],
                  attention_layer_position=4, deep=True, n_stats=51, eps=1e-4),
}  # fmt: skip


def official_module(reference: str | Path) -> types.ModuleType:
    """pytorch_pretrained_biggan.model from a checkout, without its package __init__ (boto3, nltk downloads)."""
    root = Path(reference) / "pytorch_pretrained_biggan"
    if not (root / "model.py").is_file():
        raise SystemExit(f"{reference}: no pytorch_pretrained_biggan/model.py")
    pkg = types.ModuleType("pytorch_pretrained_biggan")
    pkg.__path__ = [str(root)]
    sys.modules["pytorch_pretrained_biggan"] = pkg
    stub = types.ModuleType("pytorch_pretrained_biggan.file_utils")
    stub.cached_path = None
    sys.modules["pytorch_pretrained_biggan.file_utils"] = stub
    return importlib.import_module("pytorch_pretrained_biggan.model")


def build_pair(reference: str | Path, config: dict, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ganserve's deep BigGAN, the official BigGAN) at one config, holding the same weights."""
    from ganserve.models.biggan import BigGANConfig, BigGANGenerator
    from ganserve.models.layers import ConditionalBatchNorm

    torch.manual_seed(seed)
    ours = BigGANGenerator(BigGANConfig(**config)).eval()
    with torch.no_grad():
        for m in ours.modules():
            if isinstance(m, ConditionalBatchNorm):  # stand-in standing statistics, different per truncation
                m.running_means.normal_(0, 0.2)
                m.running_vars.uniform_(0.5, 1.5)
            if hasattr(m, "gamma"):
                m.gamma.fill_(0.3)
    hf = official_module(reference)
    cfg = hf.BigGANConfig(output_dim=config["resolution"], z_dim=config["z_dim"], class_embed_dim=config["embed_dim"],
                          channel_width=config["channel_width"], num_classes=config["c_dim"],
                          layers=[tuple(e) for e in config["layers"]],
                          attention_layer_position=config["attention_layer_position"], eps=config["eps"],
                          n_stats=config["n_stats"])  # fmt: skip
    official = hf.BigGAN(cfg).eval()
    official.load_state_dict(ours.state_dict(), strict=True)  # the name mapping is the identity
    return ours.requires_grad_(False), official.requires_grad_(False)


def inputs(n: int, config: dict, psi: float, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([n, config["z_dim"]], generator=gen).clamp(-2, 2) * psi
    cv = torch.nn.functional.one_hot(torch.randint(0, config["c_dim"], [n], generator=gen), config["c_dim"]).float()
    return z, cv


PROG = "python3 -m ganserve.benchmarks.biggan_reference_bench"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--reference", required=True, help="a pytorch-pretrained-BigGAN checkout")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small",
                   help="small: 32 px; 128 / 256: biggan-deep-128's / -256's layer lists")  # fmt: skip
    p.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per batch size (one call of each per round)")
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads, both sides")
    p.add_argument("--psi", type=float, default=0.5, help="truncation of the timed calls")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    return p


def official_full_path(hf, utils, seeds: list[int], config: dict, psi: float, class_id: int) -> np.ndarray:
    """The release's path for a batch: truncated_noise_sample (scipy, seeded), a one-hot class, BigGAN(z, c, psi),
    then the same uint8 rounding as ours (its convert_to_images makes PIL images; arrays are compared here)."""
    z = torch.from_numpy(np.concatenate([utils.truncated_noise_sample(1, config["z_dim"], psi, s) for s in seeds]))
    cv = torch.zeros([len(seeds), config["c_dim"]])
    cv[:, class_id] = 1
    return to_uint8(hf(z, cv, psi))


def bench_rows(ours, official, runner, utils, config: dict, batch_sizes: list[int], psi: float, repeats: int):
    """Per batch: full path against full path (seed -> uint8) and forward against forward (eager, and our ONNX graph
    against the official eager), all five timed alternately; paired speed-ups with their spread."""
    from ganserve.sampling import plan, render

    rows = []
    for n in batch_sizes:
        seeds = list(range(n))
        z, cv = inputs(n, config, psi)
        t = torch.full([n], psi)
        fns = {
            "official_full": functools.partial(official_full_path, official, utils, seeds, config, psi, 0),
            "full": lambda seeds=seeds, n=n: render(
                ours, [plan(ours, {"seeds": seeds, "class": 0, "truncation_psi": psi}, max_images=max(n, 64))],
                batch_size=n),
            "official_eager": functools.partial(official, z, cv, psi),
            "eager": functools.partial(ours, z, cv, t),
            "onnx": functools.partial(runner, z, cv, t),
        }  # fmt: skip
        c = compare(fns, repeats, baseline="official_full")
        row: dict = {"batch": n, **{f"{k}_images_per_s": round(n / c.median(k), 2) for k in fns}}
        for name, over in (("full", "official_full"), ("eager", "official_eager"), ("onnx", "official_eager"),
                           ("onnx", "eager")):  # fmt: skip
            sp = c.speedup(name, over=over)
            row[f"{name}_vs_{over}"] = {"median": round(sp.median, 3), "q1": round(sp.q1, 3), "q3": round(sp.q3, 3)}
        rows.append(row)
    return rows


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not (Path(args.reference) / "pytorch_pretrained_biggan" / "model.py").is_file():
        print(f"{PROG}: error: --reference {args.reference}: not a pytorch-pretrained-BigGAN checkout "
              "(no pytorch_pretrained_biggan/model.py)", file=sys.stderr)  # fmt: skip
        return 2
    warnings.simplefilter("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    set_threads(args.threads)
    import onnxruntime as ort

    from ganserve.export import export_graphs
    from ganserve.export.onnx import OnnxRunner

    config = CONFIGS[args.config]
    ours, official = build_pair(args.reference, config)
    utils = importlib.import_module("pytorch_pretrained_biggan.utils")
    parity = {}
    for psi in (1.0, 0.5):
        z, cv = inputs(4, config, psi)
        parity[str(psi)] = float((ours(z, cv, torch.full([4], psi)) - official(z, cv, psi)).abs().max())
    with tempfile.TemporaryDirectory() as tmp:
        ours.name = f"biggan-deep-{args.config}"
        result = export_graphs(ours, "onnx", Path(tmp) / "onnx")
        runner = OnnxRunner(result.path / "generator.onnx", threads=args.threads)
        sizes = [int(b) for b in args.batch_sizes.split(",")]
        rows = bench_rows(ours, official, runner, utils, config, sizes, args.psi, args.repeats)
    info = {"command": command_line(PROG, argv), "config": args.config, "resolution": config["resolution"],
            "parameters_m": round(sum(t.numel() for t in ours.parameters()) / 1e6, 2), "threads": args.threads,
            "onnxruntime": ort.__version__, "torch": torch.__version__, "rounds": args.repeats,
            "eager_max_abs_diff_by_truncation": parity, "onnx_parity": result.parity["generator"],
            "rows": rows}  # fmt: skip
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"$ {info['command']}")
    print(f"parity ganserve eager vs official eager, max abs diff by truncation: {parity}; onnx parity "
          f"{info['onnx_parity']}")  # fmt: skip
    print(f"config {args.config} ({info['parameters_m']} M parameters), threads {args.threads} (torch, onnxruntime), "
          f"onnxruntime {ort.__version__}, torch {torch.__version__}; images/s, paired speed-ups: median [IQR] of "
          f"{args.repeats} alternated rounds")  # fmt: skip
    for r in rows:
        print(
            f"batch {r['batch']:>2}: full path: official {r['official_full_images_per_s']:8.2f} | ganserve "
            f"{r['full_images_per_s']:8.2f} ({_fmt(r['full_vs_official_full'])}) || forward: official eager "
            f"{r['official_eager_images_per_s']:8.2f} | ganserve eager {r['eager_images_per_s']:8.2f} "
            f"({_fmt(r['eager_vs_official_eager'])}) | ganserve onnx {r['onnx_images_per_s']:8.2f} "
            f"({_fmt(r['onnx_vs_official_eager'])} official eager, {_fmt(r['onnx_vs_eager'])} ours)",
            flush=True,
        )
    return 0


def _fmt(s: dict) -> str:
    return f"{s['median']:.2f}x [{s['q1']:.2f}-{s['q3']:.2f}]"


if __name__ == "__main__":
    sys.exit(main())
