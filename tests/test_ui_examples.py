"""Examples on the first screen: each model's examples come from the declaration (its defaults, then one shared
setting at its declared example value where the model's schema and bounds take it), never from per-model UI code;
applying one sets the page up as a link with those settings and renders the Seed tab."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("gradio")

import ganserve
from ganserve.sampling import sample
from ganserve.ui import urlstate
from ganserve.ui.app import build_app
from ganserve.ui.backend import LocalBackend
from ganserve.ui.page import Page
from ganserve.ui.panels import examples
from tests.family_fixtures import make_tiny_sagan, save_tiny
from tests.test_ui_attention import pixels

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


@pytest.fixture(scope="module")
def backend(tmp_path_factory, tiny_models_dir):
    sagan = save_tiny(tmp_path_factory.mktemp("sagan"), "sagan-tiny", make_tiny_sagan(3))
    return LocalBackend({"sagan-tiny": sagan, "tiny": tiny_models_dir / "tiny.safetensors",
                         "tiny-cond": tiny_models_dir / "tiny-cond.safetensors"})  # fmt: skip


def test_examples_come_from_the_declaration(backend, monkeypatch):
    page = Page(backend)
    tiny, sagan = page.ex.spec("tiny"), page.ex.spec("sagan-tiny")
    assert examples.examples_for(tiny) == [{"seed": 0}, {"seed": 1, "psi": 0.7}]  # TruncationPsi's example "0.7"
    assert examples.examples_for(sagan) == [{"seed": 0}, {"seed": 1, "class": 1}]  # ClassId's example "1"
    assert examples.caption(sagan, {"seed": 1, "class": 1}) == "seed 1 · Class: square"
    # Another declared example changes the examples: they are read, not written here.
    from ganserve.ui import fields

    declared = fields.declared

    def psi_example(text):  # truncation_psi declared with another example value
        f = declared("truncation_psi")
        other = type(f)(f.path, f.info, dataclasses.replace(f.hint, example=text), f.in_list)
        monkeypatch.setattr(fields, "declared", lambda p, m=None: other if p == "truncation_psi" else declared(p, m))

    psi_example("0.5")
    assert examples.examples_for(tiny)[1] == {"seed": 1, "psi": 0.5}
    psi_example("7")  # a value the model's bounds refuse is no example
    assert examples.examples_for(tiny) == [{"seed": 0}]


def test_an_example_sets_the_controls_and_renders_the_seed_tab(backend, tiny_models_dir):
    app = build_app(backend)
    assert [b.elem_id for b in app.blocks.values() if str(getattr(b, "elem_id", "")).startswith("example-")] == [
        f"example-{i}" for i in range(examples.MAX_EXAMPLES)
    ]
    page = Page(backend)  # the page's parts an example uses: its settings and the Seed tab's render
    page.C = dict.fromkeys(urlstate.KEYS)
    page.renderers["seed"] = lambda v: {"image": page.ex.seed_image(v)["image"]}
    v = {"model": "tiny", "seed": 9, "psi": 1.0, "tab": "grid", "edit_0": 2.0}
    out = examples.apply(page, v, 1)
    assert out["set:seed"]["value"] == 1 and out["set:psi"]["value"] == 0.7
    assert out["set:edit_0"]["value"] == 0  # everything else: the model's default
    assert out["tab"] == "seed" and "Example: seed 1" in out["status"]
    want = sample(ganserve.load(tiny_models_dir / "tiny.safetensors"), seeds=[1], truncation_psi=0.7).images[0]
    np.testing.assert_array_equal(pixels(out["image"]), want)
    with pytest.raises(ValueError, match="has no example 5"):
        examples.apply(page, {"model": "tiny"}, 5)
