"""The kernels' custom ops on the CPU (the reference path): agreement with the model's reference layers, the
switches, fake/meta shapes, torch.compile, torch.export and ONNX export. Triton itself is tested under the interpreter
in test_kernels_interpreter.py; nothing here imports Triton."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

import ganserve.kernels as K
from ganserve.models import layers


def _modconv_inputs(n=2, i=6, o=5, h=7, w=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, i, h, w, generator=g)
    weight = torch.randn(o, i, k, k, generator=g) / math.sqrt(i * k * k)
    styles = torch.randn(n, i, generator=g) * 0.5 + 1.0
    return x, weight, styles


class _Both(torch.nn.Module):
    """A small model calling both ops, as StyleGAN2 and a VQ family would."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.weight = torch.nn.Parameter(torch.randn(6, 5, 3, 3, generator=g) / math.sqrt(45))
        self.bias = torch.nn.Parameter(torch.randn(6, generator=g))
        self.noise = torch.nn.Parameter(torch.randn(4, 4, generator=g))
        self.codebook = torch.nn.Parameter(torch.randn(11, 6, generator=g))

    def forward(self, x: torch.Tensor, styles: torch.Tensor):
        y = K.modulated_conv2d(x, self.weight, styles, noise=self.noise, bias=self.bias, clamp=1.0)
        idx, dist = K.vq_nearest(y.permute(0, 2, 3, 1).reshape(-1, 6), self.codebook, metric="cosine")
        return y, idx, dist


def _inputs_for_both(n: int):
    g = torch.Generator().manual_seed(n)
    return torch.randn(n, 5, 4, 4, generator=g), torch.randn(n, 5, generator=g) + 1.0


@pytest.mark.parametrize("demodulate", [True, False])
def test_op_matches_the_model_reference_path(demodulate):
    """3x3 demodulated with noise (SynthesisLayer) and 1x1 without (ToRGBLayer), against both PyTorch forms."""
    k, pad = (3, 1) if demodulate else (1, 0)
    x, weight, styles = _modconv_inputs(k=k)
    noise = torch.randn(7, 6) if demodulate else None
    kw = dict(noise=noise, padding=pad, demodulate=demodulate)
    got = K.modulated_conv2d(x, weight, styles, activation=None, **kw)
    assert got.abs().max() > 0.1
    torch.testing.assert_close(got, layers.modulated_conv2d(x, weight, styles, **kw), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, layers.modulated_conv2d(x, weight, styles, fused=True, **kw), atol=1e-5, rtol=1e-5)


