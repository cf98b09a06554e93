"""StyleGAN2 synthesis graphs side by side in one process, CPU: ganserve's ONNX synthesis against NVlabs'
stylegan2-ada-pytorch synthesis (same config and weights, activation-scaling modconv) exported with the same dynamo
exporter and run by onnxruntime at the same thread count; each one's eager synthesis beside it.

    python3 -m ganserve.benchmarks.reference_bench --reference /path/to/stylegan2-ada-pytorch
        [--model NAME] [--threads 1]

Like with like: graph against graph and eager against eager, all four timed alternately call by call (see
ganserve.benchmarks.timing); speed-ups are medians of per-round paired ratios with their spread. The official code is
only imported from the given checkout, never vendored. Its graph has const noise baked in; ganserve's takes one noise
input per layer (what the sampling core feeds), so it moves a little more data per call.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from ganserve.benchmarks.timing import Comparison, command_line, compare, ort_session_options, set_threads

PROG = "python3 -m ganserve.benchmarks.reference_bench"


class _OfficialSynthesis(torch.nn.Module):
    def __init__(self, G: torch.nn.Module) -> None:
        super().__init__()
        self.G = G

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode="const", force_fp32=True, fused_modconv=False)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--reference", required=True, help="a stylegan2-ada-pytorch checkout (its training/networks.py)")
    p.add_argument("--model", default="stylegan2-fashion-32", help="bundled model name or checkpoint path")
    p.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes")
    p.add_argument("--repeats", type=int, default=15, help="timed rounds per batch size (one call of each per round)")
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads, both sides")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    return p


def check_reference(path: str, flag: str = "--reference") -> Path:
    """The checkout must hold training/networks.py; otherwise one line naming the flag, exit status 2."""
    root = Path(path)
    if not (root / "training" / "networks.py").is_file():
        print(f"{PROG}: error: {flag} {path}: not a stylegan2-ada-pytorch checkout (no training/networks.py)",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    return root


def official_graph(ref: torch.nn.Module, ws: torch.Tensor, threads: int, folder: Path):
    """The official synthesis exported by torch.onnx's dynamo exporter, as an onnxruntime session at ``threads``."""
    import onnxruntime as ort

    path = folder / "official_synthesis.onnx"
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(_OfficialSynthesis(ref).eval(), (ws,), dynamo=True, input_names=["ws"],
                                output_names=["img"], dynamic_shapes=({0: batch},), verbose=False)  # fmt: skip
    program.save(str(path))
    return ort.InferenceSession(str(path), ort_session_options(threads), providers=["CPUExecutionProvider"])


def bench_rows(G, ours, ref, official, batch_sizes: list[int], repeats: int) -> list[dict]:
    """One row per batch size: the four candidates timed alternately, with paired speed-ups like for like."""
    from ganserve.sampling import plan

    rows = []
    for n in batch_sizes:
        pl = plan(G, seeds=list(range(n)), truncation_psi=0.7, max_images=max(n, 64))
        ws = pl.rows["ws"].contiguous()
        noise = [pl.rows[f"noise{k}"].contiguous() for k in range(len(pl.rows) - 1)]
        c = compare(_candidates(G, ours, ref, official, ws, noise), repeats, baseline="official_onnx")
        rows.append(row_of(c, n))
    return rows


def _candidates(G, ours, ref, official, ws: torch.Tensor, noise: list[torch.Tensor]) -> dict:
    ws_np = ws.numpy()
    return {
        "official_onnx": lambda: official.run(None, {"ws": ws_np}),
        "onnx": lambda: ours.synthesis(ws, noise_mode="random", noise=noise),
        "official_eager": lambda: ref.synthesis(ws, noise_mode="const", force_fp32=True, fused_modconv=False),
        "eager": lambda: G.synthesis(ws, noise_mode="random", noise=noise, fused=False),
    }


def row_of(c: Comparison, n: int) -> dict:
    """images/s per candidate, and the three like-for-like paired speed-ups."""
    row: dict = {"batch": n, **{f"{k}_images_per_s": round(n / c.median(k), 2) for k in c.seconds}}
    for name, over in (("onnx", "official_onnx"), ("eager", "official_eager"), ("onnx", "eager")):
        s = c.speedup(name, over=over)
        row[f"{name}_vs_{over}"] = {"median": round(s.median, 3), "q1": round(s.q1, 3), "q3": round(s.q3, 3)}
    return row


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    root = check_reference(args.reference)
    set_threads(args.threads)
    warnings.simplefilter("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    import onnxruntime as ort

    import ganserve
    from ganserve.benchmarks.sample import reference_generator
    from ganserve.export.cache import load_or_export
    from ganserve.sampling import plan

    G = ganserve.load(args.model)
    ours = load_or_export("onnx", args.model, threads=args.threads)
    try:
        ref = reference_generator(str(root), G)
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    ws = plan(G, seeds=list(range(8)), truncation_psi=0.7).rows["ws"]
    with tempfile.TemporaryDirectory() as tmp:
        official = official_graph(ref, ws, args.threads, Path(tmp))
        parity = float((torch.from_numpy(official.run(None, {"ws": ws.numpy()})[0]) - ref.synthesis(
            ws, noise_mode="const", force_fp32=True, fused_modconv=False)).abs().max())  # fmt: skip
        rows = bench_rows(G, ours, ref, official, [int(b) for b in args.batch_sizes.split(",")], args.repeats)
    info = {"command": command_line(PROG, argv), "model": args.model, "threads": args.threads,
            "onnxruntime": ort.__version__, "torch": torch.__version__, "rounds": args.repeats,
            "official_graph_vs_official_eager_max_abs_diff": parity, "rows": rows}  # fmt: skip
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"$ {info['command']}")
    print(
        f"model {args.model}  threads {args.threads} (torch and onnxruntime)  onnxruntime {ort.__version__}  "
        f"torch {torch.__version__}; images/s, paired speed-ups: median [IQR] of {args.repeats} alternated rounds"
    )
    for r in rows:
        print(f"batch {r['batch']:>2}: onnx {r['onnx_images_per_s']:8.1f} | official onnx "
              f"{r['official_onnx_images_per_s']:8.1f} | ours/official graph {_fmt(r['onnx_vs_official_onnx'])} | "
              f"eager {r['eager_images_per_s']:7.1f} | official eager {r['official_eager_images_per_s']:7.1f} | "
              f"ours/official eager {_fmt(r['eager_vs_official_eager'])} | onnx/eager {_fmt(r['onnx_vs_eager'])}",
              flush=True)  # fmt: skip
    return 0


def _fmt(s: dict) -> str:
    return f"{s['median']:.2f}x [{s['q1']:.2f}-{s['q3']:.2f}]"


if __name__ == "__main__":
    sys.exit(main())
