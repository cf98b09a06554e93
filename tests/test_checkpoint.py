"""Checkpoint format: round trip, and a clear error naming the file for every kind of bad file."""

from __future__ import annotations

import json
import struct

import pytest
import torch

import ganserve
from ganserve.checkpoint import CheckpointError, read_metadata, save_tensors
from tests.conftest import make_tiny_generator


def test_round_trip_restores_every_tensor_and_the_metadata(tmp_path):
    G = make_tiny_generator(3)
    path = tmp_path / "g.safetensors"
    meta = ganserve.save_generator(path, G, dataset="random", training={"command": "x", "step": 7})
    loaded = ganserve.load(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for k, v in G.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    info = read_metadata(path)
    assert info["family"] == "stylegan2" and info["training"]["step"] == 7
    assert info["content_hash"] == meta["content_hash"] and info["format_version"] == 1
    assert "mapping.w_avg" in loaded.state_dict()
    z = torch.randn(2, G.config.z_dim)
    assert torch.equal(loaded(z), G(z))


def test_fp16_storage_loads_as_fp32(tmp_path):
    G = make_tiny_generator(4)
    path = tmp_path / "g16.safetensors"
    ganserve.save_generator(path, G, dtype=torch.float16)
    loaded = ganserve.load(path)
    assert loaded.mapping.fc0.weight.dtype == torch.float32
    assert torch.allclose(loaded.mapping.fc0.weight, G.mapping.fc0.weight, rtol=1e-3, atol=1e-3)


def _saved(tmp_path) -> tuple:
    path = tmp_path / "good.safetensors"
    ganserve.save_generator(path, make_tiny_generator(5))
    return path, path.read_bytes()


def _rewrite_metadata(raw: bytes, edit) -> bytes:
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["ganserve"])
    edit(meta)
    header["__metadata__"]["ganserve"] = json.dumps(meta)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    return struct.pack("<Q", len(new)) + new + raw[8 + n :]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="file not found") as e:
        ganserve.load(tmp_path / "nope.safetensors")
    assert "nope.safetensors" in str(e.value)


def test_unknown_name_lists_the_models(tiny_models_dir, monkeypatch):
    monkeypatch.setenv("GANSERVE_CHECKPOINTS", str(tiny_models_dir))
    with pytest.raises(KeyError, match="tiny-cond"):
        ganserve.load("no-such-model")
    assert "tiny" in ganserve.available_models()


@pytest.mark.parametrize(
    "corrupt, fragment",
    [
        (lambda raw: raw[: len(raw) // 2], "truncated"),
        (lambda raw: raw[:5], "truncated"),
        (lambda raw: b"\x00" * 8 + raw[8:], "header"),
        (lambda raw: raw[:8] + b"{not json" + raw[17:], "corrupt safetensors header"),
        (lambda raw: raw[:-10] + bytes(b ^ 0xFF for b in raw[-10:]), "content hash mismatch"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m.update(family="biggan")), "not available"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m.update(family="dcgan")), "unknown family"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m["config"].update(channel_max=64)), "does not match"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m["config"].update(colour=1)), "invalid stylegan2 config"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m.update(format_version=99)), "newer"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m.pop("content_hash")), "lacks 'content_hash'"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, corrupt, fragment):
    _, raw = _saved(tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(corrupt(raw))
    with pytest.raises(CheckpointError) as e:
        ganserve.load(bad)
    assert fragment in str(e.value)
    assert str(bad) in str(e.value)


def test_not_a_ganserve_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a ganserve checkpoint"):
        ganserve.load(path)


def test_wrong_family_requested(tmp_path):
    path, _ = _saved(tmp_path)
    with pytest.raises(CheckpointError, match="wrong family"):
        ganserve.load(path, family="biggan")


def test_writes_are_atomic(tmp_path, monkeypatch):
    path, raw = _saved(tmp_path)
    import ganserve.checkpoint as ck

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(RuntimeError):
        save_tensors(path, {"x": torch.ones(1)}, {"family": "stylegan2", "config": {}})
    assert path.read_bytes() == raw  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["good.safetensors"]  # no temp file left behind
