"""ganserve sample --backend: the CLI reaches the same backends as HTTP (ganserve serve --backend), graph backends
exported once into the export cache; an unknown backend or a precision a graph cannot run is a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ganserve.cli import main


def _sample(tiny_path, out, *extra: str) -> int:
    return main(["sample", "--model", str(tiny_path), "--seeds", "0-3", "--psi", "0.7", "--out", str(out), *extra])


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def test_sample_on_the_onnx_backend_gives_the_eager_pixels(tiny_path, tmp_path, capsys, monkeypatch):
    from export.cache import cache_root
    from ganserve.commands import sample

    loaded, real = [], sample.load_backend

    def spy(name, *args, **kwargs):
        model = real(name, *args, **kwargs)
        loaded.append((name, type(model).__module__))
        return model

    monkeypatch.setattr(sample, "load_backend", spy)
    eager, onnx = tmp_path / "eager.png", tmp_path / "onnx.png"
    assert _sample(tiny_path, eager) == 0
    assert _sample(tiny_path, onnx, "--backend", "onnx") == 0
    (_, eager_module), (name, onnx_module) = loaded
    assert name == "onnx" and onnx_module != eager_module  # the graphs ran, not the eager generator
    a, b = _pixels(eager), _pixels(onnx)
    assert a.shape == b.shape and a.shape[0] > 16  # a grid of the four seeds, not one image
    assert np.abs(a - b).max() <= 1  # within one uint8 level
    assert list(cache_root().glob(f"{tiny_path.stem}-*-onnx-*"))  # exported into the cache, as serve's workers do
    capsys.readouterr()


def test_an_unknown_backend_is_a_one_line_error_naming_the_flag(tiny_path, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert _sample(tiny_path, out, "--backend", "tensorrt") == 2
    err = capsys.readouterr().err
    assert "--backend: unknown backend 'tensorrt'" in err and "onnx" in err and err.count("\n") == 1
    assert not out.exists()


def test_a_graph_backend_refuses_another_precision_before_exporting(tiny_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GANSERVE_EXPORT_CACHE", str(tmp_path / "cache"))
    assert _sample(tiny_path, tmp_path / "x.png", "--backend", "pt2", "--precision", "bf16") == 2
    err = capsys.readouterr().err
    assert "--precision bf16 applies to --backend eager" in err and err.count("\n") == 1
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("backend", ["eager", "onnx"])
def test_a_flag_the_family_does_not_take_is_refused_on_every_backend(backend, tiny_path, tmp_path, capsys):
    """The per-family flag check runs on the backend's model too (it has the family of the checkpoint)."""
    assert _sample(tiny_path, tmp_path / "x.png", "--backend", backend, "--temperature", "0.5") == 2
    assert "--temperature does not apply to a stylegan2 model" in capsys.readouterr().err
