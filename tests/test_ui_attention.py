"""The self-attention panel: shown for models whose schema declares ``attention`` (a tiny SAGAN), not for others (a
tiny StyleGAN2); a query's map is the sampling core's ``attention`` output, enlarged nearest with the query pixel
outlined; a click on the Seed image maps to the model's pixels; an out-of-range query is refused by field name; the
query travels in the link; /attention answers over gradio_client."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import ganserve  # noqa: E402
from ganserve.sampling import sample  # noqa: E402
from ganserve.ui.app import build_app, launch, url_for  # noqa: E402
from ganserve.ui.backend import BackendError, LocalBackend  # noqa: E402
from ganserve.ui.page import Page  # noqa: E402
from ganserve.ui.panels import attention  # noqa: E402
from ganserve.ui.urlstate import decode  # noqa: E402
from tests.family_fixtures import make_tiny_sagan, save_tiny  # noqa: E402
from tests.test_ui_http import key_file  # noqa: E402, F401

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


@pytest.fixture(scope="module")
def sagan_path(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("sagan"), "sagan-tiny", make_tiny_sagan(3))


@pytest.fixture(scope="module")
def backend(sagan_path, tiny_models_dir):
    return LocalBackend({"sagan-tiny": sagan_path, "tiny": tiny_models_dir / "tiny.safetensors"})


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        a = np.asarray(im)
    return a[:, :, None] if a.ndim == 2 else a


def panel(app):
    (found,) = [b for b in app.blocks.values() if getattr(b, "elem_id", None) == "attention-panel"]
    return found


def settings(page: Page, **v) -> dict:
    return {"model": "sagan-tiny", "seed": 5, "psi": 1.0, "class": -1, **v}


def test_panel_only_for_models_declaring_attention(backend, sagan_path, tiny_models_dir):
    assert backend.models()[0] == "sagan-tiny"
    assert panel(build_app(backend)).visible is True
    only_stylegan2 = LocalBackend({"tiny": tiny_models_dir / "tiny.safetensors"})
    assert panel(build_app(only_stylegan2)).visible is False
    # A model switch: shown for the SAGAN, hidden for the StyleGAN2 (read from the schema).
    update = attention._for_model(Page(backend))
    assert update("sagan-tiny")[0]["visible"] is True
    assert update("tiny")[0]["visible"] is False


def test_query_renders_the_cores_map_enlarged_and_marked(backend, sagan_path):
    page = Page(backend)
    r = attention.attention_map(page, settings(page, attn_y=3, attn_x=11))
    want = sample(ganserve.load(sagan_path), seeds=[5], attention={"query": [3, 11]}).images[0]
    raw = pixels(r["map"])
    np.testing.assert_array_equal(raw, want)
    assert r["params"]["attention"] == {"query": [3, 11]}
    shown = pixels(r["shown"])
    f = attention.scale(16)
    assert f == 16 and shown.shape == (16 * f, 16 * f, 3)
    grey = np.repeat(want, 3, axis=2) if want.shape[2] == 1 else want
    # Nearest enlargement: every cell's centre is the map's pixel; the query cell's border is red.
    np.testing.assert_array_equal(shown[f // 2 :: f, f // 2 :: f], grey)
    assert (shown[3 * f, 11 * f : 12 * f] == attention.MARK).all()
    assert (shown[3 * f : 4 * f, 12 * f - 1] == attention.MARK).all()
    assert (shown == attention.MARK).all(axis=2).sum() == 4 * f - 4  # the outline only (a grey map has no red)
    assert "[y 3, x 11]" in r["caption"] and "seed 5" in r["caption"]
    # Another pixel attends elsewhere: the map depends on the query.
    other = attention.attention_map(page, settings(page, attn_y=12, attn_x=1))
    assert not np.array_equal(pixels(other["map"]), raw)


@pytest.mark.parametrize(
    ("y", "x", "message"),
    [(16, 0, "y must be a whole number from 0 to 15, got 16"), (0, -1, "x must be"), (1.5, 2, "got 1.5")],
)
def test_out_of_range_query_names_the_field(backend, y, x, message):
    page = Page(backend)
    with pytest.raises(BackendError) as err:
        attention.attention_map(page, settings(page, attn_y=y, attn_x=x))
    assert err.value.field == "attention.query" and message in err.value.message
    with pytest.raises(BackendError, match="has no self-attention map"):
        attention.attention_map(page, settings(page, model="tiny", attn_y=0, attn_x=0))


def test_click_scales_from_the_shown_file_to_the_model(backend):
    page = Page(backend)
    v = {"model": "sagan-tiny"}
    assert attention.clicked(page, v, "3,11,16,16") == (3, 11)  # the file at the model's size
    assert attention.clicked(page, v, "13,45,64,64") == (3, 11)  # a 4x file: pixel (13, 45) is model pixel [3, 11]
    assert attention.clicked(page, v, "63,63,64,64") == (15, 15)
    with pytest.raises(BackendError) as err:
        attention.clicked(page, v, "3,x")
    assert err.value.field == "attention.query"


def test_query_in_the_link(backend):
    page = Page(backend)
    link = url_for(page.ex, settings(page, attn_y=4, attn_x=9, tab="seed"))
    assert "attn_y=4" in link and "attn_x=9" in link
    assert decode({"attn_y": "4", "attn_x": "9"})[0] == {"attn_y": 4, "attn_x": 9}
    assert "attn_" not in url_for(page.ex, {"model": "tiny", "seed": 1, "attn_y": 4, "attn_x": 9, "tab": "seed"})


def test_a_link_with_a_query_draws_the_map_on_arrival(backend, sagan_path):
    """The load event's part for the panel: a link naming attn_y/attn_x gets the map and caption, not only the boxes;
    a link without them, or for a model without attention, draws nothing; a refused query says why."""
    page = Page(backend)
    out = attention.arrived(page, {"attn_y": 3, "attn_x": 11}, settings(page, attn_y=3, attn_x=11))
    assert "[y 3, x 11]" in out["attn_caption"]
    want = sample(ganserve.load(sagan_path), seeds=[5], attention={"query": [3, 11]}).images[0]
    grey = np.repeat(want, 3, axis=2) if want.shape[2] == 1 else want
    f = attention.scale(16)
    np.testing.assert_array_equal(pixels(out["attn_image"]["value"])[f // 2 :: f, f // 2 :: f], grey)
    assert attention.arrived(page, {"seed": 5}, settings(page)) == {}
    assert attention.arrived(page, {"attn_y": 1}, {"model": "tiny", "seed": 1, "attn_y": 1, "attn_x": 0}) == {}
    bad = attention.arrived(page, {"attn_y": 99}, settings(page, attn_y=99, attn_x=0))
    assert "attn_image" not in bad and "attention.query: y must be" in bad["attn_caption"]


def _launched(backend) -> tuple:
    """The explorer app for ``backend``, serving on a free loopback port (the caller closes it)."""
    app = build_app(backend)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = launch(app, port=port, prevent_thread_lock=True, quiet=True)
    return app, url


def test_attention_endpoint(backend, sagan_path):
    app, url = _launched(backend)
    try:
        client = gradio_client.Client(url, verbose=False)
        raw, shown, caption, params, status = client.predict(
            model="sagan-tiny", seed=2, y=7, x=7, api_name="/attention"
        )
        want = sample(ganserve.load(sagan_path), seeds=[2], attention={"query": [7, 7]}).images[0]
        np.testing.assert_array_equal(pixels(raw), want)
        assert pixels(shown).shape[0] == 16 * attention.scale(16)
        assert params["attention"] == {"query": [7, 7]} and "[y 7, x 7]" in caption
        assert "attention of [7, 7]" in status
        with pytest.raises(gradio_client.exceptions.AppError, match=r"Invalid attention\.query: x must be"):
            client.predict(model="sagan-tiny", seed=2, y=7, x=99, api_name="/attention")
    finally:
        app.close()


@pytest.mark.slow
def test_browser_click_on_the_image_shows_the_map(backend, sagan_path):
    """Headless Debian chromium: a click on the Seed image's cell [3, 11] fills the query boxes and shows that pixel's
    map (the core's, enlarged, outlined), and the link then holds the query; a link with a query draws its map; an
    example button sets the controls and renders its image."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.test_ui_browser import CHROMIUM, CHROMIUM_ARGS, open_page, wait_new_image
    from tests.test_ui_browser import pixels as png_pixels

    app, url = _launched(backend)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.set_default_timeout(60_000)
            open_page(pg, url)
            pg.wait_for_function("() => { const i = document.querySelector('#image img'); return i && i.src; }")
            # The upscaled download beside it follows the image (tests/test_ui_upscale.py checks its pixels).
            links = "[...document.querySelectorAll('#upscale-file a')]"
            pg.wait_for_function(f"() => {links}.some(a => a.href.includes('-x4.png'))")
            img = pg.locator("#image img")
            box = img.bounding_box()
            natural = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
            s = min(box["width"] / natural[0], box["height"] / natural[1])  # object-fit: contain
            ox, oy = (box["width"] - natural[0] * s) / 2, (box["height"] - natural[1] * s) / 2
            assert s > 1  # shown enlarged: the case Gradio's own select coordinates get wrong
            img.click(position={"x": ox + (11 + 0.5) * s, "y": oy + (3 + 0.5) * s})
            _, png = wait_new_image(pg, None, "#attn-image img")
            assert pg.locator("#attn-y input").input_value() == "3"
            assert pg.locator("#attn-x input").input_value() == "11"
            want = sample(ganserve.load(sagan_path), seeds=[0], attention={"query": [3, 11]}).images[0]
            f = attention.scale(16)
            shown = png_pixels(png)
            grey = np.repeat(want, 3, axis=2) if want.shape[2] == 1 else want
            np.testing.assert_array_equal(shown[f // 2 :: f, f // 2 :: f], grey)
            assert (shown[3 * f, 11 * f : 12 * f] == attention.MARK).all()
            assert "[y 3, x 11]" in pg.locator("#attn-caption").inner_text()
            pg.wait_for_function("() => location.search.includes('attn_y=3')")
            assert "attn_x=11" in pg.evaluate("location.search")
            # A link with a query pixel draws its map on arrival (not only the boxes).
            open_page(pg, url + "?model=sagan-tiny&seed=2&attn_y=12&attn_x=1")
            _, png = wait_new_image(pg, None, "#attn-image img")
            want = sample(ganserve.load(sagan_path), seeds=[2], attention={"query": [12, 1]}).images[0]
            grey = np.repeat(want, 3, axis=2) if want.shape[2] == 1 else want
            np.testing.assert_array_equal(png_pixels(png)[f // 2 :: f, f // 2 :: f], grey)
            assert "[y 12, x 1]" in pg.locator("#attn-caption").inner_text()
            # An example on the first screen (tests/test_ui_examples.py): its click sets the controls and renders.
            old = pg.locator("#image img").get_attribute("src")
            pg.locator("#example-1").click()
            _, png = wait_new_image(pg, old)
            assert pg.locator("#seed input").input_value() == "1"
            assert pg.locator("#class input").input_value() == "1: square"
            want = sample(ganserve.load(sagan_path), seeds=[1], **{"class": 1}).images[0]
            np.testing.assert_array_equal(png_pixels(png), want)
            browser.close()
    finally:
        app.close()


def test_query_over_http_equals_the_servers_map(sagan_path, tiny_models_dir, tmp_path, key_file):  # noqa: F811
    """The same panel over HTTPBackend (the stand-in server of test_ui_http, its serving core): the map is the
    server's, and the server's refusal of an out-of-range query arrives by field name."""
    import shutil

    from ganserve.ui.remote import HTTPBackend
    from tests.test_ui_http import StandInServer

    # The stand-in serves "tiny" and "tiny-cond": here "tiny-cond" is the SAGAN.
    shutil.copy(tiny_models_dir / "tiny.safetensors", tmp_path / "tiny.safetensors")
    shutil.copy(sagan_path, tmp_path / "tiny-cond.safetensors")
    with StandInServer(tmp_path) as server:
        page = Page(HTTPBackend(server.inference_url, server.management_url, key_file))
        r = attention.attention_map(page, {"model": "tiny-cond", "seed": 4, "class": -1, "attn_y": 9, "attn_x": 2})
        assert server.posts[-1]["attention"] == {"query": [9, 2]}
        want = sample(ganserve.load(sagan_path), seeds=[4], attention={"query": [9, 2]}).images[0]
        np.testing.assert_array_equal(pixels(r["map"]), want)
        with pytest.raises(BackendError) as err:  # past the page's check: the server names the field
            page.ex.generate("tiny-cond", {"seeds": [4], "attention": {"query": [9, 16]}})
        assert err.value.field == "attention.query"
