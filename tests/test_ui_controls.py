"""The explorer's pieces without a browser: controls from request schemas, the requests they make, restoring settings
from PNG parameters, the style-mixing figure and GIF, and decoding server bodies."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ganserve.images import encode_gif, encode_png
from ganserve.requests import BaseRequest, VQSamplingFields, request_json_schema, validate_request
from ganserve.sampling import encode_result, sample
from ganserve.ui.backend import BackendError, LocalBackend, ModelInfo, decode_body
from ganserve.ui.controls import ControlSpec, Settings, common_fields, layers_value, region_fields
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
    with pytest.raises(ValueError, match="not a readable PNG"):
        restore_from_png(b"definitely not a png")
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
