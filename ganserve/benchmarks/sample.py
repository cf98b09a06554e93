"""ganserve bench sample: generator images/s at several batch sizes and peak memory, optionally beside NVlabs'
stylegan2-ada-pytorch generator built at the same config with the same weights (``--reference PATH`` to a local
checkout; it is only imported, never vendored)."""

from __future__ import annotations

import argparse
import json
import resource
import sys

import torch

from ganserve.backends import BACKENDS, load_backend
from ganserve.benchmarks.timing import interleaved_median_seconds, median_seconds
from ganserve.precision import PRECISIONS
from ganserve.sampling import describe, plan, render


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="images/s of the sampling core at batch 1, 8, 32 and peak memory")
    p.add_argument("--model", required=True, help="model name or checkpoint path")
    p.add_argument("--backend", default="eager",
                   help=f"one of: {', '.join(sorted(BACKENDS))} (as registered), or several comma-separated "
                   "(e.g. eager,onnx): timed round-robin in one process, with each one's speed-up over the first")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per batch size (median reported)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--request", default="{}", help='extra request fields as JSON, e.g. \'{"truncation_psi": 0.7}\'')
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--reference", default=None, help="path to a stylegan2-ada-pytorch checkout to time beside ours")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reference_generator(path: str, model: torch.nn.Module) -> torch.nn.Module:
    """Build the official Generator at our config and load our weights (the state-dict names match)."""
    sys.path.insert(0, path)
    from training.networks import Generator  # type: ignore[import-not-found]

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


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    if not backends or len(set(backends)) != len(backends):
        raise ValueError(f"--backend: one or more distinct backends, got {args.backend!r}")
    if len(backends) > 1 and args.reference:
        raise ValueError("--reference times one backend: give a single --backend with it")
    if len(backends) > 1:
        return _run_side_by_side(args, backends)
    model = _load(args.backend, args)
    ref = _reference_generator(args.reference, model) if args.reference else None
    extra = json.loads(args.request)
    if describe(model)["classes"]:
        extra.setdefault("class", 0)
    rows = []
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        p = plan(model, {"seeds": list(range(bs)), **extra}, max_images=max(bs, 64))
        rss0 = _peak_rss_mib()
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t = median_seconds(lambda p=p, bs=bs: render(model, [p], batch_size=bs), args.repeats, args.device)
        row = {"batch": bs, "images_per_s": round(bs / t, 2), "ms_per_batch": round(t * 1000, 2)}
        if args.device.startswith("cuda"):
            row["peak_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        else:
            row["peak_rss_mib"] = round(max(_peak_rss_mib(), rss0), 1)
        if ref is not None and hasattr(model, "state_dict"):
            ws = p.rows["ws"].to(args.device)
            ours = model.synthesis(ws, noise_mode="const", fused=False)
            ours_fn = lambda ws=ws: model.synthesis(ws, noise_mode="const", fused=False)  # noqa: E731
            row["synthesis_images_per_s"] = round(bs / median_seconds(ours_fn, args.repeats, args.device), 2)
            theirs = ref.synthesis(ws, noise_mode="const", force_fp32=True)
            ref_fn = lambda ws=ws: ref.synthesis(ws, noise_mode="const", force_fp32=True)  # noqa: E731
            t_ref = median_seconds(ref_fn, args.repeats, args.device)
            row["reference_images_per_s"] = round(bs / t_ref, 2)
            row["speed_vs_reference"] = round(t_ref / t, 3)
            row["max_abs_diff_vs_reference"] = float((ours - theirs).abs().max())
        rows.append(row)
    info = {"model": getattr(model, "name", args.model), "backend": args.backend, "device": args.device,
            "precision": args.precision, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "rows": rows}  # fmt: skip
    if args.json:
        print(json.dumps(info))
        return 0
    _print_table(info, rows)
    return 0


def _load(backend: str, args: argparse.Namespace) -> torch.nn.Module:
    # Graph backends get the same thread count as torch, or the comparison is of thread counts.
    threads = {"threads": args.threads} if args.threads and backend != "eager" else {}
    return load_backend(backend, args.model, device=args.device, precision=args.precision, **threads)


def _run_side_by_side(args: argparse.Namespace, backends: list[str]) -> int:
    """Several backends on the same requests, timed round-robin; speed-ups against the first one."""
    models = {b: _load(b, args) for b in backends}
    first = models[backends[0]]
    extra = json.loads(args.request)
    if describe(first)["classes"]:
        extra.setdefault("class", 0)
    rows = []
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        plans = {b: plan(m, {"seeds": list(range(bs)), **extra}, max_images=max(bs, 64)) for b, m in models.items()}
        fns = {b: (lambda m=m, p=plans[b], bs=bs: render(m, [p], batch_size=bs)) for b, m in models.items()}
        t = interleaved_median_seconds(fns, args.repeats, args.device)
        row: dict[str, float | int] = {"batch": bs}
        for b in backends:
            row[f"{b}_images_per_s"] = round(bs / t[b], 2)
        for b in backends[1:]:
            row[f"{b}_vs_{backends[0]}"] = round(t[backends[0]] / t[b], 3)
        rows.append(row)
    info = {"model": getattr(first, "name", args.model), "backend": ",".join(backends), "device": args.device,
            "precision": args.precision, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "timing": "round-robin, median", "rows": rows}  # fmt: skip
    if args.json:
        print(json.dumps(info))
    else:
        _print_table(info, rows)
    return 0


def _print_table(info: dict, rows: list[dict]) -> None:
    print(f"model {info['model']}  backend {info['backend']}  device {info['device']}  threads {info['threads']}")
    keys = list(rows[0])
    print("  ".join(f"{k:>26}" for k in keys))
    for r in rows:
        print("  ".join(f"{r[k]!s:>26}" for k in keys))
