"""The explorer's pieces without a browser: controls from request schemas, the requests they make, restoring settings
from PNG parameters, the style-mixing figure and GIF, and decoding server bodies."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ganserve.families.stylegan2 import StyleGAN2Request
from ganserve.images import encode_gif, encode_png
from ganserve.requests import BaseRequest, VQSamplingFields, request_json_schema, validate_request
from ganserve.sampling import encode_result, sample
from ganserve.ui.backend import BackendError, LocalBackend, ModelInfo, decode_body
from ganserve.ui.controls import (
    ControlSpec,
    Settings,
    common_fields,
    default_layer_groups,
    edit_layers_value,
    edits_field,
    layers_value,
    region_fields,
)
from ganserve.ui.figures import style_mix_figure
from ganserve.ui.restore import format_seeds, restore_from_params, restore_from_png


class VQRequest(BaseRequest, VQSamplingFields):
    """A VQ family's request as the shared pieces make it (the VQ families bring their own when they land)."""


def spec_for(family: str, classes: tuple[str, ...] = (), num_ws: int = 6) -> ControlSpec:
    schema = VQRequest.model_json_schema(by_alias=True) if family == "vq" else request_json_schema(family)
    return ControlSpec.from_info(ModelInfo("m", family, 32, num_ws, list(classes), schema))


def test_stylegan2_controls_come_from_its_schema():
    spec = spec_for("stylegan2")
    assert spec.has("style_mix") and spec.has("interpolate") and spec.has("noise_mode")
    assert spec.choices["noise_mode"] == ("const", "random", "none")
    assert (spec.ranges["truncation_psi"].minimum, spec.ranges["truncation_psi"].maximum) == (-1.0, 2.0)
    assert not spec.vq_sampling and not spec.region_resampling
    assert not spec.class_picker  # the field exists, but an unconditional model has no classes to pick
    assert spec_for("stylegan2", ("a", "b")).class_picker


def test_vq_families_get_sampling_and_region_controls_only():
    spec = spec_for("vq", ("cat", "dog"))
    assert spec.vq_sampling and spec.region_resampling and spec.class_picker
    assert not spec.has("style_mix") and not spec.has("truncation_psi") and not spec.has("noise_mode")
    assert spec.ranges["temperature"].maximum == 10.0 and spec.ranges["top_p"].maximum == 1.0
    s = Settings(truncation_psi=0.5, noise_mode="random", class_=1, temperature=0.8, top_k=50, top_p=0.9)
    req = {"seeds": [3], **common_fields(spec, s), **region_fields(spec, "aGVsbG8=", [0, 0, 2, 2])}
    assert req == {"seeds": [3], "class": 1, "temperature": 0.8, "top_k": 50, "top_p": 0.9, "image": "aGVsbG8=",
                   "keep": {"box": [0, 0, 2, 2]}}  # fmt: skip
    validate_request(VQRequest, req)  # the schema accepts what the controls make


def test_stylegan2_fields_skip_defaults_and_off_values():
    spec = spec_for("stylegan2", num_ws=6)
    assert common_fields(spec, Settings(truncation_cutoff=6)) == {"truncation_psi": 1.0, "noise_mode": "const"}
    assert common_fields(spec, Settings(truncation_cutoff=2, class_=1))["truncation_cutoff"] == 2
    assert "class" not in common_fields(spec, Settings(class_=1))  # unconditional: no class field sent
    assert region_fields(spec, "aGVsbG8=", [0, 0, 1, 1]) == {}
    assert layers_value("custom", 2, 5) == [2, 5] and layers_value("coarse", 2, 5) == "coarse"
    with pytest.raises(ValueError, match="unknown layer preset"):
        layers_value("everything", 0, 1)


def test_format_seeds():
    assert format_seeds([0, 1, 2, 3, 7]) == "0-3,7"
    assert format_seeds([4, 5, 9]) == "4,5,9"
    assert format_seeds([12]) == "12"


