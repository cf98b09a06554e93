"""Side by side in one process, CPU: eager ganserve, ganserve's ONNX synthesis, and NVlabs' stylegan2-ada-pytorch
synthesis (same config and weights, activation-scaling modconv) exported with the same dynamo exporter.

    python -m ganserve.export.reference_bench --reference /path/to/stylegan2-ada-pytorch [--model NAME]

The official code is only imported from the given checkout, never vendored. Its graph uses const noise baked in;
ganserve's takes one noise input per layer (what the sampling core feeds), so it moves a little more data per call.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path

import torch

from ganserve.benchmarks.timing import median_seconds


class _OfficialSynthesis(torch.nn.Module):
    def __init__(self, G: torch.nn.Module) -> None:
        super().__init__()
        self.G = G

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode="const", force_fp32=True, fused_modconv=False)


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, help="stylegan2-ada-pytorch checkout")
    p.add_argument("--model", default="stylegan2-fashion-32")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    import onnxruntime as ort

    import ganserve
    from ganserve.benchmarks.sample import _reference_generator
    from ganserve.export.cache import load_or_export
    from ganserve.sampling import plan

    G = ganserve.load(args.model)
    ours = load_or_export("onnx", args.model)
    ref = _reference_generator(args.reference, G)
    ws = plan(G, seeds=list(range(8)), truncation_psi=0.7).ws
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "official_synthesis.onnx"
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.onnx.export(_OfficialSynthesis(ref).eval(), (ws,), dynamo=True, input_names=["ws"],
                                    output_names=["img"], dynamic_shapes=({0: batch},), verbose=False)  # fmt: skip
        program.save(str(path))
        official = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    print(f"model {args.model}  threads {torch.get_num_threads()}  onnxruntime {ort.__version__}  (images/s)")
    for n in [int(b) for b in args.batch_sizes.split(",")]:
        pl = plan(G, seeds=list(range(n)), truncation_psi=0.7, max_images=max(n, 64))
        t = _times(G, ours, ref, official, pl.ws, [x.contiguous() for x in pl.noise], args.repeats)
        print(f"batch {n:>2}: eager {n / t[0]:7.1f} | onnx {n / t[1]:7.1f} ({t[0] / t[1]:.2f}x eager) | "
              f"official eager {n / t[2]:7.1f} | official onnx {n / t[3]:7.1f} ({t[2] / t[3]:.2f}x official eager)"
              f" | ours / official onnx {t[3] / t[1]:.2f}")  # fmt: skip


def _times(G, ours, ref, official, ws, noise, repeats: int) -> tuple[float, float, float, float]:
    """Median seconds per call: eager, ganserve onnx, official eager, official onnx."""
    return (
        median_seconds(lambda: G.synthesis(ws, noise_mode="random", noise=noise, fused=False), repeats),
        median_seconds(lambda: ours.synthesis(ws, noise_mode="random", noise=noise), repeats),
        median_seconds(lambda: ref.synthesis(ws, noise_mode="const", force_fp32=True, fused_modconv=False), repeats),
        median_seconds(lambda: official.run(None, {"ws": ws.numpy()}), repeats),
    )


if __name__ == "__main__":
    main()
