"""The Triton kernels themselves, run on the CPU by Triton's interpreter and compared to the PyTorch references.

Why a subprocess: triton.jit decides between compiled and interpreted kernels when a kernel is *defined*, from
TRITON_INTERPRET at that moment. pytest imports every test module into one process, so setting the variable at the
top of this file would only work if nothing imported ganserve's Triton modules earlier, and it would leak into every
other test. Instead the measurements run once in a fresh interpreter (this file as a script, TRITON_INTERPRET=1 set
before anything is imported) and print JSON; the tests below assert on it. The script also reports how many Triton
launches happened, so a silent fall back to the reference would fail the tests.

Shapes are small and odd (not multiples of the tiles) and chosen so that every specialisation of the modulated-conv
kernel runs: channel tails and whole channel blocks (EVEN_K), weight-column tails (EVEN_N), tiles inside one sample
and tiles spanning samples (ONE_SAMPLE), the 2x upsampling phases, both output layouts, all three dtypes. The
interpreter has no bf16 arithmetic (it stores bf16 as uint16 and multiplies those), so bf16 runs the same kernel with
the products formed in fp32 from the bf16 values (EMULATE_BF16): loads, masks, indexing and stores are tested, the
bf16 multiply itself is the GPU's.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

# max |out - fp32 reference| / max(1, max |reference|); the candidates' tuning tolerances (kernels/candidates.py)
TOL = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 6e-2, "float32-tf32": 1e-2}
DTYPES = ("float32", "float16", "bfloat16")

# name, batch, in, out, H, W, kernel, padding, up, demodulate, noise, bias, act, clamp, config (BM, BN, BK), chan-last
MODCONV_CASES = [
    ("3x3 b1 K-tail", 1, 20, 19, 7, 9, 3, 1, 1, True, "const", True, "lrelu", 1.5, (32, 16, 16), True),
    ("3x3 b3 one-sample", 3, 32, 18, 4, 8, 3, 1, 1, True, "per-sample", True, "lrelu", None, (32, 16, 16), False),
    ("3x3 N-tail relu", 2, 17, 40, 6, 5, 3, 1, 1, False, None, True, "relu", None, (16, 32, 16), True),
    ("toRGB 1x1", 3, 35, 3, 9, 7, 1, 0, 1, False, None, True, None, 0.8, (32, 16, 16), True),
    ("3x3 no pad", 2, 18, 17, 8, 7, 3, 0, 1, True, None, False, None, None, (32, 16, 16), False),
    ("up2 per-sample", 2, 13, 11, 3, 4, 3, 1, 2, True, "per-sample", True, "lrelu", 0.7, (32, 16, 16), True),
    ("up2 one-sample", 1, 16, 16, 4, 4, 3, 1, 2, True, "const", True, "lrelu", None, (16, 16, 16), False),
]
# name, N, K, D, metric, splits, config name (BQ x BC x BD w s; BD "D": one chunk of next_pow2(D))
VQ_CASES = [
    ("l2 b1", 1, 37, 20, "l2", 1, "16x16x16w1s1"),
    ("l2 looped D", 45, 70, 33, "l2", 1, "16x16x16w1s1"),
    ("cosine looped D", 45, 70, 33, "cosine", 1, "16x16x16w1s1"),
    ("l2 one D chunk", 20, 50, 40, "l2", 1, "16x16xDw1s1"),
    ("l2 split", 19, 300, 18, "l2", 3, "16x32xDw1s1"),
    ("cosine split", 19, 300, 18, "cosine", 3, "16x32xDw1s1"),
]


# The measurements, in parts that run in two interpreters side by side (the interpreter is single-threaded Python, so a
# second process uses the second core); each part's rows keep their order within their key.
PARTS = {
    "modconv-float32": lambda out: _modconv_part(out, "float32"),
    "modconv-float16": lambda out: _modconv_part(out, "float16"),
    "modconv-bfloat16": lambda out: _modconv_part(out, "bfloat16"),
    "tf32": lambda out: _tf32_part(out),
    "vq": lambda out: _vq_part(out),
    "tuning": lambda out: _tuning_part(out),
    "generator": lambda out: _generator_part(out),
}
# balanced by measured CPU time (about 9-12 s each modconv dtype and vq, 3 s the generator and tuning, 1 s tf32)
WORKERS = (("modconv-float16", "modconv-float32", "tuning", "tf32"), ("modconv-bfloat16", "vq", "generator"))


def _measure(parts: list[str]) -> dict:
    """Runs in the subprocess, after TRITON_INTERPRET=1 is set."""
    import torch

    from ganserve.kernels import modconv_triton, vq_triton

    out: dict = {"modconv": [], "epilogue": [], "vq": [], "padding": [], "ties": [], "generator": [], "tuning": []}
    for part in parts:
        torch.manual_seed(0)
        PARTS[part](out)
    out["interpreted"] = modconv_triton.INTERPRETED and vq_triton.INTERPRETED
    out["launches"] = {"modconv": modconv_triton.launches, "vq": vq_triton.launches}
    return out


def _modconv_call(case, dtype):
    import torch

    from ganserve.kernels import candidates
    from ganserve.models.layers import setup_filter

    _, n, i, o, h, w, k, pad, up, demod, noise_kind, has_bias, act, clamp, _, _ = case
    oh, ow = (h + 2 * pad - k + 1, w + 2 * pad - k + 1) if up == 1 else (2 * h, 2 * w)
    noise = {"const": torch.randn(oh, ow), "per-sample": torch.randn(n, 1, oh, ow), None: None}[noise_kind]
    return candidates.ModConvCall(
        torch.randn(n, i, h, w).to(dtype), torch.randn(o, i, k, k) / math.sqrt(i * k * k),
        torch.randn(n, i) * 0.5 + 1.0, noise, torch.randn(o) if has_bias else None,
        setup_filter((1, 3, 3, 1)) if up > 1 else None, demod, pad, up, act or "linear",
        math.sqrt(2) if act else 1.0, clamp,
    )  # fmt: skip


def _err(y, ref) -> dict:
    return {"max_err": (y.float() - ref).abs().max().item(), "ref_scale": ref.abs().max().item(),
            "nan": bool(y.isnan().any())}  # fmt: skip


def _modconv_part(out: dict, dtype_name: str) -> None:
    import torch

    import ganserve.kernels as K
    from ganserve.kernels import candidates, modconv_triton

    dtype = getattr(torch, dtype_name)
    for case in MODCONV_CASES:
        c = _modconv_call(case, dtype)
        ref = candidates.modconv_reference(c)
        bm, bn, bk = case[-2]
        poisoned = torch.full_like(ref, float("nan"), dtype=dtype)  # every element must be written
        if case[-1]:
            poisoned = poisoned.contiguous(memory_format=torch.channels_last)
        y = modconv_triton.modulated_conv2d(*c, config=modconv_triton.Config(bm, bn, bk, 1, 1), out=poisoned)
        shape_ok = tuple(y.shape) == tuple(ref.shape) and y.dtype == dtype
        out["modconv"].append({"case": case[0], "dtype": dtype_name, "shape_ok": shape_ok, **_err(y, ref)})
    # the op itself (force_triton), stride 1 and up 2, through the public API
    for case in (MODCONV_CASES[0], MODCONV_CASES[5]):
        c = _modconv_call(case, dtype)
        with K.force_triton():
            y = K.modulated_conv2d(
                c.x, c.weight, c.styles, demodulate=c.demodulate, padding=c.padding, noise=c.noise, bias=c.bias,
                activation=None if c.activation == "linear" else c.activation, clamp=c.clamp, up=c.up,
                resample_filter=c.resample_filter,
            )  # fmt: skip
        out["modconv"].append({"case": "op " + case[0], "dtype": dtype_name, "shape_ok": True,
                               **_err(y, candidates.modconv_reference(c))})  # fmt: skip
    # the hybrid path: a PyTorch convolution, then the Triton epilogue (channels-last and contiguous)
    for case in (MODCONV_CASES[1], MODCONV_CASES[5]):
        c = _modconv_call(case, dtype)
        ref = candidates.modconv_reference(c)
        for fmt, layout in (("channels_last", torch.channels_last), ("contiguous", torch.contiguous_format)):
            c2 = c._replace(x=c.x.contiguous(memory_format=layout))
            y = candidates.torch_scale(c2, tepi=True, subpixel=c.up > 1)
            out["epilogue"].append({"case": f"{case[0]} {fmt}", "dtype": dtype_name, **_err(y, ref)})


def _tf32_part(out: dict) -> None:
    """tf32 dots (fp32 operands on tensor cores): the interpreter rounds the operands like the hardware."""
    import torch

    import ganserve.kernels as K
    from ganserve.kernels import candidates, modconv_triton

    K.set_precision("tf32")
    c = _modconv_call(MODCONV_CASES[0], torch.float32)
    y = modconv_triton.modulated_conv2d(*c, config=modconv_triton.INTERPRETER_CONFIG)
    out["modconv"].append({"case": "3x3 tf32", "dtype": "float32-tf32", "shape_ok": True,
                           **_err(y, candidates.modconv_reference(c))})  # fmt: skip
    K.set_precision(None)


def _vq_part(out: dict) -> None:
    import torch

    import ganserve.kernels as K
    from ganserve.kernels import candidates, reference

    for dtype_name in DTYPES:
        dtype = getattr(torch, dtype_name)
        for name, n, k, d, metric, splits, cfg in VQ_CASES:
            z, cb = torch.randn(n, d).to(dtype), torch.randn(k, d).to(dtype)
            idx = candidates.triton_vq(z, cb, metric, cfg, splits)
            full = _all_distances(z.float(), cb.float(), metric)
            true_min = full.min(dim=1).values
            chosen = full.gather(1, idx.clamp(0, k - 1)[:, None]).squeeze(1)
            with K.force_triton():
                _, dist = K.vq_nearest(z, cb, metric=metric, splits=splits)
            ref_idx, _ = reference.vq_nearest(z.float(), cb.float(), metric)
            out["vq"].append({
                "case": name, "dtype": dtype_name, "index_dtype": str(idx.dtype),
                "in_range": bool(((idx >= 0) & (idx < k)).all()),
                "chosen_minus_min": (chosen - true_min).abs().max().item(),
                "reported_minus_min": (dist - true_min).abs().max().item(),
                "agree": (idx == ref_idx).float().mean().item(),
            })  # fmt: skip
    # Padding traps: masked-out codes load as zeros, which would beat every real code here if they could win.
    for metric, splits in (("l2", 1), ("cosine", 1), ("l2", 2), ("cosine", 2)):
        k = 150 if splits > 1 else 21
        z = torch.rand(13, 24) * 0.1 + 0.01  # near the origin, all positive
        cb = -(torch.rand(k, 24) + 5.0)  # far away and pointing the other way
        idx = candidates.triton_vq(z, cb, metric, "16x16xDw1s1", splits)
        ref_idx, _ = reference.vq_nearest(z, cb, metric)
        out["padding"].append({"metric": metric, "splits": splits, "max_index": idx.max().item(), "k": k,
                               "agree": (idx == ref_idx).float().mean().item()})  # fmt: skip
    # Exact duplicates in different tiles and splits: the lower index must win, as with torch.argmin.
    cb = torch.randn(300, 16)
    cb[260] = cb[7]
    cb[140] = cb[7]
    z = cb[[7, 7, 7]].clone()
    for splits in (1, 3):
        idx = candidates.triton_vq(z, cb, "l2", "16x32xDw1s1", splits)
        out["ties"].append({"splits": splits, "indices": idx.tolist()})


def _tuning_part(out: dict) -> None:
    """Tuning with every candidate, Triton configurations included (the big GPU tiles too), on an odd shape: each must
    agree with the reference (none rejected), and the fake-fastest wins."""
    import tempfile

    import torch

    import ganserve.kernels as K
    from ganserve.kernels import candidates, dispatch

    with tempfile.TemporaryDirectory() as tmp:
        os.environ[dispatch.CACHE_ENV] = tmp
        dispatch.forget()
        for case, dtype in ((MODCONV_CASES[1], torch.float16), (MODCONV_CASES[6], torch.float32)):
            c = _modconv_call(case, dtype)
            with K.force_triton():
                names = list(candidates.modconv_candidates(c))
                fake = {n: (0.5 if n == names[-1] else 1.0 + i) for i, n in enumerate(names)}
                with dispatch.tuning(timer=lambda name, fn, fake=fake: fake[name] * 1e-3):
                    y = candidates.run_modconv(c)
            entry = dispatch.table("cpu").get(candidates.modconv_key(c))
            out["tuning"].append({"op": "modconv", "case": case[0], "candidates": names, "entry": entry,
                                  **_err(y, candidates.modconv_reference(c))})  # fmt: skip
        for dtype in (torch.float32, torch.bfloat16):
            z, cb = torch.randn(37, 20).to(dtype), torch.randn(300, 20).to(dtype)
            with K.force_triton():
                names = list(candidates.vq_candidates(z, cb, "l2"))
                fake = {n: (0.5 if n == names[-1] else 1.0 + i) for i, n in enumerate(names)}
                with dispatch.tuning(timer=lambda name, fn, fake=fake: fake[name] * 1e-3):
                    candidates.run_vq(z, cb, "l2")
            out["tuning"].append({"op": "vq", "case": str(dtype), "candidates": names,
                                  "entry": dispatch.table("cpu").get(candidates.vq_key(z, cb, "l2"))})  # fmt: skip


def _generator_part(out: dict) -> None:
    """The whole (tiny) generator with the kernels on and off, at 8x8: every layer kind (const, conv, up-conv, toRGB,
    skip upsampling) runs, with a fraction of the 16x16, 32-channel generator's interpreted work."""
    import torch

    import ganserve.kernels as K

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import make_tiny_generator

    G = make_tiny_generator(resolution=8, channel_max=16)
    for batch in (1, 2):
        zl = torch.randn(batch, G.config.z_dim)
        with torch.no_grad():
            with K.use_kernels(False):
                ref = G(zl, None)
            with K.force_triton():
                img = G(zl, None)
        out["generator"].append({"batch": batch, "max_err": (img - ref).abs().max().item()})


