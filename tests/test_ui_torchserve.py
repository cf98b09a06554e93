"""The explorer against a real TorchServe started by ``ganserve.serving.launcher.Server`` (token authorisation on):
its HTTP backend and every image endpoint of the app give the server's own pixels, and the server's errors and
refusals reach the user as readable lines."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from PIL import Image

import ganserve
from ganserve.sampling import sample
from ganserve.serving.launcher import Server
from ganserve.ui.backend import BackendError, decode_body
from ganserve.ui.remote import HTTPBackend

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]
COMMON = dict(psi=0.8, cutoff=6, noise_mode="random", class_index=None, temperature=1.0, top_k=0, top_p=1.0)


@pytest.fixture(scope="module")
def server(tiny_models_dir, tmp_path_factory):
    models = {n: tiny_models_dir / f"{n}.safetensors" for n in ("tiny", "tiny-cond")}
    with Server(models, tmp_path_factory.mktemp("torchserve"), auth=True) as s:
        yield s


@pytest.fixture(scope="module")
def backend(server) -> HTTPBackend:
    return HTTPBackend(server.config.inference_url, server.config.management_url, server.key_file)


@pytest.fixture(scope="module")
def models(tiny_models_dir):
    return {n: ganserve.load(tiny_models_dir / f"{n}.safetensors") for n in ("tiny", "tiny-cond")}


def served(server, name: str, request: dict) -> list:
    """The server's own answer, through its own client, for ``request``."""
    r = server.client().predict(name, {**request, "format": "json"})
    return decode_body(r.content, r.headers["Content-Type"])


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def test_backend_reads_models_and_descriptions(backend):
    assert sorted(backend.models()) == ["tiny", "tiny-cond"]
    info = backend.describe("tiny-cond")
    assert (info.family, info.num_ws, info.resolution) == ("stylegan2", 6, 16)
    assert info.classes == ["circle", "square", "triangle"]
    assert "style_mix" in info.schema["properties"] and info.version


def test_backend_images_equal_the_core(backend, models):
    req = {"seeds": [4, 9], "truncation_psi": 0.6, "noise_mode": "random", "class": "square"}
    pics = backend.generate("tiny-cond", req)
    want = sample(models["tiny-cond"], req)
    assert [p.params for p in pics] == want.params
    for p, img in zip(pics, want.images):
        np.testing.assert_array_equal(p.array(), img)


def test_server_errors_and_refusals_are_readable(backend, server, tmp_path):
    with pytest.raises(BackendError) as err:
        backend.generate("tiny", {"seeds": [1], "truncation_psi": 5.0})
    assert err.value.field == "truncation_psi" and "less than or equal to 2" in err.value.message
    wrong = tmp_path / "key_file.json"
    wrong.write_text(json.dumps({"management": {"key": "nope"}, "inference": {"key": "nope"}}))
    for call in (lambda b: b.models(), lambda b: b.generate("tiny", {"seeds": [0]})):
        with pytest.raises(BackendError, match="refused the request"):
            call(HTTPBackend(server.config.inference_url, server.config.management_url, wrong))


def test_app_endpoints_return_the_servers_images(backend, server):
    gradio_client = pytest.importorskip("gradio_client")
    from ganserve.ui.app import build_app, launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(backend)
    _, url, _ = launch(app, port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(url, verbose=False)
        base = {"truncation_psi": 0.8, "noise_mode": "random"}

        path, params, _ = client.predict(
            model="tiny-cond", seed=12, **{**COMMON, "class_index": 2}, api_name="/generate"
        )
        (want,) = served(server, "tiny-cond", {"seeds": [12], **base, "class": 2})
        np.testing.assert_array_equal(pixels(path), want.array())
        assert params == want.params

        gallery, _, _ = client.predict(model="tiny", seeds="3-5", **COMMON, api_name="/grid")
        want = served(server, "tiny", {"seeds": [3, 4, 5], **base})
        assert [pixels(g["image"]).tolist() for g in gallery] == [w.array().tolist() for w in want]

        _, gallery, _, _ = client.predict(model="tiny", row_seeds="1-2", col_seeds="5,6", layers="custom", start=2,
                                          stop=5, **COMMON, api_name="/style_mix")  # fmt: skip
        want = served(server, "tiny", {"seeds": [1, 2], "style_mix": {"seeds": [5, 6], "layers": [2, 5]}, **base})
        assert len(gallery) == 4
        for g, w in zip(gallery, want):
            np.testing.assert_array_equal(pixels(g["image"]), w.array())

        gallery, _, _, _, _, _ = client.predict(model="tiny", seed=0, to_seed=7, steps=4, space="w", **COMMON,
                                                api_name="/interpolate")  # fmt: skip
        want = served(server, "tiny", {"seeds": [0], "interpolate": {"to_seed": 7, "steps": 4, "space": "w"}, **base})
        for g, w in zip(gallery, want):
            np.testing.assert_array_equal(pixels(g["image"]), w.array())

        with pytest.raises(gradio_client.exceptions.AppError, match="Invalid class: unknown class 'hexagon'"):
            client.predict(model="tiny-cond", seed=1, **{**COMMON, "class_index": "hexagon"}, api_name="/generate")
    finally:
        app.close()
