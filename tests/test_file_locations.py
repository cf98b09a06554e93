"""Files where they belong: the directions cache in the user's cache folder (never beside the checkpoint, which may be
the source tree or site-packages), and written checkpoints and exports with the mode the umask gives a plain file."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from safetensors.torch import save_file

import ganserve
from ganserve import directions
from ganserve.checkpoint import atomic_write_bytes, current_umask
from ganserve.export.bundle import atomic_output
from tests.conftest import make_tiny_generator


@pytest.fixture()
def umask():
    """Set a umask for one test (restored after): ``umask(0o027)``."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_directions_cache_goes_to_the_user_cache_not_beside_the_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"  # writable: the old code wrote its cache here
    ganserve.save_generator(folder / "tiny.safetensors", make_tiny_generator(2))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    model = ganserve.load(folder / "tiny.safetensors")
    directions.get(model, "sefa")
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.safetensors"]
    (cached,) = (tmp_path / "xdg" / "ganserve" / "directions").iterdir()
    assert cached == directions.cache_path(model, "sefa") and cached.name.startswith("tiny.sefa-")


def test_directions_cache_default_is_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert directions.cache_dir() == tmp_path / ".cache" / "ganserve" / "directions"


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_current_umask_reads_without_changing(umask, mask):
    umask(mask)
    assert current_umask() == mask
    assert current_umask() == mask  # unchanged by reading


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_checkpoints_are_written_with_the_umask_mode(umask, tmp_path, mask):
    umask(mask)
    ganserve.save_generator(tmp_path / "g.safetensors", make_tiny_generator(1))
    atomic_write_bytes(tmp_path / "x.png", b"png")
    assert _mode(tmp_path / "g.safetensors") == 0o666 & ~mask
    assert _mode(tmp_path / "x.png") == 0o666 & ~mask


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_export_outputs_are_written_with_the_umask_mode(umask, tmp_path, mask):
    umask(mask)
    with atomic_output(tmp_path / "export") as tmp:
        (tmp / "graph.onnx").write_bytes(b"x")
        save_file({"w": torch.ones(2)}, str(tmp / "constants.safetensors"))  # safetensors writes 0600 by itself
        (tmp / "sub").mkdir(mode=0o700)
    with atomic_output(tmp_path / "model.mar", directory=False) as tmp:
        tmp.write_bytes(b"zip")
    assert _mode(tmp_path / "export") == 0o777 & ~mask
    assert _mode(tmp_path / "export" / "graph.onnx") == 0o666 & ~mask
    assert _mode(tmp_path / "export" / "constants.safetensors") == 0o666 & ~mask
    assert _mode(tmp_path / "export" / "sub") == 0o777 & ~mask
    assert _mode(tmp_path / "model.mar") == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "model.mar"]  # no temporaries left behind
