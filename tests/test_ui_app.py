"""The explorer over local models, driven through its API with gradio_client: every endpoint's pixels must be the
sampling core's for the same settings, parameters travel in the PNGs, and errors come back as readable lines."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import ganserve  # noqa: E402
from ganserve.images import read_png_params  # noqa: E402
from ganserve.sampling import sample  # noqa: E402
from ganserve.ui.app import build_app, launch  # noqa: E402
from ganserve.ui.backend import LocalBackend  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # pandas deprecations inside Gradio
COMMON = dict(psi=1.0, cutoff=6, noise_mode="const", class_index=None, temperature=1.0, top_k=0, top_p=1.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tiny_models_dir, latents_dir):
    backend = LocalBackend({n: tiny_models_dir / f"{n}.safetensors" for n in ("tiny", "tiny-cond")})
    app = build_app(backend)
    _, url, _ = launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    yield url
    app.close()


@pytest.fixture(scope="module")
def client(app_url):
    return gradio_client.Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def models(tiny_models_dir):
    return {name: ganserve.load(tiny_models_dir / f"{name}.safetensors") for name in ("tiny", "tiny-cond")}


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"  # not Gradio's default WebP
        a = np.asarray(im)
    return a[:, :, None] if a.ndim == 2 else a


def gallery_paths(gallery: list) -> list[str]:
    return [item["image"] for item in gallery]


def returns_by_label(client, endpoint: str, values: tuple) -> dict:
    """An endpoint's outputs keyed by their component labels (gr.update dicts reduced to their value)."""
    labels = [
        r["label"]
        for r in client.view_api(print_info=False, return_format="dict")["named_endpoints"][endpoint]["returns"]
    ]
    out = {}
    for label, v in zip(labels, values):
        out[label] = v.get("value") if isinstance(v, dict) and v.get("__type__") == "update" else v
    return out


def test_endpoints_are_listed(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/generate", "/grid", "/style_mix", "/interpolate", "/restore", "/model_info", "/browse", "/strips",
            "/project"} <= names  # fmt: skip
    assert not [n for n in names if n.startswith("/lambda") or n.startswith("/run")]  # page events are private


def test_generate_matches_core_and_embeds_params(client, models):
    path, params, status = client.predict(
        model="tiny", seed=5, **{**COMMON, "psi": 0.7, "cutoff": 3, "noise_mode": "random"}, api_name="/generate"
    )
    want = sample(models["tiny"], seeds=[5], truncation_psi=0.7, truncation_cutoff=3, noise_mode="random")
    np.testing.assert_array_equal(pixels(path), want.images[0])
    assert params == want.params[0]
    with open(path, "rb") as f:
        assert read_png_params(f.read()) == want.params[0]
    assert "seed 5" in status


def test_grid_matches_core(client, models):
    gallery, params, _ = client.predict(
        model="tiny", seeds="0-3,9", **{**COMMON, "psi": 0.5, "noise_mode": "none"}, api_name="/grid"
    )
    want = sample(models["tiny"], seeds="0-3,9", truncation_psi=0.5, noise_mode="none")
    assert params == want.params
    paths = gallery_paths(gallery)
    assert len(paths) == 5
    for path, img, prm in zip(paths, want.images, want.params):
        np.testing.assert_array_equal(pixels(path), img)
        with open(path, "rb") as f:
            assert read_png_params(f.read()) == prm


def test_style_mix_matches_core_and_figure_layout(client, models):
    figure, gallery, params, _ = client.predict(
        model="tiny", row_seeds="0-1", col_seeds="7-9", layers="custom", start=1, stop=3, **COMMON,
        api_name="/style_mix",
    )  # fmt: skip
    G = models["tiny"]
    want = sample(G, seeds=[0, 1], style_mix={"seeds": [7, 8, 9], "layers": [1, 3]})  # inclusive, as the CLI
    paths = gallery_paths(gallery)
    assert len(paths) == 6
    for path, img in zip(paths, want.images):
        np.testing.assert_array_equal(pixels(path), img)
    assert [p["style_mix"] for p in params] == [{"seeds": [m], "layers": "1-3"} for _ in (0, 1) for m in (7, 8, 9)]
    # StyleGAN2-ADA's figure: column seeds on top, row seeds on the left, mixes inside.
    fig = pixels(figure)
    src = sample(G, seeds=[0, 1, 7, 8, 9]).images
    h, w = src.shape[1:3]
    assert fig.shape[:2] == (3 * h, 4 * w)
    assert (fig[:h, :w] == 255).all()
    np.testing.assert_array_equal(fig[:h, w : 2 * w], src[2])  # seed 7
    np.testing.assert_array_equal(fig[2 * h :, :w], src[1])  # seed 1
    np.testing.assert_array_equal(fig[2 * h :, 3 * w :], want.images[5])  # 1 x 9


