"""What a setting missing from a link means: the model's own default (never another family's), and sliders that start
at a value the model accepts (an exclusive minimum is never offered)."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from ganserve.requests import request_json_schema
from ganserve.ui import urlstate
from ganserve.ui.app import PSI_STEP, _slider, model_defaults
from ganserve.ui.backend import ModelInfo
from ganserve.ui.controls import ControlSpec


def spec_for(family: str, classes: tuple[str, ...] = (), num_ws: int = 8, class_from_seed: bool = False):
    info = ModelInfo(
        "m", family, 32, num_ws, list(classes), request_json_schema(family), class_from_seed=class_from_seed
    )
    return ControlSpec.from_info(info)


def test_every_setting_has_a_default():
    keys = set(urlstate.KEYS) - {"tab", "model"}
    assert set(model_defaults(spec_for("stylegan2"))) == keys
    assert set(model_defaults(spec_for("biggan", ("a", "b", "c"), num_ws=1))) == keys


def test_stylegan2_defaults_are_its_own_not_biggans():
    sg = model_defaults(spec_for("stylegan2", num_ws=8))
    big = model_defaults(spec_for("biggan", ("a", "b", "c"), num_ws=1))
    # Every w truncated (psi=0 is the average image), the first named mixing group, the last layer of 8.
    assert sg["cutoff"] == 8 and big["cutoff"] == 1
    assert sg["layers"] == "coarse" and sg["layers"] != big["layers"]
    assert (sg["first"], sg["last"], sg["edit_last"]) == (0, 3, 7)
    assert sg["space"] == "w" and big["space"] == "z"
    assert sg["class"] is None and sg["psi"] == 1.0


def test_class_default_follows_the_family():
    assert model_defaults(spec_for("biggan", ("a", "b"), num_ws=1, class_from_seed=True))["class"] == -1
    assert model_defaults(spec_for("stylegan2", ("a", "b")))["class"] == 0


def test_exclusive_minimum_is_never_the_slider_start():
    spec = spec_for("biggan", ("a",), num_ws=1)
    r = spec.ranges["truncation_psi"]
    assert r.exclusive_minimum and r.minimum == 0.0  # BigGAN: psi in (0, 1]
    s = _slider(spec, "truncation_psi", -1, 2, 1.0, PSI_STEP)
    assert s["minimum"] == PSI_STEP and s["maximum"] == 1.0 and s["value"] == 1.0
    sg = _slider(spec_for("stylegan2"), "truncation_psi", -1, 2, 1.0, PSI_STEP)
    assert sg["minimum"] == -1.0 and not spec_for("stylegan2").ranges["truncation_psi"].exclusive_minimum
