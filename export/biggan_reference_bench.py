"""BigGAN-deep side by side in one process, CPU: ganserve eager, ganserve's ONNX graph (onnxruntime), and
huggingface/pytorch-pretrained-BigGAN's BigGAN built at the same config with the same weights.

    python3 -m ganserve.export.biggan_reference_bench --reference /path/to/pytorch-pretrained-BigGAN [--config small]

The official code is only imported from the given checkout (its ``pytorch_pretrained_biggan/model.py`` and
``config.py``; the download helpers it imports are stubbed), never vendored. The weights are ganserve's: a
``deep=True`` BigGANGenerator at the official config (``--config 128`` / ``256``: biggan-deep-128's / -256's;
``small``: a 32 px, 3 channel, channel_width 16 version of it), randomly initialised with random standing statistics,
loaded into the official module through the name mapping (the identity: ganserve's deep names are the release's) with
strict=True. Before timing, both must agree on the same inputs at truncation 1.0 and 0.5 (points of the statistics
grid). Eager is each module's forward (ganserve's outside the sampling core's batch-invariant mode, as the official
one runs); truncation is a float for the official module and a per-row tensor for ganserve's.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tempfile
import types
import warnings
from pathlib import Path

import torch

from ganserve.benchmarks.timing import interleaved_median_seconds

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


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, help="pytorch-pretrained-BigGAN checkout")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--psi", type=float, default=0.5)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    from ganserve.export import export_graphs
    from ganserve.export.onnx import OnnxRunner

    config = CONFIGS[args.config]
    ours, official = build_pair(args.reference, config)
    for psi in (1.0, 0.5):
        z, cv = inputs(4, config, psi)
        diff = (ours(z, cv, torch.full([4], psi)) - official(z, cv, psi)).abs().max()
        print(f"parity ganserve eager vs official eager at truncation {psi}: max abs diff {float(diff):.2e}")
    with tempfile.TemporaryDirectory() as tmp:
        ours.name = f"biggan-deep-{args.config}"
        result = export_graphs(ours, "onnx", Path(tmp) / "onnx")
        runner = OnnxRunner(result.path / "generator.onnx", threads=args.threads)
        print(f"onnx parity (graph vs eager, batch 1/3/8): {result.parity['generator']}")
        params = sum(t.numel() for t in ours.parameters()) / 1e6
        print(f"config {args.config} ({params:.1f} M parameters), threads {args.threads}, onnxruntime "
              f"{ort.__version__}, torch {torch.__version__}; images/s, median of "
              f"{args.repeats} round-robin rounds")  # fmt: skip
        for n in [int(b) for b in args.batch_sizes.split(",")]:
            s_off, s_ours, s_onnx = _times(ours, official, runner, n, config, args.psi, args.repeats)
            print(f"batch {n:>2}: official eager {n / s_off:8.2f} | ganserve eager {n / s_ours:8.2f} "
                  f"({s_off / s_ours:.2f}x official) | ganserve onnx {n / s_onnx:8.2f} "
                  f"({s_off / s_onnx:.2f}x official eager)", flush=True)  # fmt: skip


def _times(ours, official, runner, n: int, config: dict, psi: float, repeats: int) -> tuple[float, float, float]:
    """Median seconds per call: official eager, ganserve eager, ganserve onnx."""
    z, cv = inputs(n, config, psi)
    t = torch.full([n], psi)
    # Round-robin, so a shared machine's load falls on the three alike.
    fns = {"official": lambda: official(z, cv, psi), "ours": lambda: ours(z, cv, t), "onnx": lambda: runner(z, cv, t)}
    m = interleaved_median_seconds(fns, repeats)
    return m["official"], m["ours"], m["onnx"]


if __name__ == "__main__":
    main()
