"""The VQ families through the sampling core on tiny random checkpoints: determinism and batch invariance, class
tokens, reconstruction (codes returned), partial re-sampling (kept codes survive exactly), bad images and keeps named,
parts in the checkpoint, the CLI flags, and an ONNX export whose host loop samples the same codes."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import ganserve
from ganserve.checkpoint import read_metadata
from ganserve.requests import RequestError
from ganserve.sampling import describe, plan, sample
from tests.family_fixtures import family_registered
from tests.vq_fixtures import CLASSES, save_tiny

FAMILIES = ("vqgan", "vit_vqgan")


@pytest.fixture(scope="module", autouse=True)
def _families_registered():
    """Both VQ families, for this module's tests, whichever of them has landed with its checkpoint."""
    with family_registered("vqgan"), family_registered("vit_vqgan"):
        yield


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("vq")
    return {f: save_tiny(d, f) for f in FAMILIES} | {"uncond": save_tiny(d, "vqgan", "tiny-uncond", conditional=False)}


@pytest.fixture(scope="module", params=FAMILIES)
def model(request, paths):
    return ganserve.load(paths[request.param])


def _png(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image[:, :, 0]).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _codes_of(model, images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2)
    return model.encode_codes((x - 128) / 127.5)


def test_checkpoint_holds_first_stage_and_prior(model, paths):
    meta = read_metadata(paths[model.family])
    assert set(meta["parts"]) == {"first_stage", "prior"}
    assert meta["parts"]["prior"]["config"]["class_names"] == CLASSES
    d = describe(model)
    assert d["classes"] == CLASSES and d["code_shape"] == [4, 4] and d["num_codes"] == 16
    assert {"temperature", "top_k", "top_p", "image", "keep", "class"} <= set(d["request_schema"]["properties"])


def test_deterministic_and_batch_size_invariant(model):
    req = {"seeds": list(range(7)), "class": "square", "temperature": 0.9, "top_k": 8}
    a = sample(model, req, batch_size=7).images
    assert a.shape == (7, 16, 16, 1) and a.dtype == np.uint8
    assert np.array_equal(a, sample(model, req, batch_size=1).images)
    assert np.array_equal(a, sample(model, req, batch_size=3).images)
    assert np.array_equal(a[::-1], sample(model, {**req, "seeds": list(range(7))[::-1]}, batch_size=4).images)
    assert len({img.tobytes() for img in a}) > 1
    other = sample(model, {**req, "class": 0}).images
    assert not np.array_equal(a, other)  # the class token conditions the prior


def test_requests_with_different_settings_batch_together(model):
    from ganserve.sampling import render

    reqs = [{"seeds": [1, 2], "class": 0, "top_p": 0.5}, {"seeds": [3], "class": 2, "temperature": 2.0},
            {"seeds": [1], "class": 1, "top_k": 2}]  # fmt: skip
    plans = [plan(model, r) for r in reqs]
    together = render(model, plans, batch_size=16)
    for r, imgs in zip(reqs, together):
        assert np.array_equal(imgs, sample(model, r).images)


def test_reconstruction_returns_the_codes(model):
    src = sample(model, {"seeds": [4], "class": 1}).images
    result = sample(model, {"image": _png(src[0])})  # no class, no seeds: one image per input image
    codes = _codes_of(model, np.concatenate([src, src]))[0]
    assert len(result.images) == 1
    assert result.params == [{"model": model.name, "reconstruction": True, "codes": codes.tolist()}]  # no seed, class
    want = model.decode_codes(codes[None].repeat(2, 1, 1)).clamp(-1, 1)
    from ganserve.images import to_uint8

    assert np.array_equal(result.images[0], to_uint8(want)[0])


@pytest.mark.parametrize(
    "extra, field",
    [({"seeds": [0, 9]}, "seeds"), ({"seeds": [0]}, "seeds"), ({"class": 1}, "class"), ({"classes": [0, 1]}, "classes"),
     ({"temperature": 0.5}, "temperature"), ({"top_k": 3}, "top_k"), ({"top_p": 0.9}, "top_p")],
)  # fmt: skip
def test_reconstruction_refuses_what_it_would_ignore(model, extra, field):
    with pytest.raises(RequestError) as e:
        plan(model, {"image": _png(np.zeros((16, 16, 1), np.uint8)), **extra})
    assert e.value.field == field and "reconstruction" in e.value.message


