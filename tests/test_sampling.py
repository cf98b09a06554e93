"""The sampling core: determinism, batch-size invariance, truncation, style mixing, interpolation, requests."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import ganserve
import ganserve.requests as requests_module
from ganserve.images import read_png_params
from ganserve.requests import RequestError, parse_request, parse_seeds
from ganserve.sampling import encode_result, plan, render, sample
from tests.conftest import make_tiny_generator

SEEDS = [0, 1, 2, 3, 7, 11, 12, 2**32 - 1]


@pytest.fixture(scope="module", params=["stylegan2", "stylegan"])
def style_model(request, tmp_path_factory):
    """A tiny StyleGAN2 and a tiny StyleGAN v1: the style fields mean the same for both families."""
    path = tmp_path_factory.mktemp(request.param) / f"tiny-{request.param}.safetensors"
    ganserve.save_generator(path, make_tiny_generator(family=request.param), dataset="random", training={"step": 0})
    G = ganserve.load(path)
    assert G.family == request.param
    return G


@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_same_pixels_across_batch_sizes_order_and_calls(style_model, noise_mode):
    a = sample(style_model, seeds=SEEDS, noise_mode=noise_mode, batch_size=8).images
    one_by_one = [sample(style_model, seeds=[s], noise_mode=noise_mode, batch_size=1).images for s in SEEDS]
    singles = np.concatenate(one_by_one)
    reordered = sample(style_model, seeds=SEEDS[::-1], noise_mode=noise_mode, batch_size=3).images[::-1]
    again = sample(style_model, seeds=SEEDS, noise_mode=noise_mode, batch_size=8).images
    assert a.dtype == np.uint8 and a.shape == (len(SEEDS), 16, 16, 3)
    assert np.array_equal(a, singles)
    assert np.array_equal(a, reordered)
    assert np.array_equal(a, again)
    assert len({a[i].tobytes() for i in range(len(SEEDS))}) == len(SEEDS)  # seeds really differ


def test_noise_modes_differ(style_model):
    imgs = {m: sample(style_model, seeds=[3], noise_mode=m).images[0].astype(int) for m in ("const", "random", "none")}
    assert np.abs(imgs["const"] - imgs["random"]).max() > 0
    assert np.abs(imgs["const"] - imgs["none"]).max() > 0


def test_psi_zero_gives_one_image_for_every_seed(style_model):
    imgs = sample(style_model, seeds=SEEDS, truncation_psi=0.0).images
    assert all(np.array_equal(imgs[0], imgs[i]) for i in range(len(SEEDS)))


def test_psi_one_equals_no_truncation(style_model):
    a = sample(style_model, seeds=SEEDS, truncation_psi=1.0).images
    b = sample(style_model, seeds=SEEDS).images
    c = sample(style_model, seeds=SEEDS, truncation_psi=0.5).images
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_truncation_cutoff_limits_the_layers(style_model):
    p_all = plan(style_model, seeds=[5], truncation_psi=0.0)
    p_cut = plan(style_model, seeds=[5], truncation_psi=0.0, truncation_cutoff=2)
    p_none = plan(style_model, seeds=[5])
    assert torch.equal(p_cut.rows["ws"][:, :2], p_all.rows["ws"][:, :2])
    assert torch.equal(p_cut.rows["ws"][:, 2:], p_none.rows["ws"][:, 2:])


def test_style_mixing_over_all_and_no_layers(style_model):
    n = style_model.num_ws
    mixed_all = sample(style_model, seeds=[1, 2], style_mix={"seeds": [9], "layers": [0, n - 1]}).images
    mixer = sample(style_model, seeds=[9]).images
    assert np.array_equal(mixed_all[0], mixer[0]) and np.array_equal(mixed_all[1], mixer[0])
    # Layer ranges are inclusive at both ends, as the official --styles 0-6: [3, 3] and "3-3" replace ws[3] only.
    for layers in ([3, 3], "3-3"):
        p = plan(style_model, seeds=[1], style_mix={"seeds": [9], "layers": layers})
        base, mix = plan(style_model, seeds=[1]).rows["ws"][0], plan(style_model, seeds=[9]).rows["ws"][0]
        got = p.rows["ws"][0]
        assert torch.equal(got[3], mix[3]) and torch.equal(got[:3], base[:3]) and torch.equal(got[4:], base[4:])
        assert p.params[0]["style_mix"]["layers"] == "3-3"
    with pytest.raises(RequestError, match="exceeds") as e:
        plan(style_model, seeds=[1], style_mix={"seeds": [9], "layers": [0, n]})
    assert e.value.field == "style_mix.layers"


def test_style_mixing_grid_and_named_groups(style_model):
    r = sample(style_model, seeds=[1, 2], style_mix={"seeds": "5-7", "layers": "coarse"})
    assert r.images.shape[0] == 6  # rows: seeds, columns: mixing seeds
    assert r.params[4]["style_mix"] == {"seeds": [6], "layers": "coarse"}
    p = plan(style_model, seeds=[1], style_mix={"seeds": [5], "layers": "coarse"})
    base, mix, got = plan(style_model, seeds=[1]).rows["ws"], plan(style_model, seeds=[5]).rows["ws"], p.rows["ws"]
    assert torch.equal(got[0, :4], mix[0, :4]) and torch.equal(got[0, 4:], base[0, 4:])
    with pytest.raises(RequestError) as e:
        plan(style_model, seeds=[1], style_mix={"seeds": [5], "layers": "fine"})  # 16px model: no 64px+ layers
    assert e.value.field == "style_mix.layers"


@pytest.mark.parametrize("space", ["w", "z"])
def test_interpolation_endpoints_are_the_seeds(style_model, space):
    r = sample(style_model, seeds=[4], interpolate={"to_seed": 8, "steps": 5, "space": space})
    assert r.images.shape[0] == 5
    ends = sample(style_model, seeds=[4, 8]).images
    assert np.array_equal(r.images[0], ends[0])
    # the last frame is the target seed's latent (noise stays the start seed's)
    target = sample(style_model, seeds=[8], noise_mode="none").images[0]
    last = sample(style_model, seeds=[4], noise_mode="none", interpolate={"to_seed": 8, "steps": 5, "space": space})
    assert np.abs(last.images[-1].astype(int) - target.astype(int)).max() <= 1
    assert [p["frame"] for p in r.params] == list(range(5))


def test_class_conditional_requests(tiny_cond):
    by_id = sample(tiny_cond, seeds=[1, 2], **{"class": 1}).images
    by_name = sample(tiny_cond, seeds=[1, 2], **{"class": "Square"}).images
    other = sample(tiny_cond, seeds=[1, 2], **{"class": 2}).images
    assert np.array_equal(by_id, by_name)
    assert not np.array_equal(by_id, other)
    for bad, fragment in [(None, "class-conditional"), (7, "out of range"), ("hexagon", "unknown class")]:
        with pytest.raises(RequestError, match=fragment) as e:
            sample(tiny_cond, seeds=[1], **({"class": bad} if bad is not None else {}))
        assert e.value.field == "class"


def test_class_on_unconditional_model_is_rejected(tiny):
    with pytest.raises(RequestError) as e:
        sample(tiny, seeds=[1], **{"class": 0})
    assert e.value.field == "class"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"seeds": [1], "truncation_psi": float("nan")}, "truncation_psi"),
        ({"seeds": [1], "truncation_psi": float("inf")}, "truncation_psi"),
        ({"seeds": [1], "truncation_psi": 5.0}, "truncation_psi"),
        ({"seeds": [1], "truncation_psi": "0.5"}, "truncation_psi"),
        ({"seeds": [-1]}, "seeds"),
        ({"seeds": [2**32]}, "seeds"),
        ({"seeds": "3-1"}, "seeds"),
        ({"seeds": []}, "seeds"),
        ({"seeds": [1], "noise_mode": "loud"}, "noise_mode"),
        ({"seeds": [1], "temperature": 0.5}, "temperature"),  # a VQ field on a StyleGAN2 model
        ({"seeds": [1], "colour": "red"}, "colour"),
        ({"seeds": [1], "style_mix": {"seeds": [2], "layers": [3, 1]}}, "style_mix.layers"),
        ({"seeds": [1], "style_mix": {"seeds": [2], "layers": "4-"}}, "style_mix.layers"),
        ({"seeds": [1], "style_mix": {"seeds": [2], "layers": [1, 2, 3]}}, "style_mix.layers"),
        ({"seeds": [1], "style_mix": {"seeds": "0-99999,0-99999"}}, "style_mix.seeds"),
        ({"seeds": "١٢"}, "seeds"),  # Arabic-Indic digits are not seed 12
        ({"seeds": "1" * 5000}, "seeds"),
        ({"seeds": [1] * 100_001}, "seeds"),
        ({"seeds": [1], "interpolate": {"to_seed": 2, "steps": 1}}, "interpolate.steps"),
        ({"seeds": [1], "format": "gif"}, "format"),
    ],
)
def test_bad_requests_name_the_field(body, field):
    with pytest.raises(RequestError) as e:
        parse_request("stylegan2", body)
    assert e.value.field == field, e.value
    assert e.value.to_dict()["field"] == field and e.value.message


def test_model_level_limits(tiny):
    with pytest.raises(RequestError, match="limit") as e:
        plan(tiny, seeds="0-64")
    assert e.value.field == "seeds"
    with pytest.raises(RequestError, match="limit"):
        plan(tiny, seeds="0-9", max_images=5)
    with pytest.raises(RequestError) as e:
        plan(tiny, seeds=[0], truncation_cutoff=tiny.num_ws + 1)
    assert e.value.field == "truncation_cutoff"


def test_seed_parsing():
    assert parse_seeds("0-3,7, 9") == [0, 1, 2, 3, 7, 9]
    assert parse_seeds(5) == [5]
    with pytest.raises(ValueError):
        parse_seeds("a-b")


def test_seed_strings_are_counted_before_they_are_expanded(monkeypatch):
    # 200,000 ranges of 100,000 seeds each would be 2e10 ints: refused by counting, without building the list.
    text = ",".join(["0-99999"] * 200_000)
    built = []
    monkeypatch.setattr(requests_module, "range", lambda *a: built.append(a) or [], raising=False)
    with pytest.raises(ValueError, match="more than 100000 seeds"):
        parse_seeds(text)
    assert built == []
    monkeypatch.undo()
    assert len(parse_seeds("0-99999")) == 100_000
    with pytest.raises(ValueError, match="more than 10 seeds"):
        parse_seeds("0-5,6-11", limit=10)


def test_render_batches_several_plans_in_one_call(tiny):
    plans = [plan(tiny, seeds=[1, 2]), plan(tiny, seeds=[3], noise_mode="random"), plan(tiny, seeds=[4])]
    outs = render(tiny, plans, batch_size=16)
    assert [o.shape[0] for o in outs] == [2, 1, 1]
    assert np.array_equal(outs[1], sample(tiny, seeds=[3], noise_mode="random").images)


def test_encodings(tiny):
    one = encode_result(sample(tiny, seeds=[3], truncation_psi=0.7))
    assert one.content_type == "image/png"
    assert read_png_params(one.body)["seeds"] == [3] and read_png_params(one.body)["truncation_psi"] == 0.7
    decoded = np.asarray(Image.open(io.BytesIO(one.body)))
    assert np.array_equal(decoded, sample(tiny, seeds=[3], truncation_psi=0.7).images[0])
    many = encode_result(sample(tiny, seeds=[1, 2]))
    assert many.content_type == "application/json"
    assert [img["params"]["seeds"] for img in json.loads(many.body)["images"]] == [[1], [2]]
    grid = encode_result(sample(tiny, seeds="0-5", grid=True, grid_cols=3))
    assert Image.open(io.BytesIO(grid.body)).size == (48, 32)
    npy = encode_result(sample(tiny, seeds=[1, 2], format="npy"))
    assert np.load(io.BytesIO(npy.body)).shape == (2, 16, 16, 3)
    assert one.headers["X-Ganserve-Seeds"] == "3"