def test_restore_single_mix_interp_and_grid():
    r = restore_from_params({"model": "tiny", "seeds": [5], "truncation_psi": 0.7, "noise_mode": "random"})
    assert (r.tab, r.seed, r.truncation_psi, r.noise_mode, r.model) == ("seed", 5, 0.7, "random", "tiny")
    r = restore_from_params({"seeds": [2], "style_mix": {"seeds": [9], "layers": "1-3"}, "truncation_cutoff": 2})
    assert (r.tab, r.mix_rows, r.mix_cols, r.mix_layers, r.truncation_cutoff) == ("mix", "2", "9", [1, 3], 2)
    # Images made before layer ranges became inclusive recorded [start, stop): ws 1 and 2 here.
    old = restore_from_params({"seeds": [2], "style_mix": {"seeds": [9], "layers": [1, 3]}})
    assert old.mix_layers == [1, 2]
    r = restore_from_params({"seeds": [1], "interpolate": {"to_seed": 4, "steps": 5, "space": "z"}, "frame": 2})
    assert r.tab == "interp" and r.interpolate == {"from_seed": 1, "to_seed": 4, "steps": 5, "space": "z"}
    grid = {"grid": [{"seeds": [s], "truncation_psi": 0.5, "class": 2} for s in (0, 1, 2, 8)]}
    r = restore_from_params(grid)
    assert (r.tab, r.seeds, r.class_) == ("grid", "0-2,8", 2)
    mix_grid = {"grid": [{"seeds": [s], "style_mix": {"seeds": [m], "layers": "fine"}} for s in (0, 1) for m in (5, 6)]}
    r = restore_from_params(mix_grid)
    assert (r.tab, r.mix_rows, r.mix_cols, r.mix_layers) == ("mix", "0,1", "5,6", "fine")


def test_restore_from_png_round_trip_and_refusals():
    png = encode_png(np.zeros((4, 4, 3), np.uint8), {"model": "x", "seeds": [31], "truncation_psi": 0.25})
    r = restore_from_png(png)
    assert (r.seed, r.truncation_psi) == (31, 0.25)
    with pytest.raises(ValueError, match="carries no ganserve parameters"):
        restore_from_png(encode_png(np.zeros((4, 4, 3), np.uint8)))
    # Not a PNG (text, a JPEG) or a damaged one: one readable line, never PIL's "<_io.BytesIO object at 0x...>".
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpeg, format="JPEG")
    for data, message in ((b"definitely not a png", "not a PNG image"), (jpeg.getvalue(), "not a PNG image"),
                          (png[:40], "the PNG could not be read")):  # fmt: skip
        with pytest.raises(ValueError, match=message) as e:
            restore_from_png(data)
        assert "BytesIO" not in str(e.value) and "0x" not in str(e.value)
    with pytest.raises(ValueError, match="hold no seeds"):
        restore_from_png(encode_png(np.zeros((4, 4, 3), np.uint8), {"something": "else"}))


def test_style_mix_figure_layout():
    h = w = 2
    rows = np.stack([np.full((h, w, 3), v, np.uint8) for v in (10, 20)])
    cols = np.stack([np.full((h, w, 3), v, np.uint8) for v in (30, 40, 50)])
    mixes = np.stack([np.full((h, w, 3), 100 + 10 * i + j, np.uint8) for i in range(2) for j in range(3)])
    fig = style_mix_figure(rows, cols, mixes)
    assert fig.shape == (3 * h, 4 * w, 3)
    cell = lambda r, c: fig[r * h, c * w, 0]  # noqa: E731
    assert cell(0, 0) == 255 and [cell(0, c) for c in (1, 2, 3)] == [30, 40, 50]
    assert [cell(r, 0) for r in (1, 2)] == [10, 20]
    assert cell(1, 1) == 100 and cell(2, 3) == 112
    with pytest.raises(ValueError, match="expected 2x3 mixed images"):
        style_mix_figure(rows, cols, mixes[:5])


def test_gif_frames():
    frames = np.stack([np.full((4, 4, 1), v, np.uint8) for v in (0, 80, 160, 240)])
    with Image.open(io.BytesIO(encode_gif(frames))) as im:
        assert im.n_frames == 6 and im.info.get("loop") == 0
    with Image.open(io.BytesIO(encode_gif(frames, bounce=False))) as im:
        assert im.n_frames == 4


