"""A family's declared nested field gets a generic control: an outside family (installed through its entry point, as
in test_external_family) declares ``glow: Glow`` with ``Glow.amount`` a slider; the built page shows that slider
(range, default, label and help from the declaration), its value reaches the request as ``{"glow": {"amount": ...}}``
from the API and travels in the link. A nested field of a panel's own field (``interpolate.to_class``) stays the
panel's."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import ganserve  # noqa: E402
from ganserve import families  # noqa: E402
from ganserve.ui import fields, urlstate  # noqa: E402
from ganserve.ui.actions import Explorer  # noqa: E402
from ganserve.ui.app import build_app, claimed_fields, launch, url_for  # noqa: E402
from ganserve.ui.backend import LocalBackend  # noqa: E402
from ganserve.ui.controls import ControlSpec  # noqa: E402
from tests.test_external_family import FAMILY_PY, MODEL_PY, _write_dist, on_path  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")

PKG = "ganplugin_nestglow"
FAMILY_NAME = "nestglow"
# The toy family of test_external_family with its brightness moved into a nested object.
NESTED_PY = (
    FAMILY_PY.replace("ganplugin_toyglow", PKG)
    .replace('name="toyglow"', f'name="{FAMILY_NAME}"')
    .replace(
        """class ToyRequest(BaseRequest):
    brightness: Annotated[
        float, FrontEnd(metavar="B", help="added to every pixel, in [-1, 1]", widget="slider", example="0.25")
    ] = finite_float(-1.0, 1.0, 0.0)
""",
        """from ganserve.requests import Strict


class Glow(Strict):
    amount: Annotated[
        float, FrontEnd(flag="--glow-amount", label="Glow amount", help="added to every pixel, in [-1, 1]",
                        widget="slider", example="0.25")
    ] = finite_float(-1.0, 1.0, 0.0)


class ToyRequest(BaseRequest):
    glow: Glow | None = None
""",
    )
    .replace("float(req.brightness)", "float(req.glow.amount if req.glow else 0.0)")
    .replace('"brightness": req.brightness}', '"glow": req.glow.model_dump() if req.glow else None}')
)


@pytest.fixture()
def nested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    assert "class Glow(Strict)" in NESTED_PY and "req.brightness" not in NESTED_PY  # the replacements took
    root = tmp_path / "site"
    _write_dist(
        root,
        PKG,
        f"[ganserve.families]\n{FAMILY_NAME} = {PKG}.family\n",
        {
            f"{PKG}/__init__.py": "",
            f"{PKG}/model.py": MODEL_PY.replace("toyglow", FAMILY_NAME),
            f"{PKG}/family.py": NESTED_PY,
        },
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])]))
    with on_path(root, FAMILY_NAME):
        yield root
    assert FAMILY_NAME not in families.family_names()


def _checkpoint(tmp_path: Path) -> Path:
    from ganplugin_nestglow.model import ToyConfig, ToyGenerator

    torch.manual_seed(0)
    path = tmp_path / "nested.safetensors"
    ganserve.save_generator(path, ToyGenerator(ToyConfig()), dataset="none")
    return path


def test_nested_field_gets_a_control_that_reaches_the_request(nested, tmp_path, tiny_models_dir):
    controls = fields.collect(fields.registered_request_models(), claimed_fields())
    assert [c.path for c in controls] == ["glow.amount"]  # and not interpolate.to_class (the Interpolation tab's)
    (c,) = controls
    assert (c.widget, c.label, c.minimum, c.maximum, c.default) == ("slider", "Glow amount", -1.0, 1.0, 0.0)
    toy_path = _checkpoint(tmp_path)
    backend = LocalBackend({"nested": toy_path, "tiny": tiny_models_dir / "tiny.safetensors"})
    ex = Explorer(backend)
    spec = ControlSpec.from_info(ex.info("nested"))
    assert fields.request_values(spec, {"field:glow.amount": 0.5}) == {"glow": {"amount": 0.5}}
    assert fields.request_values(ControlSpec.from_info(ex.info("tiny")), {"field:glow.amount": 0.5}) == {}
    # In the link, read back and checked.
    query = url_for(ex, {"model": "nested", "seed": 4, "field:glow.amount": -0.25})
    assert "glow.amount=-0.25" in query
    wanted, errors = urlstate.decode(dict(p.split("=") for p in query.split("&")), fields.url_kinds(controls))
    assert wanted["glow.amount"] == -0.25 and errors == []
    assert fields.checked(spec, "glow.amount", 0.5) == 0.5

    app = build_app(backend)
    (slider,) = [b for b in app.blocks.values() if getattr(b, "elem_id", None) == "field-glow-amount"]
    assert type(slider).__name__ == "Slider" and slider.visible is True
    assert slider.label == "Glow amount" and "added to every pixel" in slider.info
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = launch(app, port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(url, verbose=False)
        path, params, _ = client.predict(model="nested", seed=3, glow_amount=0.5, api_name="/generate")
        assert params["glow"] == {"amount": 0.5}
        want = ganserve.load(toy_path).sample(seeds=[3], glow={"amount": 0.5}).images[0]
        with Image.open(path) as im:
            np.testing.assert_array_equal(np.asarray(im), want)
        with pytest.raises(gradio_client.exceptions.AppError, match=r"Invalid glow\.amount"):
            client.predict(model="nested", seed=3, glow_amount=3.0, api_name="/generate")
    finally:
        app.close()