def test_omitted_class_comes_from_the_seed(model):
    n = len(CLASSES)
    seeds = list(range(2, 2 + 2 * n))
    r = sample(model, {"seeds": seeds, "top_k": 5})
    assert [p["class"] for p in r.params] == [s % n for s in seeds]
    for s, img in zip(seeds, r.images):
        assert np.array_equal(img, sample(model, {"seeds": [s], "class": s % n, "top_k": 5}).images[0])
    # partial re-sampling without a class: the same rule
    src = _png(r.images[0])
    keep = sample(model, {"seeds": [3, 4], "image": src, "keep": {"half": "top"}})
    assert [p["class"] for p in keep.params] == [3 % n, 4 % n]


def test_unconditional_reconstruction_and_seeds(paths):
    m = ganserve.load(paths["uncond"])
    src = sample(m, {"seeds": [1]}).images[0]
    r = sample(m, {"image": _png(src)})
    assert len(r.images) == 1 and "class" not in r.params[0] and r.params[0]["reconstruction"] is True
    assert "class" not in sample(m, {"seeds": [5]}).params[0]  # unconditional: no class from the seed either


def test_partial_resampling_keeps_the_box(model):
    src = sample(model, {"seeds": [11], "class": 2}).images[0]
    box = [0, 0, 2, 4]  # the top half of the 4x4 code grid
    req = {"image": _png(src), "keep": {"box": box}, "class": 2, "seeds": list(range(6)), "temperature": 1.5}
    p = plan(model, req)
    assert p.rows["keep_mask"].reshape(6, 4, 4)[:, :2].all() and not p.rows["keep_mask"].reshape(6, 4, 4)[:, 2:].any()
    from ganserve.models.transformer import sample_codes

    r = p.rows
    codes = sample_codes(model.step, model.empty_cache(6), r["start"], r["uniform"], r["temperature"], r["top_k"],
                         r["top_p"], model.num_codes, r["keep_codes"], r["keep_mask"]).reshape(6, 4, 4)  # fmt: skip
    source = torch.tensor(p.params[0]["source_codes"])
    assert (codes[:, :2] == source[:2]).all()
    assert len({tuple(c[2:].reshape(-1).tolist()) for c in codes}) > 1  # the bottom half is re-sampled per seed
    images = sample(model, req).images
    assert images.shape[0] == 6 and p.params[0]["keep"] == {"box": box}
    mask = [[r < 2 and c % 2 == 0 for c in range(4)] for r in range(4)]
    mask_req = {**req, "keep": {"mask": mask}}
    assert plan(model, mask_req).rows["keep_mask"][0].reshape(4, 4).tolist() == mask


def _bomb_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 1024))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"image": ""}, "image"),  # zero bytes
        ({"image": "not base64!"}, "image"),
        ({"image": base64.b64encode(b"GIF89a not really").decode()}, "image"),
        ({"image": base64.b64encode(_bomb_png(60000, 60000)).decode()}, "image"),  # a decompression bomb
        ({"image": base64.b64encode(_bomb_png(16, 12)).decode()}, "image"),  # not square
        ({"image": "A" * (8 << 20)}, "image"),  # too large
        ({"keep": {"box": [0, 0, 2, 2]}}, "keep"),  # nothing to keep codes from
        ({"image": "@", "keep": {"box": [0, 0, 9, 2]}}, "keep.box"),
        ({"image": "@", "keep": {"box": [2, 0, 2, 2]}}, "keep.box"),
        ({"image": "@", "keep": {"mask": [[True] * 4] * 3}}, "keep.mask"),
        ({"image": "@", "keep": {"box": [0, 0, 1, 1], "mask": [[True]]}}, "keep"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"temperature": 0}, "temperature"),
        ({"class": "hexagon"}, "class"),
        ({"truncation_psi": 0.5}, "truncation_psi"),
    ],
)
def test_bad_fields_are_named(model, body, field):
    good = _png(np.zeros((16, 16, 1), np.uint8))
    body = {k: (good if v == "@" else v) for k, v in body.items()}
    # an image without keep is a reconstruction, which takes no seeds or class (tested above)
    base = {} if "image" in body and "keep" not in body else {"seeds": [1], "class": 0}
    with pytest.raises(RequestError) as e:
        plan(model, {**base, **body})
    assert e.value.field == field, e.value


def test_unconditional_prior(paths):
    m = ganserve.load(paths["uncond"])
    assert describe(m)["classes"] == []
    a = sample(m, {"seeds": [0, 1, 2]}).images
    assert np.array_equal(a, sample(m, {"seeds": [0, 1, 2]}, batch_size=1).images)
    with pytest.raises(RequestError) as e:
        plan(m, {"seeds": [0], "class": 1})
    assert e.value.field == "class"