def test_interpolate_matches_core_with_gif_and_strip(client, models):
    gallery, gif, gif_file, strip, params, status = client.predict(
        model="tiny", seed=1, to_seed=3, steps=5, space="z", **COMMON, api_name="/interpolate"
    )
    want = sample(models["tiny"], seeds=[1], interpolate={"to_seed": 3, "steps": 5, "space": "z"})
    paths = gallery_paths(gallery)
    assert len(paths) == 5
    for path, img in zip(paths, want.images):
        np.testing.assert_array_equal(pixels(path), img)
    assert [p["t"] for p in params] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert gif.endswith(".gif") and "5 frames in Z" in status
    with Image.open(gif_file) as im:
        assert im.format == "GIF" and im.n_frames == 8  # forward and back, ends not repeated
    np.testing.assert_array_equal(pixels(strip), np.concatenate(list(want.images), axis=1))


def test_class_picker_follows_the_model(client, models):
    cond = returns_by_label(client, "/model_info", client.predict("tiny-cond", 6, None, api_name="/model_info"))
    assert cond["Class"] == 0
    uncond = client.predict("tiny", 6, None, api_name="/model_info")
    cls_update = next(v for v in uncond if isinstance(v, dict) and "choices" in v and v.get("visible") is False)
    assert cls_update["choices"] == []
    cond_raw = client.predict("tiny-cond", 6, None, api_name="/model_info")
    choices = next(v["choices"] for v in cond_raw if isinstance(v, dict) and v.get("choices") and v.get("value") == 0)
    assert [c[0] for c in choices] == ["0: circle", "1: square", "2: triangle"]

    path, params, _ = client.predict(model="tiny-cond", seed=3, **{**COMMON, "class_index": 2}, api_name="/generate")
    want = sample(models["tiny-cond"], seeds=[3], **{"class": 2})
    np.testing.assert_array_equal(pixels(path), want.images[0])
    assert params["class"] == 2
    other = sample(models["tiny-cond"], seeds=[3], **{"class": 0}).images[0]
    assert not np.array_equal(pixels(path), other)


def test_restore_settings_from_a_png(client):
    _, gallery, _, _ = client.predict(
        model="tiny", row_seeds="4", col_seeds="11", layers="middle", start=0, stop=4,
        **{**COMMON, "psi": 0.6, "cutoff": 2, "noise_mode": "none"}, api_name="/style_mix",
    )  # fmt: skip
    png = gallery_paths(gallery)[0]
    got = returns_by_label(client, "/restore", client.predict(gradio_client.handle_file(png), api_name="/restore"))
    assert got["Row seeds (take the other layers)"] == "4"
    assert got["Column seeds (give the chosen layers)"] == "11"
    assert got["Layers from the column seeds"] == "middle"
    assert got["Truncation ψ"] == 0.6
    assert got["Truncation cutoff"] == 2
    assert got["Noise mode"] == "none"
    assert got["Model"] == "tiny"

    path, _, _ = client.predict(model="tiny", seed=77, **COMMON, api_name="/generate")
    got = returns_by_label(client, "/restore", client.predict(gradio_client.handle_file(path), api_name="/restore"))
    assert got["Seed"] == 77

    # Another model's image: the model, its class picker and the class come back too.
    path, _, _ = client.predict(model="tiny-cond", seed=9, **{**COMMON, "class_index": 2}, api_name="/generate")
    got = returns_by_label(client, "/restore", client.predict(gradio_client.handle_file(path), api_name="/restore"))
    assert (got["Model"], got["Class"], got["Seed"]) == ("tiny-cond", 2, 9)


