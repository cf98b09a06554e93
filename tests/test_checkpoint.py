"""Checkpoint format: round trip, and a clear error naming the file for every kind of bad file."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load as safetensors_load

import ganserve
from ganserve.checkpoint import CheckpointError, content_hash, read_metadata, save_tensors, update_metadata
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
    assert info["content_hash"] == meta["content_hash"] and info["format_version"] == 2
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


def _rewrite_header(raw: bytes, edit_header) -> bytes:
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit_header(header)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    return struct.pack("<Q", len(new)) + new + raw[8 + n :]


def _rewrite_metadata(raw: bytes, edit, rehash: bool = False) -> bytes:
    """Edit the ganserve metadata; ``rehash`` recomputes the content hash as a crafted (not corrupted) file would."""

    def edit_header(header):
        meta = json.loads(header["__metadata__"]["ganserve"])
        edit(meta)
        if rehash:
            meta["content_hash"] = content_hash(safetensors_load(raw), meta)
        header["__metadata__"]["ganserve"] = json.dumps(meta)

    return _rewrite_header(raw, edit_header)


def _set_meta(value):
    def edit_header(header):
        header["__metadata__"]["ganserve"] = json.dumps(value)

    return edit_header


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
        (lambda raw: raw[:8] + b"{not json" + raw[17:], "invalid JSON in header"),
        (lambda raw: raw[:-10] + bytes(b ^ 0xFF for b in raw[-10:]), "content hash mismatch"),
        # The hash covers the metadata: an edited config is caught like an edited weight.
        (lambda raw: _rewrite_metadata(raw, lambda m: m["config"].update(conv_clamp=1.0)), "content hash mismatch"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m["config"].update(resample_filter=[1, 1])), "hash mismatch"),
        # Crafted files with a matching hash are still checked structurally.
        (lambda raw: _rewrite_metadata(raw, lambda m: m.update(family="planned_gan"), True), "not available"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m.update(family="dcgan"), True), "unknown family"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m["config"].update(channel_max=64), True), "does not match"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m["config"].update(colour=1), True), "invalid stylegan2 config"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m["config"].update(mapping_layers=10**8), True),
         "mapping_layers must be an integer in [1, 64]"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m["config"].update(channel_max=10**9), True), "channel_max"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m["config"].update(resolution=48), True), "power of two"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m.update(format_version=99)), "newer"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m.update(format_version="2")), "'format_version' must be int"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m.pop("content_hash")), "lacks 'content_hash'"),
        (lambda raw: _rewrite_metadata(raw, lambda m: m.pop("config")), "lacks a 'config' object"),
        # Malformed safetensors headers: each a CheckpointError, never an AttributeError / KeyError / TypeError.
        (lambda raw: _rewrite_header(raw, lambda h: h.clear() or h.update(x=[])), "not a valid safetensors file"),
        (lambda raw: _rewrite_header(raw, lambda h: h["mapping.w_avg"].pop("data_offsets")), "not a valid safetensors"),
        (lambda raw: _rewrite_header(raw, lambda h: h["mapping.w_avg"].update(data_offsets=["0", "4"])), "not a valid"),
        (lambda raw: _rewrite_header(raw, lambda h: h.update(__metadata__=[])), "not a valid safetensors file"),
        (lambda raw: _rewrite_header(raw, _set_meta([1, 2])), "metadata must be a JSON object"),
        (lambda raw: _rewrite_header(raw, _set_meta({"format_version": 2, "family": 3, "content_hash": "x"})),
         "'family' must be str"),
        (lambda raw: b"[1,2]".ljust(8) + raw[8:], "not a valid safetensors file"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, corrupt, fragment, monkeypatch):
    # a family ganserve is designed for but that has not landed: named "not available", not "unknown"
    monkeypatch.setattr("ganserve.families.DESIGNED", ("planned_gan",))
    _, raw = _saved(tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(corrupt(raw))
    with pytest.raises(CheckpointError) as e:
        ganserve.load(bad)
    assert fragment in str(e.value)
    assert str(bad) in str(e.value)


def test_header_as_a_list(tmp_path):
    bad = tmp_path / "list.safetensors"
    body = b"[1, 2, 3]     "
    bad.write_bytes(struct.pack("<Q", len(body)) + body)
    with pytest.raises(CheckpointError, match="not a valid safetensors file") as e:
        ganserve.load(bad)
    assert str(bad) in str(e.value)


def test_format_1_files_still_load(tmp_path):
    """Files written before the hash covered the metadata (tensors only) load unchanged."""
    path, raw = _saved(tmp_path)
    old = tmp_path / "v1.safetensors"

    def to_v1(meta):
        meta["format_version"] = 1
        meta["content_hash"] = content_hash(safetensors_load(raw))

    old.write_bytes(_rewrite_metadata(raw, to_v1))
    z = torch.randn(2, 32)
    assert torch.equal(ganserve.load(old)(z), ganserve.load(path)(z))


def test_update_metadata_keeps_tensors_and_rehashes(tmp_path):
    path, _ = _saved(tmp_path)
    before = read_metadata(path)
    meta = update_metadata(path, {"evaluation": {"fid": 12.5, "n": 1000}})
    after = read_metadata(path)
    assert after["evaluation"] == {"fid": 12.5, "n": 1000} and after["config"] == before["config"]
    assert after["content_hash"] == meta["content_hash"] != before["content_hash"]
    ganserve.load(path)  # the new hash verifies
    with pytest.raises(ValueError, match="config"):
        update_metadata(path, {"config": {}})


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


def test_written_files_get_the_umask_mode(tmp_path):
    import os

    path, _ = _saved(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