def test_images_of_another_size_are_resized(model):
    big = np.full((28, 28, 1), 200, np.uint8)
    assert sample(model, {"image": _png(big)}).images.shape == (1, 16, 16, 1)


def test_cli_maps_image_and_keep(paths, tmp_path):
    import argparse

    from ganserve.commands import sample as cmd

    img = tmp_path / "src.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(img)
    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["sample", "--model", str(paths["vqgan"]), "--image", str(img), "--keep", "top-half",
                              "--temperature", "0.9", "--top-k", "5", "--top-p", "0.8", "--class", "1"])  # fmt: skip
    req = cmd.build_request(args)
    assert req["temperature"] == 0.9 and req["top_k"] == 5 and req["top_p"] == 0.8 and req["keep"] == {"half": "top"}
    p = plan(ganserve.load(paths["vqgan"]), req)
    assert p.rows["keep_mask"][0].reshape(4, 4)[:2].all() and not p.rows["keep_mask"][0].reshape(4, 4)[2:].any()
    args = parser.parse_args(["sample", "--model", "x", "--image", str(img), "--keep", "box:1,0,3,2"])
    assert cmd.build_request(args)["keep"] == {"box": [0, 1, 2, 3]}  # x0,y0,x1,y1 -> [top, left, bottom, right]


def test_cli_reconstructs_without_class_or_seeds(paths, tmp_path, capsys):
    from ganserve.cli import main

    m = ganserve.load(paths["vqgan"])
    src = sample(m, {"seeds": [6], "class": 2}).images[0]
    img = tmp_path / "x.png"
    Image.fromarray(src[:, :, 0]).save(img)
    want = sample(m, {"image": _png(src)}).images[0]
    out = tmp_path / "recon.png"
    assert main(["sample", "--model", str(paths["vqgan"]), "--image", str(img), "--out", str(out)]) == 0
    got = np.asarray(Image.open(out))
    assert got.shape == (16, 16) and np.array_equal(got, want[:, :, 0])  # one image, not a grid of copies
    assert main(["sample", "--model", str(paths["vqgan"]), "--image", str(img), "--out", str(tmp_path / "d")]) == 0
    assert len(list((tmp_path / "d").iterdir())) == 1
    capsys.readouterr()
    assert main(["sample", "--model", str(paths["vqgan"]), "--image", str(img), "--seeds", "1-3",
                 "--out", str(tmp_path / "no.png")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "seeds" in err and "reconstruction" in err and "Traceback" not in err


def test_onnx_export_samples_the_same_codes(paths, tmp_path):
    pytest.importorskip("onnxruntime")
    from ganserve.export import export_graphs, load_exported

    m = ganserve.load(paths["vit_vqgan"])
    result = export_graphs(m, "onnx", tmp_path / "onnx")
    assert set(result.parity) == {"encoder", "decoder", "prior_step"}
    assert result.parity["encoder"][8] == 0 and max(result.parity["decoder"].values()) <= 1e-4
    onnx_model = load_exported(tmp_path / "onnx", fmt="onnx")
    src = sample(m, {"seeds": [3], "class": 1}).images[0]
    for req in ({"seeds": [0, 1, 2, 3], "class": 2, "top_k": 6},
                {"seeds": [5, 6], "class": 0, "image": _png(src), "keep": {"box": [0, 0, 2, 4]}},
                {"image": _png(src)}):  # fmt: skip
        want, got = sample(m, req), onnx_model.sample(req)
        assert np.abs(want.images.astype(int) - got.images.astype(int)).max() <= 1
        assert want.params == got.params


def test_classes_give_a_class_by_seed_grid(model):
    grid = sample(model, {"seeds": [3, 4], "classes": [2, "circle"], "top_k": 5})
    assert [(p["class"], p["seeds"][0]) for p in grid.params] == [(2, 3), (2, 4), (0, 3), (0, 4)]
    assert grid.request.default_cols() == 2
    for c, rows in ((2, grid.images[:2]), (0, grid.images[2:])):
        assert np.array_equal(rows, sample(model, {"seeds": [3, 4], "class": c, "top_k": 5}).images)
    for body, field in (({"classes": ["hexagon"]}, "classes[0]"), ({"classes": [0], "class": 1}, "")):
        with pytest.raises(RequestError) as e:
            plan(model, {"seeds": [1], **body})
        assert e.value.field == field
