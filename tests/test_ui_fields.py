"""Controls from the declaration: a field a family declares with a page widget gets its control without UI code
naming it. The toy family of test_external_family (installed from outside ganserve through its entry point) declares
``brightness`` with a slider hint: the built page shows that slider (its range, default and help from the request
model), shown only for that family's models, and its value reaches the request, from the API and from a link."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import ganserve  # noqa: E402
from ganserve.ui import fields  # noqa: E402
from ganserve.ui.app import build_app, claimed_fields, launch  # noqa: E402
from ganserve.ui.backend import LocalBackend  # noqa: E402
from tests.test_external_family import _checkpoint, plugin  # noqa: E402, F401

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def component(app, elem_id: str):
    found = [b for b in app.blocks.values() if getattr(b, "elem_id", None) == elem_id]
    assert len(found) == 1, f"{len(found)} components with elem_id {elem_id}"
    return found[0]


def test_built_in_families_have_no_unclaimed_scalar_field():
    """Every built-in field is presented by its own panel: the generic controls are for fields added later."""
    assert fields.collect(fields.registered_request_models(), claimed_fields()) == []


def test_a_declared_field_gets_its_slider_and_reaches_the_request(plugin, tmp_path, tiny_models_dir):  # noqa: F811
    toy_path = _checkpoint(tmp_path)
    backend = LocalBackend({"tiny": tiny_models_dir / "tiny.safetensors", "toy": toy_path})
    app = build_app(backend)  # built for "tiny" (first): the toy's slider exists, hidden
    slider = component(app, "field-brightness")
    assert type(slider).__name__ == "Slider"
    assert (slider.minimum, slider.maximum, slider.value) == (-1.0, 1.0, 0.0)
    assert slider.label == "Brightness" and "added to every pixel" in slider.info
    assert slider.visible is False
    _, url, _ = launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(url, verbose=False)
        returns = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/model_info"]["returns"]
        at = [r["label"] for r in returns].index("Brightness")
        toy = client.predict("toy", 0, None, api_name="/model_info")[at]
        assert (toy["minimum"], toy["maximum"], toy["visible"]) == (-1.0, 1.0, True)
        assert client.predict("tiny", 0, None, api_name="/model_info")[at]["visible"] is False

        path, params, _ = client.predict(model="toy", seed=3, brightness=0.5, api_name="/generate")
        assert params["brightness"] == 0.5
        want = ganserve.load(toy_path).sample(seeds=[3], brightness=0.5).images[0]
        with Image.open(path) as im:
            np.testing.assert_array_equal(np.asarray(im), want)
        _, plain, _ = client.predict(model="toy", seed=3, api_name="/generate")
        assert plain["brightness"] == 0.0  # not sent: the family's default
        with pytest.raises(gradio_client.exceptions.AppError, match="Invalid brightness"):
            client.predict(model="toy", seed=3, brightness=3.0, api_name="/generate")
    finally:
        app.close()


def test_a_declared_field_travels_in_the_link(plugin, tmp_path):  # noqa: F811
    from ganserve.ui import urlstate
    from ganserve.ui.actions import Explorer
    from ganserve.ui.app import url_for
    from ganserve.ui.controls import ControlSpec

    ex = Explorer(LocalBackend({"toy": _checkpoint(tmp_path)}))
    controls = fields.collect(fields.registered_request_models(), claimed_fields())
    assert [c.path for c in controls] == ["brightness"]
    query = url_for(ex, {"model": "toy", "seed": 4, "field:brightness": -0.25})
    assert "brightness=-0.25" in query and "seed=4" in query
    wanted, errors = urlstate.decode(dict(p.split("=") for p in query.split("&")), fields.url_kinds(controls))
    assert wanted["brightness"] == -0.25 and errors == []
    _, bad = urlstate.decode({"brightness": "bright"}, fields.url_kinds(controls))
    assert bad == ["brightness: 'bright' is not a number"]
    spec = ControlSpec.from_info(ex.info("toy"))
    with pytest.raises(ValueError, match="3 is not between -1 and 1"):
        fields.checked(spec, "brightness", 3.0)
    assert fields.defaults(spec, controls) == {"field:brightness": 0.0}
