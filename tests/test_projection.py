"""Projection of real images into W, and latents as a request's source (the ``w`` and ``project`` fields)."""

from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

import ganserve
from ganserve import latents_store
from ganserve.images import encode_png
from ganserve.projection import project
from ganserve.requests import RequestError
from ganserve.sampling import plan, sample
from tests.test_cli import CLI, run


@pytest.fixture(autouse=True)
def latent_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GANSERVE_LATENTS", str(tmp_path / "latents"))


@pytest.fixture(scope="module")
def bundled():
    return ganserve.load("stylegan2-fashion-32")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_projecting_the_models_own_samples_reaches_25_db(bundled):
    for seed in (3, 11):
        target = bundled.sample(seeds=[seed]).images[0]
        seen: list[int] = []
        result = project(bundled, target, steps=300, progress=lambda k, loss, seen=seen: seen.append(k))
        assert result.psnr >= 25.0, (seed, result.psnr)
        assert seen == list(range(1, 301)) and result.losses[-1] < result.losses[0]
    # deterministic per seed; that does not depend on the step count, so two short projections show it
    first, again = (project(bundled, target, steps=30) for _ in range(2))
    assert np.array_equal(again.image, first.image)


def test_a_projected_w_samples_edits_mixes_and_interpolates(bundled):
    target = bundled.sample(seeds=[5]).images[0]
    r = sample(bundled, project=b64(encode_png(target)), project_steps=150)
    lid = r.params[0]["w"]
    assert lid.startswith("w:") and r.params[0]["psnr"] > 20 and r.seeds == [lid]
    by_id = sample(bundled, w=lid)
    assert np.array_equal(by_id.images, r.images)  # the w alone remakes the reconstruction
    npy = latents_store.to_npy(latents_store.resolve(lid))
    assert np.array_equal(sample(bundled, w=b64(npy)).images, r.images)
    edited = sample(bundled, w=lid, edits=[{"direction": 0, "amount": 2}])
    assert not np.array_equal(edited.images, r.images)
    mixed = sample(bundled, w=lid, style_mix={"seeds": [1, 2], "layers": "coarse"})
    assert mixed.images.shape[0] == 2 and mixed.params[1]["w"] == lid
    frames = sample(bundled, w=lid, interpolate={"to_seed": 9, "steps": 4})
    assert np.array_equal(frames.images[0], r.images[0])
    assert np.array_equal(frames.images[-1], sample(bundled, seeds=[9]).images[0])


def _npy(array) -> str:
    buf = io.BytesIO()
    np.save(buf, array)
    return b64(buf.getvalue())


@pytest.mark.parametrize(
    "body, field, fragment",
    [
        ({"w": "w:0123456789abcdef"}, "w", "unknown latent id"),
        ({"w": "not base64!"}, "w", "latent id"),
        ({"w": _npy(np.zeros((2, 2, 2, 2), np.float32))}, "w", "shape"),
        ({"w": _npy(np.array([np.nan] * 32, np.float32))}, "w", "NaN"),
        ({"w": _npy(np.array([1, 2, 3]))}, "w", "float"),
        ({"w": _npy(np.zeros((3, 7), np.float32))}, "w", "expected"),
        ({"w": _npy(np.zeros(32, np.float32)), "seeds": [1]}, "", "give seeds, w or project"),
        ({"project": ""}, "project", "empty"),
        ({"project": b64(b"GIF89a...")}, "project", "decoded"),
        ({"project": b64(encode_png(np.zeros((16, 8, 3), np.uint8)))}, "project", "square"),
        ({"project_steps": 10}, "", "project_steps needs project"),
        ({"w": _npy(np.zeros(32, np.float32)), "interpolate": {"to_seed": 1, "space": "z"}}, "interpolate.space", "z"),
    ],
)
def test_bad_latents_name_the_field(tiny, body, field, fragment):
    with pytest.raises(RequestError) as e:
        plan(tiny, body)
    assert e.value.field == field and fragment in e.value.message, e.value


def test_pickled_npy_is_refused_without_running_it(tiny, tmp_path):
    marker = tmp_path / "ran"
    buf = io.BytesIO()
    np.save(buf, np.array([_Boom(str(marker))], dtype=object), allow_pickle=True)
    with pytest.raises(RequestError) as e:
        plan(tiny, {"w": b64(buf.getvalue())})
    assert e.value.field == "w" and not marker.exists()


class _Boom:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_decompression_bombs_are_refused(tiny):
    big = Image.new("L", (5000, 5000))
    buf = io.BytesIO()
    big.save(buf, format="PNG", optimize=True)
    assert len(buf.getvalue()) < 100_000  # small on the wire, 25 Mpx decoded
    with pytest.raises(RequestError, match="pixels") as e:
        plan(tiny, {"project": b64(buf.getvalue())})
    assert e.value.field == "project"


def test_cli_project_then_sample_the_w(tmp_path, bundled, monkeypatch, capsys):
    """``ganserve project`` then ``ganserve sample --w`` (by file and by id), through the CLI's main in this process
    (tests/test_cli.py keeps the entry point end to end)."""
    monkeypatch.setenv("GANSERVE_LATENTS", str(tmp_path / "lat"))
    cli = CLI(dict(os.environ), capsys)
    img = tmp_path / "t.png"
    Image.fromarray(bundled.sample(seeds=[4]).images[0][:, :, 0]).save(img)
    out = tmp_path / "proj"
    ran = run(cli, "project", "--model", "stylegan2-fashion-32", "--image", str(img), "--steps", "120", "--out-dir",
              str(out))  # fmt: skip
    info = json.loads(ran.stdout)
    assert info["psnr_db"] > 20 and info["w"].startswith("w:")
    sampled = tmp_path / "s.npy"
    recon = np.asarray(Image.open(out / "reconstruction.png"))
    for w in (str(out / "w.npy"), info["w"]):
        run(cli, "sample", "--model", "stylegan2-fashion-32", "--w", w, "--out", str(sampled), "--force")
        assert np.array_equal(np.load(sampled)[0][:, :, 0], recon)
    again = run(cli, "project", "--model", "stylegan2-fashion-32", "--image", str(img), "--out-dir", str(out), ok=False)
    assert again.returncode == 2 and "--force" in again.stderr