def test_restore_refuses_a_png_without_params(client, tmp_path):
    plain = tmp_path / "plain.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(plain)
    with pytest.raises(gradio_client.exceptions.AppError, match="carries no ganserve parameters"):
        client.predict(gradio_client.handle_file(str(plain)), api_name="/restore")


@pytest.mark.parametrize(
    ("endpoint", "kwargs", "message"),
    [
        ("/grid", {"seeds": "abc"}, "Invalid seeds: 'abc' is not a seed"),
        ("/grid", {"seeds": "0-99"}, "Invalid seeds: 100 images requested; the limit is 64"),
        ("/generate", {"seed": -3}, "Invalid seed: expected a whole number"),
        ("/style_mix", {"row_seeds": "1", "col_seeds": "2", "layers": "custom", "start": 5, "stop": 3},
         "Invalid style_mix.layers: expected 0 <= A <= B, got [5, 3]"),
        ("/style_mix", {"row_seeds": "0-8", "col_seeds": "0-8", "layers": "coarse"},
         "Invalid seeds: 81 images requested; the limit is 64"),
        # 'tiny' has 6 ws: the fine group (64^2 and up) holds none of them
        ("/style_mix", {"row_seeds": "1", "col_seeds": "2", "layers": "fine"},
         "Invalid style_mix.layers: 'fine' holds no layers in this model (choices: coarse, middle, custom)"),
        ("/generate", {"seed": 1.5}, "Invalid seed: expected a whole number"),
        ("/generate", {"seed": 3, "psi": 5}, "Invalid truncation_psi: expected a number from -1 to 2, got 5"),
    ],
)  # fmt: skip
def test_errors_are_readable_lines(client, endpoint, kwargs, message):
    with pytest.raises(gradio_client.exceptions.AppError) as err:
        client.predict(model="tiny", **{**COMMON, **kwargs}, api_name=endpoint)
    text = str(err.value)
    assert message in text
    assert "Traceback" not in text


# ---- issue 14: edits, strips, projection and latents, the seed browser ----------------------------------------------


def test_edits_apply_to_every_endpoint(client, models):
    G = models["tiny"]
    edits = [{"direction": 1, "amount": 2.0, "method": "sefa"}, {"direction": 4, "amount": -1.5, "method": "sefa"}]
    kw = {**COMMON, "edit_1": 2.0, "edit_4": -1.5}
    path, params, _ = client.predict(model="tiny", seed=6, **kw, api_name="/generate")
    want = sample(G, seeds=[6], edits=edits)
    np.testing.assert_array_equal(pixels(path), want.images[0])
    assert params == want.params[0]
    gallery, _, _ = client.predict(model="tiny", seeds="2,3", **kw, api_name="/grid")
    want = sample(G, seeds=[2, 3], edits=edits)
    for path, img in zip(gallery_paths(gallery), want.images):
        np.testing.assert_array_equal(pixels(path), img)
    # PCA on the middle layers; every amount at 0 is exactly the unedited image (and records no edits).
    path, params, _ = client.predict(model="tiny", seed=6, **{**COMMON, "edit_0": 1.0}, edit_method="pca",
                                     edit_layers="middle", api_name="/generate")  # fmt: skip
    want = sample(G, seeds=[6], edits=[{"direction": 0, "amount": 1.0, "method": "pca", "layers": "middle"}])
    np.testing.assert_array_equal(pixels(path), want.images[0])
    path, params, _ = client.predict(model="tiny", seed=6, **COMMON, api_name="/generate")
    np.testing.assert_array_equal(pixels(path), sample(G, seeds=[6]).images[0])
    assert "edits" not in params
    with pytest.raises(gradio_client.exceptions.AppError, match="Invalid direction 2: expected a number from -5 to 5"):
        client.predict(model="tiny", seed=6, **{**COMMON, "edit_2": 9.0}, api_name="/generate")
    with pytest.raises(gradio_client.exceptions.AppError, match="'fine' holds no layers in this model"):
        client.predict(model="tiny", seed=6, **{**COMMON, "edit_2": 1.0}, edit_layers="fine", api_name="/generate")


