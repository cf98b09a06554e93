"""Loading refuses edited-and-rehashed checkpoints with a clear CheckpointError (never an exception from inside a
constructor), refuses NaN / infinite tensors, and builds its meta skeleton exactly like a plain meta-device build."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import ganserve
from ganserve.checkpoint import CheckpointError, read_metadata, read_tensors, save_tensors
from ganserve.config_checks import check_config, check_finite
from ganserve.families import get_family
from ganserve.loading import available_models
from ganserve.skeleton import build_on_meta
from tests.conftest import ganserve_cmd

BUNDLED = sorted(available_models())


def _crafted(src, dst, edit_config=None, edit_tensors=None):
    """A copy of ``src`` with its config and/or tensors edited and the content hash recomputed (a crafted file)."""
    tensors, meta = read_tensors(src)
    tensors = {k: v.clone() for k, v in tensors.items()}
    if edit_config:
        configs = [meta["config"]] if "config" in meta else [p["config"] for p in meta["parts"].values()]
        for cfg in configs:
            edit_config(cfg)
    if edit_tensors:
        edit_tensors(tensors)
    meta.pop("content_hash")
    save_tensors(dst, tensors, meta)
    return dst


@pytest.mark.parametrize("name", BUNDLED)
@pytest.mark.parametrize("resolution", [8192, 4096, 2, 48, "32", True])
def test_rehashed_resolution_is_a_checkpoint_error(tmp_path, name, resolution):
    bad = _crafted(available_models()[name], tmp_path / "bad.safetensors",
                   edit_config=lambda c: c.update(resolution=resolution) if "resolution" in c else None)  # fmt: skip
    with pytest.raises(CheckpointError) as e:
        ganserve.load(bad)
    assert str(bad) in str(e.value) and "resolution" in str(e.value)


def test_a_derived_size_of_zero_is_a_checkpoint_error(tmp_path, tiny_path):
    # 4096 px passes the generic range, but channel_base // 4096 channels is 0 for the tiny StyleGAN2
    bad = _crafted(tiny_path, tmp_path / "bad.safetensors", edit_config=lambda c: c.update(resolution=4096))
    with pytest.raises(CheckpointError, match="invalid stylegan2 config"):
        ganserve.load(bad)


@pytest.mark.parametrize("tensor", ["mapping.w_avg", "mapping.fc0.weight", "synthesis.b4.const"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_tensors_are_refused_by_name(tmp_path, tiny_path, tensor, value):
    def poison(tensors):
        tensors[tensor].view(-1)[3] = value

    bad = _crafted(tiny_path, tmp_path / "bad.safetensors", edit_tensors=poison)
    with pytest.raises(CheckpointError) as e:
        ganserve.load(bad)
    assert f"tensor '{tensor}'" in str(e.value) and "1 NaN or infinite" in str(e.value) and str(bad) in str(e.value)


def test_check_finite_on_every_float_dtype():
    big = torch.full([4], 1e308, dtype=torch.float64)  # finite, though its sum overflows: must pass
    check_finite("f", {"big": big, "ints": torch.arange(3), "empty": torch.empty(0), "h": torch.ones(3).half()})
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        for value in (float("nan"), float("inf")):
            t = torch.zeros(5, dtype=dtype)
            t[1] = value
            with pytest.raises(CheckpointError, match="tensor 'w' holds 1 NaN or infinite value"):
                check_finite("f", {"ok": torch.ones(2), "w": t})


@pytest.mark.parametrize(
    "edit",
    [{"channel_max": -5}, {"channel_max": 1 << 20}, {"img_channels": 0}, {"c_dim": -1}, {"w_dim": 2.5},
     {"channel_base": 10**30}, {"conv_clamp": float("nan")}],
)  # fmt: skip
def test_bad_config_values_name_the_key(tmp_path, tiny_path, edit):
    bad = _crafted(tiny_path, tmp_path / "bad.safetensors", edit_config=lambda c: c.update(edit))
    with pytest.raises(CheckpointError) as e:
        ganserve.load(bad)
    assert next(iter(edit)) in str(e.value) and str(bad) in str(e.value)


def test_check_config_rules():
    ok = {"resolution": 1024, "img_channels": 3, "c_dim": 0, "cmap_dim": 0, "g_channels": [512, 256],
          "eps": 1e-4, "class_names": ["a"], "layers": [[True, 4, 2]], "conv_clamp": None}  # fmt: skip
    check_config("f", ok)
    for bad, key in [({"g_channels": [512, 0]}, "g_channels[1]"), ({"eps": float("nan")}, "eps"),
                     ({"layers": [[True, 4, float("inf")]]}, "layers[0][2]"), ({"z_dim": True}, "z_dim"),
                     ({"resolution": 4096 * 2}, "resolution")]:  # fmt: skip
        with pytest.raises(CheckpointError) as e:
            check_config("f", {**ok, **bad}, part="prior")
        assert str(e.value).startswith(f"f: config of part 'prior': '{key}' must be")


def test_cli_reports_a_crafted_checkpoint_without_a_traceback(tmp_path, tiny_path):
    bad = _crafted(tiny_path, tmp_path / "bad.safetensors", edit_config=lambda c: c.update(resolution=8192))
    proc = subprocess.run(ganserve_cmd("sample", "--model", str(bad), "--out", str(tmp_path / "x.png")),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr and "'resolution' must be a power of two in [4, 4096], got 8192" in proc.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("name", BUNDLED)
def test_skeleton_matches_a_plain_meta_build(name):
    """shape_only answers pointwise, reduction and factory ops itself: the state dict must come out the same."""
    meta = read_metadata(available_models()[name])
    fam = get_family(meta["family"])
    specs = {n: (fam.parts[n], p["config"]) for n, p in meta["parts"].items()} if "parts" in meta else {
        "": (fam.generator, meta["config"])}  # fmt: skip
    for spec, config in specs.values():
        cfg = spec.make_config(config)
        with torch.device("meta"):
            plain = spec.build(cfg).state_dict(keep_vars=True)
        ours = build_on_meta(lambda spec=spec, cfg=cfg: spec.build(cfg)).state_dict(keep_vars=True)
        assert {k: (tuple(v.shape), v.dtype) for k, v in ours.items()} == {
            k: (tuple(v.shape), v.dtype) for k, v in plain.items()}  # fmt: skip
        assert all(v.is_meta for v in ours.values())


def test_skeleton_ops_give_torch_shapes_and_dtypes():
    def build():
        x = torch.randn(3, 1, 5)
        i = torch.randint(0, 4, [2, 3])
        return [x / 2, x * torch.ones(4, 1), i / i, i // 2, i > 1, x.sum(), x.sum(dim=[0, 2], keepdim=True),
                torch.linalg.vector_norm(x, dim=-1), torch.full([2], 7), x.normal_(), torch.sqrt(i),
                x.to(torch.float16) + torch.zeros((), dtype=torch.float64), torch.ones(3, 4).unsqueeze_(0),
                torch.ones(3, 4).t_(), torch.zeros(2).mul_(3)]  # fmt: skip

    with torch.device("meta"):
        plain = build()
    ours = build_on_meta(build)
    assert [(tuple(t.shape), t.dtype) for t in ours] == [(tuple(t.shape), t.dtype) for t in plain]
    assert all(t.is_meta for t in ours)


LOAD_ALL = """
import sys, ganserve
names = sys.argv[1:]
for name in names:
    ganserve.load(name)
print(",".join(m for m in ("torch._dynamo", "sympy", "triton") if m in sys.modules) or "none")
"""


def test_loading_imports_no_dynamo():
    """Every bundled model loads without torch._dynamo, sympy or triton (150 MiB, seconds of each cold load)."""
    assert BUNDLED, "no bundled checkpoints in this install"
    proc = subprocess.run([sys.executable, "-c", LOAD_ALL, *BUNDLED], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "none"


def test_cold_load_bench_runs_both_candidates(capsys):
    from ganserve.benchmarks.load import main

    assert main(["--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "plain      median" in out and "imports torch._dynamo, sympy, triton" in out
    assert "shape_only median" in out and "imports none of torch._dynamo/sympy/triton" in out
    assert "shape_only vs plain: " in out
