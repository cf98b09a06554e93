"""Inference precision: fp32 is the reference and untouched; bf16 / fp16 / mixed stay close to it, are recorded in
each image's parameters, and keep the per-seed guarantees; what a model or backend cannot do is refused."""

from __future__ import annotations

import numpy as np
import pytest

import ganserve
from ganserve.benchmarks.precision import compare
from ganserve.images import read_png_params
from ganserve.sampling import encode_result, sample

SEEDS = list(range(8))


def test_fp32_is_the_default_and_records_nothing(tiny_path):
    G = ganserve.load(tiny_path)
    assert G.precision == "fp32"
    r = sample(G, seeds=[1])
    assert "precision" not in r.params[0]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "mixed", "tf32"])
def test_half_precisions_stay_close_and_are_recorded(tiny_path, precision):
    ref = sample(ganserve.load(tiny_path), seeds=SEEDS).images
    G = ganserve.load(tiny_path, precision=precision)
    r = sample(G, seeds=SEEDS)
    stats = compare(ref, r.images)
    assert stats["max_abs"] <= 24 and stats["mean_abs"] < 2.0, stats
    if precision in ("bf16", "fp16"):
        assert stats["max_abs"] > 0  # really ran in half precision
    else:
        assert precision == "tf32" or stats["max_abs"] > 0
    assert all(p["precision"] == precision for p in r.params)
    assert read_png_params(encode_result(sample(G, seeds=[3])).body)["precision"] == precision
    # determinism and batch-size invariance hold at every precision
    assert np.array_equal(r.images, sample(G, seeds=SEEDS, batch_size=3).images)


def test_mixed_precision_touches_only_the_top_resolutions(tiny_path):
    """On a 16 px model with num_fp16_res=4 the half-precision floor is 8 px: blocks below it stay exact."""
    ref = sample(ganserve.load(tiny_path), seeds=SEEDS).images
    G = ganserve.load(tiny_path, precision="mixed")
    assert G.synthesis.fp16_resolution == 8
    diffs = {}
    for floor in (32, 16, 8):  # 32: no block is at or above it, so nothing runs in half precision
        G.synthesis.fp16_resolution = floor
        diffs[floor] = compare(ref, sample(G, seeds=SEEDS).images)["mean_abs"]
    assert diffs[32] == 0 and 0 < diffs[16] <= diffs[8]
    assert G.synthesis.half_dtype is None  # no half-precision state is left behind after a call


def test_unknown_or_unsupported_precisions_are_refused(tiny_path, tmp_path):
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        ganserve.load(tiny_path, precision="fp8")
    from ganserve.backends import load_backend

    with pytest.raises(ValueError, match="export them with --fp16"):
        load_backend("onnx", tiny_path, precision="bf16")