def test_decode_body_reads_both_response_shapes(tiny):
    one = sample(tiny, seeds=[3], truncation_psi=0.6)
    (pic,) = decode_body(encode_result(one).body, "image/png")  # a single image: the PNG itself
    np.testing.assert_array_equal(pic.array(), one.images[0])
    assert pic.params == one.params[0]
    many = sample(tiny, seeds="0-2")
    pics = decode_body(encode_result(many, "json").body, "application/json")
    assert [p.params for p in pics] == many.params
    for p, img in zip(pics, many.images):
        np.testing.assert_array_equal(p.array(), img)
    with pytest.raises(BackendError, match="unexpected response"):
        decode_body(b"<html>oops</html>", "text/html")


def test_local_backend_describes_and_reports_field_errors(tiny_models_dir):
    b = LocalBackend({n: tiny_models_dir / f"{n}.safetensors" for n in ("tiny", "tiny-cond")})
    assert b.models() == ["tiny", "tiny-cond"]
    info = b.describe("tiny-cond")
    assert (info.family, info.resolution, info.num_ws, info.classes) == (
        "stylegan2",
        16,
        6,
        ["circle", "square", "triangle"],
    )
    assert "style_mix" in info.schema["properties"]
    with pytest.raises(BackendError) as err:
        b.generate("tiny-cond", {"seeds": [0], "class": "hexagon"})
    assert err.value.field == "class" and "unknown class 'hexagon'" in err.value.message
    with pytest.raises(BackendError, match="unknown model 'nope'"):
        b.describe("nope")


# ---- issue 14: directions, latents, URL state, checked values ----------------------------------------------------


def test_directions_and_layer_groups_come_from_the_description():
    schema = request_json_schema("stylegan2")
    info = ModelInfo("m", "stylegan2", 32, 8, [], schema, layer_groups={"coarse": [0, 3], "middle": [4, 7]},
                     directions={"methods": ["sefa", "pca"], "count": 32})  # fmt: skip
    spec = ControlSpec.from_info(info)
    assert spec.edits and spec.direction_methods == ("sefa", "pca") and spec.direction_count == 32
    assert spec.mix_presets == ("coarse", "middle", "custom")  # no 'fine' on a 32 px model: it holds no ws
    assert spec.latent_source and spec.projection
    # Without directions in the description (or without edits in the schema) there is no panel.
    assert not ControlSpec.from_info(ModelInfo("m", "stylegan2", 32, 8, [], schema)).edits
    vq = ControlSpec.from_info(ModelInfo("m", "vq", 32, 0, [], VQRequest.model_json_schema(by_alias=True),
                                         directions={"methods": ["sefa"], "count": 4}))  # fmt: skip
    assert not vq.edits and not vq.latent_source and not vq.projection
    # An older description without layer_groups: the papers' split, empty groups left out.
    assert default_layer_groups(8) == {"coarse": [0, 3], "middle": [4, 7]}
    assert default_layer_groups(14) == {"coarse": [0, 3], "middle": [4, 7], "fine": [8, 13]}
    assert ControlSpec.from_info(ModelInfo("m", "stylegan2", 16, 6, [], schema)).mix_presets == (
        "coarse", "middle", "custom")  # fmt: skip


def test_edits_field_leaves_zero_out_and_validates():
    spec = spec_for("stylegan2")
    spec = ControlSpec(spec.fields, spec.ranges, spec.choices, (), 6, spec.interpolate,
                       {"coarse": [0, 3], "middle": [4, 5]}, ("sefa", "pca"), 32)  # fmt: skip
    assert edits_field(spec, "sefa", None, {0: 0.0, 1: 0.0}) == []
    edits = edits_field(spec, "pca", [1, 2], {0: 0.0, 3: -1.5, 1: 2.0})
    assert edits == [{"direction": 1, "amount": 2.0, "method": "pca", "layers": [1, 2]},
                     {"direction": 3, "amount": -1.5, "method": "pca", "layers": [1, 2]}]  # fmt: skip
    validate_request(StyleGAN2Request, {"seeds": [1], "edits": edits})  # the schema accepts what the panel makes
    assert edit_layers_value("all", 0, 5) is None and edit_layers_value("coarse", 0, 5) == "coarse"
    assert edit_layers_value("custom", 2, 4) == [2, 4]
    with pytest.raises(ValueError, match="unknown direction method 'ica'"):
        edits_field(spec, "ica", None, {0: 1.0})
    with pytest.raises(ValueError, match="direction 40 is out of range"):
        edits_field(spec, "sefa", None, {40: 1.0})


