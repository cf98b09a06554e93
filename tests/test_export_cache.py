"""The backends' export cache: keyed by content hash and cache revision; older revisions are re-exported, then dropped.

Exporting is replaced by a stub that writes a manifest, so these tests check the cache's bookkeeping in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ganserve.checkpoint import read_metadata
from ganserve.export import cache
from ganserve.export.bundle import MANIFEST


@pytest.fixture()
def stubbed(tmp_path, monkeypatch):
    """GANSERVE_EXPORT_CACHE in tmp_path; export_graphs writes a manifest and records the folder; load_exported
    returns the folder it was given."""
    root = tmp_path / "export-cache"
    monkeypatch.setenv("GANSERVE_EXPORT_CACHE", str(root))
    exported: list[Path] = []

    def fake_export(model, fmt, out, force=False):
        Path(out).mkdir(parents=True)
        (Path(out) / MANIFEST).write_text("{}")
        exported.append(Path(out))

    monkeypatch.setattr(cache, "export_graphs", fake_export)
    monkeypatch.setattr(cache, "load_exported", lambda folder, device, fmt, **_: Path(folder))
    return root, exported


def _stem(ckpt: Path, fmt: str) -> str:
    digest = read_metadata(ckpt)["content_hash"].split(":", 1)[1][:16]
    return f"{ckpt.stem}-{digest}-{fmt}"


def test_exports_once_per_revision_and_reuses_it(stubbed, tiny_path):
    root, exported = stubbed
    first = cache.load_or_export("onnx", tiny_path)
    assert first == root / f"{_stem(tiny_path, 'onnx')}-r{cache.CACHE_REVISION}" and exported == [first]
    assert cache.load_or_export("onnx", tiny_path) == first and exported == [first]  # reused, not re-exported


def test_an_older_revision_is_not_reused_and_is_dropped(stubbed, tiny_path):
    """An export cached by an earlier ganserve (no revision in its name, or an older one) may lack what exports now
    ship (StyleGAN's directions): it is re-exported, and the stale folder removed."""
    root, exported = stubbed
    stem = _stem(tiny_path, "onnx")
    stale = [root / stem, root / f"{stem}-r1"]
    for folder in stale:
        folder.mkdir(parents=True)
        (folder / MANIFEST).write_text("{}")
    other_format = root / f"{_stem(tiny_path, 'pt2')}-r1"
    other_format.mkdir()
    (other_format / MANIFEST).write_text("{}")
    current = cache.load_or_export("onnx", tiny_path)
    assert exported == [current] and current.name.endswith(f"-r{cache.CACHE_REVISION}")
    assert not any(f.exists() for f in stale)
    assert other_format.exists()  # another format's cache is its own
