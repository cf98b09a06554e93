"""Named semantic directions (ganserve.direction_names): an edit that measurably darkens is named for brightness, one
that moves the figure for its shift; a model's names are the same on every run and cached with its directions; the
checkpoint's ``direction_names`` override wins; exports ship them; the model description and the UI's sliders show
them."""

from __future__ import annotations

import numpy as np
import pytest

import ganserve
from ganserve import direction_names as dn
from ganserve import directions
from tests.conftest import make_tiny_generator


def figures(n: int = 4, size: int = 16) -> np.ndarray:
    """Light rectangles of different sizes on a black background, uint8 [n, size, size, 1]."""
    out = np.zeros([n, size, size, 1], np.uint8)
    for i in range(n):
        out[i, 4 : 10 + i % 3, 5 : 9 + i % 2] = 200
    return out


def test_an_edit_that_darkens_is_named_darker():
    minus = figures()
    assert dn.name_from_ends(minus, (minus * 0.5).astype(np.uint8)) == "darker"
    assert dn.name_from_ends((minus * 0.5).astype(np.uint8), minus) == "brighter"


def test_shapes_and_positions_are_named_by_their_largest_change():
    minus = figures()
    assert dn.name_from_ends(minus, np.roll(minus, 4, axis=2)) == "shift right"
    assert dn.name_from_ends(minus, np.roll(minus, -3, axis=1)) == "shift up"
    wide = minus.copy()
    wide[:, 4:10, 1:15] = 200  # same height, twice as wide
    assert dn.name_from_ends(minus, wide) in ("wider", "more ink")
    assert dn.name_from_ends(minus, minus) is None  # nothing changes: no name (the caller falls back)


def test_a_class_gaining_probability_names_the_direction():
    minus = figures()

    def classify(images):  # a stand-in classifier: "Bag" when the figure is white
        p = (images.reshape(len(images), -1).max(1, keepdims=True) >= 250).astype(float)
        return np.concatenate([1 - p, p], axis=1), ["Shirt", "Bag"]

    white = np.minimum(minus.astype(int) * 3, 255).astype(np.uint8)
    assert dn.name_from_ends(minus, white, classify) == "toward Bag"
    assert dn.name_from_ends(minus, white) == "brighter"  # without a classifier: the descriptor


def test_duplicates_and_overrides():
    assert dn.unique(["darker", "wider", "darker"]) == ["darker", "wider", "darker (2)"]
    names = ["darker", "wider", "direction 2"]
    assert dn.overridden(names, {"direction_names": {"sefa": ["smile", None, ""]}}, "sefa") == [
        "smile",
        "wider",
        "direction 2",
    ]
    assert dn.overridden(names, {"direction_names": {"pca": ["x"]}}, "sefa") == names
    assert dn.overridden(names, {"direction_names": ["age"]}, "pca")[0] == "age"


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_models_names_are_deterministic_cached_and_described(tiny_path, cache, tmp_path):
    first = directions.get(ganserve.load(tiny_path), "sefa")
    assert len(first.names) == len(first) == directions.DEFAULT_COUNT
    assert first.names[dn.NAMED :] == [f"direction {k}" for k in range(dn.NAMED, len(first))]
    assert any(not n.startswith("direction") for n in first.names[: dn.NAMED])  # measured names, not all fallbacks
    assert len(set(first.names)) == len(first.names)
    # Another run from scratch (no cache) measures the same names.
    again_cache = tmp_path / "other"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(again_cache))
        assert directions.get(ganserve.load(tiny_path), "sefa").names == first.names
    # Stored with the directions: a fresh load reads them back without measuring.
    model = ganserve.load(tiny_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dn, "measured", lambda *a: pytest.fail("names measured again despite the cache"))
        assert directions.get(model, "sefa").names == first.names
    desc = directions.describe(model)  # every method's names (pca's measured now)
    assert desc["names"]["sefa"] == first.names and len(desc["names"]["pca"]) == directions.DEFAULT_COUNT


def test_a_class_conditional_model_is_named_class_by_seed(tiny_models_dir, cache):
    names = directions.get(ganserve.load(tiny_models_dir / "tiny-cond.safetensors"), "sefa").names
    assert len(names) == directions.DEFAULT_COUNT and any(not n.startswith("direction") for n in names)


def test_the_checkpoints_override_wins(tmp_path, cache):
    path = tmp_path / "named.safetensors"
    ganserve.save_generator(path, make_tiny_generator(), dataset="random",
                            direction_names={"sefa": ["smile", None, "age"]})  # fmt: skip
    found = directions.get(ganserve.load(path), "sefa")
    plain_path = tmp_path / "plain.safetensors"
    ganserve.save_generator(plain_path, make_tiny_generator(), dataset="random")
    plain = directions.get(ganserve.load(plain_path), "sefa")
    assert found.names[0] == "smile" and found.names[2] == "age"
    assert found.names[1] == plain.names[1] and found.names[3:] == plain.names[3:]  # the rest measured


def test_an_export_ships_the_names(tiny_path, cache):
    from ganserve.export.stylegan2 import StyleGAN2Exporter, directions_constants, read_directions

    model = ganserve.load(tiny_path)
    manifest = StyleGAN2Exporter().manifest(model)
    shipped = read_directions(directions_constants(model), manifest["direction_names"])
    for method in directions.METHODS:
        assert shipped[method].names == directions.get(model, method).names
    assert read_directions(directions_constants(model))["sefa"].name(0) == "direction 0"  # an older export


def test_the_ui_labels_each_slider_with_its_directions_name(tiny_models_dir, cache):
    pytest.importorskip("gradio")
    from ganserve.ui.app import build_app
    from ganserve.ui.backend import LocalBackend
    from ganserve.ui.page import Page
    from ganserve.ui.panels import directions as panel

    backend = LocalBackend({"tiny": tiny_models_dir / "tiny.safetensors"})
    names = directions.get(ganserve.load(tiny_models_dir / "tiny.safetensors"), "sefa").names
    app = build_app(backend)
    sliders = {b.elem_id: b for b in app.blocks.values() if str(getattr(b, "elem_id", "")).startswith("edit-")}
    for k in range(3):
        want = f"Direction {k}" if names[k] == f"direction {k}" else f"{k}: {names[k]}"
        assert sliders[f"edit-{k}"].label == want
    # The method switch relabels them with that method's names.
    pca = directions.get(ganserve.load(tiny_models_dir / "tiny.safetensors"), "pca").names
    updates = panel.labels(Page(backend))("tiny", "pca")
    assert [u["label"] for u in updates[:3]] == [
        f"Direction {k}" if pca[k] == f"direction {k}" else f"{k}: {pca[k]}" for k in range(3)
    ]


def test_sample_list_with_a_model_lists_its_directions_by_name(tiny_models_dir, tmp_path):
    import os
    import subprocess

    from tests.conftest import ganserve_cmd

    env = {**os.environ, "GANSERVE_CHECKPOINTS": str(tiny_models_dir), "XDG_CACHE_HOME": str(tmp_path / "c")}
    proc = subprocess.run(ganserve_cmd("sample", "--model", "tiny", "--list"), capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
        names = directions.get(ganserve.load(tiny_models_dir / "tiny.safetensors"), "pca").names
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["METHOD", "K", "NAME"]
    assert f"pca     3   {names[3]}" in lines
