"""Importing official checkpoints without running their code: StyleGAN2-ADA pickles and rosinality .pt files.

Release-layout files are built here from the documented layouts (StyleGAN2-ADA: persistence objects holding
init kwargs and module state; rosinality: ``g_ema`` state dicts with its key names), so the round trip is tested
everywhere. Where a checkout of the official code is available (``GANSERVE_SG2ADA_SRC`` / ``GANSERVE_ROSINALITY_SRC``,
never vendored), the imported model is also compared with the official one on the same weights.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import ganserve
from ganserve.importers import ImportError_, detect, import_checkpoint, read_source
from ganserve.importers.safe_pickle import UnsafePickleError, load
from ganserve.sampling import sample
from tests.conftest import ganserve_cmd, make_tiny_generator

# ---------------------------------------------------------------------------------------------------------------------
# StyleGAN2-ADA: a release-layout pickle


def _persistence_module() -> types.ModuleType:
    """A stand-in for torch_utils.persistence, only so that pickle can name its hook when writing the file."""
    mod = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # never called: reading goes through ganserve's allow-list
        raise AssertionError("the persistence hook must not run")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    return mod


class _Persistent:
    def __init__(self, fn, class_name: str, state: dict) -> None:
        self.fn, self.class_name, self.state = fn, class_name, state

    def __reduce__(self):
        meta = {"type": "class", "version": 6, "module_src": "# source that ganserve never runs\n",
                "class_name": self.class_name, "state": self.state}  # fmt: skip
        return self.fn, (meta,)


def _as_persistent(fn, module: torch.nn.Module, class_name: str, init_kwargs: dict | None = None) -> _Persistent:
    # The FIR filters are persistent buffers in the official code: put them back, as a real pickle has them.
    buffers = OrderedDict(module.named_buffers(recurse=False))
    state = {
        "training": False,
        "_parameters": OrderedDict(module.named_parameters(recurse=False)),
        "_buffers": buffers,
        "_modules": OrderedDict((n, _as_persistent(fn, m, type(m).__name__)) for n, m in module.named_children()),
        "_init_args": (),
        "_init_kwargs": init_kwargs or {},
    }
    return _Persistent(fn, class_name, state)


def sg2_ada_pickle(G, path: Path) -> Path:
    cfg = G.config
    kwargs = {"z_dim": cfg.z_dim, "c_dim": cfg.c_dim, "w_dim": cfg.w_dim, "img_resolution": cfg.resolution,
              "img_channels": cfg.img_channels, "mapping_kwargs": {"num_layers": cfg.mapping_layers},
              "synthesis_kwargs": {"channel_base": cfg.channel_base, "channel_max": cfg.channel_max,
                                   "num_fp16_res": 0, "conv_clamp": cfg.conv_clamp}}  # fmt: skip
    mod = _persistence_module()
    parent = types.ModuleType("torch_utils")
    parent.persistence = mod
    sys.modules.update({"torch_utils": parent, "torch_utils.persistence": mod})
    try:
        data = {"G": _as_persistent(mod._reconstruct_persistent_obj, G, "Generator", kwargs),
                "G_ema": _as_persistent(mod._reconstruct_persistent_obj, G, "Generator", kwargs),
                "D": None, "augment_pipe": None, "training_set_kwargs": {"resolution": cfg.resolution}}  # fmt: skip
        path.write_bytes(pickle.dumps(data))
    finally:
        del sys.modules["torch_utils.persistence"], sys.modules["torch_utils"]
    return path


@pytest.mark.parametrize("overrides", [{}, {"c_dim": 3, "class_names": ["a", "b", "c"]}])
def test_sg2_ada_pickle_round_trip(tmp_path, overrides):
    G = make_tiny_generator(7, **overrides)
    src = sg2_ada_pickle(G, tmp_path / "network-snapshot.pkl")
    assert detect(src, read_source(src)) == "sg2-ada"
    imported, meta = import_checkpoint(src, tmp_path / "imported.safetensors", command="ganserve import x")
    assert meta["training"]["imported_from"]["format"] == "sg2-ada"
    assert len(meta["training"]["imported_from"]["sha256"]) == 64
    ours = ganserve.load(tmp_path / "imported.safetensors")
    for k, v in G.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    assert any(k.endswith("resample_filter") for k in imported.unused)
    req = {"seeds": [1, 2], "truncation_psi": 0.7, **({"class": 1} if overrides else {})}
    assert np.array_equal(sample(ours, req).images, sample(G, req).images)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"\x80\x04" + pickle.dumps({"G_ema": _Evil(marker)}, protocol=4)[2:])
    with pytest.raises(UnsafePickleError, match=r"refused to load (posix|os)\.system"):
        load(evil.read_bytes())
    with pytest.raises(ImportError_, match="system"):
        import_checkpoint(evil, tmp_path / "out.safetensors", source="sg2-ada")
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_storage_bytes_are_read_weights_only(tmp_path):
    """torch's storage hook would unpickle nested bytes with weights_only=False; ganserve's reads them safely."""
    marker = tmp_path / "nested"
    inner = io.BytesIO()
    pickle.dump(_Evil(marker), inner)
    payload = pickle.dumps(torch.zeros(1))  # a real storage record, then swap in the hostile bytes
    crafted = pickle.dumps({"G_ema": None})
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do, as long as nothing ran
        from ganserve.importers.safe_pickle import _storage_from_bytes

        _storage_from_bytes(inner.getvalue())
    assert load(payload).shape == (1,) and load(crafted) == {"G_ema": None}
    assert not marker.exists()


def test_missing_and_unsupported_are_refused_by_name(tmp_path):
    G = make_tiny_generator(8)
    src = sg2_ada_pickle(G, tmp_path / "a.pkl")
    with torch.no_grad():
        del G.mapping.fc1
    bad = tmp_path / "b.pkl"
    G.mapping.num_layers = 2  # the kwargs still say 2 layers: fc1 is missing from the state
    sg2_ada_pickle(G, bad)
    with pytest.raises(ImportError_, match=r"missing tensors \['mapping.fc1"):
        import_checkpoint(bad, tmp_path / "b.safetensors")
    with pytest.raises(ImportError_, match="unknown source format"):
        import_checkpoint(src, tmp_path / "c.safetensors", source="caffe")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ImportError_, match="not a file of any known release format"):
        import_checkpoint(junk, tmp_path / "d.safetensors")


def _official(env: str) -> Path | None:
    path = os.environ.get(env)
    return Path(path) if path and Path(path).is_dir() else None


@pytest.mark.skipif(_official("GANSERVE_SG2ADA_SRC") is None, reason="no stylegan2-ada-pytorch checkout given")
def test_sg2_ada_parity_with_the_official_code(tmp_path):
    script = f"""