def test_checked_numbers_are_refused_not_clamped():
    from ganserve.ui.actions import number, seed_value

    assert number("0.5", "truncation_psi", -1, 2) == 0.5 and seed_value(7.0) == 7
    for value, message in [
        ("abc", "expected a number from -1 to 2, got 'abc'"),
        ("", "expected a number from -1 to 2, got nothing"),
        (None, "got nothing"),
        (5, "expected a number from -1 to 2, got 5"),
        (-3, "got -3"),
        (float("nan"), "got nan"),
    ]:
        with pytest.raises(BackendError, match=message) as err:
            number(value, "truncation_psi", -1, 2)
        assert err.value.field == "truncation_psi"
    with pytest.raises(BackendError, match="expected a whole number from 2 to 32, got 100"):
        number(100, "interpolate.steps", 2, 32, whole=True)
    for bad in (1.5, -1, "x", None, 2**32):
        with pytest.raises(BackendError, match="expected a whole number"):
            seed_value(bad)


def test_url_state_round_trip_and_refusals():
    from ganserve.ui import urlstate

    values = {"tab": "mix", "model": "stylegan2-fashion-32", "psi": 0.7, "seed": 42, "rows": "0-3", "cols": "10,12",
              "layers": "custom", "first": 1, "last": 3, "edit_method": "pca", "edit_0": 0.0, "edit_3": -1.5,
              "grid_classes": [1, 2], "w": "", "class": None, "unknown": "x"}  # fmt: skip
    text = urlstate.encode(values)
    assert "edit_0" not in text and "w=" not in text and "unknown" not in text and "class=" not in text
    from urllib.parse import parse_qsl

    back, errors = urlstate.decode(dict(parse_qsl(text)))
    assert errors == []
    assert back == {"tab": "mix", "model": "stylegan2-fashion-32", "psi": 0.7, "seed": 42, "rows": "0-3",
                    "cols": "10,12", "layers": "custom", "first": 1, "last": 3, "edit_method": "pca", "edit_3": -1.5,
                    "grid_classes": [1, 2]}  # fmt: skip
    got, errors = urlstate.decode({"psi": "abc", "seed": "1.5", "tab": "nowhere", "frames": "inf", "class": "dog",
                                   "other": "ignored"})  # fmt: skip
    assert got == {"class": "dog"}
    assert errors == ["psi: 'abc' is not a number", "seed: '1.5' is not a whole number",
                      "tab: 'nowhere' is not a tab (seed, grid, mix, interp, browse, project, vq)",
                      "frames: 'inf' is not a finite number"]  # fmt: skip
    assert urlstate.decode({"w": "x" * 300})[1] == ["w: is over 200 characters"]


def test_restore_latents_and_edits():
    edits = [{"direction": 2, "amount": 1.5, "method": "pca", "layers": "1-3"}]
    r = restore_from_params({"model": "m", "w": "w:0123456789abcdef", "truncation_psi": 1.0, "edits": edits,
                             "psnr": 31.2})  # fmt: skip
    assert (r.tab, r.w, r.seed, r.edits) == ("seed", "w:0123456789abcdef", None, edits)
    assert "w:0123456789abcdef" in r.summary() and "1 edit" in r.summary()
    r = restore_from_params({"w": "w:0123456789abcdef", "style_mix": {"seeds": [4], "layers": "coarse"}})
    assert (r.tab, r.mix_rows, r.mix_cols, r.w) == ("mix", None, "4", "w:0123456789abcdef")
    r = restore_from_params({"w": "w:0123456789abcdef", "interpolate": {"to_seed": 3, "steps": 4, "space": "w"}})
    assert r.tab == "interp" and r.interpolate["from_seed"] is None and r.interpolate["to_seed"] == 3


def test_labelled_figure_is_whole_number_scaled():
    from ganserve.ui.figures import figure_html, integer_scale

    assert integer_scale(160, 160, 768, 640) == 4 and integer_scale(5000, 10, 768, 640) == 1
    html = figure_html("gradio_api/file=/x/fig.png", (160, 160), (5, 5), col_labels=["", "seed 10"],
                       row_labels=["", "seed <0>"], alt="a figure", download="fig.png")  # fmt: skip
    assert 'width="640" height="640"' in html and "width:128px" in html and "height:128px" in html
    assert "seed &lt;0&gt;" in html and 'alt="a figure"' in html and 'download="fig.png"' in html
