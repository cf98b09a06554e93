"""Compile the kernels for a GPU that is not here (default: Hopper, sm_90) and report what the compiler made of them.

``python -m ganserve.kernels.aot [--arch 90] [--out DIR]`` runs the ops' own launch code on *meta* tensors (no memory,
no GPU), with the launch replaced by Triton's ahead-of-time compile for the target, specialised exactly as a real
launch would be (argument types, 16-byte alignment, integers equal to 1). Per kernel variant it prints the registers
and spills (ptxas -v), shared memory, and the instructions that matter on Hopper: ``wgmma`` (warpgroup tensor-core
MMA; ``mma.sync`` is the older path), ``cp.async`` (asynchronous global->shared copies, the software pipeline),
``cp.async.bulk.tensor`` (TMA), 16-byte vector loads. ``--out`` keeps the PTX and TTGIR of each variant.

What it cannot say: how fast anything runs. That needs the GPU script (kernels/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch


@contextlib.contextmanager
def compiling_for(arch: int = 90) -> Iterator[list]:
    """Inside: every kernel launch of ganserve.kernels is compiled for sm_<arch> instead; yields the list of
    (kernel name, meta, CompiledKernel)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile, make_backend
    from triton.runtime.jit import create_function_from_signature

    from ganserve.kernels import modconv_triton

    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    compiled: list = []

    def run(kernel, grid, args, meta) -> None:
        binder = create_function_from_signature(kernel.signature, kernel.params, backend)
        bound_args, specialization, options = binder(*args, **meta)
        options, signature, constexprs, attrs = kernel._pack_args(backend, meta, bound_args, specialization, options)
        src = ASTSource(kernel, signature, constexprs, attrs)
        compiled.append((kernel.fn.__name__, meta, compile(src, target=target, options=options.__dict__)))

    previous = modconv_triton.run
    modconv_triton.run = run
    try:
        yield compiled
    finally:
        modconv_triton.run = previous


def ptxas_report(ptx: str, arch: int) -> dict:
    """Registers, spills and stack frame from ptxas -v (the Triton wheel's own ptxas)."""
    from triton.backends.nvidia.compiler import get_ptxas

    suffix = "a" if arch >= 90 else ""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        proc = subprocess.run(
            [get_ptxas(arch).path, f"-arch=sm_{arch}{suffix}", "-v", str(src), "-o", str(Path(tmp) / "k.cubin")],
            capture_output=True, text=True,
        )  # fmt: skip
    text = proc.stdout + proc.stderr
    out = {}
    patterns = {
        "registers": r"Used (\d+) registers",
        "spill_stores": r"(\d+) bytes spill stores",
        "spill_loads": r"(\d+) bytes spill loads",
        "stack": r"(\d+) bytes stack frame",
    }
    for key, pattern in patterns.items():
        m = re.search(pattern, text)
        out[key] = int(m.group(1)) if m else None
    if proc.returncode:
        out["error"] = text[-500:]
    return out


def describe(name: str, meta: dict, kernel, arch: int) -> dict:
    ptx = kernel.asm["ptx"]
    row = {
        "kernel": name,
        "variant": {k: v for k, v in meta.items() if k.isupper() or k in ("num_warps", "num_stages")},
        "shared_bytes": kernel.metadata.shared,
        "wgmma": len(re.findall(r"wgmma\.mma_async", ptx)),
        "mma.sync": len(re.findall(r"\bmma\.sync", ptx)),
        "cp.async": len(re.findall(r"cp\.async\.(?:ca|cg)", ptx)),
        "tma": len(re.findall(r"cp\.async\.bulk\.tensor", ptx)),
        "ld.v4": len(re.findall(r"ld\.global(?:\.\w+)*\.v4", ptx)),
        "fma": len(re.findall(r"\bfma\.rn\.f32", ptx)),
    }
    row.update(ptxas_report(ptx, arch))
    return row


def variants(arch: int) -> Iterator[tuple[str, object]]:
    """(label, thunk) for the kernel variants that StyleGAN2 256 px and the VQ search launch (small CPU tensors:
    only the integer arguments reach the compiler, and the batch changes none of the specialisations)."""
    from ganserve.kernels import candidates, modconv_triton, vq_triton

    meta = torch.device("cpu")
    f = torch.ones(4, 4, device=meta) / 16

    def modconv(dtype, n, c_in, c_out, res, k, up, cfg):
        demod = k == 3
        c = candidates.ModConvCall(
            torch.empty(n, c_in, res, res, device=meta, dtype=dtype).contiguous(memory_format=torch.channels_last),
            torch.randn(c_out, c_in, k, k, device=meta), torch.empty(n, c_in, device=meta),
            torch.empty(res * up, res * up, device=meta) if demod else None, torch.empty(c_out, device=meta),
            f if up > 1 else None, demod, k // 2, up, "lrelu" if demod else "linear", math.sqrt(2) if demod else 1.0,
            256.0,
        )  # fmt: skip
        return lambda: modconv_triton.modulated_conv2d(*c, config=cfg)

    for dtype in (torch.float16, torch.float32):
        for cfg in modconv_triton.configs_for(32 * 64 * 64, 256, 256):
            yield f"modconv {dtype} 3x3 256->256 64px b32 {cfg.name}", modconv(dtype, 2, 256, 256, 64, 3, 1, cfg)
        yield f"modconv up2 {dtype} 512->256 32px", modconv(dtype, 2, 512, 256, 32, 3, 2, modconv_triton.CONFIGS[0])
        yield f"modconv toRGB {dtype} 64->3", modconv(dtype, 2, 64, 3, 256, 1, 1, modconv_triton.CONFIGS[-2])
        yield f"modconv 4x4 {dtype} 512->512 b8", modconv(dtype, 8, 512, 512, 4, 3, 1, modconv_triton.CONFIGS[0])
    for dtype in (torch.float16,):
        for d in (32, 256):
            z = torch.empty(2048, d, device=meta, dtype=dtype)
            cb = torch.empty(16384, d, device=meta, dtype=dtype)
            terms = torch.empty(16384, device=meta)
            for cfg in vq_triton.configs_for(8192, 16384, d)[:4]:
                label = f"vq {dtype} D{d} {cfg.name}"
                yield label, lambda z=z, cb=cb, terms=terms, cfg=cfg: vq_triton.vq_nearest(z, cb, terms, "l2", cfg, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, default=90)
    p.add_argument("--out", default=None, help="folder for report.json and each variant's .ptx / .ttgir")
    p.add_argument("--only", default="", help="substring of the variant labels to compile")
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, thunk in variants(args.arch):
        if args.only not in label:
            continue
        with compiling_for(args.arch) as compiled:
            try:
                thunk()
            except Exception as e:
                rows.append({"label": label, "error": f"{type(e).__name__}: {str(e)[:300]}"})
                print(f"{label}: FAILED {rows[-1]['error']}", flush=True)
                continue
        for name, meta, kernel in compiled:
            row = {"label": label, **describe(name, meta, kernel, args.arch)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if out:
                stem = re.sub(r"[^A-Za-z0-9.]+", "_", label)
                (out / f"{stem}.ptx").write_text(kernel.asm["ptx"])
                (out / f"{stem}.ttgir").write_text(kernel.asm["ttgir"])
    if out:
        (out / "report.json").write_text(json.dumps(rows, indent=1))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