def test_strips_show_each_direction_from_minus_to_plus_three(client, models):
    G = models["tiny"]
    *strips, status = client.predict(model="tiny", seed=8, **COMMON, api_name="/strips")
    assert len(strips) == 10 and all(strips) and "10 direction strips" in status
    h = G.config.resolution
    strip = pixels(strips[5])
    assert strip.shape[:2] == (h, 7 * h)
    for i, amount in enumerate((-3, -2, -1, 0, 1, 2, 3)):
        edits = [{"direction": 5, "amount": float(amount), "method": "sefa"}] if amount else None
        want = sample(G, seeds=[8], edits=edits).images[0]
        np.testing.assert_array_equal(strip[:, i * h : (i + 1) * h], want)


def test_projection_then_the_latent_as_a_source(client, models, tmp_path):
    G = models["tiny"]
    target = tmp_path / "target.png"
    Image.fromarray(sample(G, seeds=[3]).images[0]).save(target)
    path, params, status = client.predict(model="tiny", image=gradio_client.handle_file(str(target)), steps=5,
                                          **COMMON, api_name="/project")  # fmt: skip
    import base64

    want = sample(G, project=base64.b64encode(target.read_bytes()).decode(), project_steps=5)
    np.testing.assert_array_equal(pixels(path), want.images[0])
    assert params == want.params[0] and params["w"].startswith("w:") and "PSNR" in status
    w = params["w"]
    # The w as the source: one image, a style-mixing row, an interpolation start; edits apply to it.
    path, params, _ = client.predict(model="tiny", seed=0, w=w, **{**COMMON, "edit_0": 1.0}, api_name="/generate")
    want = sample(G, w=w, edits=[{"direction": 0, "amount": 1.0, "method": "sefa"}])
    np.testing.assert_array_equal(pixels(path), want.images[0])
    assert params["w"] == w
    _, gallery, params, _ = client.predict(model="tiny", row_seeds="0-3", col_seeds="5,6", layers="coarse",
                                                w=w, **COMMON, api_name="/style_mix")  # fmt: skip
    want = sample(G, w=w, style_mix={"seeds": [5, 6], "layers": "coarse"})
    assert len(gallery) == 2
    for p, img in zip(gallery_paths(gallery), want.images):
        np.testing.assert_array_equal(pixels(p), img)
    frames, *_ = client.predict(model="tiny", seed=0, to_seed=4, steps=3, space="w", w=w, **COMMON,
                                api_name="/interpolate")  # fmt: skip
    want = sample(G, w=w, interpolate={"to_seed": 4, "steps": 3})
    for p, img in zip(gallery_paths(frames), want.images):
        np.testing.assert_array_equal(pixels(p), img)
    with pytest.raises(gradio_client.exceptions.AppError, match=r"Invalid interpolate\.space: a w has no z"):
        client.predict(model="tiny", seed=0, to_seed=4, steps=3, space="z", w=w, **COMMON, api_name="/interpolate")
    with pytest.raises(gradio_client.exceptions.AppError, match="Invalid w: unknown latent id"):
        client.predict(model="tiny", seed=0, w="w:00000000deadbeef", **COMMON, api_name="/generate")
    with pytest.raises(gradio_client.exceptions.AppError, match="Invalid project: upload an image"):
        client.predict(model="tiny", image=None, steps=5, **COMMON, api_name="/project")


def test_seed_browser_pages(client, models):
    gallery, params, status = client.predict(model="tiny", start=64, **COMMON, api_name="/browse")
    assert [p["seeds"][0] for p in params] == list(range(64, 128)) and status == "tiny: seeds 64-127"
    np.testing.assert_array_equal(pixels(gallery_paths(gallery)[5]), sample(models["tiny"], seeds=[69]).images[0])
    with pytest.raises(gradio_client.exceptions.AppError, match="Invalid first seed: expected a whole number"):
        client.predict(model="tiny", start=-64, **COMMON, api_name="/browse")


def test_model_info_offers_only_the_models_groups(client):
    got = returns_by_label(client, "/model_info", client.predict("tiny", 6, None, api_name="/model_info"))
    assert got["Layers from the column seeds"] == "coarse"
    raw = client.predict("tiny", 6, None, api_name="/model_info")
    presets = next(v["choices"] for v in raw if isinstance(v, dict) and v.get("value") == "coarse" and "choices" in v)
    assert [c[1] for c in presets] == ["coarse", "middle", "custom"]