def test_upsampling_op_matches_the_model_layer():
    """up=2 (transposed conv + FIR): the op's reference, its sub-pixel phase form and the model's layer agree."""
    x, weight, styles = _modconv_inputs(h=5, w=4)
    f = layers.setup_filter((1, 3, 3, 1))
    noise, bias = torch.randn(10, 8), torch.randn(5)
    kw = dict(noise=noise, padding=1, bias=bias, clamp=0.9)
    got = K.modulated_conv2d(x, weight, styles, up=2, resample_filter=f, **kw)
    expected = layers.modulated_conv2d(x, weight, styles, up=2, resample_filter=f, activation="lrelu", **kw)
    assert got.shape == (2, 5, 10, 8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    phases, kp, pad = K.reference.upsample_phase_weights(weight, f, 2, 1)
    assert (kp, pad) == (3, 1) and phases.shape == (4, 5, 6, 3, 3)
    y = F.conv2d(x * styles[:, :, None, None], phases.reshape(20, 6, 3, 3), padding=1)  # [N, phase*O, H, W]
    y = y.reshape(2, 2, 2, 5, 5, 4).permute(0, 3, 4, 1, 5, 2).reshape(2, 5, 10, 8)  # interleave the phases
    torch.testing.assert_close(y, layers.conv2d_resample(x * styles[:, :, None, None], weight, f, up=2, padding=1))
    with pytest.raises(ValueError, match="resample_filter"):
        K.modulated_conv2d(x, weight, styles, up=2)


def test_fused_epilogue_matches_bias_act():
    x, weight, styles = _modconv_inputs()
    bias, noise = torch.randn(5), torch.randn(2, 1, 7, 6)
    y = layers.modulated_conv2d(x, weight, styles, noise=noise, padding=1)
    expected = layers.bias_act(y, bias, "lrelu", clamp=0.7)
    got = K.modulated_conv2d(x, weight, styles, noise=noise, bias=bias, padding=1, clamp=0.7)
    assert (got.abs() == 0.7).any() and (got.abs() < 0.7).any()  # the clamp bites on some values, not all
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_vq_reference_is_the_brute_force_nearest_code():
    z, cb = torch.randn(50, 9), torch.randn(40, 9)
    idx, dist = K.vq_nearest(z, cb)
    full = torch.cdist(z, cb).square()
    assert torch.equal(idx, full.argmin(1))
    torch.testing.assert_close(dist, full.min(1).values, atol=1e-4, rtol=1e-4)
    idx, dist = K.vq_nearest(z, cb, metric="cosine")
    cos = F.cosine_similarity(z[:, None], cb[None], dim=-1)
    assert torch.equal(idx, cos.argmax(1))
    torch.testing.assert_close(dist, 1 - cos.max(1).values, atol=1e-5, rtol=1e-5)


def test_bad_arguments_name_the_problem():
    x, weight, styles = _modconv_inputs()
    with pytest.raises(ValueError, match="activation"):
        K.modulated_conv2d(x, weight, styles, activation="gelu")
    with pytest.raises(ValueError, match="shape mismatch"):
        K.modulated_conv2d(x, weight, styles[:, :3])
    with pytest.raises(ValueError, match="metric"):
        K.vq_nearest(torch.randn(3, 4), torch.randn(5, 4), metric="dot")
    with pytest.raises(ValueError, match="codebook"):
        K.vq_nearest(torch.randn(3, 4), torch.randn(5, 3))


def test_switches(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cuda_like = torch.empty(1, device="meta")
    monkeypatch.setenv("GANSERVE_KERNELS", "0")
    assert not K.enabled()
    with K.use_kernels(True):
        assert K.enabled()
    assert not K.enabled()
    monkeypatch.setenv("GANSERVE_KERNELS", "1")
    assert K.enabled()
    K.set_enabled(False)
    try:
        assert not K.enabled()
    finally:
        K.set_enabled(None)
    assert K.enabled()
    # CPU (and any non-CUDA) tensors never go to Triton unless forced, and forcing needs the interpreter.
    assert not K.use_triton(torch.empty(1)) and not K.wants_kernels(torch.empty(1))
    assert not K.use_triton(cuda_like)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"), K.force_triton():
        pass
    monkeypatch.setenv("GANSERVE_KERNELS_PRECISION", "tf32")
    assert K.dot_precision() == "tf32"
    monkeypatch.delenv("GANSERVE_KERNELS_PRECISION")  # unset: follow PyTorch's switch for the op replaced
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = False, True
        assert K.dot_precision("conv") == "ieee" and K.dot_precision("matmul") == "tf32"
        with K.switch.torch_precision("ieee"):  # the PyTorch candidates run at the op's precision
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    with pytest.raises(ValueError, match="precision"):
        K.set_precision("bf16x9")


def test_model_layers_stay_on_the_reference_path_on_cpu(monkeypatch):
    """The hook never routes CPU tensors, and the reference path computes the paper's modulate / conv / demodulate
    (the demodulation as a styles^2 x sum(w^2) product since issue 22: equal to the per-sample weight's norm up to
    float rounding)."""
    calls = []
    monkeypatch.setattr(K.ops, "modulated_conv2d_op", lambda *a: calls.append(a))
    x, weight, styles = _modconv_inputs()
    out = layers.modulated_conv2d(x, weight, styles, padding=1)
    expected = F.conv2d(x * styles.reshape(2, -1, 1, 1), weight, padding=1)
    dcoefs = ((weight[None] * styles.reshape(2, 1, -1, 1, 1)).square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    torch.testing.assert_close(out, expected * dcoefs.reshape(2, -1, 1, 1), rtol=1e-5, atol=1e-6)
    assert calls == []


def test_fake_shapes_on_meta_tensors():
    x = torch.empty(3, 8, 10, 12, device="meta", dtype=torch.float16)
    y = K.modulated_conv2d(x, torch.empty(5, 8, 3, 3, device="meta"), torch.empty(3, 8, device="meta"), padding=0)
    assert y.shape == (3, 5, 8, 10) and y.dtype == torch.float16 and y.device.type == "meta"
    f = torch.empty(4, 4, device="meta")
    y = K.modulated_conv2d(x, torch.empty(5, 8, 3, 3, device="meta"), torch.empty(3, 8, device="meta"), up=2,
                           resample_filter=f)  # fmt: skip
    assert y.shape == (3, 5, 20, 24)
    idx, dist = K.vq_nearest(torch.empty(7, 4, device="meta"), torch.empty(9, 4, device="meta"))
    assert idx.shape == (7,) and idx.dtype == torch.int64 and dist.shape == (7,) and dist.dtype == torch.float32


def test_torch_compile_traces_the_ops():
    model = _Both().eval().requires_grad_(False)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    for n in (2, 3):
        x, s = _inputs_for_both(n)
        for a, b in zip(compiled(x, s), model(x, s)):
            torch.testing.assert_close(a, b)


def test_torch_export_keeps_the_ops_and_decomposes_them_on_request():
    model = _Both().eval().requires_grad_(False)
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, _inputs_for_both(2), dynamic_shapes=({0: batch}, {0: batch}))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"ganserve.modulated_conv2d.default", "ganserve.vq_nearest.default"} <= targets
    decomposed = ep.run_decompositions(K.decompositions())
    assert not any(str(n.target).startswith("ganserve.") for n in decomposed.graph.nodes)
    x, s = _inputs_for_both(3)
    for exported in (ep, decomposed):
        for a, b in zip(exported.module()(x, s), model(x, s)):
            torch.testing.assert_close(a, b)


def test_onnx_export_decomposes_the_ops(tmp_path):
    import onnxruntime

    model = _Both().eval().requires_grad_(False)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.onnx.export(model, _inputs_for_both(2), dynamo=True, dynamic_shapes=({0: batch}, {0: batch}))
    assert not any(node.domain.startswith("ganserve") for node in program.model_proto.graph.node)
    path = tmp_path / "both.onnx"
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path))
    x, s = _inputs_for_both(3)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy(), session.get_inputs()[1].name: s.numpy()})
    for a, b in zip(got, model(x, s)):
        torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-5, rtol=1e-5)


