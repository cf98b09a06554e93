"""Measurements of the VQ families (the numbers in checkpoints/README.md), each a subcommand:

    python3 -m ganserve.benchmarks.vq quality   --model vqgan-fashion-32      # PSNR, codebook usage, prior NLL
    python3 -m ganserve.benchmarks.vq prior     --model vqgan-fashion-32      # tokens/s with and without the KV cache
    python3 -m ganserve.benchmarks.vq reference --model vqgan-fashion-32 --reference /path/to/taming-transformers

``quality``: reconstruction PSNR on Fashion-MNIST's 10,000 *test* images (through the sampling core's uint8 rounding,
padded to 32 px as in training), codebook usage over those images' codes (perplexity = exp(entropy) of the code
histogram, and the share of codes used at least once), and the prior's negative log-likelihood of the test images'
codes given their labels (nats per code, and bits per code).

``reference``: CompVis/taming-transformers' VQModel built at the same config from a checkout of it (never vendored),
our first stage's weights loaded into it unchanged (the names match 1:1), outputs compared, then encode (image ->
codes) and decode (codes -> image) images/s side by side in one process: the official eager, ganserve eager and
ganserve ONNX (onnxruntime), timed alternately call by call at the same thread count (``--threads``, torch and
onnxruntime alike), at batch 1, 8 and 32; then the prior's sampling loop against taming's minGPT (our prior's weights)
and its ``sample_with_past`` at batch 8. The checkout's imports of pytorch_lightning, einops, transformers and its
``main`` module are met by a minimal shim written to a temporary folder at run time (nothing of it is kept).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy as np
import torch

from ganserve.benchmarks.timing import command_line, compare, set_threads


def _test_set(resolution: int):
    from ganserve.data import load_fashion_mnist

    return load_fashion_mnist(resolution, split="test")


@torch.no_grad()
def quality(model, batch_size: int = 250, limit: int | None = None) -> dict:
    from ganserve.images import to_uint8
    from ganserve.models.layers import batch_invariant, codebook_usage

    data = _test_set(int(model.config.resolution))
    n = len(data) if limit is None else min(limit, len(data))
    mse_sum, codes_all = 0.0, []
    nll_sum, tokens = 0.0, 0
    prior = model.prior
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        x = data.batch(idx)
        with batch_invariant():
            codes = model.encode_codes(x)
            rec = to_uint8(model.decode_codes(codes).clamp(-1, 1)).astype(np.float64)
        real = data.images[idx].permute(0, 2, 3, 1).numpy().astype(np.float64)
        mse_sum += ((rec - real) ** 2).mean(axis=(1, 2, 3)).sum()
        codes_all.append(codes.reshape(len(idx), -1))
        flat = codes.reshape(len(idx), -1)
        labels = data.labels[idx] if prior.config.c_dim else None
        nll_sum += float(prior.loss(flat, labels)) * flat.numel()
        tokens += flat.numel()
    codes = torch.cat(codes_all)
    perplexity, used = codebook_usage(codes, int(model.num_codes))
    mse = mse_sum / n
    return {
        "images": n,
        "psnr_db": round(10 * math.log10(255.0**2 / mse), 2),
        "mean_psnr_db_note": "PSNR of the mean squared error over all test images (uint8 pixels)",
        "codebook_size": int(model.num_codes),
        "codes_used_pct": round(100 * used, 1),
        "perplexity": round(perplexity, 1),
        "prior_nll_nats_per_code": round(nll_sum / tokens, 4),
        "prior_nll_bits_per_code": round(nll_sum / tokens / math.log(2), 4),
    }


@torch.no_grad()
def prior_speed(model, batch_sizes=(1, 8, 32), repeats: int = 3) -> list[dict]:
    from ganserve.models.layers import batch_invariant
    from ganserve.models.transformer import sample_codes, sample_codes_uncached, uniforms_for_seed

    prior = model.prior
    h, w = model.code_shape
    length = h * w
    rows = []
    for n in batch_sizes:
        classes = torch.arange(n) % max(prior.config.c_dim, 1) if prior.config.c_dim else None
        start = model.start_tokens(classes, n)
        u = torch.stack([uniforms_for_seed(s, length) for s in range(n)])
        t, k, p = torch.ones(n), torch.zeros(n, dtype=torch.long), torch.ones(n)

        def cached_run(n=n, start=start, u=u, t=t, k=k, p=p):
            return sample_codes(model.step, model.empty_cache(n), start, u, t, k, p, int(model.num_codes), prior=prior)

        def uncached_run(start=start, u=u, t=t, k=k, p=p):
            return sample_codes_uncached(prior, start, u, t, k, p)

        with batch_invariant():
            c = compare({"uncached": uncached_run, "cached": cached_run}, repeats)
            same = torch.equal(cached_run(), uncached_run())
        rows.append({"batch": n, "cached_tokens_s": round(n * length / c.median("cached"), 1),
                     "uncached_tokens_s": round(n * length / c.median("uncached"), 1),
                     "speedup": _spread(c.speedup("cached")), "same_codes": same})  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# taming-transformers' VQModel, side by side


SHIM = {
    "pytorch_lightning/__init__.py": "import torch\nLightningModule = torch.nn.Module\n",
    "einops/__init__.py": textwrap.dedent('''
        def rearrange(x, pattern):
            """The three patterns taming's VectorQuantizer2 uses."""
            p = pattern.replace(" ", "")
            if p == "bchw->bhwc":
                return x.permute(0, 2, 3, 1)
            if p == "bhwc->bchw":
                return x.permute(0, 3, 1, 2)
            if p == "nd->dn":
                return x.t()
            raise NotImplementedError(pattern)
    '''),
    "transformers/__init__.py": textwrap.dedent("""
        def top_k_top_p_filtering(logits, top_k=0, top_p=1.0, **kwargs):
            raise NotImplementedError("the bench samples without top-k / top-p")
    """),
    "main.py": textwrap.dedent("""
        import importlib

        def instantiate_from_config(config):
            module, cls = config["target"].rsplit(".", 1)
            return getattr(importlib.import_module(module), cls)(**config.get("params", dict()))
    """),
}


def _import_path(reference: str) -> None:
    """The checkout and a temporary shim folder (its few imports we do not install) first on sys.path, once."""
    root = str(Path(reference).resolve())
    if root in sys.path:
        return
    shim = Path(tempfile.mkdtemp(prefix="taming-shim-"))
    for name, text in SHIM.items():
        (shim / name).parent.mkdir(parents=True, exist_ok=True)
        (shim / name).write_text(text)
    sys.path[:0] = [str(shim), root]


def official_gpt(reference: str, prior):
    """taming's minGPT at our prior's config holding our prior's weights (names match 1:1). Its head covers the whole
    vocabulary; ours only the codes: the class-token rows of its head are zero (their logits 0, never our codes')."""
    _import_path(reference)
    from taming.modules.transformer.mingpt import GPT

    cfg = prior.config
    gpt = GPT(cfg.vocab_size, cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd).eval()
    state = dict(prior.state_dict())
    head = torch.zeros(cfg.vocab_size, cfg.n_embd)
    head[: cfg.num_codes] = state["head.weight"]
    state["head.weight"] = head
    missing, unexpected = gpt.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("attn.mask")]:
        raise SystemExit(f"names differ: missing {missing}, unexpected {unexpected}")
    return gpt.requires_grad_(False)


@torch.no_grad()
def prior_reference(model, reference: str, batch_sizes=(8,), repeats: int = 3) -> dict:
    """The prior's sampling loop (KV cache) against taming's sample_with_past (its cached loop), whole code grids,
    temperature 1, no top-k / top-p: ours as the sampling core runs it (batch-invariant) and plain, alternated."""
    from ganserve.models.layers import batch_invariant
    from ganserve.models.transformer import sample_codes, uniforms_for_seed

    _import_path(reference)
    from taming.modules.transformer.mingpt import sample_with_past

    prior = model.prior
    gpt = official_gpt(reference, prior)
    length = model.code_shape[0] * model.code_shape[1]
    num_codes = int(model.num_codes)
    out: dict = {"rounds": repeats, "rows": []}
    for n in batch_sizes:
        classes = torch.arange(n) % prior.config.c_dim if prior.config.c_dim else None
        start = model.start_tokens(classes, n)
        u = torch.stack([uniforms_for_seed(s, length) for s in range(n)])
        t, k, p = torch.ones(n), torch.zeros(n, dtype=torch.long), torch.ones(n)

        def ours(n=n, start=start, u=u, t=t, k=k, p=p):
            return sample_codes(model.step, model.empty_cache(n), start, u, t, k, p, num_codes, prior=prior)

        def core(ours=ours):
            with batch_invariant():
                return ours()

        codes = ours()
        tokens = torch.cat([start[:, None].long(), codes[:, :-1]], dim=1)
        diff = (prior(tokens) - gpt(tokens)[0][..., :num_codes]).abs().max()
        calls = {"official": lambda start=start: sample_with_past(start[:, None].long(), gpt, steps=length),
                 "core": core, "eager": ours}  # fmt: skip
        c = compare(calls, repeats, baseline="official")
        out["rows"].append({"batch": n, "logits_max_abs_diff": float(diff),
                            **{f"{m}_tokens_per_s": round(n * length / c.median(m), 1) for m in calls},
                            "core_vs_official": _spread(c.speedup("core")),
                            "eager_vs_official": _spread(c.speedup("eager"))})  # fmt: skip
    return out


def official_vqmodel(reference: str, first_stage):
    """taming's VQModel at our first stage's config, our weights loaded by name: every tensor of theirs but the loss
    module's must come from ours."""
    cfg = first_stage.config
    if cfg.norm_groups != 32:
        raise SystemExit(f"taming's GroupNorm always has 32 groups; this model has {cfg.norm_groups}")
    _import_path(reference)
    from taming.models.vqgan import VQModel

    ddconfig = dict(double_z=False, z_channels=cfg.z_channels, resolution=cfg.resolution, in_channels=cfg.img_channels,
                    out_ch=cfg.img_channels, ch=cfg.ch, ch_mult=list(cfg.ch_mult), num_res_blocks=cfg.num_res_blocks,
                    attn_resolutions=list(cfg.attn_resolutions), dropout=0.0)  # fmt: skip
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the z shape
        ref = VQModel(ddconfig, {"target": "torch.nn.Identity"}, n_embed=cfg.n_embed, embed_dim=cfg.embed_dim,
                      sane_index_shape=True)  # fmt: skip
    # An EMA codebook's running statistics (training state) have no place in VectorQuantizer2; its codes do.
    ema_state = ("quantize.embedding.cluster_size", "quantize.embedding.embed_avg")
    state = {k: v for k, v in first_stage.state_dict().items() if k not in ema_state}
    missing, unexpected = ref.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("loss.")]:
        raise SystemExit(f"names differ: missing {missing}, unexpected {unexpected}")
    return ref.eval()


@torch.no_grad()
def reference_bench(model, reference: str, batch_sizes=(1, 8, 32), repeats: int = 10, threads: int = 1) -> dict:
    """Encode and decode, each a trio (official eager, ganserve eager, ganserve ONNX at the same thread count) timed
    alternately call by call; paired speed-ups over the official with their spread."""
    from ganserve.export.cache import load_or_export

    fs = model.first_stage
    ref = official_vqmodel(reference, fs)
    onnx = load_or_export("onnx", model.checkpoint_path, threads=threads)
    data = _test_set(int(model.config.resolution))
    x = data.batch(torch.arange(max(64, *batch_sizes)))
    codes = fs.encode_codes(x)
    _, _, (_, _, ref_codes) = ref.encode(x)
    dec, ref_dec = fs.decode_codes(codes), _official_decode(ref, codes, cfg_dim(fs))
    out = {"codes_equal": bool(torch.equal(codes, ref_codes.reshape(codes.shape))),
           "decode_max_abs_diff": float((dec - ref_dec).abs().max()), "threads": torch.get_num_threads(),
           "onnx_threads": threads, "rounds": repeats, "rows": []}  # fmt: skip
    for n in batch_sizes:
        xb, cb = x[:n].contiguous(), codes[:n].contiguous()
        row: dict = {"batch": n}
        for what, calls in (
            ("encode", {"official": functools.partial(ref.encode, xb), "eager": functools.partial(fs.encode_codes, xb),
                        "onnx": functools.partial(onnx.encode_codes, xb)}),
            ("decode", {"official": functools.partial(_official_decode, ref, cb, cfg_dim(fs)),
                        "eager": functools.partial(fs.decode_codes, cb),
                        "onnx": functools.partial(onnx.decode_codes, cb)}),
        ):  # fmt: skip
            c = compare(calls, repeats, baseline="official")
            for k in calls:
                row[f"{what}_{k}_images_per_s"] = round(n / c.median(k), 1)
            for k in ("eager", "onnx"):
                row[f"{what}_{k}_vs_official"] = _spread(c.speedup(k))
            row[f"{what}_onnx_vs_eager"] = _spread(c.speedup("onnx", over="eager"))
        out["rows"].append(row)
    return out


def _spread(s) -> dict:
    return {"median": round(s.median, 3), "q1": round(s.q1, 3), "q3": round(s.q3, 3)}


def _official_decode(ref, codes: torch.Tensor, dim: int) -> torch.Tensor:
    """taming's codes -> image path: get_codebook_entry (b, h, w, c) then decode."""
    return ref.decode(ref.quantize.get_codebook_entry(codes.reshape(-1), [codes.shape[0], *codes.shape[1:], dim]))


def cfg_dim(first_stage) -> int:
    return int(first_stage.config.embed_dim)


PROG = "python3 -m ganserve.benchmarks.vq"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("what", choices=["quality", "prior", "reference"], help="which measurement")
    p.add_argument("--model", default="vqgan-fashion-32", help="bundled model name or checkpoint path")
    p.add_argument("--reference", default=None, help="reference: a taming-transformers checkout (its taming/)")
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads, both sides")
    p.add_argument("--repeats", type=int, default=10, help="timed rounds (prior: a third of them)")
    p.add_argument("--batch-sizes", default="1,8,32", help="reference / prior: comma-separated batch sizes")
    p.add_argument("--prior-batch-sizes", default="8", help="reference: batch sizes of the prior against taming's "
                   "sampling loop (empty: skip)")  # fmt: skip
    p.add_argument("--limit", type=int, default=None, help="quality: only the first N test images")
    args = p.parse_args(argv)
    if args.what == "reference":
        if not args.reference:
            p.error("reference needs --reference PATH (a taming-transformers checkout)")
        if not (Path(args.reference) / "taming" / "models" / "vqgan.py").is_file():
            p.error(f"--reference {args.reference}: not a taming-transformers checkout (no taming/models/vqgan.py)")
    warnings.simplefilter("ignore")
    set_threads(args.threads)
    import json

    import ganserve

    model = ganserve.load(args.model)
    sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    if args.what == "quality":
        result = quality(model, limit=args.limit)
    elif args.what == "prior":
        result = prior_speed(model, batch_sizes=sizes, repeats=max(1, args.repeats // 3))
    else:
        result = reference_bench(model, args.reference, batch_sizes=sizes, repeats=args.repeats, threads=args.threads)
        prior_sizes = tuple(int(b) for b in args.prior_batch_sizes.split(",") if b)
        if prior_sizes:
            result["prior"] = prior_reference(model, args.reference, prior_sizes, max(1, args.repeats // 3))
    print(json.dumps({"command": command_line(PROG, argv), "model": args.model, "threads": torch.get_num_threads(),
                      args.what: result}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