import sys, copy, pickle, torch
sys.path.insert(0, {str(_official("GANSERVE_SG2ADA_SRC"))!r})
from training import networks
torch.manual_seed(0)
G = networks.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
    mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=512, channel_max=64, conv_clamp=256))
with torch.no_grad():
    for n, p in G.named_parameters():
        if n.endswith(("noise_strength", "bias")): p.normal_(0, 0.2)
    G.mapping.w_avg.normal_()
pickle.dump({{"G_ema": G.eval()}}, open({str(tmp_path / "off.pkl")!r}, "wb"))
z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
outs = {{}}
for psi in (1.0, 0.7, 0.0):
    outs[psi] = G(z, None, truncation_psi=psi, noise_mode="const", force_fp32=True)
ws = G.mapping(z, None); ws2 = G.mapping(z.flip(0), None); ws[:, 2:5] = ws2[:, 2:5]
outs["mix"] = G.synthesis(ws, noise_mode="const", force_fp32=True)
torch.save({{"z": z, "outs": outs, "ws": ws}}, {str(tmp_path / "ref.pt")!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    import_checkpoint(tmp_path / "off.pkl", tmp_path / "ours.safetensors")
    ours = ganserve.load(tmp_path / "ours.safetensors")
    ref = torch.load(tmp_path / "ref.pt", weights_only=True)
    torch.set_grad_enabled(False)
    for psi in (1.0, 0.7, 0.0):
        got = ours.synthesis(ours.mapping(ref["z"], None, psi), noise_mode="const")
        assert float((got - ref["outs"][psi]).abs().max()) <= 1e-4, psi
    got = ours.synthesis(ref["ws"], noise_mode="const")
    torch.set_grad_enabled(True)
    assert float((got - ref["outs"]["mix"]).abs().max()) <= 1e-4


# ---------------------------------------------------------------------------------------------------------------------
# rosinality: a release-layout .pt


def to_rosinality(G) -> dict[str, torch.Tensor]:
    """Our StyleGAN2 under rosinality's documented key names and shapes (the inverse of the importer's table)."""
    sd, out = G.state_dict(), {}
    for i in range(G.config.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    res = G.config.block_resolutions
    layers = [("conv1", "synthesis.b4.conv1")]
    for k, r in enumerate(res[1:]):
        layers += [(f"convs.{2 * k}", f"synthesis.b{r}.conv0"), (f"convs.{2 * k + 1}", f"synthesis.b{r}.conv1")]
    for i, (theirs, ours) in enumerate(layers):
        out[f"{theirs}.conv.weight"] = sd[f"{ours}.weight"][None]
        out[f"{theirs}.conv.modulation.weight"] = sd[f"{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = sd[f"{ours}.affine.bias"]
        out[f"{theirs}.noise.weight"] = sd[f"{ours}.noise_strength"].reshape(1)
        out[f"{theirs}.activate.bias"] = sd[f"{ours}.bias"]
        out[f"noises.noise_{i}"] = sd[f"{ours}.noise_const"][None, None]
    for k, r in enumerate(res):
        theirs = "to_rgb1" if r == 4 else f"to_rgbs.{k - 1}"
        out[f"{theirs}.conv.weight"] = sd[f"synthesis.b{r}.torgb.weight"][None]
        out[f"{theirs}.conv.modulation.weight"] = sd[f"synthesis.b{r}.torgb.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = sd[f"synthesis.b{r}.torgb.affine.bias"]
        out[f"{theirs}.bias"] = sd[f"synthesis.b{r}.torgb.bias"].reshape(1, -1, 1, 1)
        if r > 4:
            out[f"{theirs}.upsample.kernel"] = torch.ones(4, 4)
    return out


def test_rosinality_round_trip(tmp_path):
    # rosinality's channels are 512 up to 32 px: a 16 px model with 512 channels and 32-d styles.
    G = make_tiny_generator(9, channel_base=16384, channel_max=512)
    src = tmp_path / "050000.pt"
    torch.save({"g_ema": to_rosinality(G), "g": {}, "d": {}, "args": argparse.Namespace(mlp_lr=0.01, size=16)}, src)
    assert detect(src, read_source(src)) == "rosinality"
    imported, _ = import_checkpoint(src, tmp_path / "r.safetensors")
    ours = ganserve.load(tmp_path / "r.safetensors")
    for k, v in G.state_dict().items():
        if k != "mapping.w_avg":
            assert torch.equal(ours.state_dict()[k], v), k
    assert "computed" in imported.notes[0] and any("upsample.kernel" in k for k in imported.unused)
    # w_avg is derived: the mean of the mapping over a fixed sample, close to a fresh estimate
    fresh = G.mapping(torch.randn(20_000, G.config.z_dim, generator=torch.Generator().manual_seed(5)), None)[:, 0]
    assert float((ours.mapping.w_avg - fresh.mean(0)).norm() / fresh.mean(0).norm()) < 0.05
    assert np.array_equal(sample(ours, seeds=[1, 2]).images, sample(G, seeds=[1, 2]).images)


def test_rosinality_files_with_code_are_refused(tmp_path):
    marker = tmp_path / "ran"
    src = tmp_path / "evil.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(1)}, "x": _Evil(marker)}, src)
    with pytest.raises(ImportError_, match="weights-only"):
        import_checkpoint(src, tmp_path / "o.safetensors", source="rosinality")
    assert not marker.exists()


def test_cli_import_prints_what_it_mapped_and_serves_it(tmp_path):
    G = make_tiny_generator(10)
    src = sg2_ada_pickle(G, tmp_path / "ffhq.pkl")
    out = tmp_path / "ffhq.safetensors"
    proc = subprocess.run(ganserve_cmd("import", str(src), "--from", "auto", "--out", str(out)), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "found: sg2-ada checkpoint -> stylegan2 at 16 px" in proc.stdout and "left unused" in proc.stdout
    meta = ganserve.loading.read_metadata(out)
    assert meta["training"]["imported_from"]["command"].startswith("ganserve import")
    again = subprocess.run(ganserve_cmd("import", str(src), "--out", str(out)), capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 2 and "--force" in again.stderr
    assert np.array_equal(sample(ganserve.load(out), seeds=[3]).images, sample(G, seeds=[3]).images)
