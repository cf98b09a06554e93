"""The Seed tab's history: the last 12 renders (per session, oldest out), a click restores one's settings or shows it
as A / B in a side-by-side slider; live previews are not recorded."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import ganserve
from ganserve.sampling import encode_result
from ganserve.ui.app import build_app
from ganserve.ui.backend import LocalBackend
from ganserve.ui.panels import history
from ganserve.ui.restore import declared_values
from tests.test_external_family import _checkpoint, plugin  # noqa: F401


@pytest.fixture(scope="module")
def backend(tiny_models_dir):
    return LocalBackend({"tiny-cond": tiny_models_dir / "tiny-cond.safetensors"})


@pytest.fixture(scope="module")
def app(backend):
    return build_app(backend)


def by_id(app) -> dict:
    return {b.elem_id: b for b in app.blocks.values() if getattr(b, "elem_id", None)}


def fn_for(app, elem_id: str, event: str):
    c = by_id(app)[elem_id]
    (fn,) = [f for f in app.fns.values() if (c._id, event) in [tuple(t) for t in f.targets] and f.fn]
    return fn


def start(fn) -> dict:
    return {c: getattr(c, "value", None) for c in fn.inputs}


def history_state(app):
    """(the history's State, the strip): the one State a Generate writes a list of renders to."""
    fn = fn_for(app, "generate", "click")
    out = fn.fn(start(fn))
    states = [
        c for c, v in out.items() if type(c).__name__ == "State" and isinstance(v, list) and v and "params" in v[0]
    ]
    assert len(states) == 1
    return states[0], by_id(app)["history-strip"]


def generate(app, d: dict, **settings) -> tuple[dict, dict]:
    """Press Generate with ``settings`` (by elem_id) on top of ``d``; -> (the outputs, the next event's values)."""
    fn = fn_for(app, "generate", "click")
    ids = by_id(app)
    d = {**d, **{ids[k]: v for k, v in settings.items()}}
    out = fn.fn(d)
    assert ids["params"] in out, out.get(ids["status"])
    nxt = dict(d)
    for c, v in out.items():  # the state the page carries to the next event
        if type(c).__name__ == "State":
            nxt[c] = v
    return out, nxt


def test_pushed_is_bounded_newest_first_no_repeats():
    h: list = []
    for s in range(15):
        h = history.pushed(h, f"/img/{s}.png", {"seeds": [s]})
    assert len(h) == history.HISTORY_SIZE == 12
    assert [e["params"]["seeds"][0] for e in h] == list(range(14, 2, -1))  # 0, 1, 2 went out
    assert history.pushed(h, "/img/again.png", {"seeds": [14]}) == h  # the same render twice is one entry


def test_renders_fill_the_strip_bounded_per_session(app):
    state, strip = history_state(app)
    d = start(fn_for(app, "generate", "click"))
    for s in range(14):
        out, d = generate(app, d, seed=s, psi=0.7)
    assert len(d[state]) == 12
    assert [e["params"]["seeds"][0] for e in d[state]] == list(range(13, 1, -1))
    shown = out[strip]
    assert len(shown) == 12 and shown[0][0] == d[state][0]["image"] and "seed 13" in shown[0][1]
    assert state.value == []  # the component's default (every new session's) is untouched: per session, not global


def select(app, d: dict, index: int, mode: str) -> dict:
    fn = fn_for(app, "history-strip", "select")
    ids = by_id(app)
    d = {**d, ids["history-mode"]: dict((v, k) for k, v in history.MODES)[mode]}
    evt = gr.SelectData(ids["history-strip"], {"index": index, "value": None, "selected": True})
    return fn.fn(d, evt)


def test_a_click_restores_the_settings_and_the_same_params(app):
    state, _ = history_state(app)
    ids = by_id(app)
    d = start(fn_for(app, "generate", "click"))
    _, d = generate(app, d, seed=3, psi=0.5, **{"class": 1})
    _, d = generate(app, d, seed=9, psi=0.8, **{"class": 2})
    first = d[state][1]
    out = select(app, d, 1, "restore")
    assert out[ids["params"]] == first["params"]  # re-rendered with the restored settings: the same parameters
    assert out[ids["seed"]]["value"] == 3 and out[ids["psi"]]["value"] == 0.5
    assert out[state][0]["params"] == first["params"]  # the restored render is the newest entry


def test_a_and_b_show_side_by_side(app):
    state, _ = history_state(app)
    ids = by_id(app)
    d = start(fn_for(app, "generate", "click"))
    _, d = generate(app, d, seed=1, psi=1.0)
    _, d = generate(app, d, seed=2, psi=1.0)
    out = select(app, d, 1, "A")
    assert ids["history-compare"] not in out  # one side chosen: nothing to compare yet
    ab = next(c for c in out if type(c).__name__ == "State")
    d[ab] = out[ab]
    out = select(app, d, 0, "B")
    compare = out[ids["history-compare"]]
    assert compare["value"] == (d[state][1]["image"], d[state][0]["image"]) and compare["visible"]
    assert "A: seed 1" in compare["label"] and "B: seed 2" in compare["label"]


def test_a_stale_index_is_a_named_message(app):
    ids = by_id(app)
    d = start(fn_for(app, "generate", "click"))
    out = select(app, d, 5, "restore")
    assert "Invalid history entry: 5" in out[ids["status"]]


def test_live_previews_are_not_recorded(app):
    state, _ = history_state(app)
    ids = by_id(app)
    fn = next(f for f in app.fns.values() if (ids["psi"]._id, "input") in [tuple(t) for t in f.targets])
    d = start(fn)
    d[ids["psi"]] = 0.4
    out = fn.fn(d)
    assert ids["params"] in out and state not in out


def test_a_click_restores_a_declared_fields_generic_control(plugin, tmp_path):  # noqa: F811
    """An outside family's declared slider (``brightness``: a generic control, no panel's) comes back with the rest:
    without it the restored render would keep the slider's current value and give other pixels."""
    path = _checkpoint(tmp_path)
    app = build_app(LocalBackend({"toy": path}))
    state, _ = history_state(app)
    ids = by_id(app)
    d = start(fn_for(app, "generate", "click"))
    _, d = generate(app, d, seed=3, **{"field-brightness": 0.5})
    _, d = generate(app, d, seed=3, **{"field-brightness": -0.25})
    assert [e["params"]["brightness"] for e in d[state]] == [-0.25, 0.5]
    out = select(app, d, 1, "restore")
    assert out[ids["field-brightness"]]["value"] == 0.5
    assert out[ids["params"]] == d[state][1]["params"]
    want = ganserve.load(path).sample(seeds=[3], brightness=0.5).images[0]
    with Image.open(out[ids["image"]]["value"]) as im:
        np.testing.assert_array_equal(np.asarray(im), want)


def test_a_dropped_png_restores_a_declared_fields_generic_control(plugin, tmp_path):  # noqa: F811
    """Restore from a PNG goes through the same path as the history: the declared slider takes the image's value."""
    path = _checkpoint(tmp_path)
    app = build_app(LocalBackend({"toy": path}))
    ids = by_id(app)
    png = encode_result(ganserve.load(path).sample(seeds=[3], brightness=0.5), "png").body
    fn = fn_for(app, "restore", "upload")
    d = {**start(fn), ids["field-brightness"]: -0.25, ids["restore"]: png}
    out = fn.fn(d)
    assert out[ids["field-brightness"]]["value"] == 0.5, out.get(ids["status"])
    want = ganserve.load(path).sample(seeds=[3], brightness=0.5).images[0]
    with Image.open(out[ids["image"]]["value"]) as im:
        np.testing.assert_array_equal(np.asarray(im), want)


def test_declared_values_read_nested_fields_and_defaults():
    defaults = {"brightness": 0.0, "glow.amount": 0.0, "plain": None}
    assert declared_values({"seeds": [1], "brightness": 0.5, "glow": {"amount": 0.25}}, defaults) == {
        "brightness": 0.5,
        "glow.amount": 0.25,
    }
    # Not recorded (a nested field's parent left out): rendered at its default, restored to it.
    assert declared_values({"seeds": [1], "glow": None}, defaults) == {"brightness": 0.0, "glow.amount": 0.0}
    assert declared_values({"grid": [{"seeds": [1], "brightness": -1.0}]}, {"brightness": 0.0}) == {"brightness": -1.0}