def test_bench_kernels_needs_cuda(capsys):
    from ganserve.benchmarks import kernels as bench

    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers(dest="bench"))
    args = parser.parse_args(["kernels"])
    if torch.cuda.is_available():
        pytest.skip("this checks the message on machines without CUDA")
    assert bench.run(args) != 0
    assert "CUDA" in capsys.readouterr().err


def test_bench_kernels_code_paths_on_cpu(tmp_path, monkeypatch):
    """The GPU benchmark's code, run once on tiny CPU shapes (hidden --device cpu) so the one GPU run does not find
    its bugs: every row is measured (no error column), every candidate agrees with the reference (none rejected),
    and --tune writes the dispatch table."""
    import json

    from ganserve.benchmarks import kernels as bench
    from ganserve.kernels import dispatch

    monkeypatch.setenv(dispatch.CACHE_ENV, str(tmp_path / "table"))
    dispatch.forget()
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers(dest="bench"))
    common = ["--device", "cpu", "--resolution", "8", "--channel-base", "32", "--channel-max", "8", "--batch-sizes",
              "2", "--vq-codes", "40", "--precisions", "fp32,bf16", "--tune"]  # fmt: skip
    try:
        for only, dtypes in (("modconv", "float32,bfloat16"), ("vq", "float32"), ("generator", "float32")):
            args = parser.parse_args(["kernels", *common, "--only", only, "--dtypes", dtypes, "--out", str(tmp_path)])
            assert bench.run(args) == 0
            tables = json.loads((tmp_path / "results.json").read_text())["tables"]
            rows = [r for t in tables.values() for r in t]
            assert rows and all("error" not in r for r in rows), rows
            assert all(not r.get("rejected") for r in rows), rows
        layers_seen = {r["layer"] for r in json.loads((tmp_path / "results.json").read_text()).get("tables", {}).get(
            "modulated conv", [])}  # fmt: skip
        assert not layers_seen or {"conv0 up 8px", "conv1 8px", "toRGB 8px"} <= layers_seen
        assert {r["path"] for r in rows} == {"kernels off", "kernels on", "kernels on + up"}
        assert list(tmp_path.joinpath("table").glob("*.json"))  # --tune stored the choices
    finally:
        dispatch.forget()
        K.set_precision(None)


def test_kernels_compile_for_hopper_without_a_gpu():
    """The interpreter does not compile: type and layout errors of the real lowering only show here. Three variants
    compiled for sm_90 with the Triton wheel's ptxas (kernels/aot.py): tensor-core MMA, a cp.async pipeline, no
    register spills."""
    pytest.importorskip("triton")
    from ganserve.kernels import aot, candidates, modconv_triton, vq_triton

    f = layers.setup_filter((1, 3, 3, 1))

    def call(dtype, n, cin, cout, res, up):
        return candidates.ModConvCall(
            torch.randn(n, cin, res, res).to(dtype), torch.randn(cout, cin, 3, 3), torch.randn(n, cin),
            torch.randn(res * up, res * up), torch.randn(cout), f if up > 1 else None, True, 1, up, "lrelu",
            math.sqrt(2), 256.0,
        )  # fmt: skip

    with aot.compiling_for(90) as compiled:
        modconv_triton.modulated_conv2d(*call(torch.float16, 8, 512, 512, 4, 1), config=modconv_triton.CONFIGS[0])
        modconv_triton.modulated_conv2d(*call(torch.bfloat16, 2, 72, 40, 8, 2), config=modconv_triton.CONFIGS[3])
        z, cb = torch.randn(512, 32).to(torch.bfloat16), torch.randn(1000, 32).to(torch.bfloat16)
        vq_triton.vq_nearest(z, cb, torch.randn(1000), "l2", vq_triton.CONFIGS[0], 1)
    assert len(compiled) == 3
    for name, meta, kernel in compiled:
        row = aot.describe(name, meta, kernel, 90)
        assert row["wgmma"] > 0 and row["cp.async"] > 0, row
        assert row["spill_stores"] == 0 and "error" not in row, row
