"""The explorer with a BigGAN model: class-by-seed grid and class interpolation, through the app's API; the controls
come from the request schema (truncation in (0, 1], only z interpolation, a to-class picker)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import ganserve  # noqa: E402
from ganserve.sampling import sample  # noqa: E402
from ganserve.ui.app import build_app, launch  # noqa: E402
from ganserve.ui.backend import LocalBackend  # noqa: E402
from tests.family_fixtures import make_tiny_biggan, save_tiny  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
COMMON = dict(psi=0.5, cutoff=0, noise_mode="const", class_index=1, temperature=1.0, top_k=0, top_p=1.0)


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("biggan-ui"), "tiny-biggan", make_tiny_biggan())


@pytest.fixture(scope="module")
def client(path):
    app = build_app(LocalBackend({"tiny-biggan": path}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = launch(app, port=port, prevent_thread_lock=True, quiet=True)
    yield gradio_client.Client(url, verbose=False)
    app.close()


def pixels(p: str) -> np.ndarray:
    with Image.open(p) as im:
        a = np.asarray(im)
    return a[:, :, None] if a.ndim == 2 else a


def test_controls_follow_the_schema(client):
    updates = client.predict("tiny-biggan", 0, None, api_name="/model_info")
    by_label = {v.get("label"): v for v in updates if isinstance(v, dict)}
    psi = next(v for v in updates if isinstance(v, dict) and v.get("maximum") == 1.0 and v.get("visible"))
    assert psi["minimum"] == 0.05  # psi in (0, 1]: the slider starts one step (0.05) above the refused 0
    space = next(v for v in updates if isinstance(v, dict) and v.get("choices") == [["Z (lerp)", "z"]])
    assert space["value"] == "z"
    to_class = next(v for v in updates if isinstance(v, dict) and v.get("value") == -1)
    assert to_class["visible"] and [c[1] for c in to_class["choices"]] == [-1, 0, 1, 2]
    assert by_label is not None


def test_class_by_seed_grid(client, path):
    shown, params, status = client.predict(
        model="tiny-biggan", seeds="3,4,5", **COMMON, classes=[2, 0], api_name="/grid"
    )  # fmt: skip
    gallery = shown["value"]
    assert shown["columns"] == 3  # one row per class
    assert [(p["class"], p["seeds"][0]) for p in params] == [(2, 3), (2, 4), (2, 5), (0, 3), (0, 4), (0, 5)]
    want = sample(ganserve.load(path), seeds=[3, 4, 5], classes=[2, 0], truncation_psi=0.5).images
    for item, img in zip(gallery, want):
        np.testing.assert_array_equal(pixels(item["image"]), img)
    assert "2 classes x 3 seeds" in status


def test_class_interpolation(client, path):
    gallery, _gif, _file, _strip, params, _status = client.predict(
        model="tiny-biggan", seed=1, to_seed=1, steps=3, space="z", **COMMON, to_class=2, api_name="/interpolate"
    )  # fmt: skip
    assert params[1]["interpolate"] == {"to_seed": 1, "to_class": 2, "steps": 3, "space": "z"}
    want = sample(ganserve.load(path), seeds=[1], truncation_psi=0.5, **{"class": 1},
                  interpolate={"to_seed": 1, "to_class": 2, "steps": 3}).images  # fmt: skip
    for item, img in zip(gallery, want):
        np.testing.assert_array_equal(pixels(item["image"]), img)


def test_class_from_the_seed(client, path):
    from ganserve.ui.actions import FROM_SEED
    from ganserve.ui.app import _class_index

    updates = client.predict("tiny-biggan", 0, None, api_name="/model_info")
    picker = next(v for v in updates if isinstance(v, dict) and v.get("choices") and v.get("value") == 0)
    assert picker["choices"][0] == ["from the seed (seed % 3)", FROM_SEED] and picker["choices"][1][1] == 0
    shown, params, _ = client.predict(model="tiny-biggan", seeds="3,4,5", **{**COMMON, "class_index": FROM_SEED},
                                      classes=[], api_name="/grid")  # fmt: skip
    assert [(p["class"], p["seeds"][0]) for p in params] == [(0, 3), (1, 4), (2, 5)]
    want = sample(ganserve.load(path), seeds=[3, 4, 5], truncation_psi=0.5)
    assert params == want.params
    gallery = shown["value"] if isinstance(shown, dict) else shown  # without classes the grid keeps its columns
    for item, img in zip(gallery, want.images):
        np.testing.assert_array_equal(pixels(item["image"]), img)
    # the page address: class=-1 (or "seed") means the same, for a family that takes its class from the seed only
    assert _class_index("-1", ("a", "b", "c"), True) == _class_index("seed", ("a", "b", "c"), True) == FROM_SEED
    assert _class_index("-1", ("a", "b", "c"), False) == 0