def _all_distances(z, cb, metric):
    import torch.nn.functional as F

    if metric == "l2":
        return (z[:, None, :] - cb[None, :, :]).square().sum(-1)
    return 1.0 - F.normalize(z, dim=1) @ F.normalize(cb, dim=1).t()


@pytest.fixture(scope="module")
def measured() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "GANSERVE_KERNELS": "1"}
    env.pop("GANSERVE_KERNELS_PRECISION", None)
    procs = [
        subprocess.Popen([sys.executable, __file__, *parts], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=Path(__file__).parent)
        for parts in WORKERS
    ]  # fmt: skip
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=500)
        assert proc.returncode == 0, stderr[-4000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert sorted(p for parts in WORKERS for p in parts) == sorted(PARTS)  # every part runs, once
    merged = {key: [row for r in results for row in r[key]] for key in results[0] if isinstance(results[0][key], list)}
    merged["interpreted"] = all(r["interpreted"] for r in results)
    merged["launches"] = {op: sum(r["launches"][op] for r in results) for op in ("modconv", "vq")}
    return merged


def test_the_triton_code_ran_under_the_interpreter(measured):
    assert measured["interpreted"]
    # 3 dtypes x (cases + 2 through the op + 4 epilogues) + tf32, the tuning runs, the generator's layers
    assert measured["launches"]["modconv"] >= 3 * (len(MODCONV_CASES) + 2 + 4) + 1 + 6
    assert measured["launches"]["vq"] >= 3 * 2 * len(VQ_CASES) + 4 + 2


@pytest.mark.parametrize("dtype", [*DTYPES, "float32-tf32"])
def test_modulated_conv_matches_reference(measured, dtype):
    rows = [r for r in measured["modconv"] if r["dtype"] == dtype]
    assert len(rows) == (1 if dtype == "float32-tf32" else len(MODCONV_CASES) + 2)
    for r in rows:
        assert r["shape_ok"] and not r["nan"], r  # NaN: an output element the kernel never wrote
        assert r["ref_scale"] > 0.1, r  # random inputs, not a trivially zero output
        assert r["max_err"] <= TOL[dtype] * max(1.0, r["ref_scale"]), r


@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_epilogue_after_a_torch_conv(measured, dtype):
    rows = [r for r in measured["epilogue"] if r["dtype"] == dtype]
    assert len(rows) == 4
    for r in rows:
        assert not r["nan"] and r["max_err"] <= TOL[dtype] * max(1.0, r["ref_scale"]), r


@pytest.mark.parametrize("dtype", DTYPES)
def test_vq_nearest_finds_the_minimum(measured, dtype):
    rows = [r for r in measured["vq"] if r["dtype"] == dtype]
    assert len(rows) == len(VQ_CASES)
    for r in rows:
        assert r["index_dtype"] == "torch.int64" and r["in_range"], r
        # fp32 accumulation of exact products: the chosen code is the nearest (near-ties may pick another index,
        # never a farther code); the reported distance is the chosen code's, computed exactly
        assert r["chosen_minus_min"] <= 1e-3, r
        assert r["reported_minus_min"] <= 1e-3, r
        assert r["agree"] >= 0.97, r


def test_vq_padding_never_wins(measured):
    assert len(measured["padding"]) == 4
    for r in measured["padding"]:
        assert r["max_index"] < r["k"] and r["agree"] == 1.0, r


def test_vq_exact_ties_go_to_the_lowest_index(measured):
    assert measured["ties"] == [{"splits": 1, "indices": [7, 7, 7]}, {"splits": 3, "indices": [7, 7, 7]}]


def test_tuning_every_candidate_agrees_and_the_fastest_wins(measured):
    rows = measured["tuning"]
    assert [r["op"] for r in rows] == ["modconv", "modconv", "vq", "vq"]
    for r in rows:
        names, entry = r["candidates"], r["entry"]
        assert any(n.startswith("triton/") for n in names) and any(n.startswith("torch-") for n in names), r
        assert entry["rejected"] == {}, r  # every implementation computes the same map within tolerance
        assert set(entry["ms"]) == set(names) and entry["choice"] == names[-1], r
        if r["op"] == "modconv":
            assert r["max_err"] <= 2e-2 * max(1.0, r["ref_scale"]), r
    assert any("+tepi" in n for n in rows[0]["candidates"])
    assert "torch-subpixel" in rows[1]["candidates"]  # the up layer also has its sub-pixel PyTorch form


def test_generator_agrees_with_kernels_on_and_off(measured):
    assert [r["batch"] for r in measured["generator"]] == [1, 2]
    for r in measured["generator"]:
        assert r["max_err"] <= TOL["float32"], r


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run through pytest, or with TRITON_INTERPRET=1 set")
    print(json.dumps(_measure(sys.argv[1:])))
