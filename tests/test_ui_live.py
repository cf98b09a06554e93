"""Live preview while dragging: the Seed tab's sliders render as they move (``input``), one render in flight per page,
the latest value winning; other tabs wait for the release."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from ganserve.ui.app import build_app
from ganserve.ui.backend import LocalBackend
from ganserve.ui.controls import MAX_SLIDERS
from tests.test_external_family import _checkpoint, plugin  # noqa: F401


@pytest.fixture(scope="module")
def backend(tiny_models_dir):
    return LocalBackend({"tiny-cond": tiny_models_dir / "tiny-cond.safetensors"})


@pytest.fixture(scope="module")
def app(backend):
    return build_app(backend)


def by_id(app) -> dict:
    return {b.elem_id: b for b in app.blocks.values() if getattr(b, "elem_id", None)}


def live_fn(app):
    """The event wired to the psi slider's ``input`` (a drag)."""
    psi = by_id(app)["psi"]
    fns = [f for f in app.fns.values() if (psi._id, "input") in [(b, e) for b, e in f.targets]]
    assert len(fns) == 1, "the psi slider's input (drag) is wired once"
    return fns[0]


def test_drag_is_wired_latest_wins_one_at_a_time(app):
    fn = live_fn(app)
    assert fn.trigger_mode == "always_last"
    assert fn.concurrency_limit == 1 and fn.concurrency_id == "page"
    ids = by_id(app)
    wanted = ["psi", "cutoff", *(f"edit-{k}" for k in range(MAX_SLIDERS))]
    assert {(ids[k]._id, "input") for k in wanted} <= {tuple(t) for t in fn.targets}
    # The release still renders whatever tab is shown (and the strips); the drag adds to it, not replaces it.
    released = [f for f in app.fns.values() if (ids["psi"]._id, "release") in [tuple(t) for t in f.targets]]
    assert released


def state(fn, tab: str):
    """The values the event would send: each input's initial value, the tab shown set to ``tab``."""
    d = {c: getattr(c, "value", None) for c in fn.inputs}
    for c in fn.inputs:
        if type(c).__name__ == "State" and c.value in ("seed", "grid"):
            d[c] = tab
    return d


def test_a_drag_renders_the_value_it_carries(app, backend):
    fn = live_fn(app)
    psi = by_id(app)["psi"]
    for value in (0.3, -0.5):  # the handler renders the value of the event it runs for, the latest one
        d = state(fn, "seed")
        d[psi] = value
        out = fn.fn(d)
        params = next(v for k, v in out.items() if getattr(k, "elem_id", None) == "params")
        assert params["truncation_psi"] == value
        image = next(v for k, v in out.items() if getattr(k, "elem_id", None) == "image")
        assert image["value"]
        url = next(v for k, v in out.items() if type(k).__name__ == "Textbox" and k.visible is False)
        assert f"psi={value}" in url


def test_a_drag_on_another_tab_waits_for_the_release(app):
    fn = live_fn(app)
    d = state(fn, "grid")
    d[by_id(app)["psi"]] = 0.3
    out = fn.fn(d)
    assert not isinstance(out, dict) or not out.get(by_id(app)["params"])  # gr.skip(): nothing rendered


def test_a_declared_slider_previews_as_it_moves(plugin, tmp_path):  # noqa: F811
    """A generic control (an outside family's declared ``brightness`` slider) is live like the built-in ones."""
    app = build_app(LocalBackend({"toy": _checkpoint(tmp_path)}))
    fn, slider = live_fn(app), by_id(app)["field-brightness"]
    assert (slider._id, "input") in {tuple(t) for t in fn.targets}
    d = state(fn, "seed")
    d[slider] = 0.5
    params = next(v for k, v in fn.fn(d).items() if getattr(k, "elem_id", None) == "params")
    assert params["brightness"] == 0.5
