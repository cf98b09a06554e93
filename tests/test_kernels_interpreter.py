"""The Triton kernels themselves, run on the CPU by Triton's interpreter and compared to the PyTorch references.

Why a subprocess: triton.jit decides between compiled and interpreted kernels when a kernel is *defined*, from
TRITON_INTERPRET at that moment. pytest imports every test module into one process, so setting the variable at the
top of this file would only work if nothing imported ganserve's Triton modules earlier, and it would leak into every
other test. Instead the measurements run once in a fresh interpreter (this file as a script, TRITON_INTERPRET=1 set
before anything is imported) and print JSON; the tests below assert on it. The script also reports how many Triton
launches happened, so a silent fall back to the reference would fail the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FP32_TOL = 1e-4
FP16_TOL = 2e-2  # against an fp32 reference on the same fp16-rounded inputs; values are O(1)
VQ_TOL = {"float32": 1e-4, "float16": 2e-2}

# name, batch, in, out, H, W, kernel, padding, demodulate, noise ("const" [H,W] | "per-sample" | None), bias, act, clamp
MODCONV_CASES = [
    ("3x3 b1", 1, 20, 19, 7, 9, 3, 1, True, "const", True, "lrelu", 1.5),
    ("3x3 b3", 3, 33, 18, 5, 6, 3, 1, True, "per-sample", True, "lrelu", None),
    ("3x3 nodemod relu", 2, 17, 21, 6, 5, 3, 1, False, None, True, "relu", None),
    ("toRGB 1x1", 3, 35, 3, 9, 7, 1, 0, False, None, True, None, 0.8),
    ("3x3 no pad", 2, 18, 17, 8, 7, 3, 0, True, None, False, None, None),
]
# name, N, K, D, metric, splits
VQ_CASES = [
    ("l2 b1", 1, 37, 20, "l2", 1),
    ("l2", 45, 70, 33, "l2", 1),
    ("cosine", 45, 70, 33, "cosine", 1),
    ("l2 split", 19, 300, 18, "l2", 3),
    ("cosine split", 19, 300, 18, "cosine", 3),
]


def _measure() -> dict:
    """Runs in the subprocess, after TRITON_INTERPRET=1 is set."""
    import torch

    import ganserve.kernels as K
    from ganserve.kernels import reference

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import make_tiny_generator

    torch.manual_seed(0)
    out: dict = {"modconv": [], "vq": [], "padding": [], "ties": [], "generator": []}
    for dtype in (torch.float32, torch.float16):
        for name, n, i, o, h, w, k, pad, demod, noise_kind, has_bias, act, clamp in MODCONV_CASES:
            x = torch.randn(n, i, h, w).to(dtype)
            weight = torch.randn(o, i, k, k) / (i * k * k) ** 0.5
            styles = torch.randn(n, i) * 0.5 + 1.0
            oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
            noise = {"const": torch.randn(oh, ow), "per-sample": torch.randn(n, 1, oh, ow), None: None}[noise_kind]
            bias = torch.randn(o) if has_bias else None
            gain = 2**0.5 if act else 1.0
            with K.force_triton():
                y = K.modulated_conv2d(
                    x,
                    weight,
                    styles,
                    demodulate=demod,
                    padding=pad,
                    noise=noise,
                    bias=bias,
                    activation=act,
                    clamp=clamp,
                )
            ref = reference.modulated_conv2d(
                x.float(), weight, styles, noise, bias, demod, pad, act or "linear", gain, clamp
            )
            out["modconv"].append(
                {
                    "case": name,
                    "dtype": str(dtype).removeprefix("torch."),
                    "shape_ok": tuple(y.shape) == tuple(ref.shape) and y.dtype == dtype,
                    "max_err": (y.float() - ref).abs().max().item(),
                    "ref_scale": ref.abs().max().item(),
                }
            )
        for name, n, k, d, metric, splits in VQ_CASES:
            z = torch.randn(n, d).to(dtype)
            cb = torch.randn(k, d).to(dtype)
            with K.force_triton():
                idx, dist = K.vq_nearest(z, cb, metric=metric, splits=splits)
            full = _all_distances(z.float(), cb.float(), metric)
            true_min = full.min(dim=1).values
            chosen = full.gather(1, idx.clamp(0, k - 1)[:, None]).squeeze(1)
            ref_idx, _ = reference.vq_nearest(z.float(), cb.float(), metric)
            out["vq"].append(
                {
                    "case": name,
                    "dtype": str(dtype).removeprefix("torch."),
                    "index_dtype": str(idx.dtype),
                    "in_range": bool(((idx >= 0) & (idx < k)).all()),
                    "chosen_minus_min": (chosen - true_min).abs().max().item(),
                    "reported_minus_min": (dist - true_min).abs().max().item(),
                    "agree": (idx == ref_idx).float().mean().item(),
                }
            )
    # Padding traps: masked-out codes load as zeros, which would beat every real code here if they could win.
    for metric, splits in (("l2", 1), ("cosine", 1), ("l2", 2), ("cosine", 2)):
        k = 150 if splits > 1 else 21
        z = torch.rand(13, 24) * 0.1 + 0.01  # near the origin, all positive
        cb = -(torch.rand(k, 24) + 5.0)  # far away and pointing the other way
        with K.force_triton():
            idx, _ = K.vq_nearest(z, cb, metric=metric, splits=splits)
        ref_idx, _ = reference.vq_nearest(z, cb, metric)
        out["padding"].append({"metric": metric, "splits": splits, "max_index": idx.max().item(), "k": k,
                               "agree": (idx == ref_idx).float().mean().item()})  # fmt: skip
    # Exact duplicates in different tiles and splits: the lower index must win, as with torch.argmin.
    cb = torch.randn(300, 16)
    cb[260] = cb[7]
    cb[140] = cb[7]
    z = cb[[7, 7, 7]].clone()
    for splits in (1, 3):
        with K.force_triton():
            idx, _ = K.vq_nearest(z, cb, metric="l2", splits=splits)
        out["ties"].append({"splits": splits, "indices": idx.tolist()})
    # The whole (tiny) generator with the kernels on and off.
    G = make_tiny_generator()
    for batch in (1, 2):
        zl = torch.randn(batch, G.config.z_dim)
        with torch.no_grad():
            with K.use_kernels(False):
                ref = G(zl, None)
            with K.force_triton():
                img = G(zl, None)
        out["generator"].append({"batch": batch, "max_err": (img - ref).abs().max().item()})

    from ganserve.kernels import modconv_triton, vq_triton

    out["interpreted"] = modconv_triton.INTERPRETED and vq_triton.INTERPRETED
    out["launches"] = {"modconv": modconv_triton.launches, "vq": vq_triton.launches}
    return out


def _all_distances(z, cb, metric):
    import torch.nn.functional as F

    if metric == "l2":
        return (z[:, None, :] - cb[None, :, :]).square().sum(-1)
    return 1.0 - F.normalize(z, dim=1) @ F.normalize(cb, dim=1).t()


@pytest.fixture(scope="module")
def measured() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "GANSERVE_KERNELS": "1"}
    proc = subprocess.run(
        [sys.executable, __file__], env=env, capture_output=True, text=True, timeout=400, cwd=Path(__file__).parent
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_triton_code_ran_under_the_interpreter(measured):
    assert measured["interpreted"]
    # 2 dtypes x cases, plus the generator's up=1 layers and toRGBs; 2 dtypes x cases + traps + ties for VQ.
    assert measured["launches"]["modconv"] >= 2 * len(MODCONV_CASES) + 6
    assert measured["launches"]["vq"] >= 2 * len(VQ_CASES) + 4 + 2


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_modulated_conv_matches_reference(measured, dtype):
    rows = [r for r in measured["modconv"] if r["dtype"] == dtype]
    assert len(rows) == len(MODCONV_CASES)
    tol = FP32_TOL if dtype == "float32" else FP16_TOL
    for r in rows:
        assert r["shape_ok"], r
        assert r["ref_scale"] > 0.1, r  # random inputs, not a trivially zero output
        assert r["max_err"] <= tol * max(1.0, r["ref_scale"]), r


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_vq_nearest_finds_the_minimum(measured, dtype):
    rows = [r for r in measured["vq"] if r["dtype"] == dtype]
    assert len(rows) == len(VQ_CASES)
    for r in rows:
        assert r["index_dtype"] == "torch.int64" and r["in_range"], r
        # near-ties may pick a different index, but never a farther code
        assert r["chosen_minus_min"] <= VQ_TOL[dtype] * 10, r
        assert r["reported_minus_min"] <= VQ_TOL[dtype] * 10, r
        assert r["agree"] >= (1.0 if dtype == "float32" else 0.9), r


def test_vq_padding_never_wins(measured):
    assert len(measured["padding"]) == 4
    for r in measured["padding"]:
        assert r["max_index"] < r["k"] and r["agree"] == 1.0, r


def test_vq_exact_ties_go_to_the_lowest_index(measured):
    assert measured["ties"] == [{"splits": 1, "indices": [7, 7, 7]}, {"splits": 3, "indices": [7, 7, 7]}]


def test_generator_agrees_with_kernels_on_and_off(measured):
    assert [r["batch"] for r in measured["generator"]] == [1, 2]
    for r in measured["generator"]:
        assert r["max_err"] <= FP32_TOL, r


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run through pytest, or with TRITON_INTERPRET=1 set")
    print(json.dumps(_measure()))
