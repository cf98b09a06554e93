"""ganserve bench sample: images/s of the whole sampling core (request -> uint8 images) at several batch sizes and
peak memory; several backends timed alternately; or, with ``--reference PATH`` (a local stylegan2-ada-pytorch
checkout, only imported, never vendored), NVlabs' generator at the same config with the same weights: its full path
(seed -> z -> G -> uint8, as its generate.py) against ours, and its synthesis against ours (labelled apart)."""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

import numpy as np
import torch

from ganserve.backends import backend_names, load_backend
from ganserve.benchmarks.timing import cli_command, compare, set_threads
from ganserve.precision import PRECISIONS
from ganserve.sampling import describe, plan, render

PROG = "ganserve bench sample"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="images/s of the sampling core at batch 1, 8, 32 and peak memory",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--model", required=True, help="model name or checkpoint path")
    p.add_argument(
        "--backend",
        default="eager",
        help=f"one of: {', '.join(backend_names())}, or several comma-separated "
        "(e.g. eager,onnx): timed alternately call by call, each one's paired speed-up over the first",
    )
    p.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per batch size (median and spread reported)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="eager compute precision")
    p.add_argument("--request", default="{}", help="extra request fields as JSON, e.g. '{\"truncation_psi\": 0.7}'")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads for torch and every graph backend alike; None: torch's count",
    )
    p.add_argument(
        "--reference",
        default=None,
        help="a stylegan2-ada-pytorch checkout: its full path (seed -> z -> G -> uint8, as generate.py) "
        "timed against ours (seed -> uint8), and synthesis against synthesis, alternately",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reference_generator(path: str, model: torch.nn.Module, flag: str = "--reference") -> torch.nn.Module:
    """Build the official Generator at our config and load our weights (the state-dict names match)."""
    if not (Path(path) / "training" / "networks.py").is_file():
        raise ValueError(f"{flag} {path}: not a stylegan2-ada-pytorch checkout (no training/networks.py)")
    if not hasattr(model, "synthesis") or not hasattr(model.config, "w_dim"):
        raise ValueError(f"{flag}: compares StyleGAN2 models only; {getattr(model, 'name', 'this model')} is not one")
    sys.path.insert(0, str(Path(path).resolve()))
    try:
        from training.networks import Generator  # type: ignore[import-not-found]
    except ImportError as e:
        raise ValueError(f"{flag} {path}: its training/networks.py does not import ({e})") from e

    cfg = model.config
    G = Generator(
        z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.resolution, img_channels=cfg.img_channels,
        mapping_kwargs={"num_layers": cfg.mapping_layers},
        synthesis_kwargs={
            "channel_base": cfg.channel_base, "channel_max": cfg.channel_max, "conv_clamp": cfg.conv_clamp,
        },
    ).eval()  # fmt: skip
    missing, unexpected = G.load_state_dict(model.state_dict(), strict=False)
    # Only the FIR filter buffers differ: ours are derived from the config and not stored.
    if unexpected or any(not k.endswith("resample_filter") for k in missing):
        raise ValueError(f"reference generator does not match: missing {missing}, unexpected {unexpected}")
    return G.requires_grad_(False)


def official_full_path(G: torch.nn.Module, seeds: list[int], psi: float, class_id: int | None) -> np.ndarray:
    """generate.py's path for a batch of seeds: z from each seed's RandomState, G(z, c), the same uint8 rounding."""
    z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, G.z_dim) for s in seeds])).float()
    c = torch.zeros([len(seeds), G.c_dim])
    if class_id is not None and G.c_dim:
        c[:, class_id] = 1
    img = G(z, c, truncation_psi=psi, noise_mode="const", force_fp32=True)
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    threads = set_threads(args.threads) if args.threads else torch.get_num_threads()
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    if not backends or len(set(backends)) != len(backends):
        raise ValueError(f"--backend: one or more distinct backends, got {args.backend!r}")
    if len(backends) > 1 and args.reference:
        raise ValueError("--reference times one backend: give a single --backend with it")
    try:
        extra = json.loads(args.request)
    except json.JSONDecodeError as e:
        raise ValueError(f"--request: not JSON ({e})") from e
    models = {b: _load(b, args, threads) for b in backends}
    first = models[backends[0]]
    ref = reference_generator(args.reference, first) if args.reference else None
    if describe(first)["classes"]:
        extra.setdefault("class", 0)
    rows = []
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        seeds = list(range(bs))
        fns = {b: _full_path(m, seeds, extra) for b, m in models.items()}
        row: dict = {"batch": bs}
        if ref is not None:
            row.update(_reference_candidates(first, ref, fns, seeds, extra, args))
        else:
            rss0 = _peak_rss_mib()
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            c = compare(fns, args.repeats, device=args.device)
            for b in backends:  # one backend: plain keys
                prefix = f"{b}_" if len(backends) > 1 else ""
                row[f"{prefix}images_per_s"] = round(bs / c.median(b), 2)
                row[f"{prefix}ms_per_batch"] = round(c.median(b) * 1000, 2)
            for b in backends[1:]:
                row[f"{b}_vs_{backends[0]}"] = _spread(c.speedup(b))
            if args.device.startswith("cuda"):
                row["peak_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            else:
                row["peak_rss_mib"] = round(max(_peak_rss_mib(), rss0), 1)
        rows.append(row)
    info = {"command": cli_command(args), "model": getattr(first, "name", args.model),
            "backend": ",".join(backends), "device": args.device, "precision": args.precision, "threads": threads,
            "torch": torch.__version__, "timing": f"alternated call by call, {args.repeats} rounds, median",
            "rows": rows}  # fmt: skip
    if args.json:
        print(json.dumps(info))
    else:
        _print_table(info, rows)
    return 0


def _full_path(model: torch.nn.Module, seeds: list[int], extra: dict):
    """Our whole sampling core for one request: validate and plan (latents from seeds), render, uint8."""
    n = len(seeds)
    return lambda: render(model, [plan(model, {"seeds": seeds, **extra}, max_images=max(n, 64))], batch_size=n)


def _reference_candidates(model, ref, fns: dict, seeds: list[int], extra: dict, args: argparse.Namespace) -> dict:
    """Full path against full path (seed -> uint8) and synthesis against synthesis (ws -> float image), all four
    timed alternately; paired speed-ups of ours over the official, and the synthesis outputs' max abs difference."""
    bs = len(seeds)
    psi = float(extra.get("truncation_psi", 1.0))
    class_id = extra.get("class") if isinstance(extra.get("class"), int) else None
    ws = plan(model, {"seeds": seeds, **extra}, max_images=max(bs, 64)).rows["ws"].to(args.device)
    (ours_full,) = fns.values()
    cands = {
        "official_full": lambda: official_full_path(ref, seeds, psi, class_id),
        "full": ours_full,
        "official_synthesis": lambda: ref.synthesis(ws, noise_mode="const", force_fp32=True),
        "synthesis": lambda: model.synthesis(ws, noise_mode="const", fused=False),
    }
    c = compare(cands, args.repeats, device=args.device, baseline="official_full")
    row = {f"{k}_images_per_s": round(bs / c.median(k), 2) for k in cands}
    row["full_vs_official_full"] = _spread(c.speedup("full", over="official_full"))
    row["synthesis_vs_official_synthesis"] = _spread(c.speedup("synthesis", over="official_synthesis"))
    diff = model.synthesis(ws, noise_mode="const", fused=False) - ref.synthesis(ws, noise_mode="const", force_fp32=True)
    row["synthesis_max_abs_diff"] = float(diff.abs().max())
    return row


def _spread(s) -> dict:
    return {"median": round(s.median, 3), "q1": round(s.q1, 3), "q3": round(s.q3, 3)}


def _load(backend: str, args: argparse.Namespace, threads: int) -> torch.nn.Module:
    # Graph backends get torch's thread count, or the comparison is of thread counts.
    options = {"threads": threads} if backend != "eager" else {}
    return load_backend(backend, args.model, device=args.device, precision=args.precision, **options)


def _print_table(info: dict, rows: list[dict]) -> None:
    print(f"$ {info['command']}")
    print(f"model {info['model']}  backend {info['backend']}  device {info['device']}  threads {info['threads']}  "
          f"({info['timing']}; speed-ups: median [IQR] of per-round paired ratios)")  # fmt: skip
    keys = list(rows[0])
    print("  ".join(f"{k:>26}" for k in keys))
    for r in rows:
        print("  ".join(f"{_cell(r[k]):>26}" for k in keys))


def _cell(v: object) -> str:
    if isinstance(v, dict):
        return f"{v['median']:.2f}x [{v['q1']:.2f}-{v['q3']:.2f}]"
    return str(v)
